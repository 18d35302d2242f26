"""The calibration panel's images, by name: the repo's examples, ../shared/images and scikit-image's samples.

``examples/`` and ``../shared/images`` are searched first; ``astronaut`` (NASA's portrait of Eileen
Collins, public domain) comes from scikit-image's bundled data (the ``calibrate`` extra) and is
written once as a PNG under ``CACHE`` (outside the repo: the scripts take image files). Nothing
here is committed.
"""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = (ROOT / "examples", ROOT.parent / "shared" / "images")
# scikit-image sample images usable by the panel, with their licence (skimage.data's docstrings).
SKIMAGE = {"astronaut": "Eileen Collins, NASA photograph, public domain"}
CACHE = pathlib.Path(os.environ.get("NST_JAX_PANEL_CACHE", "/tmp/nst_jax_panel"))


def find(name: str) -> pathlib.Path:
    """A panel image by its stem: a file in :data:`FOLDERS`, else a scikit-image sample written to :data:`CACHE`."""
    for folder in FOLDERS:
        for path in sorted(folder.glob(f"{name}.*")):
            return path
    if name in SKIMAGE:
        path = CACHE / f"{name}.png"
        if not path.is_file():
            try:
                import skimage.data
                from PIL import Image
            except ImportError:
                raise SystemExit(f"error: {name} comes from scikit-image: pip install -e '.[calibrate]'") from None
            CACHE.mkdir(parents=True, exist_ok=True)
            Image.fromarray(getattr(skimage.data, name)()).save(path)
        return path
    raise SystemExit(f"error: no image named {name!r} in {', '.join(map(str, FOLDERS))} or scikit-image's samples")
