"""The library boundary: every bad argument is the library's own error (an NSTError, a ValueError)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nst_jax
from nst_jax import StylizeConfig, make_weights
from nst_jax.config import LossConfig
from nst_jax.errors import NSTError, NumericalError, OutputExists


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


def test_nst_error_and_its_subclasses_are_value_errors():
    for cls in (NSTError, NumericalError, OutputExists):
        assert issubclass(cls, ValueError)
    with pytest.raises(ValueError, match="iterations"):
        StylizeConfig(iterations=0)


@pytest.mark.parametrize("field, value, match", [
    ("iterations", 2.5, "iterations must be an integer, got float 2.5"), ("iterations", "3", "iterations .* str"),
    ("iterations", True, "iterations .* bool"), ("iterations", np.array([3]), "iterations .* ndarray"),
    ("chunk_size", 2.0, "chunk size must be an integer"), ("chunk_size", "10", "chunk size"),
    ("lbfgs_memory", 3.5, "L-BFGS memory must be an integer"), ("noise_scale", "0.1", "noise scale must be a number"),
    ("style_scale", "2", "style scale must be a number"), ("shape_bucket", 32.0, "shape bucket must be an integer"),
    ("tile_size", "64", "tile size must be an integer"), ("num_styles", 1.0, "number of style images"),
    ("optimizer", 3, "optimizer"), ("mode", 3, "unknown mode 3"), ("pooling", None, "unknown pooling None"),
])
def test_stylize_config_refuses_wrong_types(field, value, match):
    with pytest.raises(NSTError, match=match):
        StylizeConfig(**{field: value})


def test_stylize_config_stores_plain_python_numbers():
    config = StylizeConfig(iterations=np.int64(7), chunk_size=np.int32(3), noise_scale=np.float32(0.5),
                           style_scale=1)
    assert type(config.iterations) is int and config.iterations == 7
    assert type(config.chunk_size) is int and type(config.noise_scale) is float
    assert type(config.style_scale) is float
    hash(config)  # still a static argument


@pytest.mark.parametrize("kwargs, match", [
    ({"style_weight": "1"}, "style weight must be a number"),
    ({"content_weight": None, "tv_weight": "x"}, "tv weight must be a number"),
    ({"content_weight": True}, "content weight must be a number"),
    ({"content_weight": np.array([1.0, 2.0])}, r"content weight must be one number .* shape \(2,\)"),
    ({"content_weight": [1.0]}, r"shape \(1,\)"),
    ({"learning_rate": object()}, "learning rate must be a number"),
    ({"style_layer_weights": ["a", "b", "c", "d", "e"]}, "style layer weights must be a number"),
    ({"style_layer_weights": [1.0, 2.0]}, "2 style layer weights given for 5 style layers"),
    ({"style_weight": -1.0}, "style weight must be a finite number >= 0"),
    ({"style_weight": np.float32("nan")}, "finite"),
    ({"ema_decay": 1.0}, "EMA decay"),
    ({"style_blend": [0.0]}, "not all 0"),
    ({"content_weight": 1 + 2j}, "content weight must be a number"),
])
def test_make_weights_refuses_with_the_library_error(kwargs, match):
    with pytest.raises(NSTError, match=match):
        make_weights(StylizeConfig(), **kwargs)


def test_make_weights_takes_numpy_and_jax_scalars():
    w = make_weights(StylizeConfig(), content_weight=np.float64(2.0), style_weight=jnp.asarray(5.0),
                     tv_weight=np.array(3, np.int32), style_layer_weights=0.5)
    assert float(w.content) == 2.0 and float(w.style) == 5.0 and float(w.tv) == 3.0
    np.testing.assert_array_equal(w.style_layers, np.full(5, 0.5, np.float32))
    assert all(np.asarray(leaf).dtype == np.float32 for leaf in w)
    with pytest.raises(NSTError, match="LossConfig"):
        make_weights({"mode": "transfer"})


def test_make_weights_can_be_traced_and_vmapped():
    config = StylizeConfig()
    betas = jnp.asarray([1.0, 10.0, 100.0])
    stacked = jax.vmap(lambda b: make_weights(config, style_weight=b, style_layer_weights=b * jnp.ones(5)))(betas)
    looped = nst_jax.stack_weights([make_weights(config, style_weight=float(b), style_layer_weights=[float(b)] * 5)
                                    for b in betas])
    for got, want in zip(stacked, looped, strict=True):
        np.testing.assert_array_equal(got, want)
    # Under jit too: the concrete-value checks are skipped for traced values (a negative weight passes).
    w = jax.jit(lambda b: make_weights(config, style_weight=b))(-1.0)
    assert float(w.style) == -1.0
    # Shape errors are static and still raised when traced.
    with pytest.raises(NSTError, match="shape"):
        jax.vmap(lambda b: make_weights(config, content_weight=jnp.stack([b, b])))(betas)


def test_params_dict_instead_of_vggparams_is_one_clear_error(vgg):
    x = np.full((16, 16, 3), 0.5, np.float32)
    for call in (lambda v: nst_jax.extract_features(v, x, layers=("relu1_1",)),
                 lambda v: nst_jax.perceptual_loss(v, x, x, content_layers=("relu1_1",), style_layers=()),
                 lambda v: nst_jax.compute_targets(v, content=x, style=x, config=LossConfig(
                     content_layers=("relu1_1",), style_layers=("relu1_1",)))):
        with pytest.raises(NSTError, match=r"not its params dict \(pass vgg, not vgg.params"):
            call(vgg.params)
        with pytest.raises(NSTError, match="VGGParams .* got str"):
            call("vgg19.npz")
    with pytest.raises(NSTError, match="not its params dict"):
        nst_jax.stylize(vgg.params, content=x, style=x, config=StylizeConfig(iterations=1))
    with pytest.raises(NSTError, match="not its params dict"):
        nst_jax.normalize_vgg19(vgg.params)
    loss = nst_jax.make_loss(LossConfig(content_layers=("relu1_1",), style_layers=("relu1_1",)))
    with pytest.raises(NSTError, match="not its params dict"):
        loss(vgg.params, x, None, None)


def test_vggparams_convention_is_checked(vgg):
    with pytest.raises(NSTError, match="unknown input convention"):
        nst_jax.VGGParams(vgg.params, convention="Caffe")
    with pytest.raises(NSTError, match="unknown input convention"):
        nst_jax.VGGParams(vgg.params, convention=None)  # type: ignore[arg-type]
