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

import numpy as np
from numpy.typing import ArrayLike

from nst_jax.errors import NSTError

VMAP_HINT = "nst_jax functions take one example; use jax.vmap over a batch"


def _shape(x) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def check_float(x: ArrayLike, what: str) -> None:
    """Refuses integer and boolean arrays (uint8 pixels would come out 255 times too large)."""
    dtype = _dtype(x)
    if not np.issubdtype(dtype, np.floating):
        hint = " (scale 8-bit pixels to [0, 1] floats: x / 255.0)" if np.issubdtype(dtype, np.integer) else ""
        raise NSTError(f"{what} must be a float array, got {dtype}{hint}")


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
    (:func:`nst_jax.objective.evaluation`): so a run is refused before anything is computed, and
    a multi-scale run is not refused at its first tiled level after its smaller levels ran.

    Raises:
        NSTError: If both are given.
    """
    if masks is not None and tile_size:
        raise NSTError("region masks are not supported with tiled evaluation (tile size > 0)")
