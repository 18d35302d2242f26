"""The quality ratios against NumPy on tiny inputs, and their anchors on real images."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from nst_jax import metrics
from nst_jax.image import load_image, save_image

from .conftest import EXAMPLES, script_env, smooth_image


def np_gram(f):
    f = f.reshape(-1, f.shape[-1]).astype(np.float64)
    return f.T @ f / f.shape[0]


def np_rel(x, ref):
    return np.sum((x - ref) ** 2) / np.sum(ref**2)


def test_gram_error_and_relative_error_against_numpy():
    rng = np.random.default_rng(0)
    layers = ("a", "b")
    out = {"a": rng.normal(size=(4, 5, 3)), "b": rng.normal(size=(2, 3, 6))}
    sty = {"a": rng.normal(size=(3, 7, 3)), "b": rng.normal(size=(2, 2, 6))}
    out32 = {k: v.astype(np.float32) for k, v in out.items()}
    sty32 = {k: v.astype(np.float32) for k, v in sty.items()}
    expected = np.mean([np_rel(np_gram(out[k]), np_gram(sty[k])) for k in layers])
    got = jax.jit(metrics.gram_error, static_argnums=2)(out32, sty32, layers)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics.position_gram(out32["a"]), np_gram(out["a"]), rtol=1e-5, atol=1e-6)


def test_laplacian_against_loops():
    x = np.random.default_rng(1).uniform(size=(5, 6, 3))
    total, count = 0.0, 0
    for i in range(1, 4):
        for j in range(1, 5):
            lap = 4 * x[i, j] - x[i - 1, j] - x[i + 1, j] - x[i, j - 1] - x[i, j + 1]
            total += np.abs(lap).sum()
            count += 3
    np.testing.assert_allclose(jax.jit(metrics.mean_abs_laplacian)(x.astype(np.float32)), total / count, rtol=1e-5)
    assert float(metrics.mean_abs_laplacian(np.full((5, 6, 3), 0.5, np.float32))) == 0.0  # exact in binary


def test_shape_for_pixels_keeps_aspect():
    assert metrics.shape_for_pixels((100, 200), 20000) == (100, 200)
    h, w = metrics.shape_for_pixels((300, 100), 30000)
    assert (h, w) == (300, 100)
    h, w = metrics.shape_for_pixels((600, 200), 30000)
    assert abs(h * w - 30000) < 400 and abs(h / w - 3) < 0.05


def test_ratios_are_anchored_at_the_photo_and_the_painting(vgg):
    content = load_image(EXAMPLES / "chelsea.png", 96)
    style = load_image(EXAMPLES / "swirls.png", 128)
    photo = metrics.evaluate(vgg, content=content, style=style, output=content)
    # The photo: style ratio 1 and content ratio 0 by definition.
    np.testing.assert_allclose(photo["style_ratio"], 1.0, rtol=1e-5)
    assert photo["content_ratio"] < 1e-6
    # The painting at the output's size: content ratio 1; its Grams close to those at its own pixel count.
    resized = metrics.colour.resize(style, content.shape[:2])
    painting = metrics.evaluate(vgg, content=content, style=style, output=resized)
    np.testing.assert_allclose(painting["content_ratio"], 1.0, rtol=1e-5)
    assert painting["style_ratio"] < 0.3 * photo["style_ratio"]
    # Pixel noise on the photo is speckle; a smoothed photo is not.
    noisy = np.clip(content + np.random.default_rng(0).normal(0, 0.1, content.shape), 0, 1).astype(np.float32)
    noisy_speckle = metrics.evaluate(vgg, content=content, style=style, output=noisy)["speckle_ratio"]
    assert noisy_speckle > 2 * photo["speckle_ratio"]


def test_evaluate_script(tmp_path):
    out = tmp_path / "o.png"
    save_image(out, smooth_image(48, 64))
    proc = subprocess.run([sys.executable, "scripts/evaluate.py", str(EXAMPLES / "chelsea.png"),
                           str(EXAMPLES / "swirls.png"), str(out), "--json"], capture_output=True, text=True,
                          env=script_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    ratios = json.loads(proc.stdout)["outputs"][str(out)]
    assert set(ratios) == set(metrics.RATIOS) and all(np.isfinite(v) and v > 0 for v in ratios.values())
    bad = subprocess.run([sys.executable, "scripts/evaluate.py", str(EXAMPLES / "chelsea.png"),
                          str(tmp_path / "nope.png"), str(out)], capture_output=True, text=True,
                         env=script_env(), timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no such file" in bad.stderr


@pytest.mark.parametrize("bad", [np.zeros((2, 32, 32, 3), np.float32), np.zeros((32, 32, 3), np.uint8)])
def test_evaluate_refuses_batches_and_integers(vgg, bad):
    from nst_jax import NSTError

    with pytest.raises(NSTError):
        metrics.evaluate(vgg, content=smooth_image(32, 32), style=smooth_image(32, 32), output=bad)


def test_style_ratio_falls_as_the_style_weight_grows(vgg):
    """Three style weights, 15 L-BFGS steps from the photo at 48 px, as one sweep: more β, more style."""
    from nst_jax import StylizeConfig, make_weights, stack_weights, sweep

    content = load_image(EXAMPLES / "chelsea.png", 48)
    style = load_image(EXAMPLES / "swirls.png", 48)
    config = StylizeConfig(iterations=15, init="content")
    betas = (0.3, 3.0, 30.0)
    result = sweep(vgg, content=content, style=style, config=config,
                   weights=stack_weights([make_weights(config, style_weight=b) for b in betas]))
    evaluator = metrics.Evaluator(vgg, content=content, style=style, shape=content.shape)
    style_ratios = [evaluator(np.asarray(image))["style_ratio"] for image in result.images]
    content_ratios = [evaluator(np.asarray(image))["content_ratio"] for image in result.images]
    assert style_ratios[0] > 1.2 * style_ratios[1] > 1.44 * style_ratios[2], style_ratios
    assert content_ratios[0] < content_ratios[1] < content_ratios[2], content_ratios
