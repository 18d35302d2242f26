"""Forward-mode AD through the VGG features (the default fast mode and ``"stock"``), and the x64 behaviour."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nst_jax
from nst_jax._src import vgg as vgg_mod
from nst_jax.errors import NSTError


def x64():
    """JAX's x64 context manager, wherever this JAX version keeps it."""
    if callable(getattr(jax, "enable_x64", None)):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64()


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


def _image(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0.1, 0.9, size=shape).astype(dtype)


def _objective(vgg, mode, layer="relu2_1"):
    def f(x):
        feats = nst_jax.extract_features(vgg, x, layers=(layer,), autodiff=mode)[layer]
        return jnp.mean(jnp.square(feats)) / 1e4

    return f


def test_default_mode_is_fast_and_forward_differentiable(vgg):
    assert vgg_mod.current_autodiff() == "fast"
    x = _image((8, 8, 3))
    value, tangent = jax.jvp(_objective(vgg, None), (x,), (x,))
    assert np.isfinite(float(tangent)) and abs(float(tangent)) > 0


def test_bf16_convolutions_name_the_fix_for_forward_mode(vgg):
    x = _image((8, 8, 3))

    def f(x, mode):
        feats = nst_jax.extract_features(vgg, x, layers=("relu1_1",), precision="bf16", autodiff=mode)
        return jnp.sum(feats["relu1_1"])

    with pytest.raises(NSTError, match="precision='bf16' convolutions needs autodiff='stock'"):
        jax.jvp(lambda x: f(x, None), (x,), (x,))
    tangent = jax.jvp(lambda x: f(x, "stock"), (x,), (x,))[1]
    grad = jax.grad(lambda x: f(x, None))(x)  # reverse mode as before
    np.testing.assert_allclose(tangent, jnp.vdot(grad, x), rtol=2e-2)


def _fd(f, x, v, eps=1e-5):
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


@pytest.mark.parametrize("which", ["features", "perceptual"])
def test_default_jvp_linearize_hessian_against_finite_differences(vgg, which):
    """jax.jvp, jax.linearize and jax.hessian with default arguments (the fast custom JVPs, max
    pooling included: relu3_1 sits after two poolings) against central differences in float64."""
    with x64():
        rng = np.random.default_rng(7)
        x = jnp.asarray(rng.uniform(0.1, 0.9, (8, 8, 3)))
        v = jnp.asarray(rng.normal(size=x.shape))
        if which == "features":
            def f(x):
                return jnp.mean(jnp.square(nst_jax.extract_features(vgg, x, layers=("relu3_1",))["relu3_1"])) / 1e4
        else:
            y = jnp.asarray(rng.uniform(0.1, 0.9, (8, 8, 3)))

            def f(x):
                return nst_jax.perceptual_loss(vgg, x, y, content_layers=("relu2_1",),
                                               style_layers=("relu1_1", "relu3_1"))
        value, tangent = jax.jvp(f, (x,), (v,))
        assert value.dtype == jnp.float64
        assert float(tangent) == pytest.approx(float(_fd(f, x, v)), rel=1e-6)
        assert abs(float(tangent)) > 1e-4
        _, f_lin = jax.linearize(f, x)
        np.testing.assert_allclose(f_lin(v), tangent, rtol=1e-10)
        # Hessian-vector product (forward over reverse) against differences of the gradient (a small
        # step: a larger one crosses ReLU and pooling kinks, where the gradient jumps).
        hvp = jax.jvp(jax.grad(f), (x,), (v,))[1]
        grad = jax.grad(f)
        np.testing.assert_allclose(hvp, _fd(grad, x, v, 1e-6), rtol=1e-5, atol=1e-7 * float(jnp.abs(hvp).max()))
        assert float(jnp.abs(hvp).max()) > 0
        # The full Hessian of a 2x2 corner (the rest held), symmetric and equal to the HVPs.
        def corner(c):
            return f(x.at[:2, :2].set(c))
        h = jax.hessian(corner)(x[:2, :2]).reshape(12, 12)
        np.testing.assert_allclose(h, h.T, rtol=1e-8, atol=1e-10 * float(jnp.abs(h).max()))
        u = jnp.asarray(rng.normal(size=(2, 2, 3)))
        np.testing.assert_allclose(h @ u.reshape(-1), jax.jvp(jax.grad(corner), (x[:2, :2],), (u,))[1].reshape(-1),
                                   rtol=1e-8, atol=1e-12)


def test_fast_reverse_mode_matches_stock_and_jax_grad_of_a_kernel(vgg):
    """The fast conv's kernel tangent (traced only when the kernel is differentiated) is right."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(1, 6, 5, 4)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 7)), jnp.float32)
    for argnums in (0, 1, (0, 1)):
        fast = jax.grad(lambda x, k: jnp.sum(jnp.sin(vgg_mod.conv3x3(x, k))), argnums)(x, k)
        stock = jax.grad(lambda x, k: jnp.sum(jnp.sin(vgg_mod.stock_conv3x3(x, k))), argnums)(x, k)
        for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(stock), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    t = jax.jvp(lambda k: vgg_mod.conv3x3(x, k), (k,), (k,))[1]
    np.testing.assert_allclose(t, vgg_mod.stock_conv3x3(x, k), rtol=1e-5, atol=1e-5)  # linear in k


def test_fast_max_pool_gives_the_gradient_to_the_first_maximum():
    x = jnp.asarray([[1.0, 1.0], [0.0, 1.0]])[:, :, None]  # one window with three equal maxima
    g = jax.grad(lambda x: vgg_mod.max_pool2x2(x).sum())(x)
    np.testing.assert_array_equal(g[:, :, 0], [[1.0, 0.0], [0.0, 0.0]])
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 7, 2)), jnp.float32)  # odd sides: floored
    v = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
    t = jax.jvp(vgg_mod.max_pool2x2, (x,), (v,))[1]
    np.testing.assert_allclose(t, jax.jvp(vgg_mod.stock_max_pool2x2, (x,), (v,))[1], rtol=1e-6)


def test_jvp_agrees_with_central_finite_differences(vgg):
    with x64():
        x = _image((8, 8, 3), dtype=np.float64)
        v = np.random.default_rng(1).normal(size=x.shape)
        f = _objective(vgg, "stock")
        value, tangent = jax.jvp(f, (jnp.asarray(x),), (jnp.asarray(v),))
        assert value.dtype == jnp.float64
        eps = 1e-5
        fd = (f(jnp.asarray(x + eps * v)) - f(jnp.asarray(x - eps * v))) / (2 * eps)
        assert float(tangent) == pytest.approx(float(fd), rel=1e-6)
        assert abs(float(tangent)) > 1e-3  # not a vacuous zero


def test_stock_and_fast_give_the_same_values_and_gradients(vgg):
    x = _image((16, 24, 3))
    layers = ("relu1_1", "relu2_1", "pool2", "relu3_1")
    fast = nst_jax.extract_features(vgg, x, layers=layers, autodiff="fast")
    stock = nst_jax.extract_features(vgg, x, layers=layers, autodiff="stock")
    for name in layers:
        np.testing.assert_allclose(stock[name], fast[name], rtol=1e-5, atol=1e-4)
    g_fast = jax.grad(_objective(vgg, "fast", "relu3_1"))(x)
    g_stock = jax.grad(_objective(vgg, "stock", "relu3_1"))(x)
    scale = float(jnp.abs(g_fast).max())
    assert scale > 0
    np.testing.assert_allclose(g_stock, g_fast, rtol=1e-4, atol=1e-5 * scale)


def test_linearize_and_hessian_vector_product_work(vgg):
    x = _image((8, 8, 3))
    v = _image((8, 8, 3), seed=3) - 0.5
    f = _objective(vgg, "stock")
    y, f_jvp = jax.linearize(f, x)
    np.testing.assert_allclose(f_jvp(v), jax.jvp(f, (x,), (v,))[1], rtol=1e-5)
    hvp = jax.jvp(jax.grad(f), (x,), (v,))[1]  # forward-over-reverse
    assert hvp.shape == x.shape and bool(jnp.all(jnp.isfinite(hvp)))


def test_hessian_on_a_tiny_image_is_symmetric_and_matches_hvp(vgg):
    with x64():
        x = jnp.asarray(_image((4, 4, 3), dtype=np.float64))
        f = _objective(vgg, "stock")
        h = jax.hessian(f)(x).reshape(x.size, x.size)
        np.testing.assert_allclose(h, h.T, rtol=1e-8, atol=1e-12 * float(jnp.abs(h).max()))
        v = jnp.asarray(np.random.default_rng(5).normal(size=x.shape))
        hvp = jax.jvp(jax.grad(f), (x,), (v,))[1]
        np.testing.assert_allclose(h @ v.reshape(-1), hvp.reshape(-1), rtol=1e-8, atol=1e-10)


def test_context_manager_switches_and_restores(vgg):
    x = _image((8, 8, 3))
    with nst_jax.autodiff_mode("stock"):
        assert vgg_mod.current_autodiff() == "stock"
        jax.jvp(_objective(vgg, None), (x,), (x,))  # no TypeError
        with nst_jax.autodiff_mode("fast"):
            assert vgg_mod.current_autodiff() == "fast"
        assert vgg_mod.current_autodiff() == "stock"
    assert vgg_mod.current_autodiff() == "fast"
    with pytest.raises(NSTError, match="autodiff"):
        with nst_jax.autodiff_mode("forward"):
            pass


def test_module_field_selects_stock_ops(vgg):
    x = _image((8, 8, 3))
    model = nst_jax.VGG19(outputs=("relu2_1",), autodiff="stock", convention=vgg.convention)
    f = lambda x: jnp.sum(model.apply(vgg.params, x)["relu2_1"])  # noqa: E731
    jax.jvp(f, (x,), (x,))


def test_unchecked_features_keeps_the_objective_signature(vgg):
    x = jnp.asarray(_image((8, 8, 3)))
    out = vgg_mod.unchecked_features(vgg, x, layers=("relu1_1",), pooling="max", precision="fp32")
    np.testing.assert_array_equal(out["relu1_1"], nst_jax.extract_features(vgg, x, layers=("relu1_1",))["relu1_1"])


def test_float64_computes_in_float64_under_x64(vgg):
    with x64():
        x = _image((8, 8, 3), dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            f64 = nst_jax.extract_features(vgg, x, layers=("relu2_1",))["relu2_1"]
        assert f64.dtype == jnp.float64
        f32 = nst_jax.extract_features(vgg, x.astype(np.float32), layers=("relu2_1",))["relu2_1"]
        assert f32.dtype == jnp.float32
        # float64 is not float32 relabelled: the two differ at float32 rounding, not beyond.
        diff = np.abs(np.asarray(f64) - np.asarray(f32, np.float64)).max()
        assert 0 < diff < 1e-4 * float(np.abs(f64).max())


def test_float64_with_bf16_warns_once(vgg, monkeypatch):
    monkeypatch.setattr(vgg_mod, "_warned_x64", False)
    with x64():
        x = _image((8, 8, 3), dtype=np.float64)
        with pytest.warns(UserWarning, match="float64"):
            out = nst_jax.extract_features(vgg, x, layers=("relu1_1",), precision="bf16")
        assert out["relu1_1"].dtype == jnp.float32
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nst_jax.extract_features(vgg, x, layers=("relu1_1",), precision="bf16")


def test_float64_without_x64_is_plain_float32(vgg):
    assert not jax.config.jax_enable_x64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = nst_jax.extract_features(vgg, _image((8, 8, 3), dtype=np.float64), layers=("relu1_1",))
    assert out["relu1_1"].dtype == jnp.float32

