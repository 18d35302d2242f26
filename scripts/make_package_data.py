"""Make the sample images shipped inside the package (``nst_jax/data``) from ``examples/``.

  python scripts/make_package_data.py

Each is the example image converted to sRGB (its ICC profile applied), resized to 256 px on the
longer side (Lanczos) and saved as an sRGB-tagged PNG, so the library guide's examples run from an
installed wheel. Deterministic; prints each file's size and the total.
"""

from __future__ import annotations

import argparse
import pathlib

import nst_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = {"chelsea": ROOT / "examples" / "chelsea.png", "swirls": ROOT / "examples" / "swirls.png"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels (default 256)")
    parser.add_argument("--output-dir", type=pathlib.Path, default=ROOT / "nst_jax" / "data")
    args = parser.parse_args(argv)
    total = 0
    for name, source in SOURCES.items():
        target = args.output_dir / f"{name}.png"
        nst_jax.save_image(target, nst_jax.load_image(source, args.size))
        total += target.stat().st_size
        print(f"{target}: {target.stat().st_size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
