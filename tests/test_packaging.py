"""The package as a regular (non-editable) installed dependency.

Builds the wheel from the repository root, installs it into a fresh virtual environment and uses
it from a directory outside the checkout: the library API with the shipped VGG-19 and the
``nst-jax`` console script. Nothing is downloaded: the fresh environment reaches the current
interpreter's dependencies (jax, flax, ...) through a ``.pth`` file listing their site-packages.
A directory added by a ``.pth`` line does not get its own ``.pth`` files processed, so the
editable-install hook of the checkout is not active there (checked before the wheel goes in).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 300

# Run in the fresh environment before the wheel is installed: the dependencies import, nst_jax does not.
BEFORE_INSTALL = """
import importlib.util, json, sys
import flax, h5py, jax, numpy, optax, PIL, tqdm
print(json.dumps({"nst_jax": importlib.util.find_spec("nst_jax") is not None, "prefix": sys.prefix}))
"""

# Run in the fresh environment after the wheel is installed, from a directory outside the checkout.
AFTER_INSTALL = """
import importlib.metadata, json, pathlib
import numpy as np
import nst_jax
from nst_jax import normalize, vgg_io

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
}))
"""


def _env():
    """The environment of every child process: CPU only, no PYTHONPATH or user site leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(JAX_PLATFORMS="cpu", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(cmd, cwd, env=None, expect_ok=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    if expect_ok:
        assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                      f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _json_out(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _inside(path, folder):
    return pathlib.Path(path).resolve().is_relative_to(pathlib.Path(folder).resolve())


def _build_wheel(out):
    """``pip wheel`` of the repository root; setuptools' build and egg-info folders go under ``out``."""
    cfg = out / "build.cfg"
    (out / "egg").mkdir()
    # setuptools reads DIST_EXTRA_CONFIG like a setup.cfg: keep build/ and *.egg-info out of the checkout.
    cfg.write_text(f"[build]\nbuild_base = {out / 'build'}\n[egg_info]\negg_base = {out / 'egg'}\n")
    had_build = (ROOT / "build").exists()
    env = dict(_env(), DIST_EXTRA_CONFIG=str(cfg))
    try:
        _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-w", out / "dist"],
             cwd=out, env=env)
    finally:
        if not had_build and (ROOT / "build").is_dir():  # a setuptools too old for DIST_EXTRA_CONFIG
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    wheels = sorted((out / "dist").glob("nst_jax-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, fresh venv, its python, its bin folder, a working directory outside the checkout)."""
    work = tmp_path_factory.mktemp("packaging")
    wheel = _build_wheel(work)

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=work)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    paths = _json_out(_run([python, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                           cwd=work))
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (pathlib.Path(paths["purelib"]) / "_outer_dependencies.pth").write_text("".join(f"{p}\n" for p in outer))

    before = _json_out(_run([python, "-c", BEFORE_INSTALL], cwd=work))
    assert _inside(before["prefix"], venv)
    assert not before["nst_jax"], "nst_jax is importable in the fresh venv before the wheel is installed"

    # --ignore-installed: the checkout's editable nst_jax is visible to pip through the .pth; leave it alone.
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=work)
    return wheel, venv, python, bindir, work


@pytest.mark.slow
def test_wheel_contents(installed):
    wheel = installed[0]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    for name in ("nst_jax/__init__.py", "nst_jax/py.typed", "nst_jax/cli/__init__.py", "nst_jax/cli/stylize.py",
                 "nst_jax/cli/sweep.py", "nst_jax/_weights/vgg19.npz", "nst_jax/_weights/vgg19.npz.sha256",
                 "nst_jax/_weights/vgg19_normalization.npz", "nst_jax/_weights/vgg19_normalization.npz.sha256"):
        assert name in names, f"{name} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "scripts/", "weights/")) for n in names), sorted(names)
    assert "nst-jax = nst_jax.cli.stylize:main" in entry_points
    assert "nst-jax-sweep = nst_jax.cli.sweep:main" in entry_points


@pytest.mark.slow
def test_installed_library(installed):
    _, venv, python, _, work = installed
    out = _json_out(_run([python, "-c", textwrap.dedent(AFTER_INSTALL)], cwd=work))
    package = pathlib.Path(out["file"]).parent
    assert _inside(out["file"], venv), out["file"]
    assert not _inside(out["file"], ROOT), out["file"]
    assert _inside(out["metadata_file"], venv), out["metadata_file"]
    assert isinstance(out["version"], str) and out["version"]
    assert out["metadata_version"] == out["version"]
    assert out["py_typed"]
    assert pathlib.Path(out["weights"]) == package / "_weights" / "vgg19.npz"
    assert pathlib.Path(out["scales"]) == package / "_weights" / "vgg19_normalization.npz"
    assert out["shape"] == [32, 32, 3] and out["dtype"] == "float32"
    assert out["finite"]


@pytest.mark.slow
def test_console_script(installed):
    wheel, _, _, bindir, work = installed
    script = bindir / ("nst-jax.exe" if os.name == "nt" else "nst-jax")
    assert script.is_file()
    assert (bindir / ("nst-jax-sweep.exe" if os.name == "nt" else "nst-jax-sweep")).is_file()

    version = wheel.name.split("-")[1]
    proc = _run([script, "--version"], cwd=work)
    assert version in proc.stdout + proc.stderr

    output = work / "out.png"
    _run([script, "--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--output", output,
          "--size", "48", "--iterations", "2", "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1"],
         cwd=work)
    assert output.is_file()
    from PIL import Image

    with Image.open(output) as img:
        assert img.format == "PNG"
        assert max(img.size) == 48
