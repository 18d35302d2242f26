"""How good a style transfer is, in three ratios that need no reference output.

For an output image, its content photo and its style image (all RGB in [0, 1]), with VGG-19
feature maps ``F`` and per-position Gram matrices ``G = Fᵀ F / M``:

* **style ratio** (lower = more style): the mean over relu1_1 … relu5_1 of the relative Gram
  error ``‖G(out) − G(style)‖² / ‖G(style)‖²``, divided by the same mean for the content photo
  (so the photo itself scores 1 and the style image 0). The style image is resized to the
  output's pixel count, keeping its aspect ratio.
* **content ratio** (lower = more of the photo): the relative feature error at relu4_2,
  ``‖F(out) − F(photo)‖² / ‖F(photo)‖²``, divided by the same quantity for the style image
  resized to the output's exact size (the photo scores 0, the painting 1).
* **speckle ratio** (lower = smoother): the mean absolute discrete Laplacian of the output
  (4-neighbour, interior pixels, every channel), divided by the style image's at the output's
  pixel count (the style's own texture scores 1; pixel noise scores far above).

:func:`evaluate` computes all three; the other functions are their pure parts, tested against
NumPy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import checks, colour
from nst_jax.errors import NSTError
from nst_jax.vgg import VGGParams, extract_features

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
RATIOS = ("style_ratio", "content_ratio", "speckle_ratio")
_LAYERS = STYLE_LAYERS + (CONTENT_LAYER,)


def position_gram(features: jax.Array) -> jax.Array:
    """``Fᵀ F / M`` of one ``[H, W, N]`` map: the Gram matrix per position, ``[N, N]``."""
    h, w, n = checks.check_features(features)
    f = features.reshape(-1, n)
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST) / (h * w)


def relative_error(x: jax.Array, reference: jax.Array) -> jax.Array:
    """``‖x − reference‖² / ‖reference‖²``."""
    return jnp.sum(jnp.square(x - reference)) / jnp.sum(jnp.square(reference))


def gram_error(features: Mapping[str, jax.Array], style_features: Mapping[str, jax.Array],
               layers: Sequence[str] = STYLE_LAYERS) -> jax.Array:
    """The mean over ``layers`` of the relative error of ``features``' Grams against ``style_features``'."""
    return sum(relative_error(position_gram(features[name]), position_gram(style_features[name]))
               for name in layers) / len(layers)


def mean_abs_laplacian(image: jax.Array) -> jax.Array:
    """Mean of ``|4 x[i, j] − x[i−1, j] − x[i+1, j] − x[i, j−1] − x[i, j+1]|`` over interior pixels and channels."""
    checks.check_image(image)
    x = jnp.asarray(image, jnp.float32)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return jnp.mean(jnp.abs(lap))


def shape_for_pixels(shape: Sequence[int], pixels: int) -> tuple[int, int]:
    """``(H', W')`` with about ``pixels`` pixels and the aspect ratio of ``shape``."""
    h, w = shape[:2]
    scale = math.sqrt(pixels / (h * w))
    return max(1, round(h * scale)), max(1, round(w * scale))


@functools.partial(jax.jit, static_argnames=("layers",))
def _features(vgg: VGGParams, image: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
    return extract_features(vgg, image, layers=layers)


class Evaluator:
    """The three ratios for outputs of one shape against one content photo and style image.

    The photo's and the painting's features are computed once, so each output costs one VGG pass
    (a sweep's members, or the checkpoints of a run).

    Args:
        vgg: VGG-19 parameters (the shipped ImageNet ones make the ratios comparable between runs).
        content: ``[H_c, W_c, 3]`` the content photo (resized to ``shape`` if it differs).
        style: ``[H_s, W_s, 3]`` the style image, any size.
        shape: ``(H, W)`` of the outputs.
    """

    def __init__(self, vgg: VGGParams, *, content: np.ndarray, style: np.ndarray, shape: Sequence[int]):
        checks.check_image(content, "content image")
        checks.check_image(style, "style image")
        self.vgg: VGGParams = vgg
        self.shape: tuple[int, ...] = tuple(shape[:2])
        content = colour.resize(np.asarray(content, np.float32), self.shape)
        style = np.asarray(style, np.float32)
        style_same_pixels = colour.resize(style, shape_for_pixels(style.shape, self.shape[0] * self.shape[1]))
        style_same_shape = colour.resize(style, self.shape)
        f_photo, f_style, f_style_shape = (_features(vgg, jnp.asarray(x), _LAYERS) for x in (
            content, style_same_pixels, style_same_shape))
        self.f_photo: dict[str, jax.Array] = f_photo
        self.f_style: dict[str, jax.Array] = f_style
        self.photo_gram_error: jax.Array = gram_error(f_photo, f_style)
        self.painting_content_error: jax.Array = relative_error(f_style_shape[CONTENT_LAYER], f_photo[CONTENT_LAYER])
        self.style_speckle: jax.Array = mean_abs_laplacian(jnp.asarray(style_same_pixels))

    def __call__(self, output: np.ndarray) -> dict[str, float]:
        """``{"style_ratio", "content_ratio", "speckle_ratio"}`` of one ``[H, W, 3]`` output (clipped to [0, 1])."""
        checks.check_image(output, "output image")
        if tuple(np.shape(output)[:2]) != self.shape:
            raise NSTError(f"output of shape {np.shape(output)[:2]}, the evaluator's is {self.shape}")
        output = np.clip(np.asarray(output, np.float32), 0.0, 1.0)
        f_out = _features(self.vgg, jnp.asarray(output), _LAYERS)
        return {"style_ratio": float(gram_error(f_out, self.f_style) / self.photo_gram_error),
                "content_ratio": float(relative_error(f_out[CONTENT_LAYER], self.f_photo[CONTENT_LAYER])
                                       / self.painting_content_error),
                "speckle_ratio": float(mean_abs_laplacian(output) / self.style_speckle)}


def evaluate(vgg: VGGParams, *, content: np.ndarray, style: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """The three ratios of one output (see the module docstring and :class:`Evaluator`).

    Returns:
        ``{"style_ratio", "content_ratio", "speckle_ratio"}`` floats.
    """
    checks.check_image(output, "output image")
    return Evaluator(vgg, content=content, style=style, shape=np.shape(output))(output)
