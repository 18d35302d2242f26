"""The package as a regular (non-editable) installed dependency.

The wheel built from the repository root and installed into a fresh virtual environment (tests/wheel.py,
once per session), used from a directory outside the checkout: the library API with the shipped VGG-19
and sample images, and the ``nst-jax`` console script.
"""

import os
import pathlib
import textwrap
import zipfile

import pytest

from .wheel import inside, json_out, run

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Run in the fresh environment after the wheel is installed, from a directory outside the checkout.
AFTER_INSTALL = """
import importlib.metadata, json, pathlib
import numpy as np
import nst_jax
from nst_jax._src import normalize, vgg_io

vgg = nst_jax.load_vgg19()
rng = np.random.default_rng(0)
content = rng.uniform(size=(32, 32, 3)).astype(np.float32)
style = rng.uniform(size=(32, 32, 3)).astype(np.float32)
config = nst_jax.StylizeConfig(iterations=2, content_layers=("relu1_1",), style_layers=("relu1_1",))
result = nst_jax.stylize(vgg, content=content, style=style, config=config)
image = np.asarray(result.image)
package = pathlib.Path(nst_jax.__file__).resolve().parent
print(json.dumps({
    "file": str(pathlib.Path(nst_jax.__file__).resolve()),
    "version": nst_jax.__version__,
    "metadata_version": importlib.metadata.version("nst_jax"),
    "metadata_file": str(pathlib.Path(
        importlib.metadata.distribution("nst_jax").locate_file("nst_jax/__init__.py")).resolve()),
    "py_typed": (package / "py.typed").is_file(),
    "weights": str(vgg_io.DEFAULT_VGG_FILE.resolve()),
    "scales": str(normalize.DEFAULT_SCALES.resolve()),
    "shape": list(image.shape),
    "dtype": str(image.dtype),
    "finite": bool(np.isfinite(image).all()),
    "data": {name: [str(nst_jax.data.path(name)), list(nst_jax.data.load(name).shape)] for name in nst_jax.data.NAMES},
}))
"""


@pytest.fixture(scope="module")
def installed(installed_wheel):
    return installed_wheel


@pytest.mark.slow
def test_wheel_contents(installed):
    wheel = installed[0]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    for name in ("nst_jax/__init__.py", "nst_jax/py.typed", "nst_jax/cli/__init__.py", "nst_jax/cli/_stylize.py",
                 "nst_jax/cli/_sweep.py", "nst_jax/_weights/vgg19.npz", "nst_jax/_weights/vgg19.npz.sha256",
                 "nst_jax/_weights/vgg19_normalization.npz", "nst_jax/_weights/vgg19_normalization.npz.sha256",
                 "nst_jax/data/__init__.py", "nst_jax/data/chelsea.png", "nst_jax/data/swirls.png",
                 "nst_jax/data/README.md", "nst_jax/studio/_app.py", "nst_jax/studio/page.html"):
        assert name in names, f"{name} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "scripts/", "weights/", "examples/")) for n in names), sorted(names)
    with zipfile.ZipFile(wheel) as zf:
        data_bytes = sum(i.file_size for i in zf.infolist() if i.filename.startswith("nst_jax/data/"))
    assert data_bytes < 1 << 20, data_bytes  # the sample images stay small
    assert "nst-jax = nst_jax.cli._stylize:main" in entry_points
    assert "nst-jax-sweep = nst_jax.cli._sweep:main" in entry_points


@pytest.mark.slow
def test_installed_library(installed):
    _, venv, python, _, work = installed
    out = json_out(run([python, "-c", textwrap.dedent(AFTER_INSTALL)], cwd=work))
    package = pathlib.Path(out["file"]).parent
    assert inside(out["file"], venv), out["file"]
    assert not inside(out["file"], ROOT), out["file"]
    assert inside(out["metadata_file"], venv), out["metadata_file"]
    assert isinstance(out["version"], str) and out["version"]
    assert out["metadata_version"] == out["version"]
    assert out["py_typed"]
    assert pathlib.Path(out["weights"]) == package / "_weights" / "vgg19.npz"
    assert pathlib.Path(out["scales"]) == package / "_weights" / "vgg19_normalization.npz"
    assert out["shape"] == [32, 32, 3] and out["dtype"] == "float32"
    assert out["finite"]
    # The sample images come from the installed package, at their stored 256 px.
    assert {name: pathlib.Path(file) for name, (file, _) in out["data"].items()} == {
        "chelsea": package / "data" / "chelsea.png", "swirls": package / "data" / "swirls.png"}
    assert out["data"]["chelsea"][1] == [170, 256, 3] and out["data"]["swirls"][1] == [192, 256, 3]


@pytest.mark.slow
def test_console_script(installed):
    wheel, _, _, bindir, work = installed
    script = bindir / ("nst-jax.exe" if os.name == "nt" else "nst-jax")
    assert script.is_file()
    assert (bindir / ("nst-jax-sweep.exe" if os.name == "nt" else "nst-jax-sweep")).is_file()

    version = wheel.name.split("-")[1]
    proc = run([script, "--version"], cwd=work)
    assert version in proc.stdout + proc.stderr

    output = work / "out.png"
    run([script, "--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--output", output,
          "--size", "48", "--iterations", "2", "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1"],
         cwd=work)
    assert output.is_file()
    from PIL import Image

    with Image.open(output) as img:
        assert img.format == "PNG"
        assert max(img.size) == 48
