"""Vmapped, sharded sweeps: each member equals its solo run; sharding over 4 host devices."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nst_jax.optimize import StylizeConfig, loss_weights, stylize
from nst_jax.sweep import stack_weights, sweep

from .conftest import smooth_image

CONTENT = smooth_image(32, 40, seed=1)
STYLE = smooth_image(36, 36, seed=2)
LAYERS = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


# L-BFGS amplifies float rounding differences between batched and single convolutions
# (1e-7 at first, ~1e-4 relative in the loss after 8 steps here), so it is compared earlier.
@pytest.mark.parametrize("optimizer,steps,atol", [("adam", 8, 2e-4), ("lbfgs", 4, 5e-3)])
def test_members_equal_solo_runs(vgg, optimizer, steps, atol):
    config = StylizeConfig(optimizer=optimizer, iterations=steps, chunk_size=2, **LAYERS)
    members = [
        loss_weights(config, style_weight=10.0, learning_rate=0.05),
        loss_weights(config, style_weight=1e3, tv_weight=1e3, learning_rate=0.02),
        loss_weights(config, content_weight=0.5, style_layer_weights=[0.9, 0.1], learning_rate=0.1),
    ]
    seeds = [0, 1, 2]
    result = sweep(vgg.params, convention=vgg.convention, weights=stack_weights(members), seeds=seeds,
                   content=CONTENT, style=STYLE, config=config)
    images = np.asarray(result.images)
    assert images.shape == (3, 32, 40, 3)
    for i, (w, seed) in enumerate(zip(members, seeds, strict=True)):
        solo = stylize(vgg.params, convention=vgg.convention, content=CONTENT, style=STYLE, config=config,
                       weights=w, seed=seed)
        np.testing.assert_allclose(images[i], solo.image, atol=atol, err_msg=f"member {i}")
        assert np.abs(images[i] - solo.image).mean() < 1e-4, i
        np.testing.assert_allclose(result.history["total"][i], solo.history["total"], rtol=1e-4)
        np.testing.assert_array_equal(result.history["evaluations_per_step"][i], solo.history["evaluations_per_step"])
    # The members really differ.
    assert np.abs(images[0] - images[1]).mean() > 0.01


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from nst_jax.weights import load_vgg19
    from nst_jax.optimize import StylizeConfig, loss_weights
    from nst_jax.sweep import batch_mesh, stack_weights, sweep
    from tests.conftest import smooth_image

    assert jax.device_count() == 4, jax.devices()
    vgg = load_vgg19()
    config = StylizeConfig(optimizer="adam", iterations=4, chunk_size=2,
                           content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    content, style = smooth_image(32, 32, seed=1), smooth_image(32, 32, seed=2)

    def run(k, mesh):
        weights = stack_weights([loss_weights(config, style_weight=10.0 ** (i % 4), learning_rate=0.05)
                                 for i in range(k)])
        return sweep(vgg.params, convention=vgg.convention, weights=weights, seeds=list(range(k)),
                     content=content, style=style, config=config, mesh=mesh)

    eight = run(8, None)
    devices = eight.images.sharding.device_set
    print("SHARDED_OVER", len(devices))
    single = run(8, batch_mesh(jax.devices()[:1]))
    print("MAXDIFF8", float(np.abs(np.asarray(eight.images) - np.asarray(single.images)).max()))
    six = run(6, None)  # not a multiple of 4: padded to 8, copies dropped
    print("SHAPE6", np.asarray(six.images).shape, six.history["total"].shape)
    print("MAXDIFF6", float(np.abs(np.asarray(six.images) - np.asarray(single.images)[:6]).max()))
""")


def test_sharded_over_four_host_devices():
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert out["SHARDED_OVER"] == "4"
    assert float(out["MAXDIFF8"]) < 1e-4
    assert out["SHAPE6"] == "(6, 32, 32, 3) (6, 3)"
    assert float(out["MAXDIFF6"]) < 1e-4
