"""One optimiser step over the pixels, as a pure ``init`` / ``step`` pair (:func:`make_stylizer`).

In the manner of optax and Flax's ``train_step``: :func:`make_stylizer` takes the static
:class:`~nst_jax.config.StylizeConfig` and returns two pure functions of arrays only,

* ``init(vgg, targets, weights, image) -> RunState`` and
* ``step(vgg, targets, weights, state) -> (RunState, StepInfo)``,

which the caller wraps in ``jax.jit``, ``jax.vmap`` (over images, weights or both),
``lax.fori_loop`` or a sharding as it likes. The library's own host loop
(:mod:`nst_jax._src.driver`) runs ``step`` in chunks inside one compiled ``lax.fori_loop``.

Pixel range: the image is optimised unconstrained (L-BFGS's curvature pairs assume no
projection) and clipped to [0, 1] only when written out (:func:`output_image` does not clip).

The optimiser (``config.optimizer``) comes from the registry (:data:`nst_jax._src.optimizers.OPTIMIZERS`):
its transformation, its start and its step, e.g. L-BFGS's cached value and gradient
(:mod:`nst_jax._src.optimizers.lbfgs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from nst_jax._src import objective
from nst_jax._src.objective import Targets
from nst_jax._src.optimizers import Optimizer, resolve
from nst_jax._src.vgg import VGGParams
from nst_jax.config import StylizeConfig, Weights
from nst_jax.errors import NSTError


class RunState(NamedTuple):
    """The optimisation's state, a pytree of arrays.

    Attributes:
        image: ``[H, W, 3]`` the current iterate (unclipped).
        opt_state: The optax state (L-BFGS: curvature pairs and the line search's cached value
            and gradient; Adam: moments).
        step: Steps taken, int32.
        ema: ``[H, W, 3]`` the (not bias-corrected) moving average of the iterates (see
            ``Weights.ema_decay`` and :func:`output_image`).
        reference: The style statistics the loss compares with
            (:func:`nst_jax._src.objective.style_reference`), fixed at ``init``; ``{}`` without a
            style term.
    """

    image: jax.Array
    opt_state: optax.OptState
    step: jax.Array
    ema: jax.Array
    reference: Mapping[str, Mapping[str, jax.Array]]


class StepInfo(NamedTuple):
    """What one step reports.

    Attributes:
        value: The total loss at the start of the step (at the incoming ``state.image``).
        evaluations: Loss-and-gradient evaluations the step made (int32).
    """

    value: jax.Array
    evaluations: jax.Array


class Stylizer(NamedTuple):
    """The pure pair returned by :func:`make_stylizer`."""

    init: Callable[[VGGParams, Targets, Weights, ArrayLike], RunState]
    step: Callable[[VGGParams, Targets, Weights, RunState], tuple[RunState, StepInfo]]


class StylizerCore(NamedTuple):
    """What :class:`Stylizer`'s pair is made of (:func:`stylizer_core`), for a loop that holds the
    start and the steps in one program (the driver's chunk): the start is an ``advance``, so the
    program differentiates the loss in one place.

    Attributes:
        blank: ``blank(targets, weights, image) -> RunState``: the state at ``image`` before the
            optimiser's start (no evaluation).
        advance: ``advance(vgg, targets, weights, state, start) -> (RunState, StepInfo)``: one step,
            or with ``start`` true (a bool, may be traced) the optimiser's start at ``state.image``
            (its evaluations; no move, no step counted). Only for an optimiser with
            ``start_evaluations > 0`` may ``start`` be true.
        needs_start: Whether the optimiser has a start (``start_evaluations > 0``).
    """

    blank: Callable[[Targets, Weights, ArrayLike], RunState]
    advance: Callable[[VGGParams, Targets, Weights, RunState, ArrayLike], tuple[RunState, StepInfo]]
    needs_start: bool


def optimizer(config: StylizeConfig) -> Optimizer:
    """The pixel optimiser of ``config`` (:data:`nst_jax._src.optimizers.OPTIMIZERS`)."""
    return resolve(config.optimizer)


def stylizer_core(config: StylizeConfig) -> StylizerCore:
    """The :class:`StylizerCore` of ``config`` (a :class:`~nst_jax.config.StylizeConfig`, checked by the caller)."""
    loss_config = config.loss_config()
    opt = optimizer(config)

    def objective_fns(vgg, targets, weights, reference):
        def value_fn(x):
            return objective.evaluate_terms(vgg, x, targets, weights, reference, loss_config)["total"]

        return jax.value_and_grad(value_fn), value_fn

    def blank(targets: Targets, weights: Weights, image: ArrayLike) -> RunState:
        image = jnp.asarray(image, jnp.float32)
        reference = objective.style_reference(targets, weights, config=loss_config) if config.uses_style else {}
        opt_state = opt.init(opt.transform(config, weights), image)
        return RunState(image, opt_state, jnp.zeros((), jnp.int32), jnp.zeros_like(image), reference)

    def advance(vgg: VGGParams, targets: Targets, weights: Weights, state: RunState,
                start: ArrayLike) -> tuple[RunState, StepInfo]:
        value_and_grad, value_fn = objective_fns(vgg, targets, weights, state.reference)
        start = jnp.asarray(start, bool)
        updates, opt_state, value, evaluations = opt.update(
            opt.transform(config, weights), state.image, state.opt_state, value_and_grad, value_fn, start)
        image = jnp.where(start, state.image, optax.apply_updates(state.image, updates))
        ema = jnp.where(start, state.ema, weights.ema_decay * state.ema + (1.0 - weights.ema_decay) * image)
        new = RunState(image, opt_state, state.step + jnp.where(start, 0, 1).astype(jnp.int32), ema, state.reference)
        return new, StepInfo(jnp.asarray(value, jnp.float32), jnp.asarray(evaluations, jnp.int32))

    return StylizerCore(blank, advance, opt.start_evaluations > 0)


def make_stylizer(config: StylizeConfig) -> Stylizer:
    """The Gatys optimisation over an image's pixels as a pure ``init`` / ``step`` pair.

    Args:
        config: Static settings: the loss (layers, style statistic, units, tiling) and the
            optimiser (``"lbfgs"`` or ``"adam"``, L-BFGS memory). Step counts, chunking and the
            starting image are the caller's.

    Returns:
        A :class:`Stylizer`. ``init(vgg, targets, weights, image)`` takes the start image
        ``[H, W, 3]`` and returns a :class:`RunState`; ``step(vgg, targets, weights, state)``
        makes one optimiser step and returns the new state and a :class:`StepInfo`. Both are
        pure functions of arrays, safe under ``jax.jit``, ``jax.vmap``, ``lax.fori_loop`` and
        sharding; ``targets`` come from :func:`nst_jax.compute_targets` with this config.

    Example:
        >>> stylizer = nst_jax.make_stylizer(config)  # doctest: +SKIP
        >>> state = jax.jit(stylizer.init)(vgg, targets, weights, image)  # doctest: +SKIP
        >>> state, info = jax.jit(stylizer.step)(vgg, targets, weights, state)  # doctest: +SKIP

    Raises:
        NSTError: If ``config`` is not a :class:`~nst_jax.config.StylizeConfig`.
    """
    if not isinstance(config, StylizeConfig):
        raise NSTError(f"make_stylizer needs a StylizeConfig (optimiser settings), got {type(config).__name__}")
    loss_config = config.loss_config()
    core = stylizer_core(config)

    def init(vgg: VGGParams, targets: Targets, weights: Weights, image: ArrayLike) -> RunState:
        objective.check_call(image, targets, weights, loss_config)
        state = core.blank(targets, weights, image)
        return core.advance(vgg, targets, weights, state, True)[0] if core.needs_start else state

    def step(vgg: VGGParams, targets: Targets, weights: Weights, state: RunState) -> tuple[RunState, StepInfo]:
        return core.advance(vgg, targets, weights, state, False)

    return Stylizer(init, step)


def output_image(state: RunState, weights: Weights) -> jax.Array:
    """The image a run outputs (unclipped): the bias-corrected moving average ``e_t / (1 − dᵗ)``,
    or the start image at step 0; with ``ema_decay = 0`` exactly the last iterate."""
    d = weights.ema_decay
    corrected = state.ema / (1.0 - jnp.power(d, state.step.astype(jnp.float32)))
    return jnp.where(state.step == 0, state.image, corrected)


def initial_image(
    config: StylizeConfig, shape: tuple[int, int, int], *, seed: int = 0,
    content: jax.Array | None = None, image: jax.Array | None = None,
) -> jax.Array:
    """The starting image ``[H, W, 3]`` for ``config.init`` (the noise start from ``jax.random.key(seed)``)."""
    if config.init == "noise":
        return 0.5 + config.noise_scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    source = content if config.init == "content" else image
    if source is None:
        raise NSTError(f"init {config.init!r} needs {'a content' if config.init == 'content' else 'an init'} image")
    if tuple(source.shape) != tuple(shape):
        raise NSTError(f"init image has shape {tuple(source.shape)}, expected {tuple(shape)}")
    return jnp.asarray(source, jnp.float32)
