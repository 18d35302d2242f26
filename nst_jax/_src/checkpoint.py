"""Checkpoints of a running optimisation, and the record that says which run they belong to.

A checkpoint is one ``.npz`` file, written atomically (temporary file in the
target directory + rename), holding:

* ``state/<i>``: the flattened leaves of the :class:`~nst_jax.RunState`
  pytree (image, optimiser state, step counter, ...), with a leading member axis, bit for bit;
* ``history/<name>``: the loss history so far (see ``StylizeResult.history``);
* ``meta``: JSON with the format tag, the step, the *run record* and free-form
  notes (the CLI keeps its arguments there).

The run record (:func:`run_record`) is everything that determines the result: the static config,
the loss weights, the VGG parameters' input convention and file sha256, the seed and the random
number generator, and a sha256 of every input array (after loading and resizing), plus whatever
the caller adds. A run resumes only with an identical record; since the chunks are
deterministic, a resumed run then finishes bitwise equal to an uninterrupted one on the same
platform. The noise start is the only use of randomness (``jax.random.key(seed)``), so the seed
is the whole RNG state. """

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from nst_jax._src.atomic import atomic_open
from nst_jax._src.optimizers import label as optimizer_label
from nst_jax.errors import NSTError

FORMAT = "nst_jax-checkpoint-2"
MAX_CHECKPOINT_BYTES = 64 * 2**30  # larger files are refused before reading
MAX_META_BYTES = 16 * 2**20  # the JSON metadata (run record and notes)
MAX_MEMBERS = 100_000  # entries of the zip file


@dataclasses.dataclass
class Checkpoint:
    """A saved optimisation.

    Attributes:
        step: Steps done.
        leaves: Flattened ``RunState`` leaves (numpy), in ``jax.tree_util`` order, each with a
            leading member axis (1 for a single run).
        history: Loss history so far (:func:`nst_jax._src.driver.history_arrays`), for ``K``
            members: ``"step"`` ``[C]`` and ``"content"``, ``"style"``, ``"tv"``, ``"total"``
            ``[K, C]`` (one entry per report: step 0 and after each chunk), and
            ``"total_per_step"``, ``"evaluations_per_step"`` ``[K, T]`` (one entry per step done).
        run: The run record (:func:`run_record`); must match to resume.
        notes: Anything else worth keeping (not compared when resuming).
    """

    step: int
    leaves: list[np.ndarray]
    history: dict[str, np.ndarray]
    run: dict[str, Any]
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


def run_record(
    config: Any, weights: Any, *, vgg: Any, seed: int, inputs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that determines a run's result, as plain JSON values.

    Args:
        config: The ``StylizeConfig``.
        weights: The ``Weights``.
        vgg: The ``VGGParams`` (their input convention and file sha256 are recorded).
        seed: Seed of the noise start.
        inputs: The input arrays' digests (``nst_jax.host.Plan.digests``).
        extra: Further entries that must match to resume (e.g. a sweep's seeds).

    Returns:
        The record: ``config``, ``weights``, ``convention``, ``vgg_sha256``, ``seed``, ``rng``,
        ``inputs`` and ``extra``, as JSON values.
    """
    return _jsonable({
        "config": {**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                   "optimizer": optimizer_label(config.optimizer)},
        "weights": {name: np.asarray(value, np.float32).tolist() for name, value in weights._asdict().items()},
        "convention": vgg.convention,
        "vgg_sha256": vgg.sha256,
        "seed": int(seed),
        "rng": "jax.random.key(seed), used only for the noise start",
        "inputs": dict(inputs),
        "extra": dict(extra or {}),
    })


def run_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two run records.

    Args:
        saved: The record a checkpoint or image holds.
        current: The record of the run about to start.
        prefix: Prepended to every key (used for the nested entries).

    Returns:
        One line per differing entry, e.g. ``"config.iterations (100 in the checkpoint, 200 now)"``;
        empty when the records agree.
    """
    out = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += run_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} ({_short(a)} in the checkpoint, {_short(b)} now)")
    return out


def _short(value: Any) -> str:
    if isinstance(value, Mapping) and "sha256" in value:
        value = f"sha256 {value['sha256'][:12]}..."
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint, *, replace: bool = True) -> None:
    """Writes a checkpoint atomically: a temporary file in the same directory, renamed into place.

    Args:
        path: Destination.
        checkpoint: What to save.
        replace: Replace an existing file; if False one found there is kept
            (:func:`nst_jax._src.atomic.atomic_open`, which then raises ``OutputExists``).
    """
    path = pathlib.Path(path)
    payload = {f"state/{i}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.leaves)}
    payload.update({f"history/{k}": np.asarray(v) for k, v in checkpoint.history.items()})
    meta = {"format": FORMAT, "step": int(checkpoint.step), "num_leaves": len(checkpoint.leaves),
            "run": checkpoint.run, "notes": checkpoint.notes}
    payload["meta"] = np.array(json.dumps(_jsonable(meta), sort_keys=True))
    with atomic_open(path, fsync=True, replace=replace) as f:
        np.savez(f, **payload)


def _members(f, path: pathlib.Path, size: int) -> None:
    """Checks a checkpoint's zip directory before anything is decompressed (zip bombs, stray members)."""
    try:
        with zipfile.ZipFile(f) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise NSTError(f"{path} is not a readable nst_jax checkpoint (truncated or another kind of file)") from None
    if len(infos) > MAX_MEMBERS:
        raise NSTError(f"checkpoint {path} has {len(infos)} entries, more than the {MAX_MEMBERS} allowed")
    total = sum(i.file_size for i in infos)
    # np.savez stores its members uncompressed, so the data cannot be much larger than the file.
    if total > size + 1_000_000 or any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise NSTError(f"checkpoint {path} holds compressed data ({total} bytes from a {size}-byte file); "
                       "nst_jax never writes such files, so it is not read")
    encrypted = next((i.filename for i in infos if i.flag_bits & 0x1), None)
    if encrypted is not None:
        raise NSTError(f"checkpoint {path}: entry {encrypted} is encrypted; nst_jax never writes such files, so it "
                       "is not read")
    meta = next((i for i in infos if i.filename == "meta.npy"), None)
    if meta is not None and meta.file_size > MAX_META_BYTES:
        raise NSTError(f"checkpoint {path}: its metadata has {meta.file_size} bytes, more than {MAX_META_BYTES}")
    f.seek(0)
    with zipfile.ZipFile(f) as z:
        for info in infos:
            _header(z, info, path)
    f.seek(0)


def _header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: pathlib.Path) -> None:
    """Checks an entry's ``.npy`` header before its array is read: a plain dtype, and a shape whose
    bytes the entry holds (a header may claim any size; NumPy would allocate it first)."""
    name = info.filename.removesuffix(".npy")
    try:
        with z.open(info) as member:
            version = np.lib.format.read_magic(member)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read[version](member, max_header_size=10_000)
            header = member.tell()
    except (ValueError, KeyError, OSError, EOFError, SyntaxError, RuntimeError, zipfile.BadZipFile):
        raise NSTError(f"checkpoint {path}: entry {name} is not a readable array (truncated or edited)") from None
    if dtype.hasobject or dtype.kind not in "biufU":
        raise NSTError(f"checkpoint {path}: {name} has dtype {dtype}, not a number")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if needed > info.file_size - header:
        raise NSTError(f"checkpoint {path}: {name} claims shape {tuple(shape)} ({needed} bytes) but holds "
                       f"{info.file_size - header} bytes (truncated or edited)")


# The loss history a checkpoint holds, by name: its rank (``step`` [C]; the others [K, C] or [K, T]).
HISTORY_RANKS = {"step": 1, "content": 2, "style": 2, "tv": 2, "total": 2, "total_per_step": 2,
                 "evaluations_per_step": 2}
# The dtypes of the state JAX keeps (64-bit types are off): anything else was not written by nst_jax.
STATE_DTYPES = ("float32", "int32", "uint32", "bool")


def _leaves(arrays: dict, meta: dict, path: pathlib.Path) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    num = meta["num_leaves"]
    if not isinstance(num, int) or isinstance(num, bool) or not 0 < num <= MAX_MEMBERS:
        raise TypeError
    missing = [f"state/{i}" for i in range(num) if f"state/{i}" not in arrays]
    missing += [f"history/{name}" for name in HISTORY_RANKS if f"history/{name}" not in arrays]
    if missing:
        raise NSTError(f"checkpoint {path}: {missing[0]} is missing (truncated or edited)")
    leaves = [arrays[f"state/{i}"] for i in range(num)]
    history = {k[len("history/"):]: v for k, v in arrays.items() if k.startswith("history/")}
    for name, value in [*((f"state/{i}", v) for i, v in enumerate(leaves)), *history.items()]:
        if value.dtype.kind not in "biuf":
            raise NSTError(f"checkpoint {path}: {name} has dtype {value.dtype}, not a number")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NSTError(f"checkpoint {path}: {name} holds NaN or Inf; a checkpoint is only written from a finite "
                           "state, so this one was edited or corrupted and is not used")
    _check_layout(leaves, history, meta["step"], path)
    return leaves, history


def _check_layout(leaves: list[np.ndarray], history: dict[str, np.ndarray], step: int, path: pathlib.Path) -> None:
    """Ranks, dtypes and member counts of the state and the history agree with each other and the step."""
    for name, rank in HISTORY_RANKS.items():
        if history[name].ndim != rank:
            raise NSTError(f"checkpoint {path}: history/{name} has {history[name].ndim} dimensions, not {rank} "
                           "(edited?)")
    k, reports = history["total"].shape[0], history["step"].shape[0]
    for name in HISTORY_RANKS:
        want = (reports,) if name == "step" else (k, step) if name.endswith("per_step") else (k, reports)
        if history[name].shape != want:
            raise NSTError(f"checkpoint {path}: history/{name} has shape {history[name].shape}, not {want} for "
                           f"{k} member(s) at step {step} (edited?)")
    for i, leaf in enumerate(leaves):
        if leaf.dtype.name not in STATE_DTYPES:
            raise NSTError(f"checkpoint {path}: state/{i} has dtype {leaf.dtype}, not one nst_jax writes "
                           f"({', '.join(STATE_DTYPES)})")
        if leaf.ndim < 1 or leaf.shape[0] != k:
            raise NSTError(f"checkpoint {path}: state/{i} has shape {leaf.shape}, without the leading axis of its "
                           f"{k} member(s) (edited?)")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Reads a checkpoint, which is untrusted: sizes, entries, types and values are checked.

    Args:
        path: A file written by :func:`save_checkpoint`.

    Returns:
        The checkpoint.

    Raises:
        NSTError: If the file is missing, unreadable, larger than :data:`MAX_CHECKPOINT_BYTES`, not a
            checkpoint, of another format version, holds compressed entries or non-finite state, or
            has a malformed field (``step``, ``run`` and ``notes``).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise NSTError(f"checkpoint {path} not found")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise NSTError(f"checkpoint {path} has {size} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")
        _members(f, path, size)
        try:
            with np.load(f, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RecursionError):
            raise NSTError(f"{path} is not a readable nst_jax checkpoint (truncated or another kind of file)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NSTError(f"{path} is not an nst_jax checkpoint of format {FORMAT!r}")
    step, run, notes = meta.get("step"), meta.get("run"), meta.get("notes", {})
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise NSTError(f"checkpoint {path}: 'step' must be a non-negative integer, got {json.dumps(step)[:40]}")
    if not isinstance(run, dict) or not isinstance(notes, dict):
        raise NSTError(f"checkpoint {path}: 'run' and 'notes' must be JSON objects (edited?)")
    try:
        leaves, history = _leaves(arrays, meta, path)
    except NSTError:  # a ValueError too, with its own message
        raise
    except (KeyError, TypeError, ValueError, IndexError):
        raise NSTError(f"checkpoint {path} is incomplete (truncated or edited)") from None
    return Checkpoint(step, leaves, history, run, notes)
