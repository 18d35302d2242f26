"""Flax NNX: the frozen VGG held on an nnx.Module stays out of the trainable state, and a train
step runs under nnx.jit (and the pass-as-argument form too)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nst_jax

nnx = pytest.importorskip("flax.nnx")
from nst_jax.flax_nnx import FrozenVGG, FrozenWeights  # noqa: E402

LAYERS = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


class Painter(nnx.Module):
    def __init__(self, vgg, rngs):
        self.conv = nnx.Conv(3, 3, (3, 3), rngs=rngs)
        self.vgg = FrozenVGG(vgg)

    def __call__(self, x):
        return x + 0.1 * self.conv(x)

    def loss(self, x, y):
        return self.vgg.perceptual_loss(self(x), y, **LAYERS)


def _leaves(state):
    return jax.tree_util.tree_leaves(state)


def _images():
    rng = np.random.default_rng(0)
    return rng.uniform(size=(32, 32, 3)).astype(np.float32), rng.uniform(size=(32, 32, 3)).astype(np.float32)


def test_frozen_weights_are_out_of_the_trainable_state(vgg):
    model = Painter(vgg, nnx.Rngs(0))
    trainable = nnx.state(model, nnx.Param)
    assert sum(x.size for x in _leaves(trainable)) == 3 * 3 * 3 * 3 + 3  # the conv only
    frozen = nnx.state(model, FrozenWeights)
    assert sum(x.size for x in _leaves(frozen)) == sum(
        x.size for x in jax.tree_util.tree_leaves(vgg.params))  # all 20 M VGG floats, kept apart
    assert not issubclass(FrozenWeights, nnx.Param)


def test_train_step_under_nnx_jit_moves_only_the_model(vgg):
    model = Painter(vgg, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    assert sum(x.size for x in _leaves(nnx.state(optimizer, nnx.OptState))) < 1000  # no moments for VGG
    x, y = _images()

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: m.loss(x, y))(model)
        optimizer.update(model, grads)
        return loss, grads

    kernel0 = np.asarray(model.conv.kernel[...]).copy()
    vgg0 = np.asarray(model.vgg.weights["conv1_1"]["kernel"][...]).copy()
    losses = []
    for _ in range(3):
        loss, grads = train_step(model, optimizer, x, y)
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert sum(x.size for x in _leaves(grads)) == 3 * 3 * 3 * 3 + 3  # gradients of the conv only
    assert not np.array_equal(np.asarray(model.conv.kernel[...]), kernel0)
    np.testing.assert_array_equal(np.asarray(model.vgg.weights["conv1_1"]["kernel"][...]), vgg0)


def test_frozen_vgg_matches_the_library_and_stops_gradients(vgg):
    frozen = FrozenVGG(vgg)
    x, y = _images()
    np.testing.assert_array_equal(frozen(x, layers=("relu1_1",))["relu1_1"],
                                  nst_jax.extract_features(vgg, x, layers=("relu1_1",))["relu1_1"])
    # Differentiating with respect to every variable, frozen ones included, still gives them zero.
    grads = nnx.grad(lambda m: m.perceptual_loss(x, y, **LAYERS), argnums=nnx.DiffState(0, FrozenWeights))(frozen)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in _leaves(nnx.state(grads)))


def test_passing_vgg_as_an_argument_keeps_the_module_state_small(vgg):
    class Small(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 3, (3, 3), rngs=rngs)

        def __call__(self, x):
            return x + 0.1 * self.conv(x)

    model = Small(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x, y = _images()

    @nnx.jit
    def train_step(model, optimizer, vgg, x, y):
        loss, grads = nnx.value_and_grad(lambda m: nst_jax.perceptual_loss(vgg, m(x), y, **LAYERS))(model)
        optimizer.update(model, grads)
        return loss

    first = float(train_step(model, optimizer, vgg, x, y))
    assert float(train_step(model, optimizer, vgg, x, y)) < first
    assert sum(x.size for x in _leaves(nnx.state(model))) == 3 * 3 * 3 * 3 + 3
