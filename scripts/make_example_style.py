"""Paint the project's own example style image: brush strokes along a swirling flow field.

  python scripts/make_example_style.py --output examples/swirls.png

Deterministic for a given seed; made by this project, so free to redistribute.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PALETTE = np.array([
    (20, 40, 110), (35, 75, 160), (70, 130, 200), (240, 200, 60),
    (250, 150, 40), (200, 60, 40), (30, 110, 90), (245, 235, 200),
], np.float64)


def flow_angle(x: np.ndarray, y: np.ndarray, rng_phase: np.ndarray) -> np.ndarray:
    """Direction field: a sum of vortices and waves, smooth in (x, y) in [0, 1]²."""
    angle = np.zeros_like(x)
    for cx, cy, strength in rng_phase:
        dx, dy = x - cx, y - cy
        angle += strength * np.exp(-(dx**2 + dy**2) / 0.05) * np.arctan2(dy, dx)
    return angle + 2.0 * np.sin(3.0 * x + 2.0 * y) + np.cos(5.0 * y)


def paint(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    vortices = np.column_stack([rng.uniform(0, 1, 5), rng.uniform(0, 1, 5), rng.uniform(-2, 2, 5)])
    canvas = Image.new("RGB", (width, height), tuple(int(c) for c in PALETTE[0]))
    draw = ImageDraw.Draw(canvas)
    for layer, (count, length, stroke) in enumerate([(900, 60, 14), (2500, 35, 8), (5000, 18, 4)]):
        for _ in range(count):
            x, y = rng.uniform(0, 1), rng.uniform(0, 1)
            # Hue varies smoothly over the canvas, so regions have a dominant colour.
            region = 0.5 + 0.25 * (np.sin(4.0 * x + 1.0) + np.cos(3.0 * y - 0.5)) + rng.normal(0, 0.12)
            base = PALETTE[int(np.clip(region, 0, 0.999) * len(PALETTE))]
            colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 18 + 6 * layer, 3), 0, 255))
            points = [(x * width, y * height)]
            for _ in range(int(length * rng.uniform(0.5, 1.5)) // 3):
                a = flow_angle(np.array(x), np.array(y), vortices)
                x += 3.0 / width * np.cos(a)
                y += 3.0 / height * np.sin(a)
                points.append((x * width, y * height))
            draw.line(points, fill=colour, width=stroke, joint="curve")
    return canvas.filter(ImageFilter.SMOOTH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default="examples/swirls.png")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    paint(args.width, args.height, args.seed).save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
