"""The one host loop that runs a stylizer's steps: for single runs, sweeps and multi-scale levels.

A run here has ``K`` *members* (``K = 1`` for :func:`nst_jax.stylize`) that share the images,
the VGG parameters, the targets and the static config, and differ in their
:class:`~nst_jax.config.LossWeights` and start images. The loop:

* **start**: one compiled program computes the targets once, then every member's
  ``stylizer.init`` and its loss terms at the start image;
* **chunks**: one compiled program runs ``n <= config.chunk_size`` steps of every member as a
  ``lax.fori_loop`` (the same program for any ``n``, so it is traced once), then the loss terms
  at the new iterates; the host calls it until the step count is reached, and after each chunk
  checks every value for NaN/Inf (stopping with the last finite images), extends the history
  and calls the progress callback (which may checkpoint);
* **resume** from a checkpoint of the same run continues bitwise where it stopped.

Members are laid out over a 1-D device mesh (axis :data:`MEMBERS`) with ``jax.shard_map``; on
each device, groups of ``batch_size`` members run ``jax.vmap``-ed together and the groups one
after another (``lax.map``) inside the same program. On a CPU, whose convolutions are already
compute-bound, ``batch_size = 1`` is the default: a sweep then does exactly the work of the
same runs in sequence, compiled once, and never waits for its slowest member's line search.
On an accelerator the default vmaps all of a device's members together, which fills the device.
The mesh may span processes started with ``jax.distributed.initialize`` (multi-controller JAX):
every process runs the same loop and sees every member's results.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nst_jax import checkpoint as ckpt
from nst_jax import objective
from nst_jax.config import TERMS, LossWeights, StylizeConfig
from nst_jax.errors import NSTError, NumericalError
from nst_jax.step import RunState, make_stylizer, output_image
from nst_jax.vgg import VGGParams

MEMBERS = "members"
# Per-step history entries and their dtypes.
PER_STEP = {"total_per_step": np.float32, "evaluations_per_step": np.int32}
# How often each compiled function's Python body has been traced (tests check chunks never retrace).
TRACE_COUNTS: collections.Counter = collections.Counter()


def member_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis :data:`MEMBERS` over ``devices`` (all of ``jax.devices()``, every
    process's, by default)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (MEMBERS,))


def default_batch_size(mesh: Mesh, members_per_device: int) -> int:
    """Members vmapped together on one device: 1 on CPUs (compute-bound already, and a batch
    would wait for its slowest member), all of a device's members on accelerators."""
    return 1 if mesh.devices.flat[0].platform == "cpu" else members_per_device


@dataclasses.dataclass
class Progress:
    """What a callback sees after each chunk.

    Attributes:
        step: Steps done so far.
        iterations: Total steps of the run.
        terms: ``{"content", "style", "tv", "total"}`` at the current iterates: floats for
            :func:`nst_jax.stylize`, ``[K]`` arrays for a sweep.
        image: The current output (the moving average if ``ema_decay > 0``, unclipped):
            ``[H, W, 3]`` for ``stylize``, ``[K, H, W, 3]`` for a sweep.
        seconds: Wall time of the optimisation so far, compilation excluded.
        state: The full optimisation state, with a leading member axis (valid until the
            callback returns: the next chunk donates its buffers).
        history: The loss history so far (lists; see :func:`history_arrays`).
        run: The run record (:func:`nst_jax.checkpoint.run_record`).
        num_members: ``K``: the state's member axis may be padded beyond it.

    With several processes (``jax.distributed``), ``image`` and ``state`` are global arrays that no
    process holds whole: :func:`to_host` and :meth:`checkpoint` gather them, collectively, so call
    them in every process (and write from one) or the others wait for it forever.
    """

    step: int
    iterations: int
    terms: dict[str, Any]
    image: Any
    seconds: float
    state: RunState | None = None
    history: dict[str, list] | None = None
    run: dict[str, Any] | None = None
    num_members: int = 1

    def checkpoint(self, notes: Mapping[str, Any] | None = None) -> ckpt.Checkpoint:
        """A host copy of this point of the run, for :func:`nst_jax.checkpoint.save_checkpoint`."""
        leaves = [to_host(leaf)[:self.num_members] for leaf in jax.tree_util.tree_leaves(self.state)]
        return ckpt.Checkpoint(self.step, leaves, history_arrays(self.history), self.run, dict(notes or {}))


@dataclasses.dataclass
class DriverResult:
    """What :func:`run` returns: the final state and output images of the ``K`` members.

    Attributes:
        images: ``[K, H, W, 3]`` float32 numpy outputs (unclipped; the moving average where used).
        history: ``{"step": [C], "content"|"style"|"tv"|"total": [K, C], "total_per_step": [K, T],
            "evaluations_per_step": [K, T]}`` for ``C`` reports (step 0 and after each chunk)
            and ``T`` steps; step 0's evaluations include the start's.
        compile_seconds: Time spent tracing, compiling and computing the targets and start.
        run_seconds: Time spent in the optimisation chunks.
    """

    images: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float


def history_arrays(history: Mapping[str, list]) -> dict[str, np.ndarray]:
    """The running history as arrays: per-chunk lists concatenated along the step axis."""
    out = {"step": np.asarray(history["step"], np.int64)}
    for name in TERMS:
        out[name] = np.stack(history[name], axis=-1) if history[name] else np.zeros((0, 0), np.float32)
    for name, dtype in PER_STEP.items():
        parts = history[name]
        out[name] = np.concatenate(parts, axis=-1).astype(dtype) if parts else np.zeros((0, 0), dtype)
    return out


def _history_lists(saved: Mapping[str, np.ndarray]) -> dict[str, list]:
    out = {"step": [int(s) for s in saved["step"]]}
    for name in TERMS:
        out[name] = [np.asarray(c) for c in np.moveaxis(np.asarray(saved[name]), -1, 0)]
    for name in PER_STEP:
        out[name] = [np.asarray(saved[name])]
    return out


def to_host(x: jax.Array) -> np.ndarray:
    """A global array as numpy on every process (gathered across processes where needed)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def to_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """A host value (the same on every process) as a global array with ``sharding``."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _pad_members(tree: Any, padded: int) -> Any:
    def pad(a):
        a = np.asarray(a)
        return a if a.shape[0] == padded else np.concatenate([a, np.repeat(a[-1:], padded - a.shape[0], axis=0)])

    return jax.tree_util.tree_map(pad, tree)


def _describe(terms: Mapping[str, np.ndarray]) -> str:
    bad = [k for k in TERMS if not np.isfinite(terms[k]).all()]
    return f"{', '.join(bad)} loss not finite" if bad else "the image holds NaN or Inf"


def _members(bad: np.ndarray, k: int) -> str:
    if k == 1:
        return ""
    return f" (member{'s' if bad.sum() > 1 else ''} {', '.join(map(str, np.flatnonzero(bad)))})"


def run(
    vgg: VGGParams,
    *,
    config: StylizeConfig,
    weights: LossWeights,
    images: np.ndarray,
    targets_args: Mapping[str, Any],
    mesh: Mesh | None = None,
    batch_size: int | None = None,
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: ckpt.Checkpoint | None = None,
    run_record: Mapping[str, Any] | None = None,
) -> DriverResult:
    """Runs ``config.iterations`` steps of every member; see the module docstring.

    Args:
        vgg: VGG-19 parameters (replicated over the mesh).
        config: Static settings shared by all members.
        weights: :class:`~nst_jax.config.LossWeights` with a leading ``[K]`` member axis on every leaf.
        images: ``[K, H, W, 3]`` start images.
        targets_args: Keyword arguments of :func:`nst_jax.compute_targets` (``content``,
            ``style``, ``output_shape``, ``masks``), arrays checked already.
        mesh: 1-D mesh with axis :data:`MEMBERS`; the default device alone if None. ``K`` is
            padded to a multiple of ``mesh.size * batch_size`` by repeating the last member;
            the copies are dropped from the results.
        batch_size: Members vmapped together on a device (:func:`default_batch_size` if None).
        callback: Called with a :class:`Progress` after every chunk; it may save
            ``progress.checkpoint()`` and may raise to stop the run.
        sync_every: Step counts (0 ignored) at whose multiples a chunk also ends, so the
            callback sees those steps; this does not change the result.
        resume: A checkpoint of this same run (its record checked by the caller) to continue.
        run_record: The run record stored in checkpoints.

    Returns:
        The members' output images and histories.

    Raises:
        NSTError: If ``resume``'s state does not fit this run.
        NumericalError: If a loss or an image becomes NaN or Inf; ``err.image`` holds the last
            finite ``[K, H, W, 3]`` images and ``err.members`` the failing members.
    """
    TRACE_COUNTS["run"] += 1
    k = int(np.shape(images)[0])
    mesh = mesh if mesh is not None else member_mesh(jax.devices()[:1])
    if mesh.axis_names != (MEMBERS,):
        raise NSTError(f"the member mesh needs the single axis {MEMBERS!r}, got {mesh.axis_names}")
    per_device = -(-k // mesh.size)
    batch = batch_size or default_batch_size(mesh, per_device)
    if batch < 1:
        raise NSTError(f"batch size must be at least 1, got {batch}")
    batch = min(batch, per_device)
    per_device = -(-per_device // batch) * batch
    padded = per_device * mesh.size
    groups = per_device // batch

    stylizer = make_stylizer(config)
    loss_config = config.loss_config()
    members = NamedSharding(mesh, PartitionSpec(MEMBERS))
    replicated = NamedSharding(mesh, PartitionSpec())
    spec_m, spec_r = PartitionSpec(MEMBERS), PartitionSpec()

    def over_members(fn, member_args: tuple, shared_args: tuple):
        """``fn(*member, *shared)`` for every local member: groups of ``batch`` vmapped, groups mapped."""
        def grouped(x):
            return x.reshape(groups, batch, *x.shape[1:])

        def body(group):
            return jax.vmap(lambda *m: fn(*m, *shared_args))(*group)

        out = jax.lax.map(body, jax.tree_util.tree_map(grouped, member_args))
        return jax.tree_util.tree_map(lambda x: x.reshape(groups * batch, *x.shape[2:]), out)

    def local_start(vgg, targets_in, image, weights):
        targets = objective.compute_targets(vgg, config=loss_config, output_shape=output_shape, **targets_in)

        def member(image, weights, vgg, targets):
            state = stylizer.init(vgg, targets, weights, image)
            terms = objective.loss_terms(vgg, image, targets, weights, config=loss_config, reference=state.reference)
            return state, terms

        state, terms = over_members(member, (image, weights), (vgg, targets))
        return state, terms, targets

    def local_chunk(state, vgg, targets, weights, num_steps):
        TRACE_COUNTS["chunk"] += 1

        def member(state, weights, vgg, targets, num_steps):
            def body(i, carry):
                state, records = carry
                state, info = stylizer.step(vgg, targets, weights, state)
                records = {"total": records["total"].at[i].set(info.value),
                           "evaluations": records["evaluations"].at[i].set(info.evaluations)}
                return state, records

            records = {"total": jnp.full((config.chunk_size,), jnp.nan, jnp.float32),
                       "evaluations": jnp.zeros((config.chunk_size,), jnp.int32)}
            state, records = jax.lax.fori_loop(0, num_steps, body, (state, records))
            terms = objective.loss_terms(vgg, state.image, targets, weights, config=loss_config,
                                         reference=state.reference)
            return state, records, terms

        return over_members(member, (state, weights), (vgg, targets, num_steps))

    def local_output(state, weights):
        return jax.vmap(output_image)(state, weights)

    def local_finite(state):
        return jax.vmap(lambda x: jnp.isfinite(x).all())(state.image)

    shard = lambda f, in_specs, out_specs: jax.shard_map(  # noqa: E731
        f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    output_shape = tuple(targets_args["output_shape"])
    targets_in = {key: value for key, value in targets_args.items() if value is not None and key != "output_shape"}
    start_fn = jax.jit(shard(local_start, (spec_r, spec_r, spec_m, spec_m), (spec_m, spec_m, spec_r)))
    chunk_fn = jax.jit(shard(local_chunk, (spec_m, spec_r, spec_r, spec_m, spec_r), (spec_m, spec_m, spec_m)),
                       donate_argnums=0)
    output_fn = jax.jit(shard(local_output, (spec_m, spec_m), spec_m))
    finite_fn = jax.jit(shard(local_finite, (spec_m,), spec_m))

    t0 = time.perf_counter()
    vgg = jax.tree_util.tree_map(lambda a: to_global(a, replicated), vgg)
    targets_in = jax.tree_util.tree_map(lambda a: to_global(a, replicated), targets_in)
    weights = jax.tree_util.tree_map(lambda a: to_global(a, members), _pad_members(weights, padded))
    starts = to_global(_pad_members(np.asarray(images, np.float32), padded), members)
    state, terms0, targets = start_fn(vgg, targets_in, starts, weights)
    if resume is not None:
        state = _restore(resume, state, k, padded, members, config.iterations)
    chunk = chunk_fn.lower(state, vgg, targets, weights, jnp.int32(0)).compile()
    terms0 = {name: to_host(v)[:k] for name, v in terms0.items()}
    compile_seconds = time.perf_counter() - t0

    if resume is None:
        if not all(np.isfinite(v).all() for v in terms0.values()):
            bad = ~np.all([np.isfinite(v) for v in terms0.values()], axis=0)
            raise NumericalError(f"the loss is not finite at the start{_members(bad, k)} ({_describe(terms0)}); "
                                 "check the parameters and the loss weights", step=0,
                                 image=np.asarray(images, np.float32), members=np.flatnonzero(bad))
        history = {"step": [0], **{name: [terms0[name]] for name in TERMS}, **{name: [] for name in PER_STEP}}
        done = 0
    else:
        history = _history_lists(resume.history)
        done = resume.step

    run_seconds = 0.0
    while done < config.iterations:
        n = min(config.chunk_size, config.iterations - done)
        for every in sync_every:
            if every > 0:
                n = min(n, every - done % every)
        t = time.perf_counter()
        last_good = jax.tree_util.tree_map(jnp.copy, state.image)  # the chunk donates `state`
        state, records, terms = chunk(state, vgg, targets, weights, jnp.int32(n))
        terms = {name: to_host(v)[:k] for name, v in terms.items()}
        totals = to_host(records["total"])[:k, :n]
        finite = to_host(finite_fn(state))[:k]
        ok = finite & np.isfinite(totals).all(axis=1) & np.all([np.isfinite(v) for v in terms.values()], axis=0)
        if not ok.all():
            raise NumericalError(
                f"the optimisation diverged between steps {done} and {done + n}{_members(~ok, k)} "
                f"({_describe(terms)}); lower the learning rate or the loss weights",
                step=done, image=to_host(last_good)[:k], members=np.flatnonzero(~ok))
        run_seconds += time.perf_counter() - t
        evaluations = to_host(records["evaluations"])[:k, :n]
        if done == 0 and config.optimizer == "lbfgs":
            evaluations = evaluations.copy()
            evaluations[:, 0] += 1  # the start's evaluation, which the first step's search reuses
        done += n
        history["step"].append(done)
        history["total_per_step"].append(totals)
        history["evaluations_per_step"].append(evaluations)
        for name in TERMS:
            history[name].append(terms[name])
        if callback is not None:
            callback(Progress(done, config.iterations, terms, output_fn(state, weights)[:k], run_seconds, state,
                              history, dict(run_record or {}), k))
    images_out = to_host(output_fn(state, weights))[:k]
    return DriverResult(images_out, history_arrays(history), compile_seconds, run_seconds)


def _restore(resume: ckpt.Checkpoint, template: RunState, k: int, padded: int, members: NamedSharding,
             iterations: int) -> RunState:
    """The checkpoint's leaves (``K`` members) as a state of this run's structure, shapes and dtypes checked."""
    specs, treedef = jax.tree_util.tree_flatten(template)
    fits = len(specs) == len(resume.leaves) and all(
        (k,) + tuple(spec.shape[1:]) == leaf.shape and spec.dtype == leaf.dtype
        for spec, leaf in zip(specs, resume.leaves, strict=True))
    if not fits:
        raise NSTError("cannot resume: the checkpoint's optimiser state does not fit this run (another version?)")
    state = jax.tree_util.tree_unflatten(
        treedef, [to_global(_pad_members(leaf, padded), members) for leaf in resume.leaves])
    stored = to_host(state.step)[:k]
    if not 0 <= resume.step <= iterations or not (stored == resume.step).all():
        raise NSTError(f"cannot resume: the checkpoint is at step {resume.step} of {iterations}")
    return state
