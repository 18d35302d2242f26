"""Guards at the public boundary: shapes, dtypes and names checked before anything is computed.

Every public function of nst_jax works on one image ``[H, W, 3]`` (or one feature map
``[H, W, N]``); batches and sweeps are ``jax.vmap`` at the call site, under which these
functions see one example again. A 4-D array is refused with that hint rather than silently
summed over its batch. The checks read only static shapes and dtypes, so they cost nothing
under ``jax.jit`` and work on tracers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from numpy.typing import ArrayLike

from nst_jax.errors import NSTError

VMAP_HINT = "nst_jax functions take one example; use jax.vmap over a batch"


def _shape(x) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


# The value ranges an image may come in (`input_range`), each mapped to [0, 1] before the network.
INPUT_RANGES: dict[str, tuple[float, float]] = {"0-1": (0.0, 1.0), "-1-1": (-1.0, 1.0), "0-255": (0.0, 255.0)}
# How far outside its range, as a fraction of the range's width, an image may reach before it is refused:
# wide enough for a generator's unclipped output or a resampled image's overshoot, narrow enough to catch
# 0-255 pixels, a [-1, 1] output and mean-subtracted (preprocessed) input given as [0, 1].
RANGE_SLACK = 0.5
RANGE_CHECKS = ("concrete", "checkify", "off")


def check_input_range(input_range: str) -> tuple[float, float]:
    """The ``(low, high)`` of an ``input_range`` name; an unknown name is refused."""
    if not isinstance(input_range, str) or input_range not in INPUT_RANGES:
        raise NSTError(f"unknown input range {input_range!r} (choose from {', '.join(INPUT_RANGES)})")
    return INPUT_RANGES[input_range]


def _likely_cause(lo: float, hi: float, input_range: str, settable: bool) -> str:
    """What an image with values in ``[lo, hi]``, refused for ``input_range``, most likely is, and the
    fix (``settable``: the function takes ``input_range``)."""
    if lo < -20 and hi > 20:
        return "it looks already preprocessed for VGG (mean subtracted); pass the RGB image"
    if lo < -0.5 and hi <= 3.0 and input_range != "-1-1":
        if lo >= -1.01 and hi <= 1.01:
            fix = "pass input_range='-1-1'" if settable else "map it with (x + 1) / 2"
            return f"it looks like a [-1, 1] (tanh) output; {fix}"
        return "it looks ImageNet-normalised (mean and std applied); pass the RGB image"
    if hi > 2.0 and lo >= -1.0 and input_range != "0-255":
        fix = "pass input_range='0-255' or divide by 255" if settable else "divide by 255"
        return f"it looks like 0-255 pixels; {fix}"
    return f"pass the input_range it is in ({', '.join(INPUT_RANGES)})" if settable else "give RGB in [0, 1]"


def check_range(x: ArrayLike, input_range: str, what: str, mode: str = "concrete", *, settable: bool = True) -> None:
    """Refuses an image clearly outside ``input_range`` (beyond :data:`RANGE_SLACK` of its width), naming
    the likely cause: 0-255 pixels, a [-1, 1] output, or an already preprocessed image.

    A concrete array (NumPy, or a JAX array outside a trace) is checked on the host (one min and
    max). A traced one (under ``jax.jit``, ``jax.grad``, ``jax.vmap``) is checked only with
    ``mode="checkify"``, as a :func:`jax.experimental.checkify.check` that the caller turns into
    an error with ``checkify.checkify(f, errors=checkify.user_checks)``; otherwise it passes.

    Args:
        x: The image.
        input_range: A key of :data:`INPUT_RANGES`.
        what: Its name in the message.
        mode: ``"concrete"`` (default), ``"checkify"`` or ``"off"``.
        settable: Whether the caller's function takes ``input_range`` (the message's advice).

    Raises:
        NSTError: On a concrete image out of range, an unknown range or mode.
    """
    low, high = check_input_range(input_range)
    if mode not in RANGE_CHECKS:
        raise NSTError(f"unknown range check {mode!r} (choose from {', '.join(RANGE_CHECKS)})")
    slack = RANGE_SLACK * (high - low)
    if mode == "off" or np.size(x) == 0:
        return
    if isinstance(x, jax.core.Tracer):
        if mode == "checkify":
            xs = jnp.asarray(x)
            checkify.check((jnp.min(xs) >= low - slack) & (jnp.max(xs) <= high + slack),
                           f"{what} has values from {{lo}} to {{hi}}, outside its input range {input_range}",
                           lo=jnp.min(xs).astype(jnp.float32), hi=jnp.max(xs).astype(jnp.float32))
        return
    arr = np.asarray(x, np.float32)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise NSTError(f"{what} holds NaN or Inf")
    if lo < low - slack or hi > high + slack:
        raise NSTError(f"{what} has values from {lo:.3g} to {hi:.3g}, outside its input range {input_range}: "
                       f"{_likely_cause(lo, hi, input_range, settable)}")


HALF_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def check_float(x: ArrayLike, what: str) -> None:
    """Refuses integer, boolean and complex arrays (uint8 pixels would come out 255 times too large);
    every real floating dtype passes, bfloat16 included (which ``np.issubdtype`` does not count)."""
    dtype = _dtype(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        hint = " (scale 8-bit pixels to [0, 1] floats: x / 255.0)" if np.issubdtype(dtype, np.integer) else ""
        raise NSTError(f"{what} must be a float array, got {dtype}{hint}")


def compute_dtype(x: ArrayLike) -> Any:
    """The dtype nst_jax computes in for an input of ``x``'s dtype: float32 for half precision
    (bfloat16, float16) and float32, float64 for float64 (which JAX keeps only with x64 on)."""
    dtype = _dtype(x)
    return jnp.float64 if dtype == np.float64 and jax.config.jax_enable_x64 else jnp.float32


def promote_half(x: ArrayLike) -> jax.Array:
    """``x`` as a JAX array, bfloat16 and float16 promoted to float32 (sums of squares in half
    precision lose most of their digits)."""
    x = jnp.asarray(x)
    return x.astype(jnp.float32) if x.dtype in HALF_DTYPES else x


def check_image(x: ArrayLike, what: str = "image") -> tuple[int, int, int]:
    """``x`` must be one float RGB image ``[H, W, 3]``; returns its shape."""
    shape = _shape(x)
    if len(shape) == 4:
        raise NSTError(f"{what} has shape {shape}: one [H, W, 3] image expected ({VMAP_HINT})")
    if len(shape) != 3 or shape[-1] != 3:
        raise NSTError(f"{what} must be [H, W, 3] RGB, got shape {shape}")
    check_float(x, what)
    return shape


def check_features(x: ArrayLike, what: str = "features") -> tuple[int, int, int]:
    """``x`` must be one float feature map ``[H, W, N]``; returns its shape."""
    shape = _shape(x)
    if len(shape) != 3:
        hint = f" ({VMAP_HINT})" if len(shape) == 4 else ""
        raise NSTError(f"{what} must be one [H, W, N] feature map, got shape {shape}{hint}")
    check_float(x, what)
    return shape


def check_same_shape(a: ArrayLike, b: ArrayLike, what: str) -> None:
    """``a`` and ``b`` must have one shape (``what`` names them in the error)."""
    if _shape(a) != _shape(b):
        raise NSTError(f"{what}: shapes {_shape(a)} and {_shape(b)} differ")


def layer_tuple(layers: str | Iterable[str], what: str = "layers") -> tuple[str, ...]:
    """``layers`` as a tuple of names; a bare string is refused (it would iterate as characters)."""
    if isinstance(layers, str):
        raise NSTError(f"{what} must be a sequence of layer names, not the string {layers!r}; use ({layers!r},)")
    try:
        names = tuple(layers)
    except TypeError:
        raise NSTError(f"{what} must be a sequence of layer names, got {type(layers).__name__}") from None
    if not all(isinstance(n, str) for n in names):
        raise NSTError(f"{what} must be layer names (strings), got {names!r}")
    return names


def check_layer_weights(weights: Any, layers: Sequence[str], what: str) -> None:
    """One weight per layer: a ``[L]`` array for ``L`` layers."""
    shape = _shape(weights)
    if shape != (len(layers),):
        got = shape[0] if len(shape) == 1 else f"an array of shape {shape} as"
        raise NSTError(f"{got} {what} layer weights given for {len(layers)} {what} layers")


def check_masks_untiled(tile_size: int, masks: Any) -> None:
    """The rule for region masks with tiled evaluation, the one place it is stated: refused
    whenever ``masks`` are given and ``tile_size`` is set.

    Masks are not supported tile by tile (their pyramid and per-region statistics are of the
    whole map). The rule reads the settings only, not the image's size, though a tile size at
    least the image's longest side gives a one-pass evaluation
    (:func:`nst_jax._src.objective.evaluation`): so a run is refused before anything is computed, and
    a multi-scale run is not refused at its first tiled level after its smaller levels ran.

    Raises:
        NSTError: If both are given.
    """
    if masks is not None and tile_size:
        raise NSTError("region masks are not supported with tiled evaluation (tile size > 0)")
