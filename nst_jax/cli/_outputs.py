"""Where a run of ``nst-jax`` writes, and the rule it writes by.

Every destination (output, checkpoint, last-good image, intermediate saves) is checked before any
compute: distinct from every input and from each other, and without ``--overwrite`` not there
yet. :class:`Writer` then writes under that rule: without ``--overwrite`` nothing is replaced, not
even a file that appeared during the run (this run's file goes beside it).
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
from typing import Any

import numpy as np

from nst_jax import files
from nst_jax.cli import _common as common
from nst_jax.cli._common import EXIT_CONFLICT, Exit
from nst_jax.cli._request import Destinations
from nst_jax.errors import NSTError, OutputExists


def default_checkpoint(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(output.stem + ".ckpt.npz")


def resumed_output(checkpoint: pathlib.Path, recorded: Any) -> pathlib.Path:
    """The default output of a resumed run: ``STEM.EXT`` beside the checkpoint ``STEM.ckpt.npz``, with the
    recorded output's extension if it is an image format (only the extension is taken from the file)."""
    name = checkpoint.name
    stem = name[: -len(".ckpt.npz")] if name.endswith(".ckpt.npz") and len(name) > 9 else checkpoint.stem
    suffix = pathlib.Path(recorded).suffix.lower() if isinstance(recorded, str) else ""
    return checkpoint.with_name(stem + (suffix if files.image_format(suffix) in ("PNG", "JPEG") else ".png"))


def intermediate_path(output: pathlib.Path, step: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")


def last_good_path(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(f"{output.stem}_last_good{output.suffix}")


def intermediate_pattern(output: pathlib.Path) -> re.Pattern:
    return re.compile(re.escape(output.stem) + r"_\d{5,}" + re.escape(output.suffix) + "$")


def intermediate_paths(output: pathlib.Path) -> list[pathlib.Path]:
    """Existing intermediate saves ``OUTPUT_<step>`` of an earlier run."""
    parent = output.parent if str(output.parent) else pathlib.Path(".")
    return sorted(p for p in parent.iterdir() if intermediate_pattern(output).match(p.name))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same after resolving symlinks, or (when both exist) one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
# What a run adds to a destination's name: a temporary file ``.NAME.XXXXXXXX.tmp`` is cut to fit
# (nst_jax._src.atomic), but a file kept beside a clashing one is ``STEM.nst-jax-N.EXT``.
BESIDE = len(".nst-jax-999")


def check_regular(path: str | os.PathLike, what: str) -> None:
    """Refuses a destination that exists and is not a regular file (after symlinks): nst-jax replaces
    regular files only, never a device, FIFO, socket or directory, with or without --overwrite."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent (or a dangling symlink, which a write replaces): nothing to refuse
        return
    if not stat.S_ISREG(mode):
        kind = KINDS.get(stat.S_IFMT(mode), "a special file")
        raise NSTError(f"the {what} {path} exists and is not a regular file ({kind}); nst-jax replaces regular "
                       "files only, with or without --overwrite: choose another path")


def check_name_length(path: str | os.PathLike, what: str, extra: int = 0) -> None:
    """Refuses a name (plus ``extra`` bytes a run may add to it) longer than its directory allows
    (``os.pathconf``), before any compute."""
    path = pathlib.Path(path)
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
        path_max = os.pathconf(parent, "PC_PATH_MAX")
    except (OSError, ValueError):
        return
    size = len(os.fsencode(path.name)) + extra
    if size > name_max:
        beside = f" ({extra} bytes more for a file kept beside another)" if extra else ""
        raise NSTError(f"the {what} name {path.name[:40]}... is too long: {size} bytes{beside}, more than the "
                       f"{name_max} a file name may have in {parent}; choose a shorter name")
    if len(os.fsencode(os.path.abspath(path))) + extra > path_max:
        raise NSTError(f"the {what} path {str(path)[:40]}... is too long: more than the {path_max} bytes a path "
                       "may have; choose a shorter path")


def check_writable_file(path: pathlib.Path, what: str) -> None:
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    check_regular(path, what)
    if not parent.is_dir():
        raise NSTError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NSTError(f"{what} {path}: directory {parent} is not writable")


def _no_clobber(dest: Destinations) -> None:
    """Without --overwrite: no destination of this run may exist already (the resumed checkpoint aside)."""
    output, checkpoint = dest.output, dest.checkpoint
    if os.path.lexists(output):
        raise NSTError(f"{output} exists; pass --overwrite to replace it")
    if os.path.lexists(last_good_path(output)):
        raise NSTError(f"{last_good_path(output)} (a last-good image) exists; pass --overwrite to replace it")
    resuming_here = dest.resume is not None and same_file(checkpoint, dest.resume)
    if os.path.lexists(checkpoint) and not resuming_here:
        raise NSTError(f"checkpoint {checkpoint} exists (an interrupted run?); continue it with "
                       f"--resume {checkpoint}, or pass --overwrite to start afresh")
    earlier = intermediate_paths(output) if dest.resume is None else []
    if earlier:
        raise NSTError(f"{earlier[0]} (an intermediate save) exists; pass --overwrite to replace such files")


def destinations(dest: Destinations) -> list[tuple[str, pathlib.Path]]:
    """``(what, path)`` of every file a run may write, intermediate saves aside."""
    writes = [("output", dest.output), ("checkpoint", dest.checkpoint),
              ("last-good image", last_good_path(dest.output))]
    return writes + ([("preview", pathlib.Path(dest.preview))] if dest.preview else [])


def check_batch(runs: list[tuple[str, Destinations]]) -> None:
    """The runs of one command write distinct files (a shared ``--preview`` aside).

    Args:
        runs: ``(content photo, destinations)`` of each run.

    Raises:
        NSTError: Naming two runs' clashing destinations.
    """
    seen: dict[str, str] = {}
    for content, dest in runs:
        for what, path in destinations(dest):
            key = os.path.realpath(path)
            if what != "preview" and key in seen:
                raise NSTError(f"the {what} {path} of {content} is also {seen[key]}; rename a content image")
            seen[key] = f"the {what} of {content}"


def _foreign_preview(path: str | None) -> bool:
    """Whether ``path`` holds a file nst-jax did not write (one without a run record)."""
    if not path or not os.path.lexists(path):
        return False
    try:
        return files.read_record(path) is None
    except NSTError:
        return True


def check_destinations(dest: Destinations, inputs: list[tuple[str, str]]) -> None:
    """Every file this run may write is distinct from every input and from each other (intermediate saves
    included), a regular file if it exists, has a name its directory allows, and (without --overwrite)
    does not exist yet.

    Args:
        dest: Where the run writes.
        inputs: ``(role, path)`` of every file the run (or its batch) reads.

    Raises:
        NSTError: Naming the clash.
    """
    inputs = inputs + ([("checkpoint being resumed", dest.resume)] if dest.resume else [])
    writes = destinations(dest)
    saves = [("intermediate save", path) for path in intermediate_paths(dest.output)] if dest.save_every else []
    for what, path in writes + saves:
        check_regular(path, what)
    for what, path in writes + ([("intermediate save", intermediate_path(dest.output, 0))] if dest.save_every else []):
        check_name_length(path, what, BESIDE)
    for what, path in writes:
        for role, source in inputs:
            if same_file(path, source) and not (what == "checkpoint" and role == "checkpoint being resumed"):
                raise NSTError(f"the {what} {path} is the {role} {source}; nst-jax never writes to its inputs, "
                               "choose another path")
    for i, (what, path) in enumerate(writes):
        for other, second in writes[i + 1:]:
            if same_file(path, second):
                raise NSTError(f"the {what} and the {other} are the same file {path}; give them different paths")
    if dest.save_every:
        pattern, folder = intermediate_pattern(dest.output), os.path.realpath(dest.output.parent)
        named = [(what, str(path)) for what, path in writes if what != "output"]
        for role, path in inputs + named:
            if pattern.match(pathlib.Path(path).name) and os.path.realpath(pathlib.Path(path).parent) == folder:
                raise NSTError(f"the {role} {path} has the name of an intermediate save of {dest.output} "
                               "(--save-every); rename one of them")
    if not dest.overwrite:
        _no_clobber(dest)
        if _foreign_preview(dest.preview):
            raise NSTError(f"--preview {dest.preview} exists and was not written by nst-jax; choose another path, "
                           "or pass --overwrite to replace it")


class Writer:
    """Writes a job's files under its overwrite rule: without --overwrite nothing is replaced, and a file
    that appeared at a destination during the run is kept, this run's file going beside it (a checkpoint
    too: the run goes on, its later checkpoints replacing the one beside, and the clash is reported at
    the end, exit 6)."""

    def __init__(self, job: Any):
        self.job, self.dest, self.conflicts = job, job.dest, []
        self.replace = job.dest.overwrite
        resuming_here = job.dest.resume is not None and same_file(job.dest.checkpoint, job.dest.resume)
        self.checkpoint_written = job.dest.overwrite or resuming_here
        self.checkpoint_path = job.dest.checkpoint

    def image(self, path: pathlib.Path, image: np.ndarray, **notes) -> None:
        files.save_image(path, image, record={**self.job.record, **notes}, replace=self.replace)

    def preview(self, step: int, image: Any, level_step: int | None = None) -> None:
        """Replaces the ``--preview`` file (if any) with ``image`` at ``step``, atomically; ``--preview-every``
        counts ``level_step``, the step within a multi-scale level, where given (as ``--save-every`` does)."""
        path, every = self.dest.preview, self.dest.preview_every
        counted = step if level_step is None else level_step
        if path and (not every or counted % every == 0 or step == self.job.total):
            files.save_image(path, np.clip(np.asarray(image), 0.0, 1.0), record={**self.job.record, "step": step})

    def intermediate(self, step: int, image: np.ndarray) -> None:
        try:
            self.image(intermediate_path(self.dest.output, step), image, step=step)
        except OutputExists as err:
            self.conflicts.append(err)

    def checkpoint(self, progress, notes: dict) -> None:
        try:
            files.save_checkpoint(self.checkpoint_path, progress.checkpoint(notes), replace=self.checkpoint_written)
        except OutputExists as err:
            if err.saved_as is None:
                raise
            self.conflicts.append(err)
            self.checkpoint_path = pathlib.Path(err.saved_as)  # this run's own file from now on
        self.checkpoint_written = True

    def has_checkpoint(self) -> bool:
        return self.checkpoint_written and self.checkpoint_path.exists()

    def check_conflicts(self) -> None:
        """Exit 6 if a file appeared at a destination during the run (called once the output is written)."""
        if self.conflicts:
            more = f" (and {common.plural(len(self.conflicts) - 1, 'more file')})" if len(self.conflicts) > 1 else ""
            raise Exit(EXIT_CONFLICT, f"{self.conflicts[0]}{more}; the run went on to the end and wrote "
                                      f"{self.dest.output}")
