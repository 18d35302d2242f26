"""Shape buckets: the run on a canvas equals the run at the output's own shape, and photos of other
aspect ratios on the same canvas reuse the compiled programs (counted, never timed)."""

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

from nst_jax import StylizeConfig, stylize
from nst_jax._src.plan import canvas_shape, make_plan
from nst_jax.errors import NSTError

from .conftest import EXAMPLES, compiled_programs, smooth_image

STYLE = smooth_image(40, 36, seed=2)
LAYERS = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))


def test_canvas_rule():
    config = StylizeConfig(shape_bucket=64)
    assert canvas_shape(config, (48, 40, 3)) == (64, 64, 3)
    assert canvas_shape(config, (64, 65, 3)) == (64, 128, 3)
    assert canvas_shape(StylizeConfig(), (48, 40, 3)) == (48, 40, 3)
    assert make_plan(config, content=smooth_image(48, 40), style=STYLE).canvas == (64, 64, 3)
    for kwargs in (dict(loss_units="paper"), dict(tile_size=32), dict(shape_bucket=8)):
        with pytest.raises(NSTError, match="shape bucket"):
            StylizeConfig(**{"shape_bucket": 64, **kwargs})


@pytest.mark.parametrize("mode", ["transfer", "content"])
def test_bucketed_run_equals_the_exact_one(vgg, mode):
    # A noise start is drawn at the canvas's size, so the content reconstruction starts from a given image.
    init = "content" if mode == "transfer" else "image"
    config = StylizeConfig(mode=mode, iterations=6, chunk_size=3, init=init, **LAYERS)
    content = smooth_image(40, 52, seed=1)
    start = None if mode == "transfer" else smooth_image(40, 52, seed=5)
    style = STYLE if mode == "transfer" else None
    exact = stylize(vgg, content=content, style=style, init=start, config=config)
    bucketed = stylize(vgg, content=content, style=style, init=start,
                       config=dataclasses.replace(config, shape_bucket=48))
    assert bucketed.image.shape == exact.image.shape == content.shape
    # The canvas (48 x 96) is not the image: an unmasked canvas would change the loss and the pixels.
    np.testing.assert_allclose(bucketed.history["total"], exact.history["total"], rtol=2e-5)
    np.testing.assert_allclose(bucketed.image, exact.image, atol=1e-5)
    np.testing.assert_array_equal(bucketed.history["evaluations_per_step"], exact.history["evaluations_per_step"])


def test_another_aspect_ratio_on_the_same_canvas_compiles_nothing(vgg):
    config = StylizeConfig(iterations=2, shape_bucket=64, **LAYERS)
    with compiled_programs() as first:
        stylize(vgg, content=smooth_image(48, 40, seed=1), style=STYLE, config=config)
    with compiled_programs() as second:
        result = stylize(vgg, content=smooth_image(36, 64, seed=3), style=STYLE, config=config)
    assert first == ["local_start", "local_chunk"], first
    assert second == [], second
    assert result.image.shape == (36, 64, 3)
    with compiled_programs() as other_canvas:  # a canvas of another shape compiles again
        stylize(vgg, content=smooth_image(72, 40, seed=3), style=STYLE, config=config)
    assert other_canvas == ["local_start", "local_chunk"], other_canvas


def test_cli_run_compiles_two_programs_and_says_so(tmp_path):
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [sys.executable, "-m", "nst_jax.cli._stylize", str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "swirls.png"),
         "-o", str(out), "--size", "48", "--iterations", "2", "--compile-cache", "off",
         "--content-layer", "relu2_2", "--style-layers", "relu1_1", "relu2_1"],
        capture_output=True, text=True, timeout=600, env={"JAX_LOG_COMPILES": "1", **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr
    assert "compiled 2 XLA programs" in proc.stdout, proc.stdout
    compiled = re.findall(r"Finished XLA compilation of jit\((\w+)\)", proc.stderr)
    assert compiled == ["local_start", "local_chunk"], compiled
