"""Loss terms against NumPy, each computed under jax.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses

RTOL = 1e-5


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 7, 4)).astype(np.float32), rng.normal(size=(5, 7, 4)).astype(np.float32)


def test_gram_matrix_is_sum_over_positions(feats):
    f, _ = feats
    expected = np.einsum("hwi,hwj->ij", f.astype(np.float64), f.astype(np.float64))
    np.testing.assert_allclose(jax.jit(losses.gram_matrix)(f), expected, rtol=RTOL, atol=1e-5)


def test_content_loss_is_half_sum_of_squares(feats):
    f, p = feats
    expected = 0.5 * np.sum((f.astype(np.float64) - p) ** 2)
    np.testing.assert_allclose(jax.jit(losses.content_loss)(f, p), expected, rtol=RTOL)


def test_style_layer_loss_paper_normalisation(feats):
    f, s = feats
    n, m = 4, 5 * 7
    f64, s64 = f.reshape(m, n).astype(np.float64), s.reshape(m, n).astype(np.float64)
    g, a = f64.T @ f64, s64.T @ s64
    expected = np.sum((g - a) ** 2) / (4 * n**2 * m**2)
    got = jax.jit(losses.style_layer_loss)(f, jnp.asarray(a, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_style_loss_weights_layers(feats):
    f, s = feats
    g = {"a": losses.gram_matrix(s), "b": losses.gram_matrix(s * 2)}
    fs = {"a": f, "b": f[:3, :3]}
    w = jnp.array([0.25, 3.0])
    expected = 0.25 * losses.style_layer_loss(f, g["a"]) + 3.0 * losses.style_layer_loss(f[:3, :3], g["b"])
    got = jax.jit(losses.style_loss, static_argnums=2)(fs, g, ("a", "b"), w)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    assert float(losses.style_layer_loss(s, losses.gram_matrix(s))) == 0.0


def test_tv_loss_against_loops():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 6, 3)).astype(np.float64)
    expected = 0.0
    for i in range(4):
        for j in range(6):
            if i + 1 < 4:
                expected += np.sum((x[i + 1, j] - x[i, j]) ** 2)
            if j + 1 < 6:
                expected += np.sum((x[i, j + 1] - x[i, j]) ** 2)
    np.testing.assert_allclose(jax.jit(losses.tv_loss)(x.astype(np.float32)), expected, rtol=RTOL)
    assert float(losses.tv_loss(np.full((4, 6, 3), 0.3, np.float32))) == 0.0
