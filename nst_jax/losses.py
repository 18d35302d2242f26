"""Gatys et al. loss terms, written for one image.

Notation of the paper: a layer with ``N`` filters and ``M = H * W`` positions
has features ``F`` of shape ``[N, M]`` (here stored ``[H, W, N]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array) -> jax.Array:
    """Unnormalised Gram matrix ``G = F Fᵀ`` (paper eq. 3).

    Args:
        features: ``[H, W, N]`` feature map.

    Returns:
        ``[N, N]`` with ``G_ij = Σ_k F_ik F_jk`` summed over the ``M = H * W``
        positions; no division by ``M`` or ``N`` here (see :func:`style_layer_loss`).
    """
    f = features.reshape(-1, features.shape[-1])
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Paper eq. 1: ``½ Σ (F − P)²``, a plain sum over all positions and filters.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target: ``[H, W, N]`` features of the content photo.

    Returns:
        Scalar loss.
    """
    return 0.5 * jnp.sum(jnp.square(features - target))


def style_layer_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Paper eq. 4: ``E_l = 1 / (4 N² M²) Σ (G − A)²``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_gram: ``[N, N]`` Gram matrix ``A`` of the style image's features
            at this layer (its own ``M`` may differ; ``M`` here is that of ``features``).

    Returns:
        Scalar loss.
    """
    h, w, _ = features.shape
    return gram_layer_loss(gram_matrix(features), target_gram, num_positions=h * w)


def gram_layer_loss(gram: jax.Array, target_gram: jax.Array, *, num_positions: int) -> jax.Array:
    """:func:`style_layer_loss` from a Gram matrix already summed: ``Σ (G − A)² / (4 N² M²)``.

    Args:
        gram: ``[N, N]`` Gram matrix ``G`` of the image being optimised.
        target_gram: ``[N, N]`` target ``A``.
        num_positions: ``M``, the number of positions ``G`` sums over.

    Returns:
        Scalar loss.
    """
    n = gram.shape[-1]
    return jnp.sum(jnp.square(gram - target_gram)) / (4.0 * n**2 * num_positions**2)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layers: Sequence[str],
    layer_weights: jax.Array,
) -> jax.Array:
    """Paper eq. 5: ``Σ_l w_l E_l``.

    Note the style image's Gram ``A`` sums over its own positions; when its size
    differs from the output's, the targets are rescaled by the caller (see
    ``nst_jax.optimize.compute_targets``) so that ``A`` is comparable to ``G``.

    Args:
        features: ``{layer: [H, W, N]}`` of the image being optimised.
        target_grams: ``{layer: [N, N]}``.
        layers: Layer names, in the order of ``layer_weights``.
        layer_weights: ``[L]`` weights ``w_l``.

    Returns:
        Scalar loss.
    """
    return sum(layer_weights[i] * style_layer_loss(features[name], target_grams[name]) for i, name in enumerate(layers))


def tv_loss(image: jax.Array) -> jax.Array:
    """Squared total variation: ``Σ (x[i+1, j] − x[i, j])² + (x[i, j+1] − x[i, j])²``.

    Summed over channels and all neighbour pairs of the ``[H, W, C]`` image in
    its [0, 1] RGB range.
    """
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    return jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))


# --- Alternative style statistics (``StylizeConfig.style_loss``) -------------------------------------------


def feature_stats(features: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance of a layer's features over positions.

    Args:
        features: ``[H, W, N]`` feature map.
        mask: Optional ``[H, W]`` non-negative position weights (a region); the
            statistics are then weighted: ``μ = Σ m f / Σ m``, ``C = Σ m (f − μ)(f − μ)ᵀ / Σ m``.

    Returns:
        ``(mean [N], cov [N, N])``; the covariance divides by the (weighted)
        number of positions, not by ``M − 1``.
    """
    f = features.reshape(-1, features.shape[-1])
    w = jnp.ones((f.shape[0],), f.dtype) if mask is None else mask.reshape(-1).astype(f.dtype)
    total = jnp.maximum(jnp.sum(w), 1e-8)
    mean = (w @ f) / total
    centred = f - mean
    cov = jnp.matmul((centred * w[:, None]).T, centred, precision=jax.lax.Precision.HIGHEST) / total
    return mean, cov


def meancov_layer_loss(
    features: jax.Array, target_mean: jax.Array, target_cov: jax.Array, mask: jax.Array | None = None,
) -> jax.Array:
    """Mean-and-covariance matching: ``E_l = (‖C − C_s‖²_F + ‖μμᵀ − μ_sμ_sᵀ‖²_F) / (4 N²)``.

    The Gram matrix per position of eq. 3 is ``G / M = C + μμᵀ``; this loss matches
    its two parts separately, each in the units of the Gram loss (features⁴), so
    the style weight β of the Gram loss carries over. For the non-negative ReLU
    features ``μμᵀ`` determines ``μ``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_mean: ``[N]`` mean of the style features.
        target_cov: ``[N, N]`` covariance of the style features (see :func:`feature_stats`).
        mask: Optional ``[H, W]`` region weights for the image's statistics.

    Returns:
        Scalar loss.
    """
    n = features.shape[-1]
    mean, cov = feature_stats(features, mask)
    outer = jnp.outer(mean, mean) - jnp.outer(target_mean, target_mean)
    return (jnp.sum(jnp.square(cov - target_cov)) + jnp.sum(jnp.square(outer))) / (4.0 * n**2)


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
    mask: jax.Array | None = None,
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
        features: ``[H, W, N]`` features of the image being optimised.
        target_mean: ``[N]`` mean of the style features.
        target_cov: ``[N, N]`` their covariance.
        target_cov_sqrt: ``[N, N]`` ``sqrtm_psd(target_cov)``, computed once.
        mask: Optional ``[H, W]`` region weights for the image's statistics.

    Returns:
        Scalar loss.
    """
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
    return w2 / n
