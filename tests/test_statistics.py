"""Alternative style statistics (mean + covariance, Wasserstein-2) against NumPy/SciPy, and the
stable matrix square root."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from nst_jax.statistics import meancov
from nst_jax.statistics import w2 as wasserstein

from .conftest import np_stats


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    # ReLU-like non-negative features, fewer positions than filters in the second (rank deficient).
    return (np.maximum(rng.normal(size=(6, 5, 4)), 0).astype(np.float32),
            np.maximum(rng.normal(size=(7, 4, 4)) + 0.5, 0).astype(np.float32))



def test_feature_stats_against_numpy(feats):
    f, _ = feats
    mask = np.random.default_rng(1).uniform(size=f.shape[:2]).astype(np.float32)
    for m in (None, mask):
        mu, c = jax.jit(meancov.feature_stats)(f, m)
        mu_np, c_np = np_stats(f, m)
        np.testing.assert_allclose(mu, mu_np, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, c_np, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np_stats(f)[1], np.cov(f.reshape(-1, 4), rowvar=False, bias=True), atol=1e-12)


def test_meancov_loss_against_numpy(feats):
    f, s = feats
    mu_s, c_s = np_stats(s)
    mu, c = np_stats(f)
    n = 4
    error = np.sum((c - c_s) ** 2) + np.sum((np.outer(mu, mu) - np.outer(mu_s, mu_s)) ** 2)
    paper = jax.jit(functools.partial(meancov.meancov_layer_loss, units="paper"))
    np.testing.assert_allclose(paper(f, jnp.float32(mu_s), jnp.float32(c_s)), error / (4 * n**2), rtol=1e-4)
    relative = jax.jit(meancov.meancov_layer_loss)(f, jnp.float32(mu_s), jnp.float32(c_s))
    np.testing.assert_allclose(relative, error / (np.sum(c_s**2) + np.sum(np.outer(mu_s, mu_s) ** 2)), rtol=1e-4)
    assert float(meancov.meancov_layer_loss(s, *map(jnp.float32, np_stats(s)))) < 1e-10


def test_sqrtm_against_scipy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 6))
    spd = a @ a.T + 0.1 * np.eye(6)
    np.testing.assert_allclose(jax.jit(wasserstein.sqrtm_psd)(spd.astype(np.float32)), scipy.linalg.sqrtm(spd).real,
                               rtol=1e-3, atol=1e-4)


def test_w2_loss_against_scipy(feats):
    f, s = feats
    mu_s, c_s = np_stats(s)
    mu, c = np_stats(f)
    root = scipy.linalg.sqrtm(c_s).real
    cross = scipy.linalg.sqrtm(root @ c @ root).real
    w2 = np.sum((mu - mu_s) ** 2) + np.trace(c) + np.trace(c_s) - 2 * np.trace(cross)
    args = [jnp.float32(x) for x in (mu_s, c_s, root)]
    got = jax.jit(functools.partial(wasserstein.w2_layer_loss, units="paper"))(f, *args)
    np.testing.assert_allclose(got, w2 / 4, rtol=1e-3, atol=1e-4)
    got = jax.jit(wasserstein.w2_layer_loss)(f, *args)
    np.testing.assert_allclose(got, w2 / (np.sum(mu_s**2) + np.trace(c_s)), rtol=1e-3, atol=1e-4)
    # W2 of a Gaussian with itself is 0 (up to float32 round-off of the square roots).
    self_args = [jnp.float32(x) for x in (mu, c, scipy.linalg.sqrtm(c).real)]
    assert abs(float(wasserstein.w2_layer_loss(f, *self_args, units="paper"))) < 1e-3 * np.trace(c)


def test_trace_sqrtm_gradient_is_stable_and_correct():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 5))
    spd = a @ a.T + 0.5 * np.eye(5)
    np.testing.assert_allclose(jax.jit(wasserstein.trace_sqrtm_psd)(jnp.float32(spd)),
                               np.trace(scipy.linalg.sqrtm(spd).real), rtol=1e-5)
    grad = jax.grad(wasserstein.trace_sqrtm_psd)(jnp.float32(spd))
    np.testing.assert_allclose(grad, 0.5 * np.linalg.inv(scipy.linalg.sqrtm(spd).real), rtol=1e-3, atol=1e-4)
    # Rank one, repeated zero eigenvalues: autodiff through eigh gives NaN, this does not.
    low = np.outer(a[0], a[0])
    assert np.isfinite(np.asarray(jax.grad(wasserstein.trace_sqrtm_psd)(jnp.float32(low)))).all()
