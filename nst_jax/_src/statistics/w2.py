"""Wasserstein-2 distance between Gaussian fits of a layer's features.

``E_l = (‖μ − μ_s‖² + tr C + tr C_s − 2 tr √(C_s^{1/2} C C_s^{1/2})) / N``, the closed form of
``W₂²(N(μ, C), N(μ_s, C_s))`` divided by the number of filters ``N`` (paper-style units), or
divided by its value at zero features, ``‖μ_s‖² + tr C_s`` (relative). It is in feature² units
(the Gram loss is in feature⁴), so in paper units it wants a larger style weight. Several styles
blend as the mixture of their distributions (:func:`nst_jax._src.statistics.meancov.mixture`); the
reference's covariance square root is computed once per run (``finish``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax._src.statistics import meancov
from nst_jax._src.statistics.base import Arrays, Statistic, check_units, relative


def sqrtm_psd(matrix: jax.Array) -> jax.Array:
    """Symmetric square root ``S`` of a PSD matrix (``S S = A``), via ``eigh`` of its symmetric part.

    Negative eigenvalues (round-off) are clamped to 0. Used on constant targets only
    (not differentiated).

    Args:
        matrix: ``[N, N]`` symmetric positive semi-definite.

    Returns:
        ``[N, N]`` symmetric square root.
    """
    values, vectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
    return jnp.matmul(vectors * jnp.sqrt(jnp.maximum(values, 0.0)), vectors.T, precision=jax.lax.Precision.HIGHEST)


# Eigenvalues below this fraction of the largest are float32 round-off of ``eigh`` (its absolute error
# is about 1e-7·λ_max); the gradient ``½ A^{-1/2}`` treats them as this floor.
EIG_FLOOR = 1e-6


@jax.custom_vjp
def trace_sqrtm_psd(matrix: jax.Array) -> jax.Array:
    """``tr √A = Σ √λ_i`` of a symmetric PSD matrix ``[N, N]``, with a stable gradient.

    One ``eigh`` of the symmetric part (negative round-off eigenvalues count as 0). The
    gradient is ``½ U diag(1 / √max(λ, EIG_FLOOR·λ_max)) Uᵀ``: it avoids autodiff through
    eigenvectors, which divides by eigenvalue gaps and is NaN for the repeated (near-)zero
    eigenvalues of rank-deficient feature covariances, and bounds it where ``λ`` is round-off.
    """
    values = jnp.linalg.eigvalsh(0.5 * (matrix + matrix.T))
    return jnp.sum(jnp.sqrt(jnp.maximum(values, 0.0)))


def _trace_sqrtm_fwd(matrix):
    values, vectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
    return jnp.sum(jnp.sqrt(jnp.maximum(values, 0.0))), (values, vectors)


def _trace_sqrtm_bwd(residuals, g):
    values, vectors = residuals
    floor = EIG_FLOOR * jnp.maximum(jnp.max(values), 1e-30)
    scale = 0.5 / jnp.sqrt(jnp.maximum(values, floor))
    return (g * jnp.matmul(vectors * scale, vectors.T, precision=jax.lax.Precision.HIGHEST),)


trace_sqrtm_psd.defvjp(_trace_sqrtm_fwd, _trace_sqrtm_bwd)


def w2_layer_loss(
    features: jax.Array, target_mean: jax.Array, target_cov: jax.Array, target_cov_sqrt: jax.Array,
    mask: jax.Array | None = None, *, units: str = "relative",
) -> jax.Array:
    """Squared Wasserstein-2 distance between Gaussian fits of the features, per filter.

    ``E_l = (‖μ − μ_s‖² + tr C + tr C_s − 2 tr √(C_s^{1/2} C C_s^{1/2})) / N``, the closed
    form of ``W₂²(N(μ, C), N(μ_s, C_s))`` divided by the number of filters ``N``. It is in
    feature² units (the Gram loss is in feature⁴), so it wants a larger style weight β.

    Numerics: ``C_s^{1/2} C C_s^{1/2}`` is formed in float32 and its square root's trace taken
    by one ``eigh`` (:func:`trace_sqrtm_psd`). For VGG features that matrix is very badly
    conditioned (about 1e11 at relu1_1), so its smallest eigenvalues are round-off and the
    value carries a relative error of about 1e-2 (measured against SciPy in float64); an SVD
    of the ``[M, N]`` whitened features would be better conditioned but is 10-100x slower
    on CPU, which the optimisation loop cannot afford.

    Args:
        features: ``[H, W, N]`` output features.
        target_mean: ``[N]`` and ``target_cov`` ``[N, N]``: the style's Gaussian fit.
        target_cov: See ``target_mean``.
        target_cov_sqrt: ``[N, N]`` ``sqrtm_psd(target_cov)``, computed once.
        mask: Optional ``[H, W]`` position weights (a region) of the output's fit.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        The scalar ``E_l``.
    """
    check_units(units)
    n = features.shape[-1]
    f = features.reshape(-1, n)
    w = jnp.ones((f.shape[0],), f.dtype) if mask is None else mask.reshape(-1).astype(f.dtype)
    total = jnp.maximum(jnp.sum(w), 1e-8)
    mean = (w @ f) / total
    centred = (f - mean) * jnp.sqrt(w / total)[:, None]
    hi = jax.lax.Precision.HIGHEST
    x = jnp.matmul(centred, target_cov_sqrt, precision=hi)  # xᵀx = C_s^{1/2} C C_s^{1/2}
    w2 = (jnp.sum(jnp.square(mean - target_mean)) + jnp.sum(jnp.square(centred)) + jnp.trace(target_cov)
          - 2.0 * trace_sqrtm_psd(jnp.matmul(x.T, x, precision=hi)))
    if units == "relative":
        return relative(w2, jnp.sum(jnp.square(target_mean)) + jnp.trace(target_cov))
    return w2 / n


def _finish(reference: Arrays) -> dict[str, jax.Array]:
    cov = reference["cov"]
    return {**reference, "cov_sqrt": (jax.vmap(sqrtm_psd) if cov.ndim == 3 else sqrtm_psd)(cov)}


def _loss(features: jax.Array, reference: Arrays, mask: jax.Array | None, units: str) -> jax.Array:
    return w2_layer_loss(features, reference["mean"], reference["cov"], reference["cov_sqrt"], mask, units=units)


STATISTIC = Statistic(
    name="w2", help="Wasserstein-2 distance between Gaussian fits",
    summary=meancov.summary, target=meancov.target, blend=meancov.mixture, loss=_loss, finish=_finish,
    target_bytes=lambda n: 4 * (2 * n * n + n))
