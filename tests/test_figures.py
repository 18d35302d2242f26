"""Figures (nst_jax._src.figures): PSNR, the labelled contact sheet, reduced copies."""

import numpy as np
from PIL import Image

from nst_jax._src.figures import labelled_grid, psnr, save_reduced


def test_psnr_and_grid():
    a = np.zeros((4, 5, 3), np.float32)
    np.testing.assert_allclose(psnr(a + 0.1, a), 20.0, rtol=1e-6)  # MSE 0.01 -> 20 dB
    sheet = labelled_grid([[a, a], [a, None]], [["x", "y"], ["z", ""]], col_titles=["c1", "c2"], row_titles=["r"] * 2)
    assert sheet.size[0] > 10 and sheet.size[1] > 8


def test_save_reduced_shrinks_keeping_the_aspect_and_never_enlarges(tmp_path):
    big = Image.new("RGBA", (1000, 300), (10, 200, 30, 255))
    reduced = save_reduced(tmp_path / "big.jpg", big, 512)
    with Image.open(tmp_path / "big.jpg") as written:
        assert written.format == "JPEG" and written.size == reduced.size == (512, 154)
        assert np.abs(np.asarray(written, np.float32) - (10, 200, 30)).mean() < 3  # the colours survive
    save_reduced(tmp_path / "small.png", Image.new("RGB", (100, 50)), 512)
    with Image.open(tmp_path / "small.png") as written:
        assert written.format == "PNG" and written.size == (100, 50)
