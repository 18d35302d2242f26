"""The input plan (nst_jax._src.plan): the output shape, digests, masks, refusals, and the input-side quality
controls (style scale, preserved colour)."""

import re

import numpy as np
import pytest

from nst_jax import StylizeConfig, make_weights
from nst_jax._src import colour
from nst_jax._src.plan import make_plan, optimised_inputs, output_shape
from nst_jax.errors import NSTError

from .conftest import PHOTO, run, smooth_image, stripes


def dominant_period(image):
    """The period (pixels) of the strongest horizontal frequency of the image's luminance."""
    y = colour.rgb_to_yiq(image)[..., 0]
    power = np.abs(np.fft.rfft(y - y.mean(axis=1, keepdims=True), axis=1)) ** 2
    spectrum = power.mean(axis=0)
    k = int(np.argmax(spectrum[1:])) + 1
    return image.shape[1] / k


def test_style_scale_grows_the_texture_period(vgg):
    style = stripes(64, 8)
    periods = {}
    for scale in (0.5, 2.0):
        # Paper units weigh relu3_1 most (its Grams are largest), which carries the stripes' period; the
        # relative units weigh the layers alike and let a slow luminance drift (period 64) dominate the
        # spectrum of so small an image. The style scale is an input resize either way.
        config = StylizeConfig(mode="style", style_layers=("relu1_1", "relu2_1", "relu3_1"), iterations=40,
                               chunk_size=40, style_scale=scale, loss_units="paper")
        result = run(vgg, config, style=style, seed=1)
        periods[scale] = dominant_period(result.image)
    # Stripes of 8 px at scale 1: about 4 px at 0.5 and 16 px at 2.
    assert periods[2.0] >= 2 * periods[0.5], periods
    assert periods[2.0] > 8 > periods[0.5], periods


def chroma_stats(image):
    iq = colour.rgb_to_yiq(image)[..., 1:].reshape(-1, 2)
    return iq.mean(0), np.cov(iq, rowvar=False)


def chroma_distance(a, b):
    (ma, ca), (mb, cb) = chroma_stats(a), chroma_stats(b)
    return float(np.linalg.norm(ma - mb) + np.linalg.norm(ca - cb))


def test_preserve_colour_keeps_the_contents_chroma(vgg):
    style = stripes(32, 8)[..., [0, 2, 1]] * np.array([1.0, 0.3, 0.2], np.float32)  # reds, unlike the content
    results = {}
    for preserve in ("none", "luminance", "match"):
        config = StylizeConfig(style_layers=("relu1_1", "relu2_1"), iterations=30, chunk_size=30,
                               preserve_colour=preserve)
        results[preserve] = run(vgg, config, content=PHOTO, style=style,
                                weights=make_weights(config, content_weight=1e-3)).image
    assert chroma_distance(results["none"], PHOTO) > chroma_distance(results["none"], style)
    for mode in ("luminance", "match"):
        kept = results[mode]
        assert chroma_distance(kept, PHOTO) < 0.5 * chroma_distance(kept, style), mode
        assert chroma_distance(kept, PHOTO) < 0.5 * chroma_distance(results["none"], PHOTO), mode


C = smooth_image(32, 40, seed=1)
S = smooth_image(36, 36, seed=2)


def test_output_shape_rule():
    assert make_plan(StylizeConfig(), content=C, style=S).shape == (32, 40, 3)  # the content's
    assert make_plan(StylizeConfig(mode="content"), content=C).shape == (32, 40, 3)
    assert make_plan(StylizeConfig(mode="style"), style=S).shape == (36, 36, 3)  # the style's
    init = smooth_image(48, 32, seed=3)
    assert make_plan(StylizeConfig(mode="style", init="image"), style=S, init=init).shape == (48, 32, 3)  # the start's
    assert output_shape(StylizeConfig(mode="style"), content=C, style=[S, C]) == (36, 36, 3)  # no content term
    with pytest.raises(NSTError, match="style mode needs a style image"):
        output_shape(StylizeConfig(mode="style"), content=C)


def test_digests_change_when_an_input_changes():
    config = StylizeConfig(num_styles=2)
    masks = [np.ones((8, 10), np.float32), np.zeros((8, 10), np.float32)]

    def digests(content=C, styles=(S, S[::-1]), masks=masks):
        return make_plan(config, content=content, style=list(styles), masks=masks).digests

    base = digests()
    assert base == digests() and len(base["content"]["sha256"]) == 64 and base["content"]["shape"] == [32, 40, 3]
    nudged = C.copy()
    nudged[0, 0, 0] += 1e-3
    changed = {"content": digests(content=nudged), "style": digests(styles=(S, S)),
               "masks": digests(masks=[masks[0], masks[0]])}
    for name, other in changed.items():
        assert [k for k in base if other[k] != base[k]] == [name], name


def test_masks_of_any_size_are_resized_to_the_output():
    config = StylizeConfig(num_styles=2)
    left = np.zeros((10, 20), np.float32)
    left[:, :10] = 1.5  # clipped to 1
    inputs = optimised_inputs(make_plan(config, content=C, style=[S, S], masks=[left, np.full((64, 80), 0.25)]))
    assert inputs.masks.shape == (2, 32, 40) and inputs.masks.dtype == np.float32
    np.testing.assert_allclose(inputs.masks[0, :, :16], 1.0)
    np.testing.assert_allclose(inputs.masks[0, :, 26:], 0.0, atol=1e-6)  # the edge blurs by a few px
    np.testing.assert_allclose(inputs.masks[1], 0.25, rtol=1e-6)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(config=StylizeConfig(), style=S), "transfer mode needs a content image"),
    (dict(config=StylizeConfig(), content=C), "transfer mode needs a style image"),
    (dict(config=StylizeConfig(num_styles=2), content=C, style=S), "1 style images given for config.num_styles = 2"),
    (dict(config=StylizeConfig(init="image"), content=C, style=S), "init 'image' needs an init image"),
    (dict(config=StylizeConfig(init="image"), content=C, style=S, init=S), "give it the content's size"),
    (dict(config=StylizeConfig(), content=C[:16], style=S), "smaller than the 32 px"),
    (dict(config=StylizeConfig(), content=C, style=S[:8]), "smaller than the 16 px"),
    (dict(config=StylizeConfig(), content=C * np.nan, style=S), "NaN or Inf"),
    (dict(config=StylizeConfig(), content=C, style=S, masks=[np.ones((4, 4))] * 2), "2 masks given for 1 style images"),
    (dict(config=StylizeConfig(), content=C, style=S, masks=[np.full((4, 4), np.nan)]), "masks hold NaN"),
    (dict(config=StylizeConfig(tile_size=16), content=C, style=S, masks=[np.ones((4, 4))]), "not supported with tiled"),
    (dict(config=StylizeConfig(style_scale=0.2), content=C, style=S), "makes a style image smaller than 16 px"),
])
def test_bad_inputs_refused(kwargs, needle):
    with pytest.raises(NSTError, match=re.escape(needle)):
        make_plan(**kwargs)
