"""Loss terms against NumPy, each computed under jax.jit, in both unit systems; the guards."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax._src import losses

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
    np.testing.assert_allclose(jax.jit(functools.partial(losses.content_loss, units="paper"))(f, p), expected,
                               rtol=RTOL)


def test_style_layer_loss_paper_normalisation(feats):
    f, s = feats
    n, m = 4, 5 * 7
    f64, s64 = f.reshape(m, n).astype(np.float64), s.reshape(m, n).astype(np.float64)
    g, a = f64.T @ f64, s64.T @ s64
    expected = np.sum((g - a) ** 2) / (4 * n**2 * m**2)
    got = jax.jit(functools.partial(losses.style_layer_loss, units="paper"))(f, jnp.asarray(a, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_style_loss_weights_layers(feats):
    f, s = feats
    g = {"a": losses.gram_matrix(s), "b": losses.gram_matrix(s * 2)}
    fs = {"a": f, "b": f[:3, :3]}
    w = jnp.array([0.25, 3.0])
    for units in losses.UNITS:
        expected = (0.25 * losses.style_layer_loss(f, g["a"], units=units)
                    + 3.0 * losses.style_layer_loss(f[:3, :3], g["b"], units=units))
        got = jax.jit(functools.partial(losses.style_loss, units=units), static_argnums=2)(fs, g, ("a", "b"), w)
        np.testing.assert_allclose(got, expected, rtol=RTOL)
        assert float(losses.style_layer_loss(s, losses.gram_matrix(s), units=units)) == 0.0


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
    tv = jax.jit(losses.tv_loss, static_argnames="units")
    np.testing.assert_allclose(tv(x.astype(np.float32), units="paper"), expected, rtol=RTOL)
    np.testing.assert_allclose(tv(x.astype(np.float32), units="relative"), expected / (4 * 6 * 3), rtol=RTOL)
    assert float(losses.tv_loss(np.full((4, 6, 3), 0.3, np.float32))) == 0.0


@pytest.mark.parametrize("units", ["relative", "paper"])
def test_tv_loss_inside_an_extent_is_the_crops(units):
    """On a canvas larger than the output (a shape bucket), the pixels outside the extent do not count."""
    canvas = np.random.default_rng(2).uniform(size=(8, 12, 3)).astype(np.float32)
    tv = jax.jit(lambda x, e: losses.tv_loss(x, units=units, extent=e))
    for extent in [(5, 7), (8, 12), (1, 12), (8, 1)]:
        want = losses.tv_loss(canvas[: extent[0], : extent[1]], units=units)
        np.testing.assert_allclose(tv(canvas, jnp.asarray(extent)), want, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(losses.tv_loss(canvas, units=units, extent=(8, 12)), losses.tv_loss(canvas, units=units),
                               rtol=RTOL)


def test_relative_units_divide_by_the_value_at_zero_features(feats):
    f, p = feats
    f64, p64 = f.astype(np.float64), p.astype(np.float64)
    np.testing.assert_allclose(jax.jit(losses.content_loss)(f, p), np.sum((f64 - p64) ** 2) / np.sum(p64**2),
                               rtol=RTOL)
    m, n = 5 * 7, 4
    g, a = f64.reshape(m, n).T @ f64.reshape(m, n), p64.reshape(m, n).T @ p64.reshape(m, n)
    np.testing.assert_allclose(jax.jit(losses.style_layer_loss)(f, jnp.asarray(a, jnp.float32)),
                               np.sum((g - a) ** 2) / np.sum(a**2), rtol=1e-4)
    # A blank feature map scores exactly 1 on either term.
    zeros = np.zeros_like(f)
    np.testing.assert_allclose(losses.content_loss(zeros, p), 1.0, rtol=1e-6)
    np.testing.assert_allclose(losses.style_layer_loss(zeros, jnp.asarray(a, jnp.float32)), 1.0, rtol=1e-6)


def test_relative_units_ignore_size_and_scale(feats):
    """Tiling a feature map (more positions) or scaling it leaves the relative terms unchanged;
    the paper's content term grows with the positions."""
    f, p = feats
    f2, p2 = np.concatenate([f, f], axis=0), np.concatenate([p, p], axis=0)
    for fn in (losses.content_loss,):
        np.testing.assert_allclose(fn(f2, p2), fn(f, p), rtol=1e-5)
        np.testing.assert_allclose(fn(3 * f, 3 * p), fn(f, p), rtol=1e-5)
    np.testing.assert_allclose(losses.content_loss(f2, p2, units="paper"), 2 * losses.content_loss(f, p, units="paper"),
                               rtol=1e-5)
    a, a2 = losses.gram_matrix(p), losses.gram_matrix(p2)
    np.testing.assert_allclose(losses.style_layer_loss(f2, a2), losses.style_layer_loss(f, a), rtol=1e-5)
    np.testing.assert_allclose(losses.style_layer_loss(f2, a2, units="paper"),
                               losses.style_layer_loss(f, a, units="paper"), rtol=1e-5)  # eq. 4 is per position too
    np.testing.assert_allclose(losses.tv_loss(np.tile(f[..., :3], (2, 2, 1))),
                               losses.tv_loss(f[..., :3]), rtol=0.3)  # per pixel: same order of magnitude


@pytest.mark.parametrize("call,needle", [
    (lambda f, p: losses.gram_matrix(f[None]), "jax.vmap"),
    (lambda f, p: losses.gram_matrix(f[0]), r"one \[H, W, N\] feature map"),
    (lambda f, p: losses.content_loss(f, p[:4]), r"shapes \(5, 7, 4\) and \(4, 7, 4\) differ"),
    (lambda f, p: losses.content_loss(f.astype(np.int32), p), "float array"),
    (lambda f, p: losses.style_loss({"a": f}, {"a": losses.gram_matrix(p)}, ("a",), jnp.ones(2)),
     "2 style layer weights given for 1 style layers"),
    (lambda f, p: losses.style_loss({"a": f}, {"a": losses.gram_matrix(p)}, "a", jnp.ones(1)), "not the string"),
    (lambda f, p: losses.style_layer_loss(f, jnp.ones((3, 3))), "target Gram"),
    (lambda f, p: losses.tv_loss(f, units="meters"), "unknown loss units"),
])
def test_guards_refuse_wrong_shapes_and_types(feats, call, needle):
    from nst_jax import NSTError

    f, p = feats
    with pytest.raises(NSTError, match=needle):
        call(f, p)
