"""The Flax VGG-19 with the shipped weights against an independent NumPy computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax._src.vgg import (
    LAYERS,
    VGG19,
    VGGParams,
    avg_pool2x2,
    check_layers,
    conv3x3,
    extract_features,
    max_pool2x2,
    preprocess,
)
from nst_jax.errors import NSTError

from .conftest import smooth_image


def np_conv3x3(x, kernel, bias):
    """Direct 'same' 3x3 cross-correlation: x [H, W, Ci], kernel [3, 3, Ci, Co]."""
    h, w, _ = x.shape
    xp = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += xp[dy:dy + h, dx:dx + w, :] @ kernel[dy, dx].astype(np.float64)
    return out + bias


def np_caffe_input(rgb):
    return rgb[..., ::-1].astype(np.float64) * 255.0 - np.array([103.939, 116.779, 123.68])


def test_preprocess_caffe_convention_by_hand():
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(preprocess(red, "caffe")[0, 0], [-103.939, -116.779, 255 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(
        preprocess(red, "torch")[0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)


def test_first_layers_match_numpy(vgg):
    rgb = smooth_image(12, 10)
    p = vgg.params["params"]
    conv1_1 = np_conv3x3(np_caffe_input(rgb), p["conv1_1"]["kernel"], p["conv1_1"]["bias"])
    relu1_1 = np.maximum(conv1_1, 0)
    conv1_2 = np_conv3x3(relu1_1, p["conv1_2"]["kernel"], p["conv1_2"]["bias"])
    relu1_2 = np.maximum(conv1_2, 0)
    pool1 = relu1_2.reshape(6, 2, 5, 2, 64).max(axis=(1, 3))
    fn = jax.jit(lambda vgg, x: extract_features(vgg, x, layers=("conv1_1", "relu1_1", "conv1_2", "pool1")))
    got = fn(vgg, rgb)
    for name, ref in [("conv1_1", conv1_1), ("relu1_1", relu1_1), ("conv1_2", conv1_2), ("pool1", pool1)]:
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_kernel_layout_mirror_property(vgg):
    """Mirroring the image left-right mirrors conv1_1 exactly when the kernels are mirrored along W.

    Fails if the module read the kernels' H and W axes the other way round.
    """
    rgb = smooth_image(16, 20, seed=3)
    params = vgg.params
    conv1_1 = params["params"]["conv1_1"]
    flipped = {"kernel": conv1_1["kernel"][:, ::-1], "bias": conv1_1["bias"]}
    mirrored = VGGParams({"params": dict(params["params"], conv1_1=flipped)}, "caffe")
    f = extract_features(vgg, rgb, layers=("conv1_1",))["conv1_1"]
    f_flip = extract_features(mirrored, rgb[:, ::-1], layers=("conv1_1",))["conv1_1"]
    np.testing.assert_allclose(f_flip[:, ::-1], f, rtol=1e-4, atol=1e-3)
    # The real filters are not mirror-symmetric, so without mirroring the kernels the maps differ.
    f_plain = extract_features(vgg, rgb[:, ::-1], layers=("conv1_1",))["conv1_1"]
    assert np.abs(np.asarray(f_plain)[:, ::-1] - f).max() > 1.0


def test_runs_only_to_deepest_requested_layer(vgg):
    params = {"params": {k: v for k, v in vgg.params["params"].items() if k in ("conv1_1", "conv1_2", "conv2_1")}}
    out = VGG19(outputs=("relu2_1", "conv1_1")).apply(params, np.zeros((32, 32, 3), np.float32))
    assert set(out) == {"relu2_1", "conv1_1"}
    assert out["relu2_1"].shape == (16, 16, 128)


def test_every_layer_shape(vgg):
    out = jax.jit(lambda p, x: VGG19(outputs=LAYERS, pooling="avg").apply(p, x))(
        vgg.params, np.zeros((32, 64, 3), np.float32))
    assert out["relu5_4"].shape == (2, 4, 512)
    assert out["pool5"].shape == (1, 2, 512)
    assert out["conv3_4"].shape == (8, 16, 256)


def test_unknown_layer_refused():
    with pytest.raises(NSTError, match="relu9_9"):
        check_layers(["relu1_1", "relu9_9"])


def test_conv3x3_gradients_match_autodiff_of_lax_conv():
    from jax import lax

    from nst_jax._src.vgg import conv3x3

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    ct = rng.normal(size=(2, 7, 6, 5)).astype(np.float32)

    def ref(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv3x3(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
    got = jax.vjp(conv3x3, x, k)[1](ct)
    want = jax.vjp(ref, x, k)[1](ct)
    for g, w, name in zip(got, want, ("input", "kernel"), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_bf16_conv_form_per_backend():
    from nst_jax._src.vgg import SHIFT_MATMUL_MIN_CHANNELS, bf16_conv_form

    wide, narrow = SHIFT_MATMUL_MIN_CHANNELS, SHIFT_MATMUL_MIN_CHANNELS - 1
    assert bf16_conv_form(wide, "cpu") == "shifted_matmul"
    assert bf16_conv_form(narrow, "cpu") == "xla"
    assert bf16_conv_form(wide, "gpu") == bf16_conv_form(wide, "cuda") == bf16_conv_form(wide, "tpu") == "xla"


@pytest.mark.parametrize("channels,backends", [(8, ("cpu",)), (256, ("cpu",)), (256, ())],
                         ids=["xla", "shifted_matmul", "xla-as-on-gpu"])
def test_conv3x3_bf16_close_to_fp32(channels, backends, monkeypatch):
    from nst_jax._src import vgg
    from nst_jax._src.vgg import conv3x3

    monkeypatch.setattr(vgg, "SHIFT_MATMUL_BACKENDS", backends)  # () : every layer as on a GPU
    want_form = "shifted_matmul" if backends and channels >= vgg.SHIFT_MATMUL_MIN_CHANNELS else "xla"
    assert vgg.bf16_conv_form(channels, "cpu") == want_form
    jaxpr = str(jax.make_jaxpr(lambda x, k: conv3x3(x, k, "bf16"))(
        np.zeros((1, 9, 7, channels), np.float32), np.zeros((3, 3, channels, 16), np.float32)))
    assert ("dot_general" in jaxpr) == (want_form == "shifted_matmul")
    assert ("conv_general_dilated" in jaxpr) == (want_form == "xla")

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 9, 7, channels)).astype(np.float32)
    k = rng.normal(size=(3, 3, channels, 16)).astype(np.float32) / np.sqrt(9 * channels)
    ct = rng.normal(size=(1, 9, 7, 16)).astype(np.float32)
    ref, ref_vjp = jax.vjp(lambda x: conv3x3(x, k), x)
    got, got_vjp = jax.vjp(lambda x: conv3x3(x, k, "bf16"), x)
    assert got.dtype == np.float32
    scale = np.abs(np.asarray(ref)).max()
    np.testing.assert_allclose(got, ref, atol=2e-2 * scale)
    g_ref, g_got = ref_vjp(ct)[0], got_vjp(ct)[0]
    np.testing.assert_allclose(g_got, g_ref, atol=2e-2 * np.abs(np.asarray(g_ref)).max())
    # bf16 really rounds: the result is not bitwise the fp32 one.
    assert np.abs(np.asarray(got) - np.asarray(ref)).max() > 0


def test_bf16_features_close_to_fp32(vgg):
    rgb = smooth_image(40, 48, seed=4)
    f = {p: extract_features(vgg, rgb, layers=("relu3_2", "relu4_2"), precision=p)
         for p in ("fp32", "bf16")}
    for name in ("relu3_2", "relu4_2"):
        ref = np.asarray(f["fp32"][name])
        rel = np.abs(np.asarray(f["bf16"][name]) - ref).max() / np.abs(ref).max()
        assert rel < 3e-2, (name, rel)


@pytest.mark.parametrize("shape", [(6, 8, 3), (2, 7, 9, 4)])
def test_pools_equal_flax_reduce_window_with_ties(shape):
    # Small integers: many windows hold their maximum twice or more, so the tie rule is exercised.
    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=shape).astype(np.float32))
    cot = jnp.asarray(np.random.default_rng(1).normal(size=(*shape[:-3], shape[-3] // 2, shape[-2] // 2, shape[-1]))
                      .astype(np.float32))
    for ours, flax_pool in [(max_pool2x2, nn.max_pool), (avg_pool2x2, nn.avg_pool)]:
        ref = lambda a, p=flax_pool: p(a, (2, 2), strides=(2, 2))  # noqa: E731
        np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6)
        g_ours = jax.vjp(ours, x)[1](cot)[0]
        g_ref = jax.vjp(ref, x)[1](cot)[0]
        np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_conv3x3_gradients_equal_autodiff_of_xla_convolution(precision):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 5, 7, 4)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 6)).astype(np.float32))
    cot = jnp.asarray(rng.normal(size=(2, 5, 7, 6)).astype(np.float32))
    ref = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
        x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    dx, dk = jax.vjp(lambda x, k: conv3x3(x, k, precision), x, k)[1](cot)
    dx_ref, dk_ref = jax.vjp(ref, x, k)[1](cot)
    tol = 1e-5 if precision == "fp32" else 3e-2  # bf16 input gradient: bf16 products
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol * float(jnp.abs(dx_ref).max()))
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(dk_ref).max()))


def test_layer_channels_match_the_feature_maps(vgg):
    from nst_jax._src.vgg import layer_channels

    shapes = jax.eval_shape(lambda v, x: extract_features(v, x, layers=LAYERS),
                            vgg, jax.ShapeDtypeStruct((32, 32, 3), jnp.float32))
    assert {name: layer_channels(name) for name in LAYERS} == {name: s.shape[-1] for name, s in shapes.items()}
