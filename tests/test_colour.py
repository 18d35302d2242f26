"""Colour helpers (nst_jax._src.colour)."""

import numpy as np

from nst_jax._src import colour

from .conftest import PHOTO


def test_colour_matching_of_the_style_to_the_content():
    rng = np.random.default_rng(0)
    style = np.clip(rng.normal([0.8, 0.3, 0.1], [0.1, 0.05, 0.05], size=(20, 30, 3)), 0, 1).astype(np.float32)
    matched = colour.match_colour(style, PHOTO)
    cov = lambda im: np.cov(im.reshape(-1, 3).astype(np.float64), rowvar=False)  # noqa: E731
    np.testing.assert_allclose(matched.reshape(-1, 3).mean(0), PHOTO.reshape(-1, 3).mean(0), atol=0.02)
    # Up to the clipping of the Gaussian's tails to [0, 1].
    assert np.abs(cov(matched) - cov(PHOTO)).max() < 0.2 * np.abs(cov(style) - cov(PHOTO)).max()
