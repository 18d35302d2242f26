"""The run record an image carries: written into PNG and JPEG files and read back.

A PNG holds the record as a compressed ``iTXt`` chunk named :data:`RECORD_KEY`; a JPEG as its
comment: the JSON text when it fits the comment's 65 533 bytes, else ``nst_jax:zlib:`` and the
zlib-compressed text in base64; a record that does not fit even so is refused before any
compute (:func:`check_record_fits`). Records are read with a cap on their size (:data:`MAX_RECORD_BYTES`
of text) and are untrusted: what they hold is checked by whoever reads it (the command line reads a
run's specification back with :func:`nst_jax.spec.spec_from_json`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pathlib
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image, PngImagePlugin

from nst_jax.errors import NSTError

RECORD_KEY = "nst_jax"  # PNG text chunk (iTXt) holding a written image's run record, as JSON
MAX_RECORD_BYTES = 1_000_000  # largest record text read back (decompressed)
JPEG_COMMENT_BYTES = 65_533  # a JPEG COM segment's payload
_ZLIB = "nst_jax:zlib:"


def _jpeg_comment(text: str) -> bytes:
    raw = text.encode()
    if len(raw) <= JPEG_COMMENT_BYTES:
        return raw
    packed = (_ZLIB + base64.b64encode(zlib.compress(raw, 9)).decode()).encode()
    if len(packed) > JPEG_COMMENT_BYTES:
        raise NSTError(f"the run record ({len(raw)} bytes, {len(packed)} compressed) does not fit a JPEG comment "
                       f"({JPEG_COMMENT_BYTES} bytes); write a .png output, or use shorter paths or fewer inputs")
    return packed


def save_options(record: Mapping[str, Any] | None, fmt: str) -> dict[str, Any]:
    """Pillow ``save()`` options storing ``record`` in an image of format ``fmt`` (none for other formats).

    Raises:
        NSTError: If the record is too large for the format.
    """
    if record is None:
        return {}
    text = json.dumps(record, sort_keys=True)
    if len(text.encode()) > MAX_RECORD_BYTES:
        raise NSTError(f"the run record has {len(text.encode())} bytes, more than the {MAX_RECORD_BYTES} readable")
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(RECORD_KEY, text, zip=True)
        return {"pnginfo": info}
    if fmt == "JPEG":
        return {"comment": _jpeg_comment(text)}
    return {}


def check_record_fits(record: Mapping[str, Any], fmt: str) -> None:
    """Checks before any compute that a record (plus the notes added at write time) fits a format.

    Args:
        record: The JSON-able run record.
        fmt: Pillow's format name (:func:`nst_jax.files.image_format`).

    Raises:
        NSTError: If it cannot be stored in that format (a JPEG comment holds at most 64 KB).
    """
    save_options({**record, "step": 10**9, "last_good": True}, fmt)


def _decoded(text: str) -> str:
    if not text.startswith(_ZLIB):
        return text
    raw = base64.b64decode(text[len(_ZLIB):], validate=True)
    inflater = zlib.decompressobj()
    out = inflater.decompress(raw, MAX_RECORD_BYTES + 1)
    if len(out) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return out.decode()


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run record stored in an image by :func:`nst_jax.save_image`.

    Args:
        path: The image file.

    Returns:
        The record (a dict), or None if the image carries none.

    Raises:
        NSTError: If the file is not a readable image, or its record is malformed or larger than
            :data:`MAX_RECORD_BYTES`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise NSTError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    try:
        with Image.open(path) as im:
            text = im.text.get(RECORD_KEY) if hasattr(im, "text") else None
            if text is None and isinstance(im.info.get("comment"), bytes):
                text = im.info["comment"].decode(errors="replace")
    except (OSError, Image.UnidentifiedImageError, SyntaxError):
        raise NSTError(f"{path}: not an image file Pillow can read") from None
    except (ValueError, zlib.error):  # Pillow's cap on decompressed text chunks
        raise NSTError(f"{path}: its text record is larger than {MAX_RECORD_BYTES} bytes or corrupt") from None
    if not text:
        return None
    try:
        text = _decoded(text)
        if len(text) > MAX_RECORD_BYTES:
            raise ValueError
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError, binascii.Error, zlib.error, RecursionError):
        if text.startswith(_ZLIB) or text.lstrip().startswith("{"):
            raise NSTError(f"{path}: its run record is corrupt or larger than {MAX_RECORD_BYTES} bytes") from None
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_KEY else None
