"""The user-level entry points: :func:`stylize` (one image) and :func:`sweep` (``K`` members).

Both check their inputs once (:func:`nst_jax.host.make_plan`), build the start images and hand everything to
the one host loop (:func:`nst_jax._src.driver.run_members`), which runs the pure step of
:func:`nst_jax.make_stylizer`. Their results and histories have the same types and keys: a
sweep's carry a leading member axis.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from nst_jax._src import checkpoint as ckpt
from nst_jax._src import driver
from nst_jax._src.driver import Progress, SweepResult
from nst_jax._src.plan import Plan, check_seeds, finish_image, optimised_inputs, run_plan
from nst_jax._src.step import initial_image
from nst_jax._src.vgg import VGGParams, check_vgg
from nst_jax.config import StylizeConfig, Weights, make_weights
from nst_jax.errors import NSTError, NumericalError
from nst_jax.spec import make_spec


@dataclasses.dataclass
class StylizeResult:
    """Result of :func:`stylize`.

    Attributes:
        image: ``[H, W, 3]`` float32 numpy RGB, clipped to [0, 1].
        history: ``{"step": [C], "content"|"style"|"tv"|"total": [C]}``, the weighted loss terms
            at step 0 and after every chunk, plus ``"total_per_step": [T]``, the total at the
            start of each of the ``T`` steps, and ``"evaluations_per_step": [T]``, the
            loss-and-gradient evaluations of each step (step 0's include the start's).
        compile_seconds: Time spent tracing, compiling and computing the targets.
        run_seconds: Time spent in the optimisation loop.
    """

    image: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.run_seconds / max(int(self.history["step"][-1]), 1)


def _check_weights(weights: Any, config: StylizeConfig, members: int | None) -> Weights:
    """``weights`` as a Weights for ``config``, unbatched (``members=None``) or with ``[members]``."""
    if not isinstance(weights, Weights):
        raise NSTError(f"weights must be the Weights of nst_jax.make_weights, got {type(weights).__name__}")
    lead = () if members is None else (members,)
    expected = Weights(lead, lead, lead, lead + (len(config.content_layers),), lead + (len(config.style_layers),),
                           lead + (config.num_styles,), lead, lead, lead + (len(config.content_terms),))
    for name, want, leaf in zip(Weights._fields, expected, weights, strict=True):
        if tuple(np.shape(leaf)) != want:
            hint = ("; stylize takes unbatched weights (nst_jax.sweep takes stacked ones)" if members is None
                    else "; stack one Weights per member with nst_jax.stack_weights")
            raise NSTError(f"weights.{name} has shape {tuple(np.shape(leaf))}, expected {want}{hint}")
    return weights


def _record(plan: Plan, weights: Weights, vgg: VGGParams, seed: int,
            extra: Mapping[str, Any] | None) -> dict[str, Any]:
    return ckpt.run_record(plan.config, weights, vgg=vgg, seed=seed, inputs=plan.digests, extra=extra)


def _check_resume(resume: ckpt.Checkpoint | None, run: Mapping[str, Any]) -> None:
    if resume is not None:
        diffs = ckpt.run_differences(resume.run, run)
        if diffs:
            raise NSTError("cannot resume: the checkpoint belongs to a different run: " + "; ".join(diffs))


def _on_canvas(image: np.ndarray | None, plan: Plan) -> np.ndarray | None:
    """``[..., H, W, C]`` zero-padded to the plan's canvas (:func:`nst_jax._src.plan.canvas_shape`)."""
    if image is None or plan.canvas == plan.shape:
        return image
    h, w = plan.shape[:2]
    pad = [(0, 0)] * (image.ndim - 3) + [(0, plan.canvas[0] - h), (0, plan.canvas[1] - w), (0, 0)]
    return np.pad(np.asarray(image, np.float32), pad)


def _cropped(images: np.ndarray, plan: Plan) -> np.ndarray:
    """``[..., H_c, W_c, 3]`` canvas images cut back to the output's ``[..., H, W, 3]``."""
    return np.asarray(images)[..., :plan.shape[0], :plan.shape[1], :]


def _start_images(plan: Plan, inputs, seeds: Sequence[int]) -> np.ndarray:
    """``[K, H_c, W_c, 3]`` start images on the canvas, one per seed."""
    return np.stack([np.asarray(initial_image(plan.config, plan.canvas, seed=int(s),
                                              content=_on_canvas(inputs.content, plan),
                                              image=_on_canvas(inputs.init, plan))) for s in seeds])


def _targets_args(plan: Plan, inputs) -> dict[str, Any]:
    """What the start program computes the targets from; with a shape bucket the output's extent
    ``[H, W]`` is a dynamic input, so every photo whose canvas is the same shares the programs."""
    masks = None if inputs.masks is None else _on_canvas(inputs.masks[..., None], plan)[..., 0]
    extent = np.asarray(plan.shape[:2], np.int32) if plan.config.shape_bucket else None
    return {"content": _on_canvas(inputs.content, plan), "styles": inputs.styles or [],
            "output_shape": plan.canvas, "masks": masks, "extent": extent}


def _one_member(weights: Weights) -> Weights:
    """Unbatched weights with a member axis of 1: what :func:`nst_jax._src.driver.run_members` takes."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[None], weights)


def stylize_compiler(vgg: VGGParams, *, plan: Plan, weights: Weights | None = None) -> Callable[[], None]:
    """A function that compiles the programs ``stylize(vgg, plan=plan, weights=weights)`` runs, running nothing.

    This call does the host's part in the calling thread: :func:`stylize`'s checks and input
    preparation (resizing, colour), so the shapes compiled for are the ones :func:`stylize` then
    passes, and any small JAX program that preparation needs (``jax.image.resize``) is compiled
    here, not raced for by two threads. The function returned only traces and compiles
    (:func:`nst_jax._src.driver.compile_programs`), so it may run in another thread while this one runs
    JAX programs; :func:`nst_jax.run_spec` runs it for the next level while a level runs
    (:mod:`nst_jax._src.ahead`). A later :func:`stylize` of these shapes then finds its programs compiled.

    Args:
        vgg: VGG-19 parameters.
        plan: The run's checked inputs (:func:`nst_jax.host.make_plan`); only the start image's
            shape (the plan's canvas) matters, not its values.
        weights: As in :func:`stylize`.

    Returns:
        The compiling function, of no arguments.

    Raises:
        NSTError: On a bad ``vgg`` or ``weights``, as :func:`stylize`.
    """
    vgg = check_vgg(vgg)
    weights = _check_weights(make_weights(plan.config) if weights is None else weights, plan.config, None)
    return functools.partial(driver.compile_programs, vgg, config=plan.config, weights=_one_member(weights),
                             images_shape=(1, *plan.canvas), targets_args=_targets_args(plan, optimised_inputs(plan)))


def stylize(
    vgg: VGGParams,
    *,
    content: Any = None,
    style: Any = None,
    init: Any = None,
    config: StylizeConfig | None = None,
    weights: Weights | None = None,
    seed: int = 0,
    masks: Any = None,
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: ckpt.Checkpoint | None = None,
    record: Mapping[str, Any] | None = None,
    plan: Plan | None = None,
) -> StylizeResult:
    """Runs one Gatys optimisation.

    Args:
        vgg: VGG-19 parameters (:func:`nst_jax.load_vgg19`).
        content: ``[H, W, 3]`` content photo, float RGB in [0, 1] (transfer and content modes).
        style: ``[H_s, W_s, 3]`` style image, float RGB in [0, 1] (transfer and style modes), or
            a list of ``config.num_styles`` of them (blended, or one per mask region).
        init: ``[H, W, 3]`` starting image when ``config.init == "image"``; in style mode it also
            sets the output shape.
        config: Static settings (``StylizeConfig()`` if None).
        weights: Loss weights; ``make_weights(config)`` if None.
        seed: Seed of the noise start.
        masks: Spatial control: ``[S, H', W']`` masks in [0, 1], one per style image, resized to
            the output size; region ``k`` of the output takes style ``k``'s statistics.
        callback: Called with a :class:`nst_jax.host.Progress` after every chunk; it may save
            ``progress.checkpoint()`` and may raise to stop the run.
        sync_every: Step counts (0 ignored) at whose multiples a chunk also ends, so the
            callback sees those steps (intermediate saves, checkpoints); this does not change
            the result.
        resume: A checkpoint of this same run to continue from.
        record: Extra entries for the run record (they must match too when resuming).
        plan: The inputs already checked by :func:`nst_jax.host.make_plan` (then ``content``,
            ``style``, ``init`` and ``masks`` stay None, and ``config`` is the plan's).

    Returns:
        The stylized image and the loss history.

    Raises:
        NSTError: On a bad input, or if ``resume`` belongs to a different run (the message
            lists the differences) or its state does not fit.
        NumericalError: If the loss or the image becomes NaN or Inf.
    """
    vgg = check_vgg(vgg)
    plan = run_plan(config, plan, content=content, style=style, init=init, masks=masks)
    config = plan.config
    weights = _check_weights(make_weights(config) if weights is None else weights, config, None)
    make_spec(plan=plan, levels=[(max(plan.shape[:2]), config.iterations, weights)], seed=seed)  # the one validation
    run = _record(plan, weights, vgg, seed, record)
    _check_resume(resume, run)
    inputs = optimised_inputs(plan)

    def on_chunk(progress: Progress) -> None:
        image = _cropped(driver.to_host(progress.image)[0], plan)
        if config.preserve_colour == "luminance":
            image = finish_image(plan, image)
        callback(dataclasses.replace(progress, terms={k: float(v[0]) for k, v in progress.terms.items()},
                                     image=image))

    try:
        result = driver.run_members(
            vgg, config=config, weights=_one_member(weights), images=_start_images(plan, inputs, [seed]),
            targets_args=_targets_args(plan, inputs), callback=None if callback is None else on_chunk,
            sync_every=sync_every, resume=resume, run_record=run)
    except NumericalError as err:
        err.image = _cropped(err.image[0], plan)
        raise
    history = {name: value if name == "step" else value[0] for name, value in result.history.items()}
    return StylizeResult(finish_image(plan, _cropped(result.images[0], plan)), history, result.compile_seconds,
                         result.run_seconds)


def sweep(
    vgg: VGGParams,
    *,
    weights: Weights,
    seeds: Sequence[int] | None = None,
    content: Any = None,
    style: Any = None,
    init: Any = None,
    masks: Any = None,
    config: StylizeConfig | None = None,
    plan: Plan | None = None,
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    record: Mapping[str, Any] | None = None,
    resume: ckpt.Checkpoint | None = None,
    mesh: Mesh | None = None,
    batch_size: int | None = None,
) -> SweepResult:
    """Runs ``K`` optimisations that differ only in loss weights and seed, as one compiled program.

    The members share the images, the VGG parameters, the targets and the static config. Their
    member axis is laid out over ``mesh`` (every device of every process by default); on each
    device ``batch_size`` members at a time are ``jax.vmap``-ed together (see
    :mod:`nst_jax._src.driver`). Each member equals the same run done alone with :func:`stylize`.

    Args:
        vgg: VGG-19 parameters, replicated on every device.
        weights: :class:`~nst_jax.config.Weights` with a leading ``[K]`` member axis on
            every leaf (:func:`nst_jax.stack_weights`).
        seeds: ``K`` seeds of the noise start (default: all 0).
        masks: As in :func:`stylize`, shared by all members.
        config: Static settings shared by all members (``StylizeConfig()`` if None).
        mesh: 1-D mesh with axis ``"members"`` (:func:`nst_jax.host.member_mesh`); every
            device by default. ``K`` is padded to fill it, the copies dropped from the results.
        batch_size: Members vmapped together on a device: 1 on CPUs, all of a device's members
            on accelerators by default.
        content: As in :func:`stylize`, shared by all members.
        style: As in :func:`stylize`.
        init: As in :func:`stylize`.
        callback: As in :func:`stylize`; its ``terms`` are ``[K]`` arrays and its ``image`` the
            ``[K, H, W, 3]`` outputs.
        sync_every: As in :func:`stylize`.
        record: As in :func:`stylize` (the seeds are added).
        resume: A checkpoint of this same sweep to continue.
        plan: As in :func:`stylize`.

    Returns:
        The members' images and loss histories.

    Raises:
        NSTError: On a bad input or weights without a member axis, or if ``resume`` belongs to
            a different sweep.
        NumericalError: If a member's loss or image becomes NaN or Inf (``err.members`` says which).
    """
    vgg = check_vgg(vgg)
    plan = run_plan(config, plan, content=content, style=style, init=init, masks=masks)
    config = plan.config
    leaves = jax.tree_util.tree_leaves(weights)
    k = int(np.shape(leaves[0])[0]) if leaves and np.ndim(leaves[0]) else 0
    if k == 0:
        raise NSTError("sweep weights need one leading member axis on every leaf (use nst_jax.stack_weights)")
    weights = _check_weights(weights, config, k)
    seeds = check_seeds(seeds, k)
    members = [Weights(*leaves) for leaves in zip(*(np.asarray(leaf) for leaf in weights), strict=True)]
    for member, seed in zip(members, seeds, strict=True):  # each member is a run: the one validation
        make_spec(plan=plan, levels=[(max(plan.shape[:2]), config.iterations, member)], seed=int(seed))
    run = _record(plan, weights, vgg, 0, {**dict(record or {}), "seeds": seeds.tolist()})
    _check_resume(resume, run)
    inputs = optimised_inputs(plan)
    if callback is not None and plan.canvas != plan.shape:
        user_callback = callback

        def callback(progress: Progress) -> None:
            user_callback(dataclasses.replace(progress, image=_cropped(driver.to_host(progress.image), plan)))

    try:
        result = driver.run_members(
            vgg, config=config, weights=jax.tree_util.tree_map(np.asarray, weights),
            images=_start_images(plan, inputs, seeds), targets_args=_targets_args(plan, inputs),
            mesh=driver.member_mesh() if mesh is None else mesh, batch_size=batch_size,
            callback=callback, sync_every=sync_every, resume=resume, run_record=run)
    except NumericalError as err:
        err.image = _cropped(err.image, plan)
        raise
    images = np.stack([finish_image(plan, image) for image in _cropped(result.images, plan)])
    return dataclasses.replace(result, images=images)
