"""perceptual_loss against NumPy, the normalised Gram, style_loss on compute_targets' output, and the
VGG19 module's input convention (no silent wrong answers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nst_jax
from nst_jax.errors import NSTError


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


def _image(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype(np.float32)


# --- NumPy references ---------------------------------------------------------------------------

def np_relu1_1(vgg, rgb):
    """relu1_1 of an RGB image in [0, 1], in float64 NumPy from the raw parameters (caffe convention)."""
    assert vgg.convention == "caffe"
    x = rgb[..., ::-1].astype(np.float64) * 255.0 - np.array([103.939, 116.779, 123.68])
    p = vgg.params["params"]["conv1_1"]
    k, b = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, k.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += xp[dy:dy + h, dx:dx + w] @ k[dy, dx]
    return np.maximum(out + b, 0.0)


def np_gram(f, normalize=False):
    f2 = f.reshape(-1, f.shape[-1]).astype(np.float64)
    g = f2.T @ f2
    return g / f2.shape[0] if normalize else g


def np_terms(fx, fy, units):
    if units == "relative":
        content = np.sum((fx - fy) ** 2) / np.sum(fy**2)
        gx, gy = np_gram(fx, True), np_gram(fy, True)
        style = np.sum((gx - gy) ** 2) / np.sum(gy**2)
    else:
        content = 0.5 * np.sum((fx - fy) ** 2)
        m, n = fx.shape[0] * fx.shape[1], fx.shape[-1]
        a = np_gram(fy) * m / (fy.shape[0] * fy.shape[1])
        style = np.sum((np_gram(fx) - a) ** 2) / (4.0 * n**2 * m**2)
    return content, style


# --- perceptual_loss ----------------------------------------------------------------------------

@pytest.mark.parametrize("units", ["relative", "paper"])
def test_perceptual_loss_matches_numpy_on_relu1_1(vgg, units):
    x, y = _image((12, 16, 3), 0), _image((12, 16, 3), 1)
    fx, fy = np_relu1_1(vgg, x), np_relu1_1(vgg, y)
    content, style = np_terms(fx, fy, units)
    terms = nst_jax.perceptual_terms(vgg, x, y, content_layers=("relu1_1",), style_layers=("relu1_1",),
                                     content_weight=2.0, style_weight=3.0, units=units)
    assert float(terms["content"]) == pytest.approx(2.0 * content, rel=2e-4)
    assert float(terms["style"]) == pytest.approx(3.0 * style, rel=2e-4)
    total = nst_jax.perceptual_loss(vgg, x, y, content_layers=("relu1_1",), style_layers=("relu1_1",),
                                    content_weight=2.0, style_weight=3.0, units=units)
    assert float(total) == pytest.approx(2.0 * content + 3.0 * style, rel=2e-4)


def test_style_only_compares_images_of_different_sizes_per_position(vgg):
    x, y = _image((16, 16, 3), 2), _image((24, 20, 3), 3)
    gx, gy = np_gram(np_relu1_1(vgg, x), True), np_gram(np_relu1_1(vgg, y), True)
    want = np.sum((gx - gy) ** 2) / np.sum(gy**2)
    got = nst_jax.perceptual_loss(vgg, x, y, content_layers=(), style_layers=("relu1_1",))
    assert float(got) == pytest.approx(want, rel=2e-4)
    with pytest.raises(NSTError, match="differ in size"):
        nst_jax.perceptual_loss(vgg, x, y, content_layers=("relu1_1",), style_layers=())


def test_layer_weights_and_defaults_with_deeper_layers(vgg):
    x, y = _image((32, 32, 3), 4), _image((32, 32, 3), 5)
    layers = ("relu1_1", "relu2_1", "relu3_1")
    fx = {k: np.asarray(v, np.float64) for k, v in nst_jax.extract_features(vgg, x, layers=layers).items()}
    fy = {k: np.asarray(v, np.float64) for k, v in nst_jax.extract_features(vgg, y, layers=layers).items()}
    per = {name: np_terms(fx[name], fy[name], "relative") for name in layers}
    # Defaults: content weight 1 per layer, style 1/L per layer.
    got = nst_jax.perceptual_terms(vgg, x, y, content_layers=("relu3_1",), style_layers=layers)
    assert float(got["content"]) == pytest.approx(per["relu3_1"][0], rel=1e-3)
    assert float(got["style"]) == pytest.approx(sum(per[n][1] for n in layers) / 3, rel=1e-3)
    w = {"relu1_1": 0.5, "relu3_1": 4.0}
    got = nst_jax.perceptual_terms(vgg, x, y, content_layers=("relu3_1",), style_layers=layers, layer_weights=w)
    assert float(got["content"]) == pytest.approx(4.0 * per["relu3_1"][0], rel=1e-3)
    want = 0.5 * per["relu1_1"][1] + per["relu2_1"][1] / 3 + 4.0 * per["relu3_1"][1]
    assert float(got["style"]) == pytest.approx(want, rel=1e-3)


def test_no_hidden_terms_zero_at_equality_and_vmap_over_a_batch(vgg):
    x = _image((32, 32, 3), 6)  # noisy: a TV term would be large
    assert float(nst_jax.perceptual_loss(vgg, x, x)) == 0.0
    xs, ys = np.stack([_image((32, 32, 3), s) for s in (7, 8)]), np.stack([_image((32, 32, 3), s) for s in (9, 10)])
    batched = jax.jit(jax.vmap(lambda a, b: nst_jax.perceptual_loss(vgg, a, b)))(xs, ys)
    one_by_one = [float(nst_jax.perceptual_loss(vgg, a, b)) for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4)
    with pytest.raises(NSTError, match="vmap"):
        nst_jax.perceptual_loss(vgg, xs, ys)


def test_gradient_flows_and_other_statistics_run(vgg):
    x, y = _image((32, 32, 3), 11), _image((32, 32, 3), 12)
    g = jax.grad(lambda a: nst_jax.perceptual_loss(vgg, a, y, style_layers=("relu1_1", "relu2_1")))(x)
    assert g.shape == x.shape and float(jnp.abs(g).max()) > 0
    for name in ("meancov", "w2"):
        value = nst_jax.perceptual_loss(vgg, x, y, content_layers=(), style_layers=("relu2_1",), statistic=name)
        assert np.isfinite(float(value)) and float(value) > 0
    with pytest.raises(NSTError, match="statistic"):
        nst_jax.perceptual_loss(vgg, x, y, statistic="gramm")
    with pytest.raises(NSTError, match="float"):
        nst_jax.perceptual_loss(vgg, (x * 255).astype(np.uint8), y)


# --- Gram normalisation and style_loss ----------------------------------------------------------

def test_gram_matrix_normalize_is_per_position_and_size_independent():
    f = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(nst_jax.gram_matrix(f), np_gram(f), rtol=1e-5)
    np.testing.assert_allclose(nst_jax.gram_matrix(f, normalize=True), np_gram(f) / 30, rtol=1e-5)
    tiled = np.tile(f, (2, 3, 1))  # the same texture, six times the area
    np.testing.assert_allclose(nst_jax.gram_matrix(tiled, normalize=True), nst_jax.gram_matrix(f, normalize=True),
                               rtol=1e-5)
    np.testing.assert_allclose(nst_jax.gram_matrix(tiled), 6 * np_gram(f), rtol=1e-5)


@pytest.mark.parametrize("num_styles", [1, 2])
def test_style_loss_accepts_compute_targets_output(vgg, num_styles):
    config = nst_jax.LossConfig(mode="style", style_layers=("relu1_1", "relu2_1"), num_styles=num_styles)
    weights = nst_jax.make_weights(config)
    image = _image((32, 32, 3), 13)
    styles = [_image((32, 40, 3), 14 + k) for k in range(num_styles)]
    targets = nst_jax.compute_targets(vgg, style=styles if num_styles > 1 else styles[0], config=config,
                                      output_shape=image.shape)
    feats = nst_jax.extract_features(vgg, image, layers=config.style_layers)
    got = nst_jax.style_loss(feats, targets.style, config.style_layers, weights.style_layers)
    _, terms = nst_jax.make_loss(config)(vgg, image, targets, weights)
    assert float(weights.style * got) == pytest.approx(float(terms["style"]), rel=1e-5)
    # The same as passing the [N, N] blended targets by hand.
    by_hand = {name: jnp.mean(targets.style[name]["gram"], axis=0) for name in config.style_layers}
    assert float(nst_jax.style_loss(feats, by_hand, config.style_layers, weights.style_layers)) == pytest.approx(
        float(got), rel=1e-6)


def test_style_loss_refuses_targets_of_another_statistic(vgg):
    config = nst_jax.LossConfig(mode="style", style_layers=("relu1_1",), style_loss="meancov")
    image = _image((32, 32, 3), 20)
    targets = nst_jax.compute_targets(vgg, style=image, config=config)
    feats = nst_jax.extract_features(vgg, image, layers=config.style_layers)
    with pytest.raises(NSTError, match="not a Gram"):
        nst_jax.style_loss(feats, targets.style, config.style_layers, [1.0])


# --- The VGG19 module's input convention ---------------------------------------------------------

def test_vgg19_module_takes_rgb_and_matches_extract_features(vgg):
    photo = _image((32, 32, 3), 21)
    want = nst_jax.extract_features(vgg, photo, layers=("relu1_1", "relu2_1"))
    got = nst_jax.VGG19(outputs=("relu1_1", "relu2_1")).apply(vgg.params, photo)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-5)
    pre = nst_jax.VGG19(outputs=("relu1_1",), convention="preprocessed").apply(
        vgg.params, nst_jax.preprocess(photo, vgg.convention))
    np.testing.assert_allclose(pre["relu1_1"], want["relu1_1"], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(want["relu1_1"], np.float64), np_relu1_1(vgg, photo), rtol=1e-4, atol=1e-3)


def test_vgg19_convention_follows_the_params(vgg):
    photo = _image((32, 32, 3), 22)
    torch_vgg = nst_jax.VGGParams(vgg.params, convention="torch")
    want = nst_jax.extract_features(torch_vgg, photo, layers=("relu1_1",))["relu1_1"]
    got = nst_jax.VGG19(outputs=("relu1_1",), convention=torch_vgg.convention).apply(vgg.params, photo)["relu1_1"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    with pytest.raises(NSTError, match="convention"):
        nst_jax.VGG19(outputs=("relu1_1",), convention="bgr").apply(vgg.params, photo)  # type: ignore[arg-type]
    with pytest.raises(NSTError, match="float"):
        nst_jax.preprocess(np.zeros((4, 4, 3), np.uint8), "caffe")
