"""Any optax transformation in the library's loop: ``StylizeConfig(optimizer=optax.adam(0.01))``."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import nst_jax
from nst_jax._src import memory
from nst_jax._src.checkpoint import load_checkpoint, save_checkpoint
from nst_jax.errors import NSTError

LAYERS = {"content_layers": ("relu1_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.fixture(scope="module")
def vgg():
    return nst_jax.load_vgg19()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, (32, 40, 3)).astype(np.float32), rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)


def _hand_loop(vgg, images, transform, steps):
    """The same optimisation written out with nst_jax.make_loss and optax, no library loop."""
    content, style = images
    config = nst_jax.LossConfig(**LAYERS)
    targets = nst_jax.compute_targets(vgg, content=content, style=style, config=config)
    weights = nst_jax.make_weights(config)
    loss = nst_jax.make_loss(config)
    grad = jax.jit(lambda x: jax.grad(lambda x: loss(vgg, x, targets, weights), has_aux=True)(x)[0])
    x, state = content, transform.init(content)
    for _ in range(steps):
        updates, state = transform.update(grad(x), state, x)
        x = optax.apply_updates(x, updates)
    return np.clip(np.asarray(x), 0, 1)


def test_an_optax_transformation_runs_in_the_library_loop(vgg, images):
    transform = optax.sgd(0.05)
    config = nst_jax.StylizeConfig(optimizer=transform, iterations=4, chunk_size=2, **LAYERS)
    result = nst_jax.stylize(vgg, content=images[0], style=images[1], config=config)
    want = _hand_loop(vgg, images, transform, 4)
    np.testing.assert_allclose(result.image, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(result.image, images[0], atol=1e-3)  # it moved
    np.testing.assert_array_equal(result.history["evaluations_per_step"], [1, 1, 1, 1])
    assert result.history["total"][-1] < result.history["total"][0]


def test_optax_adam_equals_the_built_in_adam(vgg, images):
    common = dict(iterations=3, chunk_size=3, **LAYERS)
    built_in = nst_jax.stylize(vgg, content=images[0], style=images[1], config=nst_jax.StylizeConfig(
        optimizer="adam", **common), weights=nst_jax.make_weights(nst_jax.LossConfig(**LAYERS), learning_rate=0.01))
    custom = nst_jax.stylize(vgg, content=images[0], style=images[1],
                             config=nst_jax.StylizeConfig(optimizer=optax.adam(0.01), **common))
    np.testing.assert_allclose(custom.image, built_in.image, rtol=1e-5, atol=1e-6)


def test_checkpoint_resume_and_sweep_with_an_optax_transformation(vgg, images, tmp_path):
    config = nst_jax.StylizeConfig(optimizer=optax.sgd(0.05, momentum=0.9), iterations=4, chunk_size=2, **LAYERS)
    path = tmp_path / "run.ckpt.npz"

    def save_at_2(progress):
        if progress.step == 2:
            save_checkpoint(path, progress.checkpoint())

    straight = nst_jax.stylize(vgg, content=images[0], style=images[1], config=config, callback=save_at_2)
    ckpt = load_checkpoint(path)
    assert ckpt.run["config"]["optimizer"] == "optax"
    resumed = nst_jax.stylize(vgg, content=images[0], style=images[1], config=config, resume=ckpt)
    np.testing.assert_array_equal(resumed.image, straight.image)  # the momentum state came back too
    weights = nst_jax.stack_weights([nst_jax.make_weights(config), nst_jax.make_weights(config, style_weight=500.0)])
    swept = nst_jax.sweep(vgg, weights=weights, content=images[0], style=images[1], config=config)
    np.testing.assert_allclose(swept.images[0], straight.image, rtol=1e-4, atol=1e-5)
    assert not np.allclose(swept.images[0], swept.images[1], atol=1e-3)


def test_the_memory_estimate_counts_the_transformations_state():
    def optimizer_bytes(optimizer):
        config = nst_jax.StylizeConfig(optimizer=optimizer, **LAYERS)
        return memory.estimate_bytes(config, (64, 64, 3))["optimizer"]

    sgd, adam = optimizer_bytes(optax.sgd(0.1)), optimizer_bytes(optax.adam(0.1))
    image = 64 * 64 * 3 * 4
    assert adam - sgd == 2 * image  # Adam's two moments per pixel
    assert optimizer_bytes("adam") == adam


def test_optimizer_field_refuses_anything_else():
    with pytest.raises(NSTError, match="unknown optimizer 'sgd' .*optax.GradientTransformation"):
        nst_jax.StylizeConfig(optimizer="sgd")
    with pytest.raises(NSTError, match="unknown optimizer"):
        nst_jax.StylizeConfig(optimizer=lambda g: g)  # type: ignore[arg-type]
    a, b = optax.adam(0.01), optax.adam(0.01)
    assert nst_jax.StylizeConfig(optimizer=a) == nst_jax.StylizeConfig(optimizer=a)
    assert nst_jax.StylizeConfig(optimizer=a) != nst_jax.StylizeConfig(optimizer=b)  # its own programs
