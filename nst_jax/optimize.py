"""One compiled Gatys optimisation over the pixels of an image.

Static choices (modes, layers, optimiser, step counts) live in the frozen
:class:`StylizeConfig`; everything numeric a sweep may vary (loss weights,
per-layer weights, learning rate) lives in the :class:`LossWeights` pytree.
The optimisation runs as chunks of ``config.chunk_size`` steps, each chunk one
``lax.fori_loop`` inside one compiled function that takes the VGG params as an
argument; the host calls it repeatedly for progress and intermediate saves,
without retracing.

Pixel range: the image is optimised unconstrained (L-BFGS's curvature pairs
assume no projection) and clipped to [0, 1] only when written out.

Numerics: after every chunk the loss terms, the per-step totals and the image
are checked; anything not finite stops the run with a
:class:`~nst_jax.errors.NumericalError` carrying the last finite image.

Checkpoints: :meth:`Progress.checkpoint` snapshots a run between chunks and
``stylize(resume=...)`` continues it; chunks are deterministic and the same
compiled program runs any step count, so a resumed run is bitwise equal to an
uninterrupted one (same platform, same config).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nst_jax import checkpoint as ckpt
from nst_jax import losses
from nst_jax.errors import NSTError, NumericalError
from nst_jax.vgg import POOLINGS, PRECISIONS, check_layers, extract_features

MODES = ("transfer", "content", "style")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("noise", "content", "image")
TERMS = ("content", "style", "tv", "total")

# Per-step history entries (kept as lists of per-chunk arrays while running) and their dtypes.
PER_STEP = {"total_per_step": np.float32, "evaluations_per_step": np.int32}

# How often each compiled function's Python body has been traced (tests check chunks never retrace).
TRACE_COUNTS: collections.Counter = collections.Counter()


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
    """Static settings of one optimisation (hashable; a jit static argument).

    Attributes:
        mode: ``"transfer"`` (content + style), ``"content"`` (reconstruct the
            content photo from its features alone) or ``"style"`` (texture
            synthesis from the style Grams alone).
        content_layers: Layers whose features the content loss matches.
        style_layers: Layers whose Gram matrices the style loss matches.
        pooling: ``"max"`` or ``"avg"``.
        optimizer: ``"lbfgs"`` (optax.lbfgs with zoom line search) or ``"adam"``.
        iterations: Optimiser steps (one L-BFGS step may evaluate the loss
            more than once in its line search).
        chunk_size: Steps per compiled chunk; progress is reported and
            intermediate images can be saved between chunks.
        init: ``"noise"`` (Gaussian white noise around mid-grey from the seed, see
            ``noise_scale``), ``"content"`` (the content photo) or ``"image"`` (a given image).
        noise_scale: Standard deviation of the white noise start ``0.5 + noise_scale * N(0, 1)``.
            A small amplitude matters: the loss does not see every pixel pattern (pooling,
            ReLUs), and what it cannot see stays as it started. Measured on the content
            reconstruction from relu2_1 (Tübingen, 128 px, 200 L-BFGS steps): PSNR 15.7 dB
            from uniform [0, 1] noise, 29.9 dB at 0.01, 32.4 dB at 0.001.
        lbfgs_memory: Number of curvature pairs L-BFGS keeps.
        precision: ``"fp32"``, or ``"bf16"``: VGG convolutions multiply in bf16
            with float32 accumulation; the image, Gram matrices and losses stay float32.
    """

    mode: str = "transfer"
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"
    optimizer: str = "lbfgs"
    iterations: int = 500
    chunk_size: int = 10
    init: str = "noise"
    lbfgs_memory: int = 10
    precision: str = "fp32"
    noise_scale: float = 1e-3

    def __post_init__(self):
        for field in ("content_layers", "style_layers"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.mode not in MODES:
            raise NSTError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.optimizer not in OPTIMIZERS:
            raise NSTError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.init not in INITS:
            raise NSTError(f"unknown init {self.init!r} (choose from {', '.join(INITS)})")
        if self.pooling not in POOLINGS:
            raise NSTError(f"unknown pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.uses_content and not self.content_layers:
            raise NSTError("at least one content layer is needed")
        if self.uses_style and not self.style_layers:
            raise NSTError("at least one style layer is needed")
        check_layers(self.content_layers + self.style_layers)
        if not 1 <= self.iterations <= 1_000_000:
            raise NSTError(f"iterations must be between 1 and 1000000, got {self.iterations}")
        if not 1 <= self.chunk_size <= 100_000:
            raise NSTError(f"chunk size must be between 1 and 100000, got {self.chunk_size}")
        if self.precision not in PRECISIONS:
            raise NSTError(f"unknown precision {self.precision!r} (choose from {', '.join(PRECISIONS)})")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise NSTError(f"noise scale must be a finite number >= 0, got {self.noise_scale}")
        if self.lbfgs_memory < 1:
            raise NSTError(f"L-BFGS memory must be at least 1, got {self.lbfgs_memory}")
        if self.mode == "style" and self.init == "content":
            raise NSTError("style mode has no content image to initialise from")

    @property
    def uses_content(self) -> bool:
        return self.mode in ("transfer", "content")

    @property
    def uses_style(self) -> bool:
        return self.mode in ("transfer", "style")

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """Layers the loss needs, without duplicates."""
        layers = (self.content_layers if self.uses_content else ()) + (self.style_layers if self.uses_style else ())
        return tuple(dict.fromkeys(layers))


class LossWeights(NamedTuple):
    """Dynamic numbers of the loss and optimiser: a pytree of float32 arrays.

    Every leaf can carry a leading batch axis for a vmapped sweep.

    Attributes:
        content: α, the content loss weight.
        style: β, the style loss weight.
        tv: Weight of the total-variation term.
        content_layers: ``[len(config.content_layers)]`` per-layer content weights.
        style_layers: ``[len(config.style_layers)]`` per-layer style weights ``w_l``.
        learning_rate: Adam's step size in [0, 1] pixel units (L-BFGS uses a line search).
    """

    content: jax.Array
    style: jax.Array
    tv: jax.Array
    content_layers: jax.Array
    style_layers: jax.Array
    learning_rate: jax.Array


def loss_weights(
    config: StylizeConfig,
    *,
    content_weight: float = 1.0,
    style_weight: float = 30.0,
    tv_weight: float = 1e4,
    content_layer_weights: Any = None,
    style_layer_weights: Any = None,
    learning_rate: float = 2e-2,
) -> LossWeights:
    """Builds :class:`LossWeights`; the defaults here are the library's (and the CLI's).

    Loss units are those of the shipped (un-normalised, Caffe-scale) VGG-19: with the
    paper's normalisations (eqs. 1, 4), α = 1 and β = 30 give a balanced transfer at
    256 px (tuned on Tübingen / Starry Night). The content term is a sum over positions
    and grows with the pixel count while the style term does not, so at 512 px β ≈ 100
    keeps the same balance. The TV term (a sum of squared neighbour differences of the
    [0, 1] image) at 1e4 is under 1% of the total and smooths pixel noise. Per-layer
    weights default to ``1 / L`` for style (the paper's ``w_l = 1/5``) and 1 for content.

    Raises:
        NSTError: If a per-layer weights list does not match its layer list, or a weight is negative or not finite.
    """
    def layer_array(values, layers, default, what):
        if values is None:
            return np.full(len(layers), default, np.float32)
        arr = np.asarray(values, np.float32).reshape(-1)
        if arr.shape != (len(layers),):
            raise NSTError(f"{len(arr)} {what} layer weights given for {len(layers)} {what} layers")
        return arr

    cw = layer_array(content_layer_weights, config.content_layers, 1.0, "content")
    sw = layer_array(style_layer_weights, config.style_layers, 1.0 / max(len(config.style_layers), 1), "style")
    scalars = {"content weight": content_weight, "style weight": style_weight, "tv weight": tv_weight,
               "learning rate": learning_rate}
    for name, value in list(scalars.items()) + [("content layer weight", v) for v in cw] + [
            ("style layer weight", v) for v in sw]:
        if not (math.isfinite(float(value)) and float(value) >= 0):
            raise NSTError(f"{name} must be a finite number >= 0, got {value}")
    return LossWeights(
        content=jnp.float32(content_weight), style=jnp.float32(style_weight), tv=jnp.float32(tv_weight),
        content_layers=jnp.asarray(cw), style_layers=jnp.asarray(sw), learning_rate=jnp.float32(learning_rate))


class Targets(NamedTuple):
    """What the loss matches, computed once before the optimisation.

    Attributes:
        content: ``{layer: [H_l, W_l, N_l]}`` features of the content photo.
        style: ``{layer: [N_l, N_l]}`` Gram matrices of the style image, scaled
            by ``M_out / M_style`` so they compare with the output's Grams.
    """

    content: dict[str, jax.Array]
    style: dict[str, jax.Array]


class RunState(NamedTuple):
    """The optimisation's carry: image ``[H, W, 3]``, optimiser state, step counter."""

    image: jax.Array
    opt_state: Any
    step: jax.Array


def _features(params, image, config: StylizeConfig, convention: str, layers=None):
    return extract_features(params, image, layers=layers or config.feature_layers, convention=convention,
                            pooling=config.pooling, precision=config.precision)


@functools.partial(jax.jit, static_argnames=("config", "convention", "output_shape"))
def compute_targets(
    params: Mapping, content: jax.Array | None, style: jax.Array | None, *,
    config: StylizeConfig, convention: str, output_shape: tuple[int, int, int],
) -> Targets:
    """Content features and style Grams, computed once (outside the optimisation loop).

    Args:
        params: VGG-19 params.
        content: ``[H, W, 3]`` content photo in [0, 1] (ignored in style mode).
        style: ``[H_s, W_s, 3]`` style image in [0, 1] (ignored in content mode).
        config: Static settings.
        convention: The weights' input convention.
        output_shape: ``(H, W, 3)`` of the image to be optimised.

    Returns:
        The targets.
    """
    content_targets, style_targets = {}, {}
    if config.uses_content:
        content_targets = _features(params, content, config, convention, config.content_layers)
    if config.uses_style:
        feats = _features(params, style, config, convention, config.style_layers)
        out_shapes = jax.eval_shape(
            lambda x: _features(params, x, config, convention, config.style_layers),
            jax.ShapeDtypeStruct(output_shape, jnp.float32))
        for name, f in feats.items():
            m_out = out_shapes[name].shape[0] * out_shapes[name].shape[1]
            style_targets[name] = losses.gram_matrix(f) * (m_out / (f.shape[0] * f.shape[1]))
    return Targets(content_targets, style_targets)


def loss_terms(
    image: jax.Array, params: Mapping, targets: Targets, weights: LossWeights, *,
    config: StylizeConfig, convention: str,
) -> dict[str, jax.Array]:
    """Weighted loss terms of one image: ``α·L_content``, ``β·L_style``, ``tv·L_tv`` and their sum.

    Args:
        image: ``[H, W, 3]`` RGB being optimised.
        params: VGG-19 params.
        targets: From :func:`compute_targets`.
        weights: Dynamic weights.
        config: Static settings.
        convention: The weights' input convention.

    Returns:
        ``{"content", "style", "tv", "total"}`` scalars.
    """
    feats = _features(params, image, config, convention)
    zero = jnp.zeros((), image.dtype)
    content = zero
    if config.uses_content:
        content = weights.content * sum(
            weights.content_layers[i] * losses.content_loss(feats[name], targets.content[name])
            for i, name in enumerate(config.content_layers))
    style = zero
    if config.uses_style:
        style = weights.style * losses.style_loss(feats, targets.style, config.style_layers, weights.style_layers)
    tv = weights.tv * losses.tv_loss(image)
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


def make_optimizer(config: StylizeConfig, weights: LossWeights) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for ``config.optimizer`` (Adam reads its step size from ``weights``)."""
    if config.optimizer == "adam":
        return optax.adam(weights.learning_rate)
    return optax.lbfgs(memory_size=config.lbfgs_memory)


@functools.partial(jax.jit, static_argnames=("config",))
def init_state(image: jax.Array, weights: LossWeights, *, config: StylizeConfig) -> RunState:
    """The optimisation state at step 0 for a starting image ``[H, W, 3]``."""
    return RunState(image, make_optimizer(config, weights).init(image), jnp.zeros((), jnp.int32))


def _run_chunk(
    state: RunState, params: Mapping, targets: Targets, weights: LossWeights, num_steps: jax.Array, *,
    config: StylizeConfig, convention: str,
) -> tuple[RunState, jax.Array, dict[str, jax.Array]]:
    """Runs ``num_steps <= config.chunk_size`` optimiser steps as one ``lax.fori_loop``.

    Returns:
        The new state; per-step records ``{"total": [chunk_size] float32, "evaluations":
        [chunk_size] int32}``, the total loss at the start of each step and the number of
        loss-and-gradient evaluations the step made (entries past ``num_steps`` are NaN / 0);
        and the loss terms at the new image.
    """
    TRACE_COUNTS["run_chunk"] += 1
    optimizer = make_optimizer(config, weights)

    def value_fn(image):
        return loss_terms(image, params, targets, weights, config=config, convention=convention)["total"]

    value_and_grad = jax.value_and_grad(value_fn)

    def cached_value_and_grad(state):
        # L-BFGS reuses the value and gradient its line search computed at the accepted
        # point; only step 0 has none yet. Deciding on the step counter (shared by all
        # members of a sweep, which vmaps it unbatched) keeps this a real branch under vmap.
        return jax.lax.cond(
            state.step == 0, lambda: value_and_grad(state.image),
            lambda: (optax.tree_utils.tree_get(state.opt_state, "value"),
                     optax.tree_utils.tree_get(state.opt_state, "grad")))

    def body(i, carry):
        state, records = carry
        if config.optimizer == "lbfgs":
            value, grad = cached_value_and_grad(state)
            updates, opt_state = optimizer.update(
                grad, state.opt_state, state.image, value=value, grad=grad, value_fn=value_fn)
            # Line-search evaluations, plus the initial one before any value is cached.
            evaluations = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps") + (state.step == 0)
        else:
            value, grad = value_and_grad(state.image)
            updates, opt_state = optimizer.update(grad, state.opt_state, state.image)
            evaluations = 1
        image = optax.apply_updates(state.image, updates)
        records = {"total": records["total"].at[i].set(value),
                   "evaluations": records["evaluations"].at[i].set(evaluations)}
        return RunState(image, opt_state, state.step + 1), records

    records = {"total": jnp.full((config.chunk_size,), jnp.nan, jnp.float32),
               "evaluations": jnp.zeros((config.chunk_size,), jnp.int32)}
    state, records = jax.lax.fori_loop(0, num_steps, body, (state, records))
    terms = loss_terms(state.image, params, targets, weights, config=config, convention=convention)
    return state, records, terms


run_chunk = jax.jit(_run_chunk, static_argnames=("config", "convention"), donate_argnames=("state",))


def history_arrays(history: Mapping[str, list]) -> dict[str, np.ndarray]:
    """The running history as arrays: per-chunk lists of :data:`PER_STEP` entries concatenated."""
    out = {k: np.asarray(v) for k, v in history.items() if k not in PER_STEP}
    for name, dtype in PER_STEP.items():
        out[name] = np.concatenate([np.zeros(0, dtype), *history[name]])
    return out


@dataclasses.dataclass
class Progress:
    """What a callback sees after each chunk.

    Attributes:
        step: Steps done so far.
        iterations: Total steps of the run.
        terms: ``{"content", "style", "tv", "total"}`` floats at ``image``.
        image: ``[H, W, 3]`` current image (a device array; unclipped).
        seconds: Wall time of the optimisation so far, compilation excluded.
        state: The full optimisation state (valid until the callback returns:
            the next chunk donates its buffers).
        history: The loss history so far (lists; see :class:`StylizeResult`).
        run: The run record (:func:`nst_jax.checkpoint.run_record`).
    """

    step: int
    iterations: int
    terms: dict[str, float]
    image: jax.Array
    seconds: float
    state: RunState | None = None
    history: dict[str, list] | None = None
    run: dict[str, Any] | None = None

    def checkpoint(self, notes: Mapping[str, Any] | None = None) -> ckpt.Checkpoint:
        """A host copy of this point of the run, for :func:`nst_jax.checkpoint.save_checkpoint`."""
        leaves = [np.asarray(leaf) for leaf in jax.device_get(jax.tree_util.tree_leaves(self.state))]
        return ckpt.Checkpoint(self.step, leaves, history_arrays(self.history), self.run, dict(notes or {}))


@dataclasses.dataclass
class StylizeResult:
    """Result of :func:`stylize`.

    Attributes:
        image: ``[H, W, 3]`` float32 numpy RGB, clipped to [0, 1].
        history: ``{"step": [K], "content": [K], "style": [K], "tv": [K], "total": [K]}``
            weighted loss terms at step 0 and after every chunk, plus
            ``"total_per_step": [iterations]``, the total at the start of each step, and
            ``"evaluations_per_step": [iterations]``, loss-and-gradient evaluations of each step.
        compile_seconds: Time spent tracing and compiling.
        run_seconds: Time spent in the optimisation loop.
    """

    image: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.run_seconds / max(int(self.history["step"][-1]), 1)


def initial_image(
    config: StylizeConfig, shape: tuple[int, int, int], *, seed: int = 0,
    content: np.ndarray | None = None, image: np.ndarray | None = None,
) -> jax.Array:
    """The starting image ``[H, W, 3]`` for ``config.init``."""
    if config.init == "noise":
        return 0.5 + config.noise_scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    source = content if config.init == "content" else image
    if source is None:
        raise NSTError(f"init {config.init!r} needs {'a content' if config.init == 'content' else 'an init'} image")
    if tuple(source.shape) != tuple(shape):
        raise NSTError(f"init image has shape {tuple(source.shape)}, expected {tuple(shape)}")
    return jnp.asarray(source, jnp.float32)


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    return jnp.isfinite(x).all()


def _describe(terms: Mapping[str, float]) -> str:
    bad = [k for k in TERMS if not math.isfinite(terms[k])]
    return f"{', '.join(bad)} loss not finite" if bad else "the image holds NaN or Inf"


def _restore_state(resume: ckpt.Checkpoint, shape, weights: LossWeights, config: StylizeConfig) -> RunState:
    """The checkpoint's leaves as a :class:`RunState` of this run's structure, shapes and dtypes checked."""
    template = jax.eval_shape(
        functools.partial(init_state, config=config), jax.ShapeDtypeStruct(shape, jnp.float32), weights)
    specs, treedef = jax.tree_util.tree_flatten(template)
    fits = len(specs) == len(resume.leaves) and all(
        tuple(spec.shape) == leaf.shape and spec.dtype == leaf.dtype
        for spec, leaf in zip(specs, resume.leaves, strict=True))
    if not fits:
        raise NSTError("cannot resume: the checkpoint's optimiser state does not fit this run (another version?)")
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(leaf) for leaf in resume.leaves])
    if not 0 <= resume.step <= config.iterations or int(state.step) != resume.step:
        raise NSTError(f"cannot resume: the checkpoint is at step {resume.step} of {config.iterations}")
    return state


def stylize(
    params: Mapping,
    *,
    convention: str,
    content: np.ndarray | None = None,
    style: np.ndarray | None = None,
    init: np.ndarray | None = None,
    config: StylizeConfig = StylizeConfig(),
    weights: LossWeights | None = None,
    seed: int = 0,
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: ckpt.Checkpoint | None = None,
    record: Mapping[str, Any] | None = None,
) -> StylizeResult:
    """Runs one Gatys optimisation.

    Args:
        params: VGG-19 params (``VGGWeights.params``), passed to the compiled
            function as an argument.
        convention: The weights' input convention (``VGGWeights.convention``).
        content: ``[H, W, 3]`` content photo, RGB in [0, 1] (transfer and content modes).
        style: ``[H_s, W_s, 3]`` style image, RGB in [0, 1] (transfer and style modes).
        init: ``[H, W, 3]`` starting image when ``config.init == "image"``;
            in style mode it also sets the output shape.
        config: Static settings.
        weights: Loss weights; ``loss_weights(config)`` if None.
        seed: Seed of the noise initialisation.
        callback: Called with a :class:`Progress` after every chunk; it may
            save ``progress.checkpoint()`` and may raise to stop the run.
        sync_every: Step counts (0 ignored) at whose multiples a chunk also
            ends, so the callback sees those steps (intermediate saves,
            checkpoints); this does not change the result.
        resume: A checkpoint of this same run to continue from.
        record: Extra entries for the run record (e.g. the weights file's
            sha256); with ``resume``, they must match too.

    Returns:
        The stylized image and the loss history.

    Raises:
        NSTError: If ``resume`` belongs to a different run (the message lists
            the differences) or its state does not fit.
        NumericalError: If the loss or the image becomes NaN or Inf.
    """
    if config.uses_content and content is None:
        raise NSTError(f"{config.mode} mode needs a content image")
    if config.uses_style and style is None:
        raise NSTError(f"{config.mode} mode needs a style image")
    weights = loss_weights(config) if weights is None else weights
    if config.uses_content:
        shape = tuple(content.shape)
    elif init is not None:
        shape = tuple(init.shape)
    else:
        shape = tuple(style.shape)
    run = ckpt.run_record(config, weights, convention=convention, seed=seed, content=content, style=style,
                          init=init, extra=record)
    if resume is not None:
        diffs = ckpt.differences(resume.run, run)
        if diffs:
            raise NSTError("cannot resume: the checkpoint belongs to a different run: " + "; ".join(diffs))
    t0 = time.perf_counter()
    targets = compute_targets(
        params, None if content is None else jnp.asarray(content), None if style is None else jnp.asarray(style),
        config=config, convention=convention, output_shape=shape)
    if resume is None:
        state = init_state(initial_image(config, shape, seed=seed, content=content, image=init), weights,
                           config=config)
    else:
        state = _restore_state(resume, shape, weights, config)
    chunk = run_chunk.lower(
        state, params, targets, weights, jnp.int32(0), config=config, convention=convention).compile()
    if resume is None:
        state, _, terms0 = chunk(state, params, targets, weights, jnp.int32(0))  # zero steps: the initial terms
        terms0 = {k: float(v) for k, v in jax.device_get(terms0).items()}
        if not all(math.isfinite(v) for v in terms0.values()):
            raise NumericalError(f"the loss is not finite at the start ({_describe(terms0)}); "
                                 "check the weights and the loss weights", step=0, image=np.asarray(state.image))
        history = {name: [terms0[name]] for name in TERMS}
        history["step"] = [0]
        history.update({name: [] for name in PER_STEP})
        done = 0
    else:
        history = {k: [float(x) for x in resume.history[k]] for k in (*TERMS, "step")}
        history.update({name: [np.asarray(resume.history[name], dtype)] for name, dtype in PER_STEP.items()})
        done = resume.step
    compile_seconds = time.perf_counter() - t0

    run_seconds = 0.0
    while done < config.iterations:
        n = min(config.chunk_size, config.iterations - done)
        for every in sync_every:
            if every > 0:
                n = min(n, every - done % every)
        t = time.perf_counter()
        last_good = jnp.copy(state.image)  # the chunk donates `state`
        state, records, terms = chunk(state, params, targets, weights, jnp.int32(n))
        terms = {k: float(v) for k, v in jax.device_get(terms).items()}
        totals = np.asarray(records["total"])[:n]
        if not (all(math.isfinite(v) for v in terms.values()) and np.isfinite(totals).all()
                and bool(_all_finite(state.image))):
            raise NumericalError(
                f"the optimisation diverged between steps {done} and {done + n} ({_describe(terms)}); "
                "lower the learning rate or the loss weights", step=done, image=np.asarray(last_good))
        run_seconds += time.perf_counter() - t
        done += n
        history["total_per_step"].append(totals)
        history["evaluations_per_step"].append(np.asarray(records["evaluations"])[:n])
        for name in TERMS:
            history[name].append(terms[name])
        history["step"].append(done)
        if callback is not None:
            callback(Progress(done, config.iterations, terms, state.image, run_seconds, state, history, run))
    out = history_arrays(history)
    image = np.clip(np.asarray(state.image), 0.0, 1.0)
    return StylizeResult(image, out, compile_seconds, run_seconds)
