"""A pretrained VGG19 inside a Linen model (nst_jax.flax_linen.init_with_vgg)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nst_jax
from nst_jax.errors import NSTError
from nst_jax.flax_linen import init_with_vgg


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


class Encoder(nn.Module):
    convention: str = "caffe"

    @nn.compact
    def __call__(self, x):
        feats = nst_jax.VGG19(outputs=("relu1_2",), convention=self.convention, name="vgg")(x)["relu1_2"]
        return nn.Dense(4, name="head")(feats.mean(axis=(0, 1)))


class Wrapper(nn.Module):
    """The VGG one level deeper, beside a conv layer of its own."""

    @nn.compact
    def __call__(self, x):
        return Encoder(name="encoder")(nn.Conv(3, (1, 1), name="pre")(x))


def test_init_with_vgg_gives_the_pretrained_weights_and_keeps_the_rest(vgg):
    x = jnp.full((8, 8, 3), 0.5)
    model = Wrapper()
    variables = init_with_vgg(model, jax.random.key(0), x, vgg=vgg)
    inner = variables["params"]["encoder"]["vgg"]
    assert sorted(inner) == ["conv1_1", "conv1_2"]  # only the layers the submodule uses
    for name in inner:
        for leaf in ("kernel", "bias"):
            assert inner[name][leaf] is vgg.params["params"][name][leaf]  # the same buffers
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # the structure model.init gives
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(variables)
    for want, got in zip(jax.tree_util.tree_leaves(shapes), jax.tree_util.tree_leaves(variables), strict=True):
        assert want.shape == got.shape and want.dtype == got.dtype
    assert float(jnp.abs(variables["params"]["pre"]["kernel"]).sum()) > 0  # initialised, not zeros
    # The model now computes with the pretrained features.
    p = variables["params"]
    pre = x @ p["pre"]["kernel"][0, 0] + p["pre"]["bias"]
    want = Encoder().apply({"params": {"vgg": inner, "head": p["encoder"]["head"]}}, pre)
    np.testing.assert_allclose(model.apply(variables, x), want, rtol=1e-5, atol=1e-6)
    feats = nst_jax.extract_features(vgg, pre, layers=("relu1_2",))["relu1_2"].mean(axis=(0, 1))
    np.testing.assert_allclose(want, feats @ p["encoder"]["head"]["kernel"] + p["encoder"]["head"]["bias"],
                               rtol=1e-4, atol=1e-4)


def test_init_with_vgg_refusals(vgg):
    x = jnp.full((8, 8, 3), 0.5)
    with pytest.raises(NSTError, match="no VGG19 submodule"):
        init_with_vgg(nn.Dense(3), jax.random.key(0), x, vgg=vgg)
    with pytest.raises(NSTError, match="not its params dict"):
        init_with_vgg(Encoder(), jax.random.key(0), x, vgg=vgg.params)
