"""Image files in and out: RGB float32 ``[H, W, 3]`` in [0, 1].

Input policy: the EXIF orientation is applied; grayscale, palette, CMYK,
YCbCr and Lab images are converted to RGB; transparency is composited on
white (not dropped); 16-bit images are scaled to 8 bits, 32-bit float images
in [0, 1] (or [0, 255]) likewise; animated and multi-page images use their
first frame; files that do not fully decode (truncated or corrupt) are
refused, as are images of more than :data:`MAX_INPUT_PIXELS` pixels
(decompression bombs) and images whose shorter side would be below
:data:`MIN_SIZE` after resizing. Every format Pillow reads is accepted (PNG,
JPEG, GIF, BMP, WebP, TIFF, ...). Outputs are written to a temporary file in
the target directory and renamed into place, so a reader never sees a
partial file.
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from nst_jax.atomic import atomic_open
from nst_jax.errors import NSTError

DEFAULT_SIZE = 512  # longest side of the output, pixels
MIN_SIZE = 32  # smallest side the network can process (five 2x2 poolings leave one position)
MAX_SIZE = 8192
MAX_INPUT_PIXELS = 200_000_000  # refuse decompression bombs beyond this many pixels
RECORD_KEY = "nst_jax"  # PNG text chunk (iTXt) holding a written image's run record, as JSON


def open_image(path: str | os.PathLike) -> Image.Image:
    """Opens, fully decodes and converts an image file to 8-bit RGB.

    Raises:
        NSTError: If the path is missing, not a file, empty, not an image,
            truncated, or too large to decode safely.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise NSTError(f"{path}: no such file")
    if not path.is_file():
        raise NSTError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise NSTError(f"{path}: empty file")
    Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NSTError(f"{path}: image too large (more than {MAX_INPUT_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise NSTError(f"{path}: not an image file Pillow can read") from None
    except MemoryError:
        raise NSTError(f"{path}: not enough memory to decode this image") from None
    except Exception as err:  # Pillow raises many types on corrupt files
        raise NSTError(f"{path}: cannot decode image, truncated or corrupt ({one_line(err)})") from None


def one_line(err: BaseException, limit: int | None = 200) -> str:
    """An exception as one line: its message (or its type), whitespace collapsed, cut at ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        peak = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or im.mode.startswith("I;16") else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def resize_longest(im: Image.Image, size: int) -> Image.Image:
    """Resizes so the longest side is ``size`` pixels (Lanczos), keeping the aspect ratio.

    Raises:
        NSTError: If the shorter side would fall below :data:`MIN_SIZE`.
    """
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if min(new) < MIN_SIZE:
        raise NSTError(f"image {w}x{h} at size {size} would be {new[0]}x{new[1]}, "
                       f"smaller than the {MIN_SIZE} px the network needs")
    return im if new == (w, h) else im.resize(new, Image.LANCZOS)


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Reads an image as ``[H, W, 3]`` float32 RGB in [0, 1], optionally resized to a longest side."""
    im = open_image(path)
    if size is not None:
        im = resize_longest(im, size)
    elif min(im.size) < MIN_SIZE:
        raise NSTError(f"{path}: image {im.size[0]}x{im.size[1]} is smaller than {MIN_SIZE} px")
    return np.asarray(im, dtype=np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] (clipped) to uint8."""
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def check_output_path(path: str | os.PathLike) -> pathlib.Path:
    """Checks that an image can be written at ``path`` before any compute is spent.

    Raises:
        NSTError: If the directory is missing or unwritable, the path is a
            directory, or Pillow has no writer for the extension.
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if ext not in Image.registered_extensions() or Image.registered_extensions()[ext] not in Image.SAVE:
        raise NSTError(f"{path}: unknown image format {ext or '(no extension)'!r}; use e.g. .png or .jpg")
    if path.is_dir():
        raise NSTError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise NSTError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NSTError(f"{path}: directory {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise NSTError(f"{path}: exists and is not writable")
    return path


def save_image(path: str | os.PathLike, image: np.ndarray, *, record: Mapping[str, Any] | None = None) -> None:
    """Writes ``[H, W, 3]`` RGB in [0, 1] atomically (temporary file + rename).

    Args:
        path: Destination; the format follows the extension.
        image: ``[H, W, 3]`` float RGB, clipped to [0, 1].
        record: JSON-able run record stored in the file: a PNG ``iTXt`` chunk named
            :data:`RECORD_KEY`, or the comment of a JPEG; other formats carry none.
    """
    path = pathlib.Path(path)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    options: dict[str, Any] = {}
    if record is not None:
        text = json.dumps(record, sort_keys=True)
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt(RECORD_KEY, text, zip=True)
            options["pnginfo"] = info
        elif fmt == "JPEG":
            options["comment"] = text.encode()
    with atomic_open(path) as f:
        Image.fromarray(to_uint8(image), "RGB").save(f, format=fmt, **options)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run record :func:`save_image` stored in an image, or None if it carries none.

    Raises:
        NSTError: If the file is not a readable image.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise NSTError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            text = im.text.get(RECORD_KEY) if hasattr(im, "text") else None
            if text is None and isinstance(im.info.get("comment"), bytes):
                text = im.info["comment"].decode(errors="replace")
    except (OSError, Image.UnidentifiedImageError):
        raise NSTError(f"{path}: not an image file Pillow can read") from None
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_KEY else None
