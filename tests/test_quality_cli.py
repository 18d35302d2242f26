"""The quality-control flags of the command line reach the library (checked in-process with prepare()), and
each one changes the image the real entry point writes, as its definition says (checked against NumPy)."""

import pathlib
import re
import types

import numpy as np
import pytest
from PIL import Image

from nst_jax import extract_features
from nst_jax._src.plan import optimised_inputs
from nst_jax.cli._stylize import main
from nst_jax.errors import NSTError

from .conftest import EXAMPLES

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "stylize.py"
CONTENT = str(EXAMPLES / "chelsea.png")
STYLE = str(EXAMPLES / "swirls.png")


@pytest.fixture(scope="module")
def stylize_script():
    from nst_jax.cli import _stylize as stylize

    return stylize


def prepared(script, tmp_path, *extra, size=64):
    args, _ = script.parse(  # as the command line parses (one --content photo becomes a path)
        ["--content", CONTENT, "--style", STYLE, "--output", str(tmp_path / "out.png"), "--size", str(size),
         *map(str, extra)])
    return script.prepare(args)


def test_style_loss_flag(stylize_script, tmp_path):
    assert prepared(stylize_script, tmp_path).config.style_loss == "gram"
    assert prepared(stylize_script, tmp_path, "--style-loss", "w2").config.style_loss == "w2"
    with pytest.raises(SystemExit):
        prepared(stylize_script, tmp_path, "--style-loss", "l1")


def test_quality_flags_reach_config_and_weights(stylize_script, tmp_path):
    weights = prepared(stylize_script, tmp_path, "--ema", "0.9").weights
    assert float(weights.ema_decay) == pytest.approx(0.9)
    out = prepared(stylize_script, tmp_path, "--style", STYLE, CONTENT, "--style-blend", "0.7", "0.3")
    config, weights, style = out.config, out.weights, out.plan.style
    assert config.num_styles == 2 and isinstance(style, list) and len(style) == 2
    np.testing.assert_allclose(weights.style_blend, [0.7, 0.3])
    out = prepared(stylize_script, tmp_path, "--style-scale", "0.5", "--preserve-colour", "luminance", size=96)
    assert out.config.style_scale == 0.5 and out.config.preserve_colour == "luminance"
    assert max(out.plan.style.shape[:2]) == 48  # loaded at 0.5 x --size 96
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.r_[np.zeros(10), 255 * np.ones(10)].astype(np.uint8), (12, 1))).save(mask)
    out = prepared(stylize_script, tmp_path, "--style", STYLE, STYLE, "--masks", mask, mask)
    content, masks = out.plan.content, optimised_inputs(out.plan).masks
    assert masks.shape == (2, *content.shape[:2]) and masks[0, :, :20].max() < 0.05 and masks[0, :, -20:].min() > 0.95


@pytest.mark.parametrize("extra,needle", [
    (["--style-blend", "1", "2"], "2 style blend weights given for 1 style images"),
    (["--ema", "1.0"], "EMA decay"),
    (["--style-scale", "0.1"], "smaller than"),
    (["--masks", STYLE, STYLE], "2 masks given for 1 style images"),
    (["--mode", "style", "--preserve-colour", "match"], "transfer mode"),
])
def test_quality_flags_refused_before_compute(stylize_script, tmp_path, extra, needle):
    with pytest.raises(NSTError, match=needle):
        prepared(stylize_script, tmp_path, *extra)


def test_end_to_end_with_quality_flags(tmp_path):
    mask = tmp_path / "left.png"
    Image.fromarray(np.tile(np.r_[255 * np.ones(8), np.zeros(8)].astype(np.uint8), (8, 1))).save(mask)
    inverse = tmp_path / "right.png"
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(inverse)
    out = tmp_path / "out.png"
    from nst_jax.cli._stylize import main

    code = main(["--content", CONTENT, "--style", STYLE, CONTENT, "--masks", str(mask), str(inverse),
                 "--style-loss", "meancov", "--ema", "0.5", "--preserve-colour", "match", "--style-scale", "0.8",
                 "--size", "64", "--iterations", "4", "--style-layers", "relu1_1", "relu2_1", "--output", str(out)])
    assert code == 0
    assert np.asarray(Image.open(out)).shape[1] == 64


def test_scales_flags(stylize_script, tmp_path):
    assert prepared(stylize_script, tmp_path, "--scales", "3", "--min-size", "32", size=128).sizes == [32, 64, 128]
    with pytest.raises(NSTError, match=re.escape("2 per-level step counts (--scale-iterations) given for 3 levels")):
        prepared(stylize_script, tmp_path, "--scales", "3", "--min-size", "32", "--scale-iterations", 5, 5)
    # Steps are counted over the whole run, level after level; checkpoints and saves work with levels.
    job = prepared(stylize_script, tmp_path, "--scales", "3", "--min-size", "32", "--scale-iterations", 5, 6, 7,
                   "--checkpoint-every", 5, "--save-every", 2, size=128)
    assert job.total == 18 and job.run_step(2, 3) == 14
    assert [job.level_step(s) for s in (1, 5, 6, 11, 12, 18)] == [(0, 1), (0, 5), (1, 1), (1, 6), (2, 1), (2, 7)]
    job.start = 8  # resumed at level 1's step 3: the steps each level runs now
    assert [job.steps_now(level) for level in range(3)] == [0, 3, 7]


def test_vgg_normalized_flag(stylize_script, tmp_path):
    vgg = prepared(stylize_script, tmp_path).vgg
    normed = prepared(stylize_script, tmp_path, "--vgg", "normalized").vgg
    assert "normalization" in normed.meta and "normalization" not in vgg.meta
    assert not np.allclose(normed.params["params"]["conv1_1"]["bias"], vgg.params["params"]["conv1_1"]["bias"])


# End to end: `nst-jax` in this process (nst_jax.cli._stylize.main), each flag against the same run without
# it (same seed, size and steps). The inputs are written at the run's size (48 px), so the command line
# loads them as they are and the test knows every pixel it was given. One level, 4 steps, shallow layers:
# the runs without a flag of their own share one set of compiled programs.
RUN = ["--size", 48, "--iterations", 4, "--preset", "faithful", "--content-layer", "relu1_1",
       "--style-layers", "relu1_1", "relu2_1", "--seed", 0]
STYLE_LAYERS = ("relu1_1", "relu2_1")
# NTSC YIQ from RGB (rows Y, I, Q): the standard matrix, written here independently of nst_jax._src.colour.
YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


def read(path) -> np.ndarray:
    """An 8-bit image file as float64 RGB in [0, 1]."""
    return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255


def write(path, image) -> pathlib.Path:
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The photo (48 x 32) and painting (48 x 36) at the run's size, a second painting (the first's
    negative, upside down) and an all-white and an all-black mask at the output's size."""
    folder = tmp_path_factory.mktemp("quality")
    photo = np.asarray(Image.open(CONTENT).convert("RGB").resize((48, 32), Image.LANCZOS)) / 255
    painting = np.asarray(Image.open(STYLE).convert("RGB").resize((48, 36), Image.LANCZOS)) / 255
    return types.SimpleNamespace(
        folder=folder, photo=write(folder / "photo.png", photo), style=write(folder / "painting.png", painting),
        style2=write(folder / "negative.png", 1 - painting[::-1]),
        white=write(folder / "white.png", np.ones((32, 48))), black=write(folder / "black.png", np.zeros((32, 48))))


def stylized(inputs, name, *extra, styles=None) -> np.ndarray:
    """``nst-jax --content PHOTO --style STYLES... --output NAME.png`` with :data:`RUN` and ``extra``: the image
    it wrote."""
    output = inputs.folder / f"{name}.png"
    styles = [inputs.style] if styles is None else styles
    code = main([str(a) for a in ["--content", inputs.photo, "--style", *styles, "--output", output, *RUN, *extra]])
    assert code == 0
    image = read(output)
    assert image.shape == (32, 48, 3)
    return image


def changed(a, b) -> bool:
    return np.abs(a - b).mean() > 0.005  # the flags below change the image by 0.02-0.08 on average


@pytest.fixture(scope="module")
def plain(inputs):
    """The run without any of the flags."""
    return stylized(inputs, "plain")


def test_preserve_colour_luminance_keeps_the_photos_chroma(inputs, plain):
    out = stylized(inputs, "luminance", "--preserve-colour", "luminance")
    assert changed(out, plain)
    # The output is the optimised luminance with the photo's I and Q. Where no channel was clipped, its I and Q
    # equal the photo's up to the 8-bit rounding of the output's channels (at most 0.5/255 each, times the
    # sum of a chroma row's absolute coefficients, 1.19): 0.6/255. Without the flag they differ by up to 0.33.
    unclipped = ((out > 0) & (out < 1)).all(-1)
    assert unclipped.mean() > 0.9
    chroma_out, chroma_photo = (out @ YIQ.T)[unclipped, 1:], (read(inputs.photo) @ YIQ.T)[unclipped, 1:]
    np.testing.assert_allclose(chroma_out, chroma_photo, rtol=0, atol=0.6 / 255)


def _matrix_power(cov, power):
    values, vectors = np.linalg.eigh(cov)
    return (vectors * values**power) @ vectors.T


def test_preserve_colour_match_runs_on_the_colour_matched_painting(inputs, plain):
    out = stylized(inputs, "match", "--preserve-colour", "match")
    assert changed(out, plain)
    # Gatys et al. 2017, section 5.2: the painting's colours mapped linearly to the photo's mean and covariance,
    # x' = C_p^1/2 C_s^-1/2 (x - mu_s) + mu_p, before the transfer. The same run on that painting, computed here
    # and saved in 8 bits, gives the same image up to what that rounding of the painting moves (measured: at
    # most 1/255, 7e-5 on average; the run on the original painting differs by 0.08 on average).
    painting, photo = read(inputs.style).reshape(-1, 3), read(inputs.photo).reshape(-1, 3)
    cov_s, cov_p = (np.cov(x, rowvar=False, bias=True) + 1e-5 * np.eye(3) for x in (painting, photo))
    matched = (painting - painting.mean(0)) @ (_matrix_power(cov_p, 0.5) @ _matrix_power(cov_s, -0.5)).T
    matched = write(inputs.folder / "matched.png", (matched + photo.mean(0)).reshape(36, 48, 3))
    expected = stylized(inputs, "on_matched", styles=[matched])
    assert np.abs(out - expected).max() <= 3 / 255 and np.abs(out - expected).mean() < 1e-3


def test_masks_give_each_region_its_painting(inputs, plain):
    # Mask 1 all white, mask 2 all black: the whole output is region 1, so the run is the one-painting run of
    # the painting of region 1 (measured: bitwise), whichever painting that is.
    alone2 = stylized(inputs, "alone2", styles=[inputs.style2])
    assert changed(alone2, plain)
    both = [inputs.style, inputs.style2]
    first = stylized(inputs, "masks_first", "--masks", inputs.white, inputs.black, styles=both)
    second = stylized(inputs, "masks_second", "--masks", inputs.black, inputs.white, styles=both)
    np.testing.assert_allclose(first, plain, rtol=0, atol=2 / 255)
    np.testing.assert_allclose(second, alone2, rtol=0, atol=2 / 255)


def test_ema_outputs_the_bias_corrected_average_of_the_iterates(inputs, plain):
    # Decay 0 is the last iterate, exactly.
    np.testing.assert_array_equal(stylized(inputs, "ema_zero", "--ema", "0.0"), plain)
    # The iterates x_1..x_4: the intermediate saves of the run without EMA (ending chunks there changes nothing).
    saved = stylized(inputs, "saves", "--save-every", 1)
    np.testing.assert_array_equal(saved, plain)
    iterates = np.stack([read(inputs.folder / f"saves_{step:05d}.png") for step in (1, 2, 3)] + [saved])
    # Where every iterate lies inside (0, 1) (clipping on saving changes nothing there), the output is
    # sum_t (1 - d) d^(4 - t) x_t / (1 - d^4) up to the 8-bit rounding of the iterates (0.5/255, weights summing
    # to 1) and of the output (0.5/255).
    inside = ((iterates > 0) & (iterates < 1)).all(0)
    assert inside.mean() > 0.9
    for decay in (0.5, 0.9):
        out = stylized(inputs, f"ema_{decay}", "--ema", decay)
        assert changed(out, plain)
        weights = np.array([(1 - decay) * decay ** (4 - t) for t in (1, 2, 3, 4)]) / (1 - decay**4)
        expected = np.tensordot(weights, iterates, 1)
        np.testing.assert_allclose(out[inside], expected[inside], rtol=0, atol=1 / 255 + 1e-9, err_msg=str(decay))


def _style_distances(vgg, image, painting):
    """``(mean-and-covariance distance, Gram distance)`` of ``image``'s features to ``painting``'s, in NumPy
    (float64), each layer's relative to the painting's statistics, averaged over the style layers."""
    feats = [{k: np.asarray(v, np.float64).reshape(-1, v.shape[-1]) for k, v in
              extract_features(vgg, np.asarray(x, np.float32), layers=STYLE_LAYERS).items()} for x in (image, painting)]
    meancov = gram = 0.0
    for name in STYLE_LAYERS:
        f, s = feats[0][name], feats[1][name]
        mu_f, mu_s = f.mean(0), s.mean(0)
        cov_f, cov_s = np.cov(f, rowvar=False, bias=True), np.cov(s, rowvar=False, bias=True)
        outer_f, outer_s = np.outer(mu_f, mu_f), np.outer(mu_s, mu_s)
        meancov += (np.sum((cov_f - cov_s) ** 2) + np.sum((outer_f - outer_s) ** 2)) / (
            np.sum(cov_s**2) + np.sum(outer_s**2))
        g, a = f.T @ f, s.T @ s * len(f) / len(s)  # the painting's Gram scaled to the output's positions
        gram += np.sum((g - a) ** 2) / np.sum(a**2)
    return meancov / len(STYLE_LAYERS), gram / len(STYLE_LAYERS)


def test_style_loss_meancov_matches_mean_and_covariance(inputs, plain, vgg):
    out = stylized(inputs, "meancov", "--style-loss", "meancov")
    assert changed(out, plain)
    # Each run gets closer to the painting in its own statistic than the other run does (measured: mean and
    # covariance 0.092 against the Gram run's 0.110; Gram 0.068 against the meancov run's 0.077).
    painting = read(inputs.style)
    meancov_run, gram_run = _style_distances(vgg, out, painting), _style_distances(vgg, plain, painting)
    assert meancov_run[0] < 0.95 * gram_run[0], (meancov_run, gram_run)
    assert gram_run[1] < 0.95 * meancov_run[1], (meancov_run, gram_run)
