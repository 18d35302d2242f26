"""Coarse-to-fine (multi-scale) optimisation, of one run (:func:`run_spec`) or of a sweep (:func:`sweep_specs`).

The output is optimised at a pyramid of sizes, the levels of a :class:`~nst_jax.spec.RunSpec` (each
half the next, as the presets have them, or geometric from a minimum size); each level starts from
the previous level's output, upsampled (Lanczos), and each level is one :func:`~nst_jax.stylize`
call, so each level's chunk is compiled once (one compilation per size), the next level's while this
one runs (:mod:`nst_jax._src.ahead`). In the default relative loss units every level has the output's
balance of content and style; in paper units the content term grows with the pixel count, so the
coarse levels weigh style more than the full size does. The content photo and the masks are resized
to each level; the style images too, by the level's factor, unless ``config.style_scale`` already
ties them to the output size. The optimiser state is not carried between levels: L-BFGS's curvature
pairs and Adam's moments are per pixel of the previous grid and would not describe the new one
(upsampled Adam moments were considered and not used: the gradient scale per pixel changes with the
size).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from nst_jax._src import colour, driver
from nst_jax._src.ahead import CompileAhead
from nst_jax._src.api import StylizeResult, _cropped, _start_images, _targets_args, stylize, stylize_compiler
from nst_jax._src.checkpoint import Checkpoint
from nst_jax._src.driver import Progress, SweepResult
from nst_jax._src.plan import Plan, at_size, finish_image, optimised_inputs, run_plan
from nst_jax._src.vgg import VGGParams
from nst_jax.config import DEFAULT_PRESET, StylizeConfig, Weights, make_weights, stack_weights
from nst_jax.errors import NSTError, NumericalError
from nst_jax.spec import Choices, RunSpec, make_spec, resolve_levels


def preset_levels(size: int, config: StylizeConfig | None = None, preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """:func:`stylize_multiscale`'s ``sizes``, ``iterations`` and ``weights`` for a preset
    (:data:`~nst_jax.config.PRESETS`) at an output whose longest side is ``size``.

    ``stylize_multiscale(vgg, content=c, style=s, **preset_levels(512))`` is what ``nst-jax`` does by
    default at ``--size 512``: both resolve the preset with :func:`nst_jax.spec.resolve_levels`.
    Presets are for style transfer in relative loss units.

    Args:
        size: The output's longest side, pixels.
        config: The static settings the weights are made for (``StylizeConfig()`` if None).
        preset: A key of :data:`~nst_jax.config.PRESETS`.

    Returns:
        ``{"sizes": [L], "iterations": [L], "weights": [L] Weights}``, coarse to fine; levels under
        :data:`~nst_jax.config.MIN_LEVEL_SIZE` px are dropped, so a small output has fewer.

    Raises:
        NSTError: For an unknown preset, or a ``config`` they do not apply to.
    """
    config = StylizeConfig() if config is None else config
    if config.mode != "transfer" or config.loss_units != "relative":
        raise NSTError("presets are for style transfer in relative loss units")
    sizes, iterations, weights = zip(*resolve_levels(size, config, Choices(preset=preset)), strict=True)
    return {"sizes": list(sizes), "iterations": list(iterations), "weights": list(weights)}


@dataclasses.dataclass
class MultiScaleResult:
    """Result of :func:`stylize_multiscale`.

    Attributes:
        image: ``[H, W, 3]`` the full-size output in [0, 1].
        levels: Each level's :class:`~nst_jax.StylizeResult` (coarse to fine); None for the
            levels a resumed run skipped.
        sizes: The levels' longest sides.
    """

    image: np.ndarray
    levels: list[StylizeResult | None]
    sizes: list[int]

    @property
    def run_seconds(self) -> float:
        return sum(level.run_seconds for level in self.levels if level is not None)

    @property
    def compile_seconds(self) -> float:
        return sum(level.compile_seconds for level in self.levels if level is not None)


def resumed_level(resume: Checkpoint | None, sizes: Sequence[int]) -> int:
    """The level a checkpoint of a multi-scale run was taken at (0 without one).

    Args:
        resume: A checkpoint written during :func:`stylize_multiscale`, or None.
        sizes: The run's levels (longest sides).

    Returns:
        The level's index; 0 for a checkpoint without one (a run of one level). Whether the
        checkpoint belongs to this run is checked when it resumes (its whole record must match).

    Raises:
        NSTError: If the checkpoint's level is malformed or not one of ``sizes``.
    """
    if resume is None:
        return 0
    inputs = resume.run.get("inputs")
    level = inputs.get("level") if isinstance(inputs, dict) else None
    if level is None:
        return 0
    index = level.get("index") if isinstance(level, dict) else None
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(sizes):
        raise NSTError(f"cannot resume: the checkpoint's level {str(index)[:20]} is not one of the "
                       f"{len(sizes)} levels of this run")
    return index


def _level_plan(spec: RunSpec, level: int, previous: np.ndarray | None) -> Plan:
    """Level ``level``'s plan: the inputs at its size, its step count, and its start (the previous level's
    output upsampled). One level is the plain run, its record included."""
    plan, sizes, iterations = spec.plan, spec.sizes, spec.iterations
    shape = spec.levels[level].shape
    if level == 0:
        config = dataclasses.replace(plan.config, iterations=iterations[0])
        init = None if plan.init is None else colour.resize(plan.init, shape)
    else:
        config = dataclasses.replace(plan.config, iterations=iterations[level], init="image")
        # Resuming this level: its start is never used, the checkpoint's state replaces it.
        init = colour.resize(previous, shape) if previous is not None else np.zeros((*shape, 3), np.float32)
    return at_size(plan, sizes[level], sizes[-1], config=config, init=init,
                   level=None if len(sizes) == 1 else {"index": level, "sizes": sizes, "iterations": iterations})


def _explicit_levels(plan: Plan, sizes: Sequence[int], iterations: Sequence[int] | None,
                     weights: Weights | Sequence[Weights] | None) -> list[tuple[int, int, Weights]]:
    sizes = list(sizes)
    iterations = list(iterations) if iterations is not None else [plan.config.iterations] * len(sizes)
    if len(iterations) != len(sizes):
        raise NSTError(f"{len(iterations)} iteration counts given for {len(sizes)} scales")
    weights = make_weights(plan.config) if weights is None else weights
    weights = [weights] * len(sizes) if isinstance(weights, Weights) else list(weights)
    if len(weights) != len(sizes):
        raise NSTError(f"give one Weights, or one per level ({len(sizes)}); got {len(weights)}")
    return list(zip(sizes, iterations, weights, strict=True))


def stylize_multiscale(
    vgg: VGGParams,
    *,
    sizes: Sequence[int],
    config: StylizeConfig | None = None,
    content: ArrayLike | None = None,
    style: ArrayLike | Sequence[ArrayLike] | None = None,
    init: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    weights: Weights | Sequence[Weights] | None = None,
    iterations: Sequence[int] | None = None,
    seed: int = 0,
    callback: Callable[[int, Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: Checkpoint | None = None,
    record: Mapping[str, Any] | None = None,
    plan: Plan | None = None,
    compile_ahead: bool = True,
) -> MultiScaleResult:
    """Coarse-to-fine Gatys optimisation: :func:`nst_jax.make_spec` with these levels, then :func:`run_spec`.

    Args:
        vgg: VGG-19 parameters.
        sizes: Longest side of each level, increasing; the last is the output's.
        iterations: Steps per level (default ``config.iterations`` at each).
        callback: Called as ``callback(level, progress)`` after every chunk; ``progress`` counts
            the level's steps, and may be checkpointed; the callback may raise to stop the run.
        sync_every: As in :func:`~nst_jax.stylize`, counted in each level's steps.
        resume: A checkpoint of this same run, taken at any level, to continue from.
        record: Extra entries for the run record (they must match too when resuming).
        config: Static settings (``StylizeConfig()`` if None), shared by the levels.
        content: ``[H, W, 3]`` content photo at the full output size.
        style: Style image(s), as in :func:`~nst_jax.stylize`.
        init: ``[H, W, 3]`` start of the coarsest level, resized to it.
        masks: Region masks, resized to each level.
        weights: Loss weights: one :class:`~nst_jax.config.Weights` shared by the levels, or one per
            level, coarse to fine (the presets weigh the style more at the coarse levels);
            :func:`~nst_jax.config.make_weights` if None.
        seed: Seed of a noise start.
        plan: Inputs already checked (:func:`nst_jax.host.make_plan`), instead of the four above.
        compile_ahead: As in :func:`run_spec`.

    Returns:
        As :func:`run_spec`.

    Raises:
        NSTError: On a bad input, sizes that do not increase to the output's, a miscounted
            ``iterations``, or a ``resume`` of another run.
        NumericalError: If a level's loss or image becomes NaN or Inf; ``err.level`` says which.
    """
    plan = run_plan(config, plan, content=content, style=style, init=init, masks=masks)
    spec = make_spec(plan=plan, levels=_explicit_levels(plan, sizes, iterations, weights), seed=seed)
    return run_spec(vgg, spec, callback=callback, sync_every=sync_every, resume=resume, record=record,
                    compile_ahead=compile_ahead)


def run_spec(
    vgg: VGGParams,
    spec: RunSpec,
    *,
    callback: Callable[[int, Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: Checkpoint | None = None,
    record: Mapping[str, Any] | None = None,
    compile_ahead: bool = True,
    on_level: Callable[[int], None] | None = None,
) -> MultiScaleResult:
    """Runs a :class:`~nst_jax.spec.RunSpec`, level after level, coarse to fine.

    Each level is one :func:`~nst_jax.stylize` run, so checkpoints, resuming and run records
    work as there. A level's run record holds the level's settings (its steps and start), the
    weights, the seed, ``record``, and the original inputs' digests plus ``inputs.level`` (its
    index and every level's size and steps): a level's inputs follow from the original inputs and
    the levels before it. A run of one level has exactly :func:`~nst_jax.stylize`'s record. A
    checkpoint taken during level ``L`` (``progress.checkpoint()`` in the callback) holds level
    ``L``'s state: resuming from it skips the levels before ``L``, continues ``L`` and runs the
    finer levels, and ends bitwise equal to the uninterrupted run on the same platform.

    Args:
        vgg: VGG-19 parameters.
        spec: The run (:func:`nst_jax.make_spec`).
        callback: Called as ``callback(level, progress)`` after every chunk; ``progress`` counts
            the level's steps, and may be checkpointed; the callback may raise to stop the run.
        sync_every: As in :func:`~nst_jax.stylize`, counted in each level's steps.
        resume: A checkpoint of this same run, taken at any level, to continue from.
        record: Extra entries for the run record (they must match too when resuming).
        compile_ahead: Compile the next level's programs in a background thread while a level
            runs (:mod:`nst_jax._src.ahead`); the result is bitwise the same either way. A level's
            ``compile_seconds`` then includes the time spent waiting for that thread.
        on_level: Called as ``on_level(level)`` when a level begins, before its programs are
            waited for or compiled (a progress display's cue that compiling starts).

    Returns:
        The output and the result of every level run (None for the levels a resumed run skipped).

    Raises:
        NSTError: If ``resume`` belongs to another run.
        NumericalError: If a level's loss or image becomes NaN or Inf; ``err.level`` says which
            (``err.step`` counts that level's steps).
    """
    first = resumed_level(resume, spec.sizes)
    levels: list[StylizeResult | None] = [None] * first
    previous = None
    with CompileAhead(compile_ahead) as ahead:
        for level in range(first, len(spec.levels)):
            if on_level is not None:
                on_level(level)
            t = time.perf_counter()
            ahead.wait()  # this level's programs, compiled while the level before ran: no second compile
            waited = time.perf_counter() - t
            if level + 1 < len(spec.levels):
                ahead.submit(_level_compiler, vgg, spec, level + 1)
            try:
                result = stylize(vgg, plan=_level_plan(spec, level, previous), weights=spec.levels[level].weights,
                                 seed=spec.seed, sync_every=sync_every, resume=resume if level == first else None,
                                 callback=None if callback is None else functools.partial(callback, level),
                                 record=record)
            except NumericalError as err:
                err.level = level
                raise
            levels.append(dataclasses.replace(result, compile_seconds=result.compile_seconds + waited))
            previous = result.image
    return MultiScaleResult(previous, levels, spec.sizes)


def _level_compiler(vgg: VGGParams, spec: RunSpec, level: int) -> Callable[[], None]:
    """What compiles level ``level``'s programs (:func:`~nst_jax._src.api.stylize_compiler`). Its start's values are not
    needed (the previous level's output, of the level's shape), so the plan is made as when resuming the level."""
    return stylize_compiler(vgg, plan=_level_plan(spec, level, None), weights=spec.levels[level].weights)


def _sweep_groups(specs: Sequence[RunSpec]) -> list[list[int]]:
    """The members grouped by their style images (one set of style targets per group), in order.

    Raises:
        NSTError: If the members do not share their photo, settings and levels' shapes and steps.
    """
    if not specs:
        raise NSTError("a sweep needs at least one member")
    first = specs[0]
    for spec in specs[1:]:
        if spec.config != first.config:
            raise NSTError("the members of a sweep share their static settings (run other settings as their own sweep)")
        if [level[:2] for level in spec.levels] != [level[:2] for level in first.levels]:
            raise NSTError("the members of a sweep share their levels' shapes and steps (run a preset with other "
                           "levels as its own sweep)")
        if {k: v for k, v in spec.plan.digests.items() if k != "style"} != {
                k: v for k, v in first.plan.digests.items() if k != "style"}:
            raise NSTError("the members of a sweep share their photo, start image and masks")
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(json.dumps(spec.plan.digests["style"], sort_keys=True), []).append(i)
    return list(groups.values())


def sweep_specs(
    vgg: VGGParams,
    specs: Sequence[RunSpec],
    *,
    mesh: Mesh | None = None,
    batch_size: int | None = None,
    callback: Callable[[int, list[int], Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    compile_ahead: bool = True,
) -> list[SweepResult]:
    """Runs ``K`` runs that share their photo, settings and levels' shapes, each level as compiled programs
    that serve every member.

    A member is a :class:`~nst_jax.spec.RunSpec` (:func:`nst_jax.make_spec`): its own painting,
    per-level :class:`~nst_jax.config.Weights` and seed. Level by level, coarse to fine, the members
    with the same painting run together through the one host loop (:func:`nst_jax._src.driver.run_members`:
    laid over ``mesh``, ``batch_size`` of them vmapped on each device); members with other paintings
    of the same shape reuse the level's compiled chunk program (the targets are its arguments). Each
    member starts each level from its own previous output, as :func:`run_spec` does, and equals its
    run done alone (bit for bit with ``batch_size=1``).

    Args:
        vgg: VGG-19 parameters.
        specs: The members' runs.
        mesh: As in :func:`nst_jax.sweep` (every device of every process by default).
        batch_size: As in :func:`nst_jax.sweep`.
        callback: Called as ``callback(level, members, progress)`` after every chunk, ``members``
            the indices into ``specs`` that ``progress`` (``[k]`` terms and images) describes.
        sync_every: As in :func:`nst_jax.stylize`, counted in each level's steps.
        compile_ahead: Compile each next level's programs in a background thread while a level runs
            (:mod:`nst_jax._src.ahead`), as :func:`run_spec` does.

    Returns:
        Per level, coarse to fine, a :class:`~nst_jax.SweepResult` of every member in the
        order of ``specs``; its ``images`` ``[K, H_l, W_l, 3]`` are the finished outputs (the last
        level's are the sweep's).

    Raises:
        NSTError: If the members do not share their photo, settings and levels.
        NumericalError: If a member's loss or image becomes NaN or Inf.
    """
    specs = list(specs)
    groups = _sweep_groups(specs)
    mesh = driver.member_mesh() if mesh is None else mesh
    previous: list[np.ndarray | None] = [None] * len(specs)
    results = []
    with CompileAhead(compile_ahead) as ahead:
        for level in range(len(specs[0].levels)):
            ahead.wait()  # this level's programs, compiled while the level before ran
            if level + 1 < len(specs[0].levels):
                ahead.submit(_sweep_level_compiler, vgg, specs, groups, level + 1, mesh, batch_size)
            on_chunk = None if callback is None else functools.partial(callback, level)
            results.append(_sweep_level(vgg, specs, groups, level, previous, mesh=mesh, batch_size=batch_size,
                                        callback=on_chunk, sync_every=sync_every))
            previous = list(results[-1].images)
    return results


def _group_inputs(specs: list[RunSpec], members: list[int], level: int, previous: list[np.ndarray | None]):
    """A group's level plans, inputs, start images ``[k, H_c, W_c, 3]`` and stacked weights ``[k]``."""
    plans = [_level_plan(specs[m], level, previous[m]) for m in members]
    inputs = [optimised_inputs(plan) for plan in plans]
    starts = np.concatenate([_start_images(plan, ins, [specs[m].seed])
                             for plan, ins, m in zip(plans, inputs, members, strict=True)])
    return plans, inputs, starts, _stacked(specs, members, level)


def _stacked(specs: list[RunSpec], members: Sequence[int], level: int) -> Weights:
    """The ``members``' weights at ``level``, stacked ``[k]`` (NumPy)."""
    return jax.tree_util.tree_map(np.asarray, stack_weights([specs[m].levels[level].weights for m in members]))


def _sweep_level_compiler(vgg: VGGParams, specs: list[RunSpec], groups: list[list[int]], level: int,
                          mesh: Mesh, batch_size: int | None) -> Callable[[], None]:
    """What compiles level ``level``'s programs for the sweep's first group (the others of its size share them;
    the start's values are not needed, so the plans are made as when resuming the level)."""
    members = groups[0]
    plans, inputs, starts, weights = _group_inputs(specs, members, level, [None] * len(specs))
    return functools.partial(driver.compile_programs, vgg, config=plans[0].config, weights=weights,
                             images_shape=starts.shape, targets_args=_targets_args(plans[0], inputs[0]), mesh=mesh,
                             batch_size=batch_size, shared=_stacked(specs, range(len(specs)), level))


def _sweep_level(vgg: VGGParams, specs: list[RunSpec], groups: list[list[int]], level: int,
                 previous: list[np.ndarray | None], *, mesh: Mesh, batch_size: int | None,
                 callback: Callable[[list[int], Progress], None] | None, sync_every: Sequence[int]) -> SweepResult:
    """One level of :func:`sweep_specs`: each group of members through the driver, the finished images and
    histories put back in the members' order."""
    images, histories, compile_seconds, run_seconds = [None] * len(specs), [None] * len(specs), 0.0, 0.0
    shared = _stacked(specs, range(len(specs)), level)  # the groups share the level's programs: its terms too
    for members in groups:
        plans, inputs, starts, weights = _group_inputs(specs, members, level, previous)
        result = driver.run_members(
            vgg, config=plans[0].config, weights=weights, images=starts,
            targets_args=_targets_args(plans[0], inputs[0]), mesh=mesh, batch_size=batch_size, sync_every=sync_every,
            callback=None if callback is None else functools.partial(callback, members),
            run_record={"members": members, "level": level}, shared=shared)
        for j, m in enumerate(members):
            images[m] = finish_image(plans[j], _cropped(result.images[j], plans[j]))
            histories[m] = {k: v if k == "step" else v[j] for k, v in result.history.items()}
        compile_seconds, run_seconds = compile_seconds + result.compile_seconds, run_seconds + result.run_seconds
    history = {k: histories[0][k] if k == "step" else np.stack([h[k] for h in histories]) for k in histories[0]}
    return SweepResult(np.stack(images), history, compile_seconds, run_seconds)
