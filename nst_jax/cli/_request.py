"""What a command-line run reads and where it writes, as typed values, and the records that replay it.

A run of ``nst-jax`` is a :class:`~nst_jax.spec.RunSpec` (everything that decides the image) plus
its :class:`Sources` (the files its inputs are loaded from, and at what size) and its
:class:`Destinations` (where it writes: never taken from a record). Images and checkpoints store
the spec, the sources and the VGG file's digest (:func:`record_of`); ``--rerun`` and ``--resume``
read them back with :func:`replay_of`, every field checked against its definition, since a record
is untrusted.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from nst_jax import __version__, files
from nst_jax.config import INITS
from nst_jax.errors import NSTError
from nst_jax.spec import RunSpec

VGG_CHOICES = ("original", "normalized")
MAX_TEXT = 4096  # the longest path a system accepts
MAX_FILES = 64


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _path(value: Any, what: str) -> str:
    if not (isinstance(value, str) and value and "\x00" not in value and len(value) <= MAX_TEXT):
        raise NSTError(f"{what} must be a path, got {_show(value)}")
    return value


def _paths(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_FILES:
        raise NSTError(f"{what} must be a list of 1 to {MAX_FILES} paths, got {_show(value)}")
    return tuple(_path(v, what) for v in value)


def absolute(path: str) -> str:
    """``path`` made absolute (a record replays from any directory); symlinks are kept."""
    return str(pathlib.Path(path).expanduser().absolute())


@dataclasses.dataclass(frozen=True)
class Sources:
    """The files a run's inputs come from, and the size they are loaded at.

    Attributes:
        size: The output's longest side; the content (and start image) are resized to it, the
            style images to it or to ``config.style_scale`` times it.
        content: The content photo, or None (style mode).
        style: The style images, or None (content mode).
        masks: One region mask per style image, or None.
        init: The start image (``config.init == "image"``), or None.
        vgg: ``original``, ``normalized`` or a VGG-19 parameter file.
    """

    size: int
    content: str | None = None
    style: tuple[str, ...] | None = None
    masks: tuple[str, ...] | None = None
    init: str | None = None
    vgg: str = "original"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NSTError(f"size must be an integer, got {_show(self.size)}")
        if not files.MIN_SIZE <= self.size <= files.MAX_SIZE:
            raise NSTError(f"--size must be between {files.MIN_SIZE} and {files.MAX_SIZE}, got {self.size}")
        for name in ("content", "init"):
            if getattr(self, name) is not None:
                _path(getattr(self, name), f"{name}")
        for name in ("style", "masks"):
            object.__setattr__(self, name, _paths(getattr(self, name), name))
        _path(self.vgg, "vgg")

    def absolute(self) -> Sources:
        """The same sources with absolute paths."""
        paths = {name: None if getattr(self, name) is None else absolute(getattr(self, name))
                 for name in ("content", "init")}
        lists = {name: None if getattr(self, name) is None else tuple(map(absolute, getattr(self, name)))
                 for name in ("style", "masks")}
        vgg = self.vgg if self.vgg in VGG_CHOICES else absolute(self.vgg)
        return dataclasses.replace(self, **paths, **lists, vgg=vgg)

    def files(self) -> list[tuple[str, str]]:
        """``(role, path)`` of every file the run reads (never to be written), the VGG checksum included."""
        named = [("content image", self.content)] if self.content else []
        named += [("style image", s) for s in self.style or ()]
        named += [("mask", m) for m in self.masks or ()]
        named += [("init image", self.init)] if self.init else []
        vgg = str(files.DEFAULT_VGG_FILE) if self.vgg in VGG_CHOICES else self.vgg
        return named + [("VGG file", vgg), ("VGG checksum file", f"{vgg}.sha256")]

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Sources:
        """The sources a record stored, each field checked (types, ranges, path lengths).

        Raises:
            NSTError: Naming the source and the field.
        """
        if not isinstance(data, dict):
            raise NSTError(f"{source}: 'sources' must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown or "size" not in data:
            raise NSTError(f"{source}: 'sources' has {'unknown field ' + repr(unknown[0]) if unknown else 'no size'}")
        try:
            return cls(**data)
        except NSTError as err:
            raise NSTError(f"{source}: sources field {err}") from None


@dataclasses.dataclass(frozen=True)
class Destinations:
    """Where a run writes and how: the command line's alone, never a record's.

    Attributes:
        output: The output image.
        checkpoint: The checkpoint file.
        preview: An image replaced with the current result as the run goes, or None.
        overwrite: Whether existing files may be replaced.
        save_every: Save ``OUTPUT_<step>`` every N steps of each level (0: never).
        checkpoint_every: Write the checkpoint every N steps of each level and at its end (0: only
            when interrupted).
        preview_every: Refresh the preview every N steps (0: after every chunk).
        progress_every: Move the progress bar every N steps (0: after every chunk).
        resume: The checkpoint being continued, if any (it may be replaced by this run's).
    """

    output: pathlib.Path
    checkpoint: pathlib.Path
    preview: str | None = None
    overwrite: bool = False
    save_every: int = 0
    checkpoint_every: int = 0
    preview_every: int = 0
    progress_every: int = 0
    resume: str | None = None

    def __post_init__(self) -> None:
        for name in ("save_every", "checkpoint_every", "preview_every", "progress_every"):
            if getattr(self, name) < 0:
                raise NSTError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")

    @property
    def sync_every(self) -> tuple[int, ...]:
        """The step counts at whose multiples a chunk of compiled steps ends (the result is the same)."""
        return self.save_every, self.checkpoint_every, self.preview_every, self.progress_every


def record_of(spec: RunSpec, sources: Sources, vgg: Any) -> dict[str, Any]:
    """What every image of a run carries and its checkpoint notes hold: the spec, the sources and the
    VGG file's digest."""
    return {"format": files.RECORD_KEY, "version": __version__, "spec": spec.to_json(),
            "sources": sources.to_json(), "vgg": {"sha256": vgg.sha256, "convention": vgg.convention}}


@dataclasses.dataclass(frozen=True)
class Replay:
    """A stored run read back: its spec as JSON (checked against the inputs once loaded), its sources,
    and the VGG digest it needs."""

    spec: dict[str, Any]
    sources: Sources
    vgg_sha256: str
    source: str


def replay_of(record: Any, source: str) -> Replay:
    """A record's (or a checkpoint's notes') run, its parts checked for presence and type.

    Raises:
        NSTError: If it holds no run, was written by a version whose records this one cannot
            replay, or a field is malformed.
    """
    if not isinstance(record, dict):
        raise NSTError(f"{source} holds no nst_jax run")
    if "spec" not in record:
        version = record.get("version")
        writer = f"nst_jax {str(version)[:20]}" if isinstance(version, str) else "an older nst_jax"
        raise NSTError(f"{source} was written by {writer}, whose run records nst_jax {__version__} cannot replay "
                       "(it holds no run specification); make it again with that version")
    if not isinstance(record["spec"], dict):
        raise NSTError(f"{source} holds no run specification (its 'spec' is not a JSON object)")
    vgg = record.get("vgg")
    if not (isinstance(vgg, dict) and isinstance(vgg.get("sha256"), str) and len(vgg["sha256"]) == 64):
        raise NSTError(f"{source}: 'vgg' must hold the sha256 of the VGG file the run used")
    return Replay(record["spec"], Sources.from_json(record.get("sources"), source), vgg["sha256"], source)


def init_source(init: str | None) -> tuple[str | None, str | None]:
    """``--init``: ``(config.init, path)``: a start named in :data:`~nst_jax.config.INITS` or an image file."""
    if init is None:
        return None, None
    if init in INITS and init != "image":
        return init, None
    return "image", init
