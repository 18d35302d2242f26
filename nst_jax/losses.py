"""Gatys et al. loss terms, written for one image, in two unit systems.

Notation of the paper: a layer with ``N`` filters and ``M = H * W`` positions has features
``F`` of shape ``[N, M]`` (here stored ``[H, W, N]``), Gram matrix ``G = F Fᵀ`` and target
``A`` (the style image's Gram, scaled to ``M`` positions).

``units="relative"`` (the library's default, :data:`nst_jax.config.LOSS_UNITS`): each term is
divided by its value at all-zero features, ``‖F − P‖² / ‖P‖²`` and ``‖G − A‖² / ‖A‖²``, and
the total variation is a mean per pixel value; none depends on the image size, the aspect
ratio or the scale of a layer's activations. ``units="paper"``: eq. 1 ``½ Σ (F − P)²``, eq. 4
``Σ (G − A)² / (4 N² M²)`` and a summed total variation.

Every function takes one image or feature map and refuses a batch (``jax.vmap`` over it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from nst_jax import checks
from nst_jax.errors import NSTError

UNITS = ("relative", "paper")
# Smallest normaliser of a relative term (an all-zero target would otherwise divide by zero).
_TINY = 1e-30


def _check_units(units: str) -> None:
    if units not in UNITS:
        raise NSTError(f"unknown loss units {units!r} (choose from {', '.join(UNITS)})")


def _relative(error: jax.Array, scale: jax.Array) -> jax.Array:
    return error / jnp.maximum(scale, _TINY)


def gram_matrix(features: jax.Array) -> jax.Array:
    """Unnormalised Gram matrix ``G = F Fᵀ`` (paper eq. 3).

    Args:
        features: ``[H, W, N]`` one feature map (``jax.vmap`` over a batch).

    Returns:
        ``[N, N]`` with ``G_ij = Σ_k F_ik F_jk`` summed over the ``M = H * W``
        positions; no division by ``M`` or ``N`` here (see :func:`style_layer_loss`).
    """
    checks.check_features(features, "gram_matrix's features")
    f = features.reshape(-1, features.shape[-1])
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)


def content_loss(features: jax.Array, target: jax.Array, *, units: str = "relative") -> jax.Array:
    """Content term of one layer: ``‖F − P‖² / ‖P‖²`` (relative) or the paper's eq. 1, ``½ Σ (F − P)²``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target: ``[H, W, N]`` features of the content photo, the same shape.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    checks.check_features(features, "content_loss's features")
    checks.check_same_shape(features, target, "content_loss: features and target")
    return content_factor(target, units=units) * jnp.sum(jnp.square(features - target))


def content_factor(target: jax.Array, *, units: str = "relative") -> jax.Array:
    """What :func:`content_loss` multiplies the summed squared error by: ``1 / ‖P‖²`` or ``½``.

    Sums of squared errors over parts of a map (tiles) times this factor add up to the loss.
    """
    _check_units(units)
    if units == "relative":
        return 1.0 / jnp.maximum(jnp.sum(jnp.square(target)), _TINY)
    return jnp.asarray(0.5, jnp.float32)


def style_layer_loss(features: jax.Array, target_gram: jax.Array, *, units: str = "relative") -> jax.Array:
    """Style term of one layer: ``‖G − A‖² / ‖A‖²`` (relative) or the paper's eq. 4,
    ``E_l = Σ (G − A)² / (4 N² M²)``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_gram: ``[N, N]`` Gram matrix ``A`` of the style image's features at this layer,
            summed over as many positions as ``features`` has (see
            :func:`nst_jax.compute_targets`, which rescales it).
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    h, w, n = checks.check_features(features, "style_layer_loss's features")
    if tuple(jnp.shape(target_gram)) != (n, n):
        raise NSTError(f"style_layer_loss: target Gram of shape {tuple(jnp.shape(target_gram))} for {n} filters")
    return gram_layer_loss(gram_matrix(features), target_gram, num_positions=h * w, units=units)


def gram_layer_loss(gram: jax.Array, target_gram: jax.Array, *, num_positions: int,
                    units: str = "relative") -> jax.Array:
    """:func:`style_layer_loss` from a Gram matrix already summed.

    Args:
        gram: ``[N, N]`` Gram matrix ``G`` of the image being optimised.
        target_gram: ``[N, N]`` target ``A``.
        num_positions: ``M``, the number of positions ``G`` sums over (paper units only).
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    _check_units(units)
    error = jnp.sum(jnp.square(gram - target_gram))
    if units == "relative":
        return _relative(error, jnp.sum(jnp.square(target_gram)))
    n = gram.shape[-1]
    return error / (4.0 * n**2 * num_positions**2)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layers: Sequence[str],
    layer_weights: jax.Array,
    *,
    units: str = "relative",
) -> jax.Array:
    """Paper eq. 5: ``Σ_l w_l E_l`` over ``layers``, each ``E_l`` a :func:`style_layer_loss`.

    Args:
        features: ``{layer: [H, W, N]}`` of the image being optimised.
        target_grams: ``{layer: [N, N]}``.
        layers: Layer names, in the order of ``layer_weights`` (a sequence, not a string).
        layer_weights: ``[L]`` weights ``w_l``, one per layer.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    layers = checks.layer_tuple(layers, "style_loss's layers")
    checks.check_layer_weights(layer_weights, layers, "style")
    return sum(layer_weights[i] * style_layer_loss(features[name], target_grams[name], units=units)
               for i, name in enumerate(layers))


def tv_loss(image: jax.Array, *, units: str = "relative") -> jax.Array:
    """Squared total variation ``Σ (x[i+1, j] − x[i, j])² + (x[i, j+1] − x[i, j])²`` of one image.

    Summed over channels and all neighbour pairs of the ``[H, W, C]`` image in its [0, 1]
    range (``"paper"``), or that sum divided by the ``H * W * C`` pixel values (``"relative"``).
    """
    _check_units(units)
    shape = checks.check_features(image, "tv_loss's image")
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    total = jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))
    return total / (shape[0] * shape[1] * shape[2]) if units == "relative" else total


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
    features: jax.Array, target_mean: jax.Array, target_cov: jax.Array, mask: jax.Array | None = None, *,
    units: str = "relative",
) -> jax.Array:
    """Mean-and-covariance matching: ``E_l = (‖C − C_s‖²_F + ‖μμᵀ − μ_sμ_sᵀ‖²_F) / (4 N²)``
    (paper-style units), or divided by its value at zero features, ``‖C_s‖²_F + ‖μ_sμ_sᵀ‖²_F``
    (relative).

    The Gram matrix per position of eq. 3 is ``G / M = C + μμᵀ``; this loss matches
    its two parts separately, each in the units of the Gram loss (features⁴), so
    the style weight β of the Gram loss carries over. For the non-negative ReLU
    features ``μμᵀ`` determines ``μ``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_mean: ``[N]`` mean of the style features.
        target_cov: ``[N, N]`` covariance of the style features (see :func:`feature_stats`).
        mask: Optional ``[H, W]`` region weights for the image's statistics.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    _check_units(units)
    n = features.shape[-1]
    mean, cov = feature_stats(features, mask)
    target_outer = jnp.outer(target_mean, target_mean)
    error = jnp.sum(jnp.square(cov - target_cov)) + jnp.sum(jnp.square(jnp.outer(mean, mean) - target_outer))
    if units == "relative":
        return _relative(error, jnp.sum(jnp.square(target_cov)) + jnp.sum(jnp.square(target_outer)))
    return error / (4.0 * n**2)


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
        features: ``[H, W, N]`` features of the image being optimised.
        target_mean: ``[N]`` mean of the style features.
        target_cov: ``[N, N]`` their covariance.
        target_cov_sqrt: ``[N, N]`` ``sqrtm_psd(target_cov)``, computed once.
        mask: Optional ``[H, W]`` region weights for the image's statistics.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    _check_units(units)
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
        return _relative(w2, jnp.sum(jnp.square(target_mean)) + jnp.trace(target_cov))
    return w2 / n
