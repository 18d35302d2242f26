import contextlib
import logging
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

from nst_jax import load_vgg19, stylize
from nst_jax.compilation import enable_compilation_cache

# Tests (and the tools they start) compile into a cache of their own, never the user's: one directory for the
# session, set before pytest-xdist starts its workers, so the workers, this process and every tool a test starts
# share it. A program the suite builds twice (the same loss at the same shape, in another process) is then
# compiled once. Compilation counts are unaffected: JAX logs a program loaded from the cache as compiled.
os.environ.setdefault("NST_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="nst_jax_test_cache_"))
enable_compilation_cache(os.environ["NST_JAX_CACHE_DIR"])

# On a GPU, JAX's default matmul and convolution precision is TF32 (a 10-bit mantissa, relative error
# about 1e-3). The tests check exact maths against float32/float64 NumPy, SciPy and PyTorch references
# with float32 tolerances (rtol 1e-4 to 1e-6: test_vgg's torch/reference features and conv gradients,
# test_losses' Gram and loss values, test_statistics' covariances and sqrtm, test_tiled's tiled-vs-dense
# values, test_metrics, test_normalize, test_weights' reference activations), which TF32 fails by
# design. So on a GPU the tests run at full float32 precision: this process, and (via the environment)
# the command-line tools the tests start. The library itself keeps JAX's default; its speed is measured by
# scripts/benchmark.py and scripts/device_report.py, not by the tests.

if jax.default_backend() in ("gpu", "cuda", "rocm"):
    jax.config.update("jax_default_matmul_precision", "highest")
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_IMAGES = ROOT.parent / "shared" / "images"
EXAMPLES = ROOT / "examples"
SCRIPTS = ROOT / "scripts"


@pytest.fixture(scope="session")
def vgg():
    """The shipped weights, decoded once per test session."""
    return load_vgg19()


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """The package's wheel, built once per session and installed into a fresh venv (tests/wheel.py)."""
    from .wheel import build_and_install

    return build_and_install(tmp_path_factory.mktemp("packaging"))


@pytest.fixture(scope="session")
def shared_images():
    if not (SHARED_IMAGES / "tubingen.jpg").is_file():
        pytest.skip("../shared/images is absent")
    return SHARED_IMAGES


@contextlib.contextmanager
def compiled_programs():
    """Collects the names of the XLA programs compiled inside the block (from JAX's compile log)."""
    names = []

    class Collect(logging.Handler):
        def emit(self, record):
            found = re.match(r"Finished XLA compilation of (?:jit\()?(.*?)\)? in ", record.getMessage())
            if found:
                names.append(found.group(1))

    logger, handler = logging.getLogger("jax"), Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield names
    finally:
        logger.removeHandler(handler)


def smooth_image(h, w, seed=0):
    """A deterministic smooth RGB test image in [0, 1], ``[h, w, 3]``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform()))
                for _ in range(3)]
    return np.stack(channels, -1).astype(np.float32)


# The small images of the optimisation tests (a 32 px photo and a 40 x 36 painting).
PHOTO = smooth_image(32, 32, seed=1)
PAINTING = smooth_image(40, 36, seed=2)


def stripes(size, period):
    """Vertical colour stripes with the given period (pixels), ``[size, size, 3]``."""
    x = np.arange(size) / period
    wave = 0.5 + 0.45 * np.sin(2 * np.pi * x)
    img = np.stack([wave, 1 - wave, 0.5 * np.ones_like(wave)], -1)
    return np.broadcast_to(img[None], (size, size, 3)).astype(np.float32).copy()


def script_env(**extra):
    """The environment of a tool the tests start: CPU only, and this checkout's nst_jax first on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, **extra}


def run_script(name, *args, cwd=None, timeout=900):
    """``scripts/<name>`` with ``args`` in a real subprocess (text output captured)."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          env=script_env(), cwd=cwd, timeout=timeout)


def nst_in_process(capsys, *args):
    """Runs ``nst-jax`` in this process: ``(exit code, stdout, stderr)``."""
    from nst_jax.cli.stylize import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args, cwd=None):
    """``scripts/stylize.py`` (the ``nst-jax`` tool) with ``args`` in a real subprocess."""
    return run_script("stylize.py", *args, cwd=cwd, timeout=600)


def run(vgg, config, **kw):
    """``nst_jax.stylize`` with ``config``."""
    return stylize(vgg, config=config, **kw)


def np_stats(f, mask=None):
    """Float64 mean and covariance of features ``[..., N]`` over positions (weighted by ``mask``)."""
    f = f.reshape(-1, f.shape[-1]).astype(np.float64)
    w = np.ones(len(f)) if mask is None else mask.reshape(-1).astype(np.float64)
    mu = w @ f / w.sum()
    c = ((f - mu) * w[:, None]).T @ (f - mu) / w.sum()
    return mu, c


def pytest_collection_modifyitems(items):
    """The slow tests first, so that with ``-n auto`` the short ones fill the workers' time at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
