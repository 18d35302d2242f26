"""The one host loop that runs a stylizer's steps: for single runs, sweeps and multi-scale levels.

A run here has ``K`` *members* (``K = 1`` for :func:`nst_jax.stylize`) that share the images,
the VGG parameters, the targets and the static config, and differ in their
:class:`~nst_jax.config.Weights` and start images. The loop:

* **start** (:func:`start_program`): one compiled program computes the targets once (VGG
  forward passes over the content and style images) and lays out every member's state before
  the optimiser's start (``StylizerCore.blank``: no evaluation);
* **chunks** (:func:`chunk_program`): one compiled program, the only one that differentiates
  the VGG, runs ``n <= config.chunk_size`` steps of every member as a ``lax.fori_loop`` (the
  same program for any ``n``, so it is traced once), then reports the loss terms, the output
  images and whether they are finite. Its first call has ``n = 0`` and ``fresh`` set: the loop
  then makes every member's optimiser start (L-BFGS's evaluation at the start image) as its one
  iteration, through the same step function (``StylizerCore.advance``), so the program holds
  one differentiated loss, not two; it reports the terms at the start images. The host calls it
  until the step count is reached, and after each chunk checks every value for NaN/Inf
  (stopping with the last finite images), extends the history and calls the progress callback
  (which may checkpoint);
* **resume** from a checkpoint of the same run continues bitwise where it stopped;
* **ahead** (:func:`compile_programs`): both programs compiled for a later call's shapes without
  running them, which a multi-scale run does in a background thread (:mod:`nst_jax._src.ahead`).

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

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nst_jax._src import checkpoint as ckpt
from nst_jax._src import objective
from nst_jax._src.optimizers import resolve as resolve_optimizer
from nst_jax._src.step import RunState, output_image, stylizer_core
from nst_jax._src.vgg import VGGParams
from nst_jax.config import TERMS, StylizeConfig, Weights
from nst_jax.errors import NSTError, NumericalError

MEMBERS = "members"
# Per-step history entries and their dtypes.
PER_STEP = {"total_per_step": np.float32, "evaluations_per_step": np.int32}


def member_mesh(devices: Sequence[jax.sharding.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis :data:`MEMBERS` over ``devices``.

    Args:
        devices: The devices to lay sweep members over; all of ``jax.devices()``, every
            process's, by default.

    Returns:
        The mesh, for :func:`nst_jax.sweep`'s ``mesh``.
    """
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
        run: The run record (:func:`nst_jax._src.checkpoint.run_record`).
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
    history: dict[str, list[Any]] | None = None
    run: dict[str, Any] | None = None
    num_members: int = 1

    def checkpoint(self, notes: Mapping[str, Any] | None = None) -> ckpt.Checkpoint:
        """A host copy of this point of the run, for :func:`nst_jax._src.checkpoint.save_checkpoint`."""
        leaves = [to_host(leaf)[:self.num_members] for leaf in jax.tree_util.tree_leaves(self.state)]
        return ckpt.Checkpoint(self.step, leaves, history_arrays(self.history), self.run, dict(notes or {}))


@dataclasses.dataclass
class SweepResult:
    """The final state of ``K`` members: what :func:`run_members` and :func:`nst_jax.sweep` return.

    Attributes:
        images: ``[K, H, W, 3]`` float32 numpy outputs (:func:`run_members`: unclipped, the moving
            average where used; :func:`nst_jax.sweep`: clipped to [0, 1], cut to the output).
        history: ``{"step": [C], "content"|"style"|"tv"|"total": [K, C], "total_per_step": [K, T],
            "evaluations_per_step": [K, T]}`` for ``C`` reports (step 0 and after each chunk)
            and ``T`` steps; step 0's evaluations include the start's.
        compile_seconds: Time spent tracing, compiling and computing the targets and start.
        run_seconds: Time spent in the optimisation chunks, all members together.
    """

    images: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float


def history_arrays(history: Mapping[str, list[Any]]) -> dict[str, np.ndarray]:
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


@dataclasses.dataclass(frozen=True)
class Layout:
    """How ``K`` members lie over the devices: ``padded`` members (the last repeated), ``groups``
    groups of ``batch`` vmapped members one after another on each device of ``mesh``."""

    mesh: Mesh
    k: int
    padded: int
    groups: int
    batch: int

    @property
    def members(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(MEMBERS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())


def member_layout(k: int, mesh: Mesh | None, batch_size: int | None) -> Layout:
    """The :class:`Layout` of ``k`` members on ``mesh`` (the default device alone if None).

    Raises:
        NSTError: On a mesh without the single axis :data:`MEMBERS`, or a batch size below 1.
    """
    mesh = mesh if mesh is not None else member_mesh(jax.devices()[:1])
    if mesh.axis_names != (MEMBERS,):
        raise NSTError(f"the member mesh needs the single axis {MEMBERS!r}, got {mesh.axis_names}")
    per_device = -(-k // mesh.size)
    batch = default_batch_size(mesh, per_device) if batch_size is None else batch_size
    if batch < 1:
        raise NSTError(f"batch size must be at least 1, got {batch}")
    batch = min(batch, per_device)
    per_device = -(-per_device // batch) * batch
    return Layout(mesh, k, per_device * mesh.size, per_device // batch, batch)


def _over_members(layout: Layout, fn, member_args: tuple, shared_args: tuple):
    """``fn(*member, *shared)`` for every local member: groups of ``batch`` vmapped, groups mapped."""
    def grouped(x):
        return x.reshape(layout.groups, layout.batch, *x.shape[1:])

    def body(group):
        return jax.vmap(lambda *m: fn(*m, *shared_args))(*group)

    out = jax.lax.map(body, jax.tree_util.tree_map(grouped, member_args))
    return jax.tree_util.tree_map(lambda x: x.reshape(layout.groups * layout.batch, *x.shape[2:]), out)


def _sharded(layout: Layout, fn, in_specs, out_specs, **jit_kwargs):
    return jax.jit(jax.shard_map(fn, mesh=layout.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
                   **jit_kwargs)


def program_settings(config: StylizeConfig, weights: Weights,
                     shared: Weights | None = None) -> tuple[StylizeConfig, Weights]:
    """The content terms a run computes, decided here once: ``config`` and ``weights`` without the terms
    whose weight is zero in every member.

    A term of weight 0 adds exactly 0 to the loss and to its gradient, but computing it costs as much as
    at any weight (the structure term, in every default run since both terms are the config's default:
    ``scripts/content_terms_benchmark.py`` prints the time and FLOPs it took). The weights are the
    programs' inputs, known before they are built, so the programs compute only the terms with a non-zero
    weight in some member, and the weights they take hold only those terms' entries. A sweep's members
    share one program, so a term stays if any member weighs it; each level of a multi-scale run is built
    for its own weights. In style mode (no content term) the config is kept; where every term weighs 0,
    its first term stays (a config names at least one). The loss values are the whole config's (the terms
    left out only ever added zeros); the gradient, and so the image, within float32 rounding, as XLA may
    sum it in another order without the term. Records and checkpoints keep the whole config.

    Args:
        config: The run's static settings.
        weights: Its :class:`~nst_jax.config.Weights`, concrete, with any leading member axes.
        shared: The weights of every run the programs serve, where more than ``weights`` (a sweep's
            members with other paintings, :func:`nst_jax.sweep_specs`); ``weights`` if None.

    Returns:
        ``(config, weights)`` for the programs; the same objects where every term is used.
    """
    u = np.asarray((weights if shared is None else shared).content_terms).reshape(-1, len(config.content_terms))
    used = [i for i in range(len(config.content_terms)) if np.any(u[:, i] != 0)] or [0]
    if not config.uses_content or len(used) == len(config.content_terms):
        return config, weights
    terms = tuple(config.content_terms[i] for i in used)
    return (dataclasses.replace(config, content_terms=terms),
            weights._replace(content_terms=np.asarray(weights.content_terms)[..., used]))


def _program_config(config: StylizeConfig) -> StylizeConfig:
    """The settings the compiled programs depend on: all but the step count, which only the host loop
    reads (a chunk's steps are an argument), so runs that differ in their steps share the programs."""
    return config if config.iterations == 1 else dataclasses.replace(config, iterations=1)


def start_program(config: StylizeConfig, layout: Layout, output_shape: tuple[int, ...]):
    """``start(vgg, targets_in, images, weights) -> (state, targets)``: the targets, and every member's
    state laid out (zeros, the start image in ``state.image``) for the chunk's ``fresh`` call."""
    return _start_program(_program_config(config), layout, output_shape)


def chunk_program(config: StylizeConfig, layout: Layout):
    """``chunk(state, vgg, targets, weights, n, fresh) -> (state, records, terms, output, finite, previous)``.

    ``fresh`` (an unbatched bool) first initialises every member from ``state.image``; then ``n``
    steps run. ``records`` holds each step's total and evaluations ``[K, chunk_size]``, ``terms``
    the loss terms at the new iterates, ``output`` the output images (:func:`output_image`),
    ``finite`` whether each member's iterate is finite and ``previous`` the incoming iterates (the
    last good images should this chunk diverge; ``state`` is donated).
    """
    return _chunk_program(_program_config(config), layout)


# Programs are built once per (config without its steps, layout, shape) in a process, so a later run of the same
# shapes (another photo on the same canvas, the next image of a batch, another step count) reuses the traced and
# compiled program.
@functools.lru_cache(maxsize=16)
def _start_program(config: StylizeConfig, layout: Layout, output_shape: tuple[int, ...]):
    core, loss_config = stylizer_core(config), config.loss_config()
    m, r = PartitionSpec(MEMBERS), PartitionSpec()

    def local_start(vgg, targets_in, images, weights):
        targets = objective.targets_of(vgg, config=loss_config, output_shape=output_shape, **targets_in)

        def member(image, weights, targets):
            return core.blank(targets, weights, image)

        return _over_members(layout, member, (images, weights), (targets,)), targets

    return _sharded(layout, local_start, (r, r, m, m), (m, r))


@functools.lru_cache(maxsize=16)
def _chunk_program(config: StylizeConfig, layout: Layout):
    core, loss_config = stylizer_core(config), config.loss_config()
    m, r = PartitionSpec(MEMBERS), PartitionSpec()

    def member(state, weights, vgg, targets, num_steps, fresh):
        # A fresh chunk first makes the optimiser's start, as iteration 0 of the same loop as the steps.
        starts = jnp.where(fresh & core.needs_start, 1, 0).astype(jnp.int32)

        def body(i, carry):
            state, records = carry
            start = i < starts
            state, info = core.advance(vgg, targets, weights, state, start)
            j = i - starts
            stepped = {"total": records["total"].at[j].set(info.value),
                       "evaluations": records["evaluations"].at[j].set(info.evaluations)}
            return state, jax.tree_util.tree_map(lambda old, new: jnp.where(start, old, new), records, stepped)

        records = {"total": jnp.full((config.chunk_size,), jnp.nan, jnp.float32),
                   "evaluations": jnp.zeros((config.chunk_size,), jnp.int32)}
        previous = state.image
        state, records = jax.lax.fori_loop(0, num_steps + starts, body, (state, records))
        terms = objective.evaluate_terms(vgg, state.image, targets, weights, state.reference, loss_config)
        finite = jnp.isfinite(state.image).all()
        return state, records, terms, output_image(state, weights), finite, previous

    def local_chunk(state, vgg, targets, weights, num_steps, fresh):
        return _over_members(layout, member, (state, weights), (vgg, targets, num_steps, fresh))

    return _sharded(layout, local_chunk, (m, r, r, m, r, r), (m, m, m, m, m, m), donate_argnums=0)


@dataclasses.dataclass
class _Loop:
    """The host loop's running values: the state on the devices, its history and the clock."""

    state: RunState
    history: dict[str, list]
    done: int
    run_seconds: float = 0.0
    output: Any = None


def _members_of(x: jax.Array, layout: Layout) -> jax.Array:
    """The ``K`` real members of a padded member axis (no slicing, so no program, without padding)."""
    return x if layout.padded == layout.k else x[:layout.k]


def _check_start(terms0: Mapping[str, np.ndarray], images: np.ndarray, k: int) -> None:
    if not all(np.isfinite(v).all() for v in terms0.values()):
        bad = ~np.all([np.isfinite(v) for v in terms0.values()], axis=0)
        raise NumericalError(f"the loss is not finite at the start{_members(bad, k)} ({_describe(terms0)}); "
                             "check the parameters and the loss weights", step=0,
                             image=np.asarray(images, np.float32), members=np.flatnonzero(bad))


def _next_chunk(done: int, config: StylizeConfig, sync_every: Sequence[int]) -> int:
    """Steps in the next chunk: at most ``chunk_size``, ending at the next multiple of each ``sync_every``."""
    n = min(config.chunk_size, config.iterations - done)
    for every in sync_every:
        if every > 0:
            n = min(n, every - done % every)
    return n


def _run_chunk(loop: _Loop, chunk, args: tuple, n: int, k: int, config: StylizeConfig) -> dict[str, np.ndarray]:
    """One chunk of ``n`` steps: the state advanced, finiteness checked and the history extended.

    Returns:
        The loss terms at the new iterates, ``{name: [K]}``.
    """
    t = time.perf_counter()
    loop.state, records, terms, loop.output, finite, previous = chunk(loop.state, *args, np.int32(n), np.bool_(False))
    terms = {name: to_host(v)[:k] for name, v in terms.items()}
    totals = to_host(records["total"])[:k, :n]
    ok = to_host(finite)[:k] & np.isfinite(totals).all(axis=1) & np.all([np.isfinite(v) for v in terms.values()],
                                                                          axis=0)
    if not ok.all():
        raise NumericalError(
            f"the optimisation diverged between steps {loop.done} and {loop.done + n}{_members(~ok, k)} "
            f"({_describe(terms)}); lower the learning rate or the loss weights",
            step=loop.done, image=to_host(previous)[:k], members=np.flatnonzero(~ok))
    loop.run_seconds += time.perf_counter() - t
    evaluations = to_host(records["evaluations"])[:k, :n]
    if loop.done == 0:  # the start's evaluations, which the first step reuses
        evaluations = evaluations.copy()
        evaluations[:, 0] += resolve_optimizer(config.optimizer).start_evaluations
    loop.done += n
    loop.history["step"].append(loop.done)
    loop.history["total_per_step"].append(totals)
    loop.history["evaluations_per_step"].append(evaluations)
    for name in TERMS:
        loop.history[name].append(terms[name])
    return terms


def _abstract(x: Any, sharding: NamedSharding) -> jax.ShapeDtypeStruct:
    """What :func:`to_global` would make of ``x``, without a copy: its shape, dtype (as JAX stores it) and sharding."""
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.canonicalize_dtype(dtype), sharding=sharding)


def _place(layout: Layout, vgg, targets_args: Mapping[str, Any], weights, images, put=to_global):
    """The inputs as global arrays (``put=_abstract``: their shapes): VGG and target inputs replicated, weights and
    images per member."""
    place = lambda tree, sharding: jax.tree_util.tree_map(lambda a: put(a, sharding), tree)  # noqa: E731
    targets_in = {key: value for key, value in targets_args.items() if value is not None and key != "output_shape"}
    return (place(vgg, layout.replicated), place(targets_in, layout.replicated),
            place(_pad_members(weights, layout.padded), layout.members),
            place(_pad_members(np.asarray(images, np.float32), layout.padded), layout.members))


def _begin(loop: _Loop, chunk, args: tuple, images: np.ndarray, layout: Layout,
           resume: ckpt.Checkpoint | None, iterations: int) -> None:
    """The fresh call (every member initialised, terms at the start) or the restored checkpoint."""
    k = layout.k
    if resume is not None:
        loop.state = _restore(resume, loop.state, k, layout.padded, layout.members, iterations)
        loop.history, loop.done = _history_lists(resume.history), resume.step
        loop.state, _, _, loop.output, _, _ = chunk(loop.state, *args, np.int32(0), np.bool_(False))
        return
    loop.state, _, terms0, loop.output, _, _ = chunk(loop.state, *args, np.int32(0), np.bool_(True))
    terms0 = {name: to_host(v)[:k] for name, v in terms0.items()}
    _check_start(terms0, images, k)
    loop.history = {"step": [0], **{name: [terms0[name]] for name in TERMS}, **{name: [] for name in PER_STEP}}


def run_members(
    vgg: VGGParams,
    *,
    config: StylizeConfig,
    weights: Weights,
    images: np.ndarray,
    targets_args: Mapping[str, Any],
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    mesh: Mesh | None = None,
    run_record: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    resume: ckpt.Checkpoint | None = None,
    shared: Weights | None = None,
) -> SweepResult:
    """Runs ``config.iterations`` steps of every member; see the module docstring.

    Args:
        vgg: VGG-19 parameters (replicated over the mesh).
        config: Static settings shared by all members.
        weights: :class:`~nst_jax.config.Weights` with a leading ``[K]`` member axis on every leaf.
        images: ``[K, H, W, 3]`` start images.
        targets_args: Keyword arguments of :func:`nst_jax._src.objective.targets_of` (``content``,
            ``styles``, ``output_shape``, ``masks``), arrays checked already.
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
        shared: As in :func:`program_settings` (the programs compute the content terms these weigh).

    Returns:
        The members' output images and histories.

    Raises:
        NSTError: If ``resume``'s state does not fit this run.
        NumericalError: If a loss or an image becomes NaN or Inf; ``err.image`` holds the last
            finite ``[K, H, W, 3]`` images and ``err.members`` the failing members.
    """
    layout = member_layout(int(np.shape(images)[0]), mesh, batch_size)
    config, weights = program_settings(config, weights, shared)
    if resume is not None:
        _check_fits(resume, np.shape(images), config.iterations)
    start = start_program(config, layout, tuple(targets_args["output_shape"]))
    if resume is not None:  # every leaf against the state's shapes, lowered (not compiled) from abstract inputs
        vgg_in, targets_in, weights_in, starts = _place(layout, vgg, targets_args, weights, images, put=_abstract)
        _check_state(resume, start.lower(vgg_in, targets_in, starts, weights_in).out_info[0], layout.k)
    chunk = chunk_program(config, layout)
    t0 = time.perf_counter()
    vgg, targets_in, weights, starts = _place(layout, vgg, targets_args, weights, images)
    state, targets = start(vgg, targets_in, starts, weights)
    loop, args = _Loop(state, {}, 0), (vgg, targets, weights)
    _begin(loop, chunk, args, images, layout, resume, config.iterations)
    compile_seconds = time.perf_counter() - t0
    while loop.done < config.iterations:
        terms = _run_chunk(loop, chunk, args, _next_chunk(loop.done, config, sync_every), layout.k, config)
        if callback is not None:
            callback(Progress(loop.done, config.iterations, terms, _members_of(loop.output, layout), loop.run_seconds,
                              loop.state, loop.history, dict(run_record or {}), layout.k))
    images_out = to_host(loop.output)[:layout.k]  # host slicing: no compiled program
    return SweepResult(images_out, history_arrays(loop.history), compile_seconds, loop.run_seconds)


def compile_programs(
    vgg: VGGParams,
    *,
    config: StylizeConfig,
    weights: Weights,
    images_shape: tuple[int, ...],
    targets_args: Mapping[str, Any],
    mesh: Mesh | None = None,
    batch_size: int | None = None,
    shared: Weights | None = None,
) -> None:
    """Compiles the start and chunk programs of a :func:`run_members` call with these arguments, running nothing.

    The programs are lowered for abstract arguments (``jax.ShapeDtypeStruct``s with the shapes, dtypes
    and shardings :func:`run_members` gives its arrays; the chunk's state and targets are the start
    program's ``out_info``) and compiled with ``jit(...).lower(...).compile()``. With jax 0.10.2 this
    fills the same in-memory cache a call of the jitted program reads: the later :func:`run_members`
    traces and compiles neither program (measured: no "Finished tracing" or "Finished XLA
    compilation" record at the call, also when the compile ran in another thread), so nothing needs
    handing over. JAX keys that cache by the arguments' shapes, shardings and the tracing settings,
    so a call that differs compiles its own program, never runs a wrong one.

    Args:
        vgg: VGG-19 parameters; only shapes and dtypes are read.
        config: As in :func:`run_members`.
        weights: As in :func:`run_members`, ``[K]`` on every leaf; only shapes and dtypes are read.
        images_shape: ``(K, H, W, 3)``: the start images' shape.
        targets_args: As in :func:`run_members`; only shapes and dtypes are read.
        mesh: As in :func:`run_members`.
        batch_size: As in :func:`run_members`.
        shared: As in :func:`run_members`.

    Raises:
        NSTError: As :func:`member_layout`. Whatever tracing or compiling raises.
    """
    layout = member_layout(int(images_shape[0]), mesh, batch_size)
    config, weights = program_settings(config, weights, shared)
    start = start_program(config, layout, tuple(targets_args["output_shape"]))
    images = np.broadcast_to(np.float32(0), images_shape)  # a shape without an allocation
    vgg, targets_in, weights, starts = _place(layout, vgg, targets_args, weights, images, put=_abstract)
    state, targets = start.lower(vgg, targets_in, starts, weights).compile().out_info
    scalar = functools.partial(jax.ShapeDtypeStruct, ())  # the host's np.int32 and np.bool_: not weakly typed
    chunk_program(config, layout).lower(state, vgg, targets, weights, scalar(np.int32), scalar(np.bool_)).compile()


def _check_fits(resume: ckpt.Checkpoint, images_shape: tuple[int, ...], iterations: int) -> None:
    """Before anything is compiled: the checkpoint's step is within the run's, and its image (``state/0``, the
    first leaf of ``RunState``) has the start images' shape ``[K, H, W, 3]`` (the rest: :func:`_restore`)."""
    if resume.step > iterations:
        raise NSTError(f"cannot resume: the checkpoint's step {resume.step} is beyond the {iterations} steps of "
                       "this run (edited?)")
    image = resume.leaves[0]
    if tuple(image.shape) != tuple(images_shape):
        raise NSTError(f"cannot resume: the checkpoint's state/0 (the image) has shape {tuple(image.shape)}, not "
                       f"{tuple(images_shape)} as this run needs (edited?)")


def _check_state(resume: ckpt.Checkpoint, template: RunState, k: int) -> None:
    """The checkpoint's leaves against the run's state (arrays or their shapes): their number, and each
    leaf's shape (``k`` members) and dtype, the first that differs named."""
    specs = jax.tree_util.tree_leaves(template)
    if len(specs) != len(resume.leaves):
        raise NSTError(f"cannot resume: the checkpoint holds {len(resume.leaves)} state arrays, this run's state "
                       f"{len(specs)} (another version, or edited?)")
    for i, (spec, leaf) in enumerate(zip(specs, resume.leaves, strict=True)):
        want = (k, *spec.shape[1:])
        if leaf.shape != want or leaf.dtype != spec.dtype:
            raise NSTError(f"cannot resume: the checkpoint's state/{i} is {leaf.dtype} {tuple(leaf.shape)}, this "
                           f"run's {spec.dtype} {want} (another version, or edited?)")


def _restore(resume: ckpt.Checkpoint, template: RunState, k: int, padded: int, members: NamedSharding,
             iterations: int) -> RunState:
    """The checkpoint's leaves (``K`` members) as a state of this run's structure, shapes and dtypes checked."""
    _check_state(resume, template, k)
    treedef = jax.tree_util.tree_structure(template)
    state = jax.tree_util.tree_unflatten(
        treedef, [to_global(_pad_members(leaf, padded), members) for leaf in resume.leaves])
    stored = to_host(state.step)[:k]
    if not 0 <= resume.step <= iterations or not (stored == resume.step).all():
        raise NSTError(f"cannot resume: the checkpoint is at step {resume.step} of {iterations}")
    return state
