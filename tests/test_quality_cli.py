"""The quality-control flags of the command line reach the library (checked in-process with prepare())."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax.errors import NSTError
from nst_jax.plan import optimised_inputs

from .conftest import EXAMPLES, script_env

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "stylize.py"
CONTENT = str(EXAMPLES / "chelsea.png")
STYLE = str(EXAMPLES / "swirls.png")


@pytest.fixture(scope="module")
def stylize_script():
    from nst_jax.cli import stylize

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
    env = script_env()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--content", CONTENT, "--style", STYLE, CONTENT, "--masks", mask, inverse,
         "--style-loss", "meancov", "--ema", "0.5", "--preserve-colour", "match", "--style-scale", "0.8",
         "--size", "64", "--iterations", "4", "--style-layers", "relu1_1", "relu2_1", "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
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
