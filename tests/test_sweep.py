"""Vmapped, sharded sweeps: each member equals its solo run; sharding over 4 host devices."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nst_jax import StylizeConfig, make_weights, stack_weights, stylize, sweep

from .conftest import host_devices_env, smooth_image

CONTENT = smooth_image(32, 40, seed=1)
STYLE = smooth_image(36, 36, seed=2)
LAYERS = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


# batch_size 1 (the CPU default) runs each member exactly as alone; vmapped members (batch_size 3)
# differ by float rounding between batched and single convolutions, which L-BFGS amplifies
# (1e-7 at first, ~1e-4 relative in the loss after 8 steps here), so it is compared earlier, and
# which Adam turns into whole steps where a pixel's gradient is near 0 (its update is g / sqrt(v)):
# a few pixels of 3840 differ by up to 5e-4 after 8 steps, the mean difference stays below 1e-4.
@pytest.mark.parametrize("optimizer,steps,atol,batch_size", [
    ("adam", 8, 0.0, 1), ("lbfgs", 8, 0.0, 1), ("adam", 8, 1e-3, 3), ("lbfgs", 4, 5e-3, 3)])
def test_members_equal_solo_runs(vgg, optimizer, steps, atol, batch_size):
    config = StylizeConfig(optimizer=optimizer, iterations=steps, chunk_size=2, init="noise", **LAYERS)
    members = [
        make_weights(config, style_weight=10.0, learning_rate=0.05),
        make_weights(config, style_weight=1e3, tv_weight=1e3, learning_rate=0.02),
        make_weights(config, content_weight=0.5, style_layer_weights=[0.9, 0.1], learning_rate=0.1),
    ]
    seeds = [0, 1, 2]
    result = sweep(vgg, weights=stack_weights(members), seeds=seeds, content=CONTENT, style=STYLE, config=config,
                   batch_size=batch_size)
    images = result.images
    assert isinstance(images, np.ndarray)
    assert images.shape == (3, 32, 40, 3)
    for i, (w, seed) in enumerate(zip(members, seeds, strict=True)):
        solo = stylize(vgg, content=CONTENT, style=STYLE, config=config,
                       weights=w, seed=seed)
        np.testing.assert_allclose(images[i], solo.image, atol=atol, err_msg=f"member {i}")
        assert np.abs(images[i] - solo.image).mean() < 1e-4, i
        np.testing.assert_allclose(result.history["total"][i], solo.history["total"], rtol=1e-4)
        np.testing.assert_array_equal(result.history["evaluations_per_step"][i], solo.history["evaluations_per_step"])
        assert result.history.keys() == solo.history.keys()
        for key, value in solo.history.items():
            assert result.history[key].shape == (value.shape if key == "step" else (3, *value.shape)), key
    # The members really differ.
    assert np.abs(images[0] - images[1]).mean() > 0.01


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from nst_jax import StylizeConfig, load_vgg19, make_weights, stack_weights, sweep
    from nst_jax.host import member_mesh
    from tests.conftest import smooth_image

    assert jax.device_count() == 4, jax.devices()
    vgg = load_vgg19()
    config = StylizeConfig(optimizer="adam", iterations=4, chunk_size=2,
                           content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    content, style = smooth_image(32, 32, seed=1), smooth_image(32, 32, seed=2)

    def run(k, mesh):
        weights = stack_weights([make_weights(config, style_weight=10.0 ** (i % 4 - 1), learning_rate=0.05)
                                 for i in range(k)])
        devices = set()
        result = sweep(vgg, weights=weights, seeds=list(range(k)), content=content, style=style, config=config,
                       mesh=mesh, callback=lambda p: devices.update(p.state.image.sharding.device_set))
        return result, len(devices)

    eight, used = run(8, None)
    print("SHARDED_OVER", used)
    single, _ = run(8, member_mesh(jax.devices()[:1]))
    print("MAXDIFF8", float(np.abs(eight.images - single.images).max()))
    six, _ = run(6, None)  # not a multiple of 4: padded to 8, copies dropped
    print("SHAPE6", six.images.shape, six.history["total"].shape)
    print("MAXDIFF6", float(np.abs(six.images - single.images[:6]).max()))
""")


@pytest.mark.slow
def test_sharded_over_four_host_devices():
    root = pathlib.Path(__file__).resolve().parent.parent
    env = host_devices_env(4)
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert out["SHARDED_OVER"] == "4"
    assert float(out["MAXDIFF8"]) < 1e-4
    assert out["SHAPE6"] == "(6, 32, 32, 3) (6, 3)"
    assert float(out["MAXDIFF6"]) < 1e-4

