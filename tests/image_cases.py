"""Image files the tests generate: every input the image reader must convert or refuse."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def gradient(h=40, w=60):
    """A deterministic RGB uint8 test picture ``[h, w, 3]``."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width, height, bit_depth, color_type, rows: bytes | None) -> bytes:
    """A PNG written by hand (for 16-bit RGB and for headers claiming huge sizes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png16_rgb(path, h=40, w=60):
    rgb16 = gradient(h, w).astype(">u2") * 257
    rows = b"".join(b"\0" + rgb16[i].tobytes() for i in range(h))
    path.write_bytes(raw_png(w, h, 16, 2, rows))


def noisy_png(h=64, w=64) -> bytes:
    """A PNG of seeded noise: its pixels do not compress, so its IDAT data is most of the file (12 kB)."""
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(kind, start, end)`` of each chunk of a PNG: ``data[start:end]`` is the chunk's data."""
    chunks, at = [], 8  # after the signature
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append((kind, at + 8, at + 8 + length))
        at += 12 + length  # length, kind, data, CRC
    return chunks


def cut_in_idat(png: bytes) -> bytes:
    """A PNG cut in the middle of its first IDAT chunk's data: the signature and header intact, the pixel
    data ending early."""
    start, end = next((s, e) for kind, s, e in png_chunks(png) if kind == b"IDAT")
    return png[:(start + end) // 2]


def converted_cases(tmp_path):
    """``{name: (path, expected (h, w))}``: files that must load as RGB."""
    rgb = gradient()
    im = Image.fromarray(rgb)
    d = tmp_path
    cases = {}

    def save(name, image, **kw):
        image.save(d / name, **kw)
        cases[name] = (d / name, (40, 60))

    save("gray.png", im.convert("L"))
    save("gray_alpha.png", im.convert("LA"))
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(60) < 30, 0, 255).astype(np.uint8)[None].repeat(40, 0)))
    save("rgba.png", rgba)
    save("palette.png", im.convert("P"))
    pal_t = im.convert("P")
    save("palette_transparent.png", pal_t, transparency=0)
    save("cmyk.jpg", im.convert("CMYK"))
    save("gray16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    png16_rgb(d / "rgb16.png")
    cases["rgb16.png"] = (d / "rgb16.png", (40, 60))
    save("bilevel.png", im.convert("1"))
    save("float.tiff", Image.fromarray(rgb[..., 1].astype(np.float32) / 255.0, "F"))
    save("picture.webp", im, lossless=True)
    save("picture.tiff", im)
    frames = [Image.fromarray(np.full((40, 60, 3), c, np.uint8)) for c in (30, 220)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    cases["animated.gif"] = (d / "animated.gif", (40, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(d / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    cases["exif_rotated.jpg"] = (d / "exif_rotated.jpg", (60, 40))
    return cases


def refused_cases(tmp_path):
    """``{name: (path, words the one-line error must contain)}``: files that must be refused."""
    d = tmp_path
    im = Image.fromarray(gradient())
    im.save(d / "good.jpg", quality=95)
    im.save(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("these are notes, not a picture\n")
    (d / "truncated.jpg").write_bytes((d / "good.jpg").read_bytes()[:700])
    (d / "truncated.png").write_bytes(cut_in_idat(noisy_png()))
    corrupt = bytearray((d / "good.png").read_bytes())
    corrupt[60:90] = b"\xff" * 30
    (d / "corrupt.png").write_bytes(bytes(corrupt))
    (d / "bomb.png").write_bytes(raw_png(40000, 40000, 8, 2, None))
    Image.fromarray(gradient(8, 60)).save(d / "sliver.png")
    (d / "a_directory.png").mkdir()
    return {
        "missing": (d / "does_not_exist.jpg", "no such file"),
        "directory": (d / "a_directory.png", "not a file"),
        "zero bytes": (d / "empty.png", "empty file"),
        "not an image": (d / "notes.jpg", "not an image"),
        "truncated jpeg": (d / "truncated.jpg", "truncated"),
        "truncated png": (d / "truncated.png", "truncated"),
        "corrupt png": (d / "corrupt.png", "corrupt"),
        "decompression bomb": (d / "bomb.png", "too large"),
        "too small after resize": (d / "sliver.png", "smaller than"),
    }
