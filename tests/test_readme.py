"""The library guide's examples (docs/guide/library.md, "Use as a library"), run in order as written,
by the installed wheel (tests/wheel.py) in a directory outside the checkout: their images come from
``nst_jax.data``. Which page's blocks run where: tests/doc_blocks.py."""

import pathlib
import re

import pytest

from .doc_blocks import ROOT, library_blocks
from .wheel import inside, json_out, run

# Appended to the library page's blocks and run in the same namespace: the facts the test checks.
CHECKS = """
import json as _json, os as _os
_style = [float(loss(vgg, im, targets, weights)[1]["style"]) for im in images]
print(_json.dumps({
    "file": nst_jax.__file__, "cwd": _os.getcwd(), "gram": list(gram.shape),
    "total_finite": bool(jnp.isfinite(total)), "grad": list(grad.shape), "photo": list(photo.shape),
    "totals": list(totals.shape), "images": list(images.shape), "style": _style,
    "history": history, "result": list(result.image.shape),
}))
"""


def test_library_blocks_read_no_checkout_files():
    """Every image the blocks read comes with the package (no ``examples/...`` path)."""
    source = "\n".join(library_blocks())
    assert "nst_jax.data.load(" in source
    assert not re.search(r"""["'](?:examples|\.\./shared|weights)/""", source), source


@pytest.mark.slow
def test_use_as_a_library_examples_run(installed_wheel, tmp_path):
    blocks = library_blocks()
    assert len(blocks) >= 5
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join([*blocks, CHECKS]), encoding="utf-8")
    out = json_out(run([installed_wheel.python, script], cwd=tmp_path))
    assert inside(out["file"], installed_wheel.venv) and not inside(out["file"], ROOT), out["file"]
    assert pathlib.Path(out["cwd"]).resolve() == tmp_path.resolve()
    assert out["gram"] == [128, 128]
    assert out["total_finite"] and out["grad"] == out["photo"]
    assert out["totals"] == [2]
    assert out["images"] == [3, *out["photo"]]
    # More style weight, less style loss: the three members differ in the expected direction.
    assert out["style"][0] > out["style"][1] > out["style"][2], out["style"]
    assert out["history"][-1] < out["history"][0]  # the Flax model's perceptual loss falls
    assert out["result"] == out["photo"]
