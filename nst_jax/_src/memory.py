"""A memory estimate for an optimisation, checked before anything is compiled.

The estimate (:func:`estimate_bytes`) adds up, in float32:

* activations: every VGG-19 map up to the deepest layer the loss uses, at the
  output size (from ``jax.eval_shape``, nothing is computed), times 3 for the
  forward pass kept for the backward pass, its cotangents and XLA's temporaries;
* the optimiser state: the optimiser's ``state_images`` (:mod:`nst_jax._src.optimizers`), e.g.
  Adam 2 images (moments) plus 3 (image, gradient, update);
* per further sweep member on the device, its whole run state (optimiser images, the moving
  average and its own copy of the style statistics) ``MEMBER_COPIES`` times;
* the targets (content features and the style statistic's ``target_bytes``), the VGG params, and the
  forward pass over the style image (done once, before the optimisation).

With ``config.tile_size`` (:mod:`nst_jax._src.tiled`) the VGG maps are those of one tile of side
``tile_size + 2 * halo`` (for the style image's pass too), plus the zero-padded image and
gradient (2 images) and a padded copy of the content features.

It is deliberately rough (within a factor of about 2) and errs high. The limit
is ``NST_JAX_MEMORY_LIMIT_BYTES`` if set, else the accelerator's memory
(``memory_stats()["bytes_limit"]``) or, on CPU, ``MemAvailable`` from
``/proc/meminfo``.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp

from nst_jax._src import tiled
from nst_jax._src.objective import evaluation
from nst_jax._src.optimizers import label as optimizer_label
from nst_jax._src.optimizers import resolve as resolve_optimizer
from nst_jax._src.statistics import STATISTICS
from nst_jax._src.vgg import CONV_LAYERS, LAYERS, VGG19
from nst_jax.config import StylizeConfig, tile_alignment
from nst_jax.errors import NSTError

ENV_LIMIT = "NST_JAX_MEMORY_LIMIT_BYTES"
BACKWARD_FACTOR = 3
# A further sweep member's run state is held about this many times: the state carried through the
# level, the new state lax.map stacks beside it, and the step's temporaries. XLA's own accounting
# (``compiled.memory_analysis()``, arguments + outputs + temporaries - aliased) of the default
# preset's 128 px level grows by 2.6 states per member from 1 to 4 members; tests/test_memory.py
# holds the estimate above XLA's figure.
MEMBER_COPIES = 3
# Tile sizes the "too big" message may suggest, largest (least halo overhead) first.
SUGGESTED_TILE_SIZES = (1024, 512, 256)
_PARAM_BYTES = 4 * sum(9 * c_in * c_out + c_out for _, c_in, c_out in CONV_LAYERS)


def _activation_bytes(shape: tuple[int, ...], layers: tuple[str, ...], pooling: str) -> tuple[int, dict]:
    deepest = max(LAYERS.index(name) for name in layers)
    every = LAYERS[: deepest + 1]
    model = VGG19(outputs=every, pooling=pooling)
    params = {"params": {name: {"kernel": jax.ShapeDtypeStruct((3, 3, c_in, c_out), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((c_out,), jnp.float32)}
                         for name, c_in, c_out in CONV_LAYERS}}
    maps = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct(tuple(shape), jnp.float32))
    return sum(math.prod(m.shape) * 4 for m in maps.values()), maps


def estimate_bytes(config: StylizeConfig, shape: tuple[int, int, int],
                   style_shape: tuple[int, int, int] | None = None, *, members: int = 1) -> dict[str, float]:
    """Estimated peak memory of :func:`nst_jax.stylize`, by part.

    Args:
        config: The ``StylizeConfig``.
        shape: ``(H, W, 3)`` of the output.
        style_shape: ``(H, W, 3)`` of the style image, if any.
        members: Sweep members held on one device: each keeps its run state for the whole level
            (their evaluations run one group at a time, counted once: ``batch_size`` 1).

    Returns:
        ``{"activations", "optimizer", "targets", "params", "members", "style_pass", "total"}`` in
        bytes; ``total`` is the sum of the others (``members``: what the members after the first add;
        ``style_pass``: what the style image's forward pass needs beyond the activations).
    """
    activations, maps = _activation_bytes(shape, config.feature_layers, config.pooling)
    activations *= BACKWARD_FACTOR
    image = math.prod(shape) * 4
    tile_shape = None
    tiling = evaluation(config, shape) == "tiled"
    if tiling:
        grid = tiled.tile_grid(shape, config.tile_size, config.feature_layers)
        tile_shape = (grid.span, grid.span, shape[2])
        padded = (grid.rows * grid.tile + 2 * grid.halo) * (grid.cols * grid.tile + 2 * grid.halo) * shape[2] * 4
        activations = BACKWARD_FACTOR * _activation_bytes(tile_shape, config.feature_layers, config.pooling)[0] + (
            2 * padded)
    optimizer = resolve_optimizer(config.optimizer).state_images(config) * image
    targets = style_targets = 0
    if config.uses_content:
        targets += (2 if tiling else 1) * sum(
            math.prod(maps[name].shape) * 4 for name in config.content_layers)
    if config.uses_style:
        style_targets = sum(STATISTICS[config.style_loss].target_bytes(maps[name].shape[-1])
                            for name in config.style_layers)
        targets += style_targets
    # A member's RunState: the optimiser's images, the moving average, its style statistics.
    member_state = optimizer + image + style_targets
    style_pass = 0
    if style_shape:
        if evaluation(config, style_shape) == "tiled":
            span = tiled.tile_grid(style_shape, config.tile_size, config.feature_layers).span
            style_shape = (span, span, style_shape[2])
        style_pass = _activation_bytes(style_shape, config.style_layers,
                                       config.pooling)[0]
    parts = {"activations": activations, "optimizer": optimizer, "targets": targets,
             "params": _PARAM_BYTES, "members": MEMBER_COPIES * member_state * (members - 1)}
    # The style image's pass runs before the optimisation: what it needs beyond the activations' memory.
    parts["style_pass"] = max(0, style_pass - activations)
    parts["total"] = sum(parts.values())
    return parts


def memory_limit_from_env() -> int | None:
    """``NST_JAX_MEMORY_LIMIT_BYTES``, the memory limit a user sets (:func:`check_memory` reads it).

    Returns:
        The limit in bytes, or None where the variable is unset or empty.

    Raises:
        NSTError: If it is not a finite number of at least one byte (``1e9`` and ``2000000000`` are).
    """
    text = os.environ.get(ENV_LIMIT, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 1 <= value < 2**63):
        raise NSTError(f"{ENV_LIMIT} must be a positive, finite number of bytes (e.g. 8e9), got {text[:40]!r}")
    return int(value)


def available_bytes() -> tuple[int, str]:
    """The memory limit in bytes and where it came from."""
    limit = memory_limit_from_env()
    if limit is not None:
        return limit, ENV_LIMIT
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} memory"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available RAM"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(config: StylizeConfig, shape: tuple[int, int, int], style_shape: tuple[int, int, int] | None = None,
                 *, min_side: int = 32, members: int = 1) -> dict[str, float]:
    """Checks before any compute that a run fits in the memory available to it.

    Args:
        config: The run's ``StylizeConfig``.
        shape: ``(H, W, 3)`` of the optimised image (a plan's ``canvas``).
        style_shape: ``(H_s, W_s, 3)`` of the largest style image (None: the same as ``shape``).
        min_side: The smallest side a suggested smaller size may have.
        members: Sweep members held on one device (:func:`estimate_bytes`).

    Returns:
        The estimate in bytes by part (:func:`estimate_bytes`) when it fits.

    Raises:
        NSTError: If it would not fit: the message gives the estimate, the limit and a size (or a
            tile size) that fits.
    """
    parts = estimate_bytes(config, shape, style_shape, members=members)
    limit, source = available_bytes()
    if parts["total"] <= limit:
        return parts
    h, w = shape[:2]
    tile_hint = ""
    if not config.tile_size and (STATISTICS[config.style_loss].additive or not config.uses_style):
        align = tile_alignment(config.feature_layers)
        for size in SUGGESTED_TILE_SIZES:
            if size % align == 0 and size < max(h, w) and estimate_bytes(
                    dataclasses.replace(config, tile_size=size), shape, style_shape, members=members)["total"] <= limit:
                tile_hint = f"--tile-size {size} (same result, more compute), or "
                break
    scale = math.sqrt(limit / parts["total"])
    fit = None
    for _ in range(12):
        new = (max(1, int(h * scale)), max(1, int(w * scale)), shape[2])
        if min(new[:2]) < min_side:
            break
        style_new = None
        if style_shape:
            style_new = (max(1, int(style_shape[0] * scale)), max(1, int(style_shape[1] * scale)), style_shape[2])
        if estimate_bytes(config, new, style_new, members=members)["total"] <= limit:
            fit = max(new[:2])
            break
        scale *= 0.9
    if fit:
        hint = f"; try {tile_hint}--size {fit} or less"
    else:
        hint = f"; try {tile_hint.removesuffix(', or ')}" if tile_hint else "; no size of at least 32 px fits"
    style_hint = _style_scale_hint(config, shape, style_shape, parts, limit, members)
    shown = " + ".join(f"{name} {_gib(parts[key])}" for key, name in PART_NAMES.items() if parts[key])
    raise NSTError(
        f"a {w}x{h} {optimizer_label(config.optimizer)} run needs about {_gib(parts['total'])} ({shown}), "
        f"more than the {_gib(limit)} of {source}{style_hint or hint}")


PART_NAMES = {"activations": "activations", "optimizer": "optimiser state", "targets": "targets",
              "params": "VGG parameters", "members": "further sweep members", "style_pass": "style image pass"}


def _style_scale_hint(config: StylizeConfig, shape, style_shape, parts: dict, limit: int, members: int) -> str:
    """``"; try --style-scale S or less"`` where the style image's pass is what does not fit, else ``""``."""
    rest = parts["total"] - parts["style_pass"]
    if not (config.style_scale and style_shape and parts["style_pass"] and rest < limit):
        return ""
    scale = config.style_scale
    for _ in range(40):
        scale *= 0.9
        ratio = scale / config.style_scale
        smaller = (max(1, int(style_shape[0] * ratio)), max(1, int(style_shape[1] * ratio)), style_shape[2])
        if min(smaller[:2]) < 32:
            return ""
        if estimate_bytes(config, shape, smaller, members=members)["total"] <= limit:
            shown = math.floor(scale * 100) / 100
            return f"; the style image's pass is what does not fit: try --style-scale {shown:g} or less"
    return ""
