"""The exceptions the library raises for problems a user can fix, and their one-line form."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from typing import Any

__all__ = ["NSTError", "NumericalError", "OutputExists", "clean", "one_line"]


class NSTError(ValueError):
    """A bad input, file or setting, described in one line.

    A :class:`ValueError`, so code that guards a call with ``except ValueError`` also catches the
    library's refusals of bad arguments. Command-line tools print ``str(err)`` on stderr and exit
    non-zero; they never show a traceback for this type.
    """


class NumericalError(NSTError):
    """The loss or the image stopped being finite (NaN or Inf) during an optimisation.

    Attributes:
        step: The step of the last image that was still finite.
        image: That image, ``[H, W, 3]`` float32 numpy (unclipped); ``[K, H, W, 3]`` from a sweep.
        members: Indices of the sweep members that failed (``[0]`` for a single run).
        level: The multi-scale level that failed (0 for a single-scale run); ``step`` counts its steps.
    """

    def __init__(self, message: str, *, step: int, image: Any, members: Iterable[int] = (0,),
                 level: int = 0) -> None:
        super().__init__(message)
        self.step: int = step
        self.image: Any = image
        self.members: list[int] = [int(m) for m in members]
        self.level: int = level


class OutputExists(NSTError):
    """A file appeared at a destination while the run was going on, and was kept.

    Attributes:
        path: The destination, left as it was.
        saved_as: Where the new file went instead (beside ``path``), or None if nowhere.
    """

    def __init__(self, path: str | os.PathLike[str], saved_as: str | os.PathLike[str] | None):
        self.path: str | os.PathLike[str] = path
        self.saved_as: str | os.PathLike[str] | None = saved_as
        where = f"; this run's file is saved beside it as {saved_as}" if saved_as else ""
        super().__init__(f"{path} appeared while this run was going on and was kept{where}")


def clean(text: object) -> str:
    """Text safe to print on a terminal.

    Args:
        text: Anything; its ``str`` is taken.

    Returns:
        The text with every control or format character (terminal escapes, bidi overrides) removed.
    """
    return "".join(ch for ch in str(text) if not unicodedata.category(ch).startswith("C"))


def one_line(err: BaseException | str, limit: int | None = 200) -> str:
    """An exception (or text) as one printable line.

    Args:
        err: The exception or text.
        limit: The longest line returned (None: no limit); longer ones end in ``...``.

    Returns:
        Its message (its type's name when the message is empty), whitespace collapsed, control
        characters removed (:func:`clean`), cut at ``limit`` characters.
    """
    text = clean(" ".join(str(err).split())) or type(err).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
