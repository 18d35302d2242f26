"""Any floating input (bfloat16, float16, float32, float64) through the public functions, and the input
range contract (``input_range``, the concrete and checkify range checks, the module's convention)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import nst_jax
from nst_jax.errors import NSTError

HALF = [jnp.bfloat16, jnp.float16]
FLOATS = [jnp.bfloat16, jnp.float16, jnp.float32, np.float64]


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


def _image(shape=(16, 16, 3), seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, size=shape).astype(np.float32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_extract_features_takes_every_float_dtype(vgg, dtype):
    x = _image()
    ref = nst_jax.extract_features(vgg, x, layers=("relu2_1",))["relu2_1"]
    xd = x.astype(dtype)  # a NumPy array: bfloat16 from ml_dtypes, float64 kept
    out = nst_jax.extract_features(vgg, xd, layers=("relu2_1",))["relu2_1"]
    # Half precision comes back in its own dtype; float64 without x64 is float32 (JAX's rule).
    assert out.dtype == (jnp.dtype(dtype) if dtype in HALF else jnp.float32)
    # Computed in float32 from the rounded image: the error is the input's rounding, not the network's.
    ref_rounded = nst_jax.extract_features(vgg, np.asarray(xd.astype(jnp.float32)), layers=("relu2_1",))["relu2_1"]
    np.testing.assert_allclose(np.asarray(out, np.float32), ref_rounded, rtol=1e-2, atol=1e-2 * float(ref.max()))
    if dtype in HALF:
        assert not np.array_equal(np.asarray(out, np.float32), ref)  # really rounded, not float32 relabelled


@pytest.mark.parametrize("dtype", HALF)
def test_perceptual_loss_and_its_gradient_in_half_precision(vgg, dtype):
    x, y = _image(seed=1), _image(seed=2)
    kw = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}
    ref_loss, ref_grad = jax.value_and_grad(lambda x: nst_jax.perceptual_loss(vgg, x, y, **kw))(x)
    xd, yd = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    loss, grad = jax.jit(jax.value_and_grad(lambda x: nst_jax.perceptual_loss(vgg, x, yd, **kw)))(xd)
    assert loss.dtype == jnp.float32 and grad.dtype == jnp.dtype(dtype)
    assert float(loss) == pytest.approx(float(ref_loss), rel=0.05)
    g, r = np.asarray(grad, np.float32).ravel(), np.asarray(ref_grad).ravel()
    assert np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r)) > 0.98  # the same direction
    # The style functions on half-precision features sum in float32.
    f = nst_jax.extract_features(vgg, xd, layers=("relu1_1",))["relu1_1"]
    gram = nst_jax.gram_matrix(f, normalize=True)
    assert gram.dtype == jnp.dtype(dtype)
    want = np.einsum("hwi,hwj->ij", np.asarray(f, np.float64), np.asarray(f, np.float64)) / (16 * 16)
    np.testing.assert_allclose(np.asarray(gram, np.float32), want, rtol=2e-2, atol=1e-2 * want.max())
    assert nst_jax.tv_loss(xd).dtype == jnp.float32
    assert nst_jax.content_loss(f, f * 0.5).dtype == jnp.float32


def test_vgg_weights_in_bf16_are_accepted(vgg):
    half = nst_jax.VGGParams(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.bfloat16), vgg.params),
                             convention=vgg.convention)
    x = _image()
    out = nst_jax.extract_features(half, x, layers=("relu1_2",))["relu1_2"]
    ref = nst_jax.extract_features(vgg, x, layers=("relu1_2",))["relu1_2"]
    np.testing.assert_allclose(out, ref, rtol=5e-2, atol=2e-2 * float(ref.max()))


class _Generator(nn.Module):
    """A tiny image-to-image generator in half precision, its output in [-1, 1] (tanh)."""

    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(8, (3, 3), dtype=self.dtype, param_dtype=self.dtype)(x))
        return jnp.tanh(nn.Conv(3, (3, 3), dtype=self.dtype, param_dtype=self.dtype)(h))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, pytest.param(jnp.float16, marks=pytest.mark.slow)])
def test_a_half_precision_flax_generator_trains_through_the_loss(vgg, dtype):
    model = _Generator(dtype)
    photos = jnp.asarray(np.stack([_image((16, 16, 3), s) for s in range(2)]), dtype)
    params = model.init(jax.random.key(0), photos[0])
    opt = optax.sgd(2e-3)
    opt_state = opt.init(params)

    def loss_fn(params):
        out = jax.vmap(lambda p: model.apply(params, p))(photos * 2 - 1)  # [-1, 1], the generator's dtype
        assert out.dtype == jnp.dtype(dtype)
        return jnp.mean(jax.vmap(lambda o, p: nst_jax.perceptual_loss(
            vgg, o, p, content_layers=("relu1_1",), style_layers=("relu1_1",), input_range="-1-1"))(
            out, photos * 2 - 1))

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(4):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(leaf.dtype == jnp.dtype(dtype) for leaf in jax.tree_util.tree_leaves(params))


def test_stylize_takes_half_precision_images(vgg):
    content = jnp.asarray(_image((32, 32, 3), 3), jnp.bfloat16)
    style = np.asarray(_image((32, 32, 3), 4), np.float16)
    config = nst_jax.StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), iterations=2)
    result = nst_jax.stylize(vgg, content=content, style=style, config=config)
    assert result.image.shape == (32, 32, 3) and np.isfinite(result.image).all()


# -- the input range -----------------------------------------------------------------------------------

@pytest.mark.parametrize("input_range, scale, shift", [("0-1", 1.0, 0.0), ("-1-1", 2.0, -1.0), ("0-255", 255.0, 0.0)])
def test_input_range_maps_to_the_same_features(vgg, input_range, scale, shift):
    x = _image()
    ref = nst_jax.extract_features(vgg, x, layers=("relu2_1",))["relu2_1"]
    out = nst_jax.extract_features(vgg, x * scale + shift, layers=("relu2_1",), input_range=input_range)["relu2_1"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.max()))
    y = _image(seed=5)
    kw = {"content_layers": ("relu1_1",), "style_layers": ("relu2_1",)}
    np.testing.assert_allclose(
        nst_jax.perceptual_loss(vgg, x * scale + shift, y * scale + shift, input_range=input_range, **kw),
        nst_jax.perceptual_loss(vgg, x, y, **kw), rtol=1e-5)


@pytest.mark.parametrize("make, cause", [
    (lambda x, v: x * 255.0, "0-255 pixels; pass input_range='0-255'"),
    (lambda x, v: x * 2.0 - 1.0, r"\[-1, 1\] \(tanh\) output; pass input_range='-1-1'"),
    (lambda x, v: np.asarray(nst_jax.preprocess(x, v.convention)), "already preprocessed"),
    (lambda x, v: np.asarray(nst_jax.preprocess(x, "torch")), "ImageNet-normalised"),
])
def test_out_of_range_input_is_refused_with_its_likely_cause(vgg, make, cause):
    x = _image()
    bad = make(x, vgg)
    with pytest.raises(NSTError, match=cause):
        nst_jax.extract_features(vgg, bad, layers=("relu1_1",))
    with pytest.raises(NSTError, match="perceptual_loss's x .*" + cause):
        nst_jax.perceptual_loss(vgg, bad, x)
    with pytest.raises(NSTError, match=cause):
        nst_jax.extract_features(vgg, jnp.asarray(bad), layers=("relu1_1",))  # a concrete JAX array
    nst_jax.extract_features(vgg, bad, layers=("relu1_1",), range_check="off")  # opted out


def test_in_range_input_with_overshoot_passes(vgg):
    x = _image() * 1.2 - 0.1  # a generator's unclipped output: [-0.04, 1.04]
    nst_jax.extract_features(vgg, x, layers=("relu1_1",))
    with pytest.raises(NSTError, match="unknown input range"):
        nst_jax.extract_features(vgg, x, layers=("relu1_1",), input_range="0-1.0")
    with pytest.raises(NSTError, match="NaN"):
        nst_jax.extract_features(vgg, np.full((16, 16, 3), np.nan, np.float32), layers=("relu1_1",))


def test_range_check_under_jit_only_with_checkify(vgg):
    x, bad = _image(), _image() * 255.0

    def f(img, mode):
        return nst_jax.perceptual_loss(vgg, img, x, content_layers=("relu1_1",), style_layers=(), range_check=mode)

    assert np.isfinite(float(jax.jit(lambda i: f(i, "concrete"))(bad)))  # traced: not checked by default
    checked = jax.jit(checkify.checkify(lambda i: f(i, "checkify"), errors=checkify.user_checks))
    err, value = checked(bad)
    with pytest.raises(checkify.JaxRuntimeError, match=r"perceptual_loss's x has values from .* outside its input "
                                                      r"range 0-1"):
        err.throw()
    err, value = checked(x)
    assert err.get() is None and float(value) == pytest.approx(0.0, abs=1e-6)


def test_module_checks_its_convention_against_the_weights(vgg):
    x = _image()
    wrong = "torch" if vgg.convention == "caffe" else "caffe"
    with pytest.raises(NSTError, match=f"VGG19\\(convention='{wrong}'\\) applied to weights of the"):
        nst_jax.VGG19(outputs=("relu1_1",), convention=wrong).apply(vgg, x)
    out = nst_jax.VGG19(outputs=("relu1_1",), convention=vgg.convention).apply(vgg, x)["relu1_1"]
    np.testing.assert_allclose(out, nst_jax.extract_features(vgg, x, layers=("relu1_1",))["relu1_1"], rtol=1e-6)
    pre = nst_jax.preprocess(x, vgg.convention)
    raw = nst_jax.VGG19(outputs=("relu1_1",), convention="preprocessed").apply(vgg, pre)["relu1_1"]
    np.testing.assert_allclose(raw, out, rtol=1e-5, atol=1e-4)


def test_stylize_refuses_out_of_range_images_before_computing(vgg):
    x = _image((32, 32, 3))
    config = nst_jax.StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), iterations=1)
    with pytest.raises(NSTError, match="content image has values from .* 0-255 pixels; divide by 255"):
        nst_jax.stylize(vgg, content=x * 255, style=x, config=config)
    with pytest.raises(NSTError, match=r"style image .* \[-1, 1\] \(tanh\) output; map it with \(x \+ 1\) / 2"):
        nst_jax.stylize(vgg, content=x, style=x * 2 - 1, config=config)
