"""Labelled image grids (contact sheets and paper figures) and atomic JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax._src.atomic import atomic_open
from nst_jax._src.image import image_format, to_uint8

PAD = 6
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def _text_height(font, lines: int) -> int:
    return lines * (font.getbbox("Ag")[3] + 3)


def labelled_grid(
    tiles: Sequence[Sequence[np.ndarray | None]],
    labels: Sequence[Sequence[str]] | None = None,
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str | None = None,
    font_size: int = 12,
) -> Image.Image:
    """Lays out images in rows with a caption under each tile.

    Args:
        tiles: ``rows x cols`` images, each ``[H, W, 3]`` in [0, 1] (None leaves a gap);
            tiles may differ in size, each cell takes the largest.
        labels: Captions, same layout as ``tiles``; ``\\n`` separates lines.
        row_titles: One title left of each row.
        col_titles: One title above each column.
        title: A heading above everything.
        font_size: Caption size in pixels.

    Returns:
        The RGB sheet.
    """
    font = ImageFont.load_default(size=font_size)
    present = [t for row in tiles for t in row if t is not None]
    cell_h = max(t.shape[0] for t in present)
    caption_w = max((font.getlength(line) for row in (labels or []) for s in row for line in s.split("\n")),
                    default=0)
    col_w = max((font.getlength(t) for t in col_titles or []), default=0)
    cell_w = int(max(max(t.shape[1] for t in present), caption_w + 2, col_w + 2))
    n_rows, n_cols = len(tiles), max(len(row) for row in tiles)
    caption_lines = max((len(s.split("\n")) for row in (labels or []) for s in row), default=0)
    caption_h = _text_height(font, caption_lines) if caption_lines else 0
    left = max((font.getlength(t) for t in row_titles), default=0) + 2 * PAD if row_titles else 0
    top = (_text_height(font, 1) + PAD if col_titles else 0) + (_text_height(font, 1) + 2 * PAD if title else 0)
    width = int(left + n_cols * (cell_w + PAD) + PAD)
    height = int(top + n_rows * (cell_h + caption_h + PAD) + PAD)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), title, fill=INK, font=font)
    for c, text in enumerate(col_titles or []):
        x = left + PAD + c * (cell_w + PAD)
        draw.text((x, top - _text_height(font, 1)), text, fill=INK, font=font)
    for r, row in enumerate(tiles):
        y = top + PAD + r * (cell_h + caption_h + PAD)
        if row_titles:
            draw.text((PAD, y + cell_h // 2 - font_size // 2), row_titles[r], fill=INK, font=font)
        for c, tile in enumerate(row):
            x = int(left + PAD + c * (cell_w + PAD))
            if tile is not None:
                sheet.paste(Image.fromarray(to_uint8(tile), "RGB"), (x, int(y)))
            if labels and labels[r][c]:
                draw.multiline_text((x, y + cell_h + 2), labels[r][c], fill=INK, font=font, spacing=3)
    return sheet


def save_sheet(path: str | os.PathLike[str], sheet: Image.Image, *, replace: bool = True) -> None:
    """Writes a PIL image atomically (temporary file in the same directory + rename).

    Args:
        path: Destination; the format follows the extension.
        sheet: The image, e.g. from :func:`labelled_grid`.
        replace: Replace an existing file; if False one found there is kept
            (:func:`nst_jax._src.atomic.atomic_open`, which then raises ``OutputExists``).
    """
    with atomic_open(path, replace=replace) as f:
        sheet.save(f, format=image_format(path))


def save_reduced(path: str | os.PathLike[str], image: Image.Image, limit: int = 512) -> Image.Image:
    """Writes ``image`` shrunk (aspect kept, never enlarged) to at most ``limit`` px on its longest
    side, atomically, as JPEG (quality 90) or PNG by the suffix; returns the reduced image."""
    reduced = image.convert("RGB")
    reduced.thumbnail((limit, limit), Image.LANCZOS)
    fmt = image_format(path)
    with atomic_open(path) as f:
        reduced.save(f, format=fmt, **({"quality": 90, "optimize": True} if fmt == "JPEG" else {}))
    return reduced


def save_json(path: str | os.PathLike[str], data: Any, *, replace: bool = True) -> None:
    """Writes JSON atomically (temporary file in the same directory + rename), indented.

    Args:
        path: Destination.
        data: JSON-able values.
        replace: As in :func:`save_sheet`.
    """
    with atomic_open(path, "w", replace=replace) as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two ``[H, W, 3]`` images in [0, 1] (image clipped first)."""
    mse = float(np.mean((np.clip(image, 0.0, 1.0) - reference) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
