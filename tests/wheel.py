"""Builds the package's wheel once per test session and installs it into a fresh virtual environment.

Used by tests/test_packaging.py and tests/test_readme.py (through the session fixture
``installed_wheel`` of conftest.py). Nothing is downloaded: the fresh environment reaches the current
interpreter's dependencies (jax, flax, ...) through a ``.pth`` file listing their site-packages. A
directory added by a ``.pth`` line does not get its own ``.pth`` files processed, so the
editable-install hook of the checkout is not active there (checked before the wheel goes in).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 300

# Run in the fresh environment before the wheel is installed: the dependencies import, nst_jax does not.
BEFORE_INSTALL = """
import importlib.util, json, sys
import flax, h5py, jax, numpy, optax, PIL, tqdm
print(json.dumps({"nst_jax": importlib.util.find_spec("nst_jax") is not None, "prefix": sys.prefix}))
"""


def clean_env():
    """The environment of every child process: CPU only, no PYTHONPATH or user site leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(JAX_PLATFORMS="cpu", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def run(cmd, cwd, env=None, expect_ok=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    if expect_ok:
        assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                      f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def json_out(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inside(path, folder):
    return pathlib.Path(path).resolve().is_relative_to(pathlib.Path(folder).resolve())


def build_wheel(out):
    """``pip wheel`` of the repository root; setuptools' build and egg-info folders go under ``out``."""
    cfg = out / "build.cfg"
    (out / "egg").mkdir()
    # setuptools reads DIST_EXTRA_CONFIG like a setup.cfg: keep build/ and *.egg-info out of the checkout.
    cfg.write_text(f"[build]\nbuild_base = {out / 'build'}\n[egg_info]\negg_base = {out / 'egg'}\n")
    had_build = (ROOT / "build").exists()
    env = dict(clean_env(), DIST_EXTRA_CONFIG=str(cfg))
    try:
        run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-w", out / "dist"],
             cwd=out, env=env)
    finally:
        if not had_build and (ROOT / "build").is_dir():  # a setuptools too old for DIST_EXTRA_CONFIG
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    wheels = sorted((out / "dist").glob("nst_jax-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


class Installed(NamedTuple):
    """The built wheel, the fresh venv, its python, its bin folder, a working directory outside the checkout."""

    wheel: pathlib.Path
    venv: pathlib.Path
    python: pathlib.Path
    bindir: pathlib.Path
    work: pathlib.Path


def build_and_install(work):
    """Builds the wheel under ``work``, makes a fresh venv there and installs the wheel into it."""
    wheel = build_wheel(work)

    venv = work / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=work)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    paths = json_out(run([python, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                           cwd=work))
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (pathlib.Path(paths["purelib"]) / "_outer_dependencies.pth").write_text("".join(f"{p}\n" for p in outer))

    before = json_out(run([python, "-c", BEFORE_INSTALL], cwd=work))
    assert inside(before["prefix"], venv)
    assert not before["nst_jax"], "nst_jax is importable in the fresh venv before the wheel is installed"

    # --ignore-installed: the checkout's editable nst_jax is visible to pip through the .pth; leave it alone.
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=work)
    return Installed(wheel, venv, python, bindir, work)
