"""Tiled evaluation: the same loss value and gradient as the untiled loss, tile geometry, refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import StylizeConfig, compute_targets, loss_terms, make_weights, stylize
from nst_jax._src import tiled
from nst_jax._src.vgg import receptive_radius, validity_masks
from nst_jax.config import tile_alignment

from .conftest import smooth_image

# Neither side a multiple of 16 (the pooled maps' floors differ from the tiles'), 2 x 2 tiles of 32.
SHAPE = (40, 56, 3)
DEEP_LAYERS = ("relu1_1", "relu3_1", "conv5_1")
SHALLOW = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))


def rel_err(got, want):
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


def untiled_and_tiled(vgg, config, *, seed=0):
    """``(value, grad)`` untiled and tiled (``jax.value_and_grad`` of ``loss_terms``'s total, tiled
    through its custom VJP), and the untiled and tiled loss terms, at a random image."""
    untiled_config = dataclasses.replace(config, tile_size=0)
    content = jnp.asarray(smooth_image(*SHAPE[:2], seed=1))
    style = jnp.asarray(smooth_image(36, 44, seed=2))
    targets = compute_targets(vgg, content=content, style=style, config=untiled_config,
                              output_shape=SHAPE)
    weights = make_weights(config)
    image = jnp.asarray(np.random.default_rng(seed).uniform(size=SHAPE).astype(np.float32))

    def value_grad_terms(config):
        # The network and targets are arguments: closed over, XLA folds their 80 MB as constants (measured
        # 10.2 s per compile of the untiled program at this size, 0.7 s as arguments).
        def total(x, vgg, targets):
            terms = loss_terms(vgg, x, targets, weights, config=config)
            return terms["total"], terms

        return jax.jit(jax.value_and_grad(total, has_aux=True))(image, vgg, targets)

    # One program each way: the value, its gradient (tiled: through the custom VJP) and the terms.
    (v0, terms0), g0 = value_grad_terms(untiled_config)
    (v1, terms1), g1 = value_grad_terms(config)
    return (v0, g0), (v1, g1), terms0, terms1


def test_receptive_radius_and_halo():
    assert receptive_radius(("conv5_1",)) == 85
    assert receptive_radius(("relu1_1", "relu5_1")) == 85
    assert receptive_radius(("conv1_1",)) == 1
    assert receptive_radius(("pool1",)) == 3
    assert tiled.halo_size(("relu1_1", "conv5_1")) == 96
    assert tiled.halo_size(("relu2_1",)) == 16
    assert tile_alignment(("conv5_1",)) == 16
    assert tile_alignment(("pool5",)) == 32
    grid = tiled.tile_grid(SHAPE, 32, DEEP_LAYERS)
    assert (grid.rows, grid.cols, grid.span) == (2, 2, 224)


@pytest.mark.parametrize("start,size,extent", [
    ((-32, 64), (96, 96), (40, 150)),  # a tile whose halo lies above the image and reaches past its bottom
    ((96, -32), (64, 64), (200, 10)),  # ... left of it and past its right side
    ((0, 0), (64, 48), (37, 21))])  # a canvas larger than the output's extent (a shape bucket)
def test_validity_masks_against_counted_positions(start, size, extent):
    levels = 3
    eager = validity_masks(start, size, extent, levels)
    traced = jax.jit(lambda s, e: validity_masks(s, size, e, levels))(jnp.asarray(start), jnp.asarray(extent))
    for k in range(levels + 1):
        want = np.zeros((size[0] >> k, size[1] >> k), np.float32)
        for i, j in np.ndindex(*want.shape):
            y, x = start[0] // 2**k + i, start[1] // 2**k + j  # the window's position at level k
            want[i, j] = 0 <= y < extent[0] // 2**k and 0 <= x < extent[1] // 2**k
        np.testing.assert_array_equal(eager[k], want)
        np.testing.assert_array_equal(traced[k], want)


@pytest.mark.slow
@pytest.mark.parametrize("pooling,mode", [("max", "transfer"), ("avg", "style")])
def test_value_and_gradient_equal_untiled(vgg, pooling, mode):
    config = StylizeConfig(mode=mode, pooling=pooling, style_layers=DEEP_LAYERS, tile_size=32)
    (v0, g0), (v1, g1), terms0, terms1 = untiled_and_tiled(vgg, config)
    assert float(v0) > 0 and float(jnp.max(jnp.abs(g0))) > 0
    np.testing.assert_allclose(v1, v0, rtol=1e-4)
    assert rel_err(g1, g0) < 1e-4
    for name in ("content", "style", "tv", "total"):
        np.testing.assert_allclose(terms1[name], terms0[name], rtol=1e-4, atol=1e-6 * float(v0))
    if mode == "transfer":
        assert float(terms0["content"]) > 1e-3 * float(v0)  # the content term is really compared


def test_content_only_and_bf16_equal_untiled(vgg):
    config = StylizeConfig(mode="content", content_layers=("relu1_2", "relu4_2"), precision="bf16", tile_size=32)
    (v0, g0), (v1, g1), _, _ = untiled_and_tiled(vgg, config)
    # bf16 rounds every convolution's inputs (and cotangents), so the tiles' other summation order shows
    # more: measured 1.9e-3 here, against 5e-2 between bf16 and fp32 and 3e-7 between tiled and untiled fp32.
    np.testing.assert_allclose(v1, v0, rtol=1e-3)
    assert rel_err(g1, g0) < 1e-2


@pytest.mark.slow
def test_too_small_halo_is_detected(vgg, monkeypatch):
    """The comparison above can fail: a halo below conv5_1's radius of 85 px is visibly wrong."""
    config = StylizeConfig(mode="style", style_layers=DEEP_LAYERS, tile_size=32)
    monkeypatch.setattr(tiled, "halo_size", lambda layers: 16)
    (v0, g0), (v1, g1), _, _ = untiled_and_tiled(vgg, config)
    assert abs(float(v1) / float(v0) - 1) > 1e-4 or rel_err(g1, g0) > 1e-3
    assert rel_err(g1, g0) > 1e-2


def test_targets_equal_untiled(vgg):
    content, style = jnp.asarray(smooth_image(40, 56, seed=1)), jnp.asarray(smooth_image(36, 44, seed=2))
    want, got = (compute_targets(vgg, content=content, style=[style, style[::-1]], config=StylizeConfig(
        **SHALLOW, num_styles=2, tile_size=t), output_shape=(40, 56, 3)) for t in (0, 16))
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got), strict=True):
        assert a.shape == b.shape
        assert rel_err(b, a) < 1e-5


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_stylize_tiled_equals_untiled(vgg, optimizer):
    content, style = smooth_image(40, 56, seed=1), smooth_image(36, 44, seed=2)
    results = [stylize(vgg, content=content, style=[style, style[::-1]],
                       config=StylizeConfig(**SHALLOW, optimizer=optimizer, iterations=4, chunk_size=4, num_styles=2,
                                            tile_size=t))
               for t in (0, 16)]
    np.testing.assert_allclose(results[1].image, results[0].image, atol=1e-4)
    np.testing.assert_allclose(results[1].history["total"], results[0].history["total"], rtol=1e-4)
    np.testing.assert_array_equal(results[1].history["evaluations_per_step"],
                                  results[0].history["evaluations_per_step"])
