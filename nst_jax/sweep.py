"""K optimisations that differ only in dynamic values, as one compiled, sharded call.

The members of a sweep share the images, the VGG params, the targets and the static
:class:`~nst_jax.optimize.StylizeConfig`; they differ in their
:class:`~nst_jax.optimize.LossWeights` (α, β, TV weight, per-layer weights, learning
rate) and their seed. The single-image chunk of :mod:`nst_jax.optimize` is
``jax.vmap``-ed over the members and the batch axis is laid out over a 1-D device
mesh with ``jax.sharding``, so the same code runs on one CPU, N forced host
devices, several GPUs or a TPU slice (and multi-host after
``jax.distributed.initialize()``, the mesh then spanning every process's devices).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nst_jax.errors import NSTError
from nst_jax.optimize import (
    TERMS,
    LossWeights,
    Progress,
    RunState,
    StylizeConfig,
    _run_chunk,
    compute_targets,
    finish_image,
    init_state,
    initial_image,
    output_image,
    prepare_inputs,
)

BATCH_AXIS = "members"


def stack_weights(members: Sequence[LossWeights]) -> LossWeights:
    """Stacks per-member weights into one pytree with a leading ``[K]`` axis."""
    if not members:
        raise NSTError("a sweep needs at least one member")
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *members)


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (all of ``jax.devices()`` by default) with axis :data:`BATCH_AXIS`."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (BATCH_AXIS,))


@dataclasses.dataclass
class SweepResult:
    """Result of :func:`sweep`.

    Attributes:
        images: ``[K, H, W, 3]`` clipped to [0, 1], a ``jax.Array`` whose member
            axis is sharded over the mesh (``np.asarray`` gathers it).
        history: ``{"step": [C], "content"|"style"|"tv"|"total": [K, C]}``, the weighted
            terms of every member at step 0 and after each chunk, and
            ``"evaluations_per_step": [K, iterations]``.
        compile_seconds: Time spent tracing and compiling.
        run_seconds: Time spent in the optimisation loop.
    """

    images: jax.Array
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float


def sweep(
    params: Mapping,
    *,
    convention: str,
    weights: LossWeights,
    seeds: Sequence[int] | None = None,
    content: np.ndarray | None = None,
    style: np.ndarray | None = None,
    init: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    config: StylizeConfig,
    mesh: Mesh | None = None,
    callback: Callable[[Progress], None] | None = None,
) -> SweepResult:
    """Runs K optimisations as one vmapped compiled call per chunk, sharded over devices.

    Args:
        params: VGG-19 params, replicated on every device.
        convention: The weights' input convention.
        weights: :class:`LossWeights` whose every leaf has a leading member axis
            ``[K, ...]`` (see :func:`stack_weights`).
        seeds: ``K`` seeds of the noise initialisation (default: all 0).
        content, style, init, masks: As in :func:`nst_jax.optimize.stylize`, shared by all members.
        config: Static settings shared by all members.
        mesh: 1-D device mesh; :func:`batch_mesh` over all devices if None. When
            ``K`` is not a multiple of the mesh size, the last member is repeated to
            pad the batch and the copies are dropped from the result.
        callback: Called after every chunk with a :class:`Progress` whose ``terms``
            hold the members' mean terms and ``image`` the ``[K, H, W, 3]`` images.

    Returns:
        The members' images and loss histories.
    """
    leaves = jax.tree_util.tree_leaves(weights)
    k = int(leaves[0].shape[0]) if leaves and leaves[0].ndim else 0
    if k == 0 or any(leaf.ndim == 0 or leaf.shape[0] != k for leaf in leaves):
        raise NSTError("sweep weights need one leading member axis on every leaf (use stack_weights)")
    seeds = np.zeros(k, np.int64) if seeds is None else np.asarray(seeds)
    if seeds.shape != (k,):
        raise NSTError(f"{len(seeds)} seeds given for {k} sweep members")
    inputs = prepare_inputs(config, content=content, style=style, init=init, masks=masks)
    content, init = inputs.content, inputs.init
    mesh = mesh if mesh is not None else batch_mesh()
    padded = -(-k // mesh.size) * mesh.size
    pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], padded - k, axis=0)]) if padded > k else a  # noqa: E731
    weights = jax.tree_util.tree_map(pad, weights)
    seeds = np.concatenate([seeds, np.repeat(seeds[-1:], padded - k)])

    members = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    shape = inputs.shape

    t0 = time.perf_counter()
    params = jax.device_put(params, replicated)
    targets = compute_targets(
        params, None if content is None else jnp.asarray(content),
        None if inputs.styles is None else [jnp.asarray(s) for s in inputs.styles],
        config=config, convention=convention, output_shape=shape,
        masks=None if inputs.masks is None else jnp.asarray(inputs.masks))
    targets = jax.device_put(targets, replicated)
    images = jnp.stack([initial_image(config, shape, seed=int(s), content=content, image=init) for s in seeds])
    weights = jax.device_put(weights, members)
    # The step counter is shared by all members (unbatched); image, optimiser state and average are per member.
    state_axes = RunState(image=0, opt_state=0, step=None, ema=0)
    state = jax.jit(jax.vmap(functools.partial(init_state, config=config), out_axes=state_axes))(
        jax.device_put(images, members), weights)
    state = jax.device_put(state, RunState(members, jax.tree_util.tree_map(lambda _: members, state.opt_state),
                                           replicated, members))
    chunk_fn = jax.jit(
        jax.vmap(functools.partial(_run_chunk, config=config, convention=convention),
                 in_axes=(state_axes, None, None, 0, None), out_axes=(state_axes, 0, 0)),
        donate_argnums=0)
    chunk = chunk_fn.lower(state, params, targets, weights, jnp.int32(0)).compile()
    jax.block_until_ready(targets)
    compile_seconds = time.perf_counter() - t0

    # The step-0 terms come from the first chunk's first evaluation (records["start"]).
    history = {name: [] for name in TERMS}
    steps, evaluations = [0], []
    run_seconds, done = 0.0, 0
    while done < config.iterations:
        n = min(config.chunk_size, config.iterations - done)
        t = time.perf_counter()
        state, records, terms = chunk(state, params, targets, weights, jnp.int32(n))
        terms = jax.device_get(terms)
        run_seconds += time.perf_counter() - t
        if done == 0:
            start = jax.device_get(records["start"])
            for name in TERMS:
                history[name].append(np.asarray(start[name])[:k])
        done += n
        steps.append(done)
        evaluations.append(np.asarray(records["evaluations"])[:k, :n])
        for name in TERMS:
            history[name].append(np.asarray(terms[name])[:k])
        if callback is not None:
            mean_terms = {name: float(np.mean(history[name][-1])) for name in TERMS}
            callback(Progress(done, config.iterations, mean_terms, state.image[:k], run_seconds))
    out = {name: np.stack(history[name], axis=1) for name in TERMS}
    out["step"] = np.asarray(steps)
    out["evaluations_per_step"] = np.concatenate(evaluations, axis=1)
    images = jax.jit(lambda s, w: jnp.clip(jax.vmap(output_image, in_axes=(state_axes, 0))(s, w), 0.0, 1.0),
                     out_shardings=members)(
        state, weights)
    if padded > k:
        images = images[:k]
    if config.preserve_colour == "luminance":
        images = jnp.stack([finish_image(config, im, inputs) for im in np.asarray(images)])
    return SweepResult(images, out, compile_seconds, run_seconds)
