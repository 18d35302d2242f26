"""Checkpoints of a running optimisation, and the record that says which run they belong to.

A checkpoint is one ``.npz`` file, written atomically (temporary file in the
target directory + rename), holding:

* ``state/<i>``: the flattened leaves of the :class:`~nst_jax.step.RunState`
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
import io
import json
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from nst_jax.atomic import atomic_open
from nst_jax.errors import NSTError

FORMAT = "nst_jax-checkpoint-2"


@dataclasses.dataclass
class Checkpoint:
    """A saved optimisation.

    Attributes:
        step: Steps done.
        leaves: Flattened ``RunState`` leaves (numpy), in ``jax.tree_util`` order, each with a
            leading member axis (1 for a single run).
        history: Loss history so far: ``"step"``, ``"content"``, ``"style"``,
            ``"tv"``, ``"total"`` (one entry per chunk, from step 0) and
            ``"total_per_step"`` (one entry per step).
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
        inputs: The input arrays' digests (``nst_jax.plan.Plan.digests``).
        extra: Further entries that must match to resume (e.g. a sweep's seeds).
    """
    return _jsonable({
        "config": dataclasses.asdict(config),
        "weights": {name: np.asarray(value, np.float32).tolist() for name, value in weights._asdict().items()},
        "convention": vgg.convention,
        "vgg_sha256": vgg.sha256,
        "seed": int(seed),
        "rng": "jax.random.key(seed), used only for the noise start",
        "inputs": dict(inputs),
        "extra": dict(extra or {}),
    })


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two run records, e.g. ``"config.iterations: 100 vs 200"``."""
    out = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} ({_short(a)} in the checkpoint, {_short(b)} now)")
    return out


def _short(value: Any) -> str:
    if isinstance(value, Mapping) and "sha256" in value:
        value = f"sha256 {value['sha256'][:12]}..."
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Writes a checkpoint atomically: a temporary file in the same directory, renamed into place."""
    path = pathlib.Path(path)
    payload = {f"state/{i}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.leaves)}
    payload.update({f"history/{k}": np.asarray(v) for k, v in checkpoint.history.items()})
    meta = {"format": FORMAT, "step": int(checkpoint.step), "num_leaves": len(checkpoint.leaves),
            "run": checkpoint.run, "notes": checkpoint.notes}
    payload["meta"] = np.array(json.dumps(_jsonable(meta), sort_keys=True))
    with atomic_open(path, fsync=True) as f:
        np.savez(f, **payload)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint.

    Raises:
        NSTError: If the file is missing, unreadable, not a checkpoint, or of another format version.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise NSTError(f"checkpoint {path} not found")
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        raise NSTError(f"{path} is not a readable nst_jax checkpoint (truncated or another kind of file)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NSTError(f"{path} is not an nst_jax checkpoint of format {FORMAT!r}")
    try:
        leaves = [arrays[f"state/{i}"] for i in range(int(meta["num_leaves"]))]
        history = {k[len("history/"):]: v for k, v in arrays.items() if k.startswith("history/")}
        return Checkpoint(int(meta["step"]), leaves, history, meta["run"], meta.get("notes", {}))
    except (KeyError, TypeError, ValueError):
        raise NSTError(f"checkpoint {path} is incomplete (truncated or edited)") from None
