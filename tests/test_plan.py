"""The input plan (nst_jax.plan): the output shape, digests, masks, refusals, and the input-side quality
controls (style scale, preserved colour)."""

import numpy as np

from nst_jax import StylizeConfig, colour, make_weights

from .conftest import PHOTO, run, stripes


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
