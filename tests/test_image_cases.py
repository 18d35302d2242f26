"""The generated image files are what their names say (tests/image_cases.py)."""

import struct

import pytest
from PIL import Image

from .image_cases import refused_cases


def test_the_truncated_png_is_a_png_cut_inside_its_pixel_data(tmp_path):
    path, words = refused_cases(tmp_path)["truncated png"]
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and words == "truncated"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13  # the header chunk is whole (and its CRC after it)
    idat = data.index(b"IDAT", 8 + 12 + length)
    declared = struct.unpack(">I", data[idat - 4:idat])[0]
    present = len(data) - (idat + 4)
    assert 1000 <= present < declared  # the file ends inside the pixel data, well into it
    with Image.open(path) as image, pytest.raises(OSError, match="truncated"):
        image.load()
