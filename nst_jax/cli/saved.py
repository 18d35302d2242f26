"""Command-line arguments read back from a checkpoint or an image's run record, which are untrusted.

Every saved field is checked as the command line checks it: the JSON type the option's type takes
(an integer, a number, a string, a flag, a list of them), then the option's own conversion and
choices. Range checks happen afterwards, in the same code as for typed options. A field that fails
is a usage error naming the file and the field.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nst_jax.cli.common import integer
from nst_jax.errors import NSTError

MAX_LIST = 10_000
MAX_TEXT = 4096  # the longest path a system accepts


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _scalar(action: argparse.Action, value: Any, what: str) -> Any:
    kind = action.type or str
    if kind in (int, integer):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif kind is float:
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, expected = isinstance(value, str) and "\x00" not in value and len(value) <= MAX_TEXT, "a path or name"
    if not ok:
        raise NSTError(f"{what} must be {expected}, got {_show(value)}")
    try:
        converted = value if kind is str else kind(str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        raise NSTError(f"{what}: {err}") from None
    if action.choices is not None and converted not in action.choices:
        raise NSTError(f"{what} must be one of {', '.join(map(str, action.choices))}, got {_show(value)}")
    return converted


def _field(action: argparse.Action, value: Any, what: str) -> Any:
    if value is None:
        if action.default is None:
            return None
        raise NSTError(f"{what} must not be null")
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise NSTError(f"{what} must be true or false, got {_show(value)}")
        return value
    if getattr(action, "scalar_if_single", False):  # one run's record holds one path (--content)
        return _scalar(action, value, what)
    if action.nargs in ("+", "*"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise NSTError(f"{what} must be a list of 1 to {MAX_LIST} values, got {_show(value)}")
        return [_scalar(action, v, what) for v in value]
    return _scalar(action, value, what)


def validated(saved: Any, parser: argparse.ArgumentParser, source: str) -> dict[str, Any]:
    """The options of ``parser`` found in ``saved``, each checked as the command line would check it.

    Unknown keys are ignored (a later version may add options).

    Raises:
        NSTError: If ``saved`` is not a JSON object, or a field has the wrong type or value.
    """
    if not isinstance(saved, dict):
        raise NSTError(f"{source} was not written by nst-jax (it holds no command-line arguments)")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")}
    return {key: _field(actions[key], value, f"{source}: field {key!r}")
            for key, value in saved.items() if key in actions}
