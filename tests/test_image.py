"""The image reader's input matrix: every case converted to RGB or refused with one line."""

import numpy as np
import pytest

from nst_jax._src.image import load_image, open_image, save_image
from nst_jax.errors import NSTError

from .image_cases import converted_cases, gradient, refused_cases


def test_every_convertible_input_loads_as_rgb(tmp_path):
    for name, (path, (h, w)) in converted_cases(tmp_path).items():
        arr = load_image(path, 64)
        assert arr.dtype == np.float32 and arr.ndim == 3 and arr.shape[2] == 3, name
        assert arr.shape[:2] == (round(h * 64 / max(h, w)), round(w * 64 / max(h, w))), (name, arr.shape)
        assert 0.0 <= arr.min() and arr.max() <= 1.0, name


def test_conversions_are_right(tmp_path):
    cases = converted_cases(tmp_path)
    rgb = gradient()
    # Transparent pixels (left half) are composited on white.
    rgba = np.asarray(open_image(cases["rgba.png"][0]))
    assert (rgba[:, :30] == 255).all() and (rgba[:, 30:] == rgb[:, 30:]).all()
    # 16-bit images are scaled down, not wrapped or clipped.
    np.testing.assert_array_equal(np.asarray(open_image(cases["rgb16.png"][0])), rgb)
    assert np.abs(np.asarray(open_image(cases["gray16.png"][0]))[..., 0].astype(int) - rgb[..., 0]).max() <= 1
    # Float images in [0, 1] are scaled to 8 bits.
    assert np.abs(np.asarray(open_image(cases["float.tiff"][0]))[..., 0].astype(int) - rgb[..., 1]).max() <= 1
    # Animated GIF: the first frame.
    assert np.abs(np.asarray(open_image(cases["animated.gif"][0])).astype(int) - 30).max() <= 2
    # EXIF orientation 6 (90 degrees clockwise): the picture's left column becomes its top row.
    rotated = np.asarray(open_image(cases["exif_rotated.jpg"][0])).astype(int)
    assert rotated.shape == (60, 40, 3)
    np.testing.assert_allclose(rotated[0, :, 1], rgb[::-1, 0, 1], atol=12)
    # Lossless WebP and TIFF round-trip exactly.
    for name in ("picture.webp", "picture.tiff"):
        np.testing.assert_array_equal(np.asarray(open_image(cases[name][0])), rgb)


def test_every_bad_input_refused_with_one_line(tmp_path):
    for name, (path, needle) in refused_cases(tmp_path).items():
        with pytest.raises(NSTError) as info:
            load_image(path, 64)
        message = str(info.value)
        assert needle in message and "\n" not in message, (name, message)


def test_save_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    save_image(out, np.full((40, 60, 3), 0.5, np.float32))
    before = out.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("PIL.Image.Image.save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_image(out, np.zeros((40, 60, 3), np.float32))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
