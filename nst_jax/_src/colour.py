"""Keeping the content's colours (Gatys, Bethge, Hertzmann & Shechtman, "Controlling Perceptual
Factors in Neural Style Transfer", CVPR 2017, section 5), and resizing arrays.

Two ways, both pure functions of ``[H, W, 3]`` RGB in [0, 1]:

* **luminance-only transfer**: the optimisation sees only luminance images (Y of YIQ,
  replicated to three channels), the style's luminance affinely matched to the content's
  mean and standard deviation; the result's Y is then recombined with the content's I and Q
  (:func:`luminance_image`, :func:`recombine_luminance`; applied by :func:`nst_jax._src.plan.optimised_inputs`
  and :func:`nst_jax._src.plan.finish_image`);
* **colour matching**: before the transfer the style image's colours are mapped linearly so
  their mean and covariance equal the content's, ``x' = A (x − μ_s) + μ_c`` with
  ``A = Σ_c^{1/2} Σ_s^{-1/2}`` (symmetric square roots, the paper's "image analogies" variant)
  (:func:`match_colour`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# NTSC YIQ (rows: Y, I, Q) from RGB.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` RGB to YIQ (Y in [0, 1]; I, Q the chroma, about ±0.6)."""
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yiq` (not clipped)."""
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def luminance_image(rgb: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """The luminance Y of ``rgb`` as a grey RGB image ``[H, W, 3]`` float32.

    Args:
        rgb: ``[H, W, 3]`` RGB in [0, 1].
        like: If given, Y is affinely mapped to the mean and standard deviation of this
            image's Y (the paper's luminance matching of the style to the content).
    """
    y = rgb_to_yiq(rgb)[..., 0]
    if like is not None:
        ref = rgb_to_yiq(like)[..., 0]
        y = (y - y.mean()) / max(y.std(), 1e-6) * ref.std() + ref.mean()
    return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, -1).astype(np.float32)


def recombine_luminance(output: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The luminance of ``output`` with the chroma (I, Q) of ``content``, RGB clipped to [0, 1], float32."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(output)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-8) ** power) @ vectors.T


def match_colour(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``source``'s colours mapped so their mean and covariance equal ``reference``'s.

    Args:
        source: ``[H_s, W_s, 3]`` RGB in [0, 1] (the style image).
        reference: ``[H, W, 3]`` RGB in [0, 1] (the content photo).

    Returns:
        ``[H_s, W_s, 3]`` float32, clipped to [0, 1] (clipping may move the statistics slightly).
    """
    src = np.asarray(source, np.float64).reshape(-1, 3)
    ref = np.asarray(reference, np.float64).reshape(-1, 3)
    mu_s, mu_r = src.mean(0), ref.mean(0)
    cov_s = np.cov(src, rowvar=False, bias=True) + 1e-5 * np.eye(3)
    cov_r = np.cov(ref, rowvar=False, bias=True) + 1e-5 * np.eye(3)
    a = _sym_power(cov_r, 0.5) @ _sym_power(cov_s, -0.5)
    out = (src - mu_s) @ a.T + mu_r
    return np.clip(out, 0.0, 1.0).reshape(np.shape(source)).astype(np.float32)


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resizes ``[H, W, C]`` (or ``[H, W]``) to ``shape = (H', W')``: Lanczos-3, antialiased when shrinking.

    Values are clipped to the input's range (Lanczos overshoots at edges). Returns float32.
    """
    arr = np.asarray(image, np.float32)
    if tuple(arr.shape[:2]) == tuple(shape):
        return arr
    out = jax.image.resize(jnp.asarray(arr), tuple(shape) + arr.shape[2:], "lanczos3", antialias=True)
    return np.clip(np.asarray(out), arr.min(), arr.max())


def shape_for_longest(shape: tuple[int, ...], longest: int) -> tuple[int, int]:
    """``(H', W')`` with the longest side ``longest`` and the aspect ratio of ``shape`` (rounded, ≥ 1)."""
    h, w = shape[:2]
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))
