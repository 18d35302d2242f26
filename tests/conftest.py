import contextlib
import itertools
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
from nst_jax._src.backend import gpu_present, merged_xla_flags
from nst_jax.compilation import enable_compilation_cache

# The suite's programs run once, on tiny images, so on the CPU they compile faster than XLA's defaults
# allow: without LLVM's expensive optimisation passes (a compile-bound subset of the tests measured 12%
# faster; a 200-step 192 px reconstruction ran in the same time), and with XLA:CPU's older elemental
# fusion emitters instead of its MLIR ones (the optimisation chunk of a 64 px run compiled in 1.7-2.0 s
# instead of 2.7-3.2 s; a 20-step 256 px transfer ran in the same time; the whole suite, run with
# compile-time listeners both times, took 540 s of wall time instead of 646 s). So on the CPU the suite
# checks the library's maths, not XLA's default code generation. Set before JAX starts its backend, for
# this process and the tools the tests start; the library and the benchmarks keep XLA's defaults.
if not gpu_present():
    os.environ["XLA_FLAGS"] = merged_xla_flags(os.environ.get("XLA_FLAGS", ""),
                                               {"xla_llvm_disable_expensive_passes": "true",
                                                "xla_cpu_use_fusion_emitters": "false"})

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
    """The package's wheel, built once per session and installed into a fresh venv (tests/wheel.py).

    Under pytest-xdist the workers share it: the first to need it builds it under a file lock in the
    session's directory, the others read where it is. Each worker built its own before: the slow tests, the
    three of test_packaging.py among them, are dealt to the workers in turn (pytest_collection_modifyitems).
    One build and install took 13 s of CPU time, 56 s of wall time on a loaded host; a worker that comes
    while the other builds waits about as long as its own build would have taken, one that comes later
    waits not at all.
    """
    import json

    from .wheel import Installed, build_and_install

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_and_install(tmp_path_factory.mktemp("packaging"))
    import fcntl

    session = tmp_path_factory.getbasetemp().parent  # the workers' common parent
    with open(session / "packaging.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = session / "packaging.json"
        if done.is_file():
            return Installed(*map(pathlib.Path, json.loads(done.read_text())))
        (session / "packaging").mkdir()
        installed = build_and_install(session / "packaging")
        done.write_text(json.dumps([str(path) for path in installed]))
        return installed


@pytest.fixture(scope="session")
def shared_images():
    if not (SHARED_IMAGES / "tubingen.jpg").is_file():
        pytest.skip("../shared/images is absent")
    return SHARED_IMAGES


@contextlib.contextmanager
def compiled_programs(threads: dict[str, list[str]] | None = None):
    """Collects the names of the XLA programs compiled inside the block (from JAX's compile log); with
    ``threads``, also ``{name: [the threads that compiled it]}`` into that dict."""
    names = []

    class Collect(logging.Handler):
        def emit(self, record):
            found = re.match(r"Finished XLA compilation of (?:jit\()?(.*?)\)? in ", record.getMessage())
            if found:
                names.append(found.group(1))
                if threads is not None:
                    threads.setdefault(found.group(1), []).append(record.threadName)

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


def host_devices_env(devices: int | None) -> dict[str, str]:
    """:func:`script_env` for a tool on ``devices`` host devices (None: one), with the session's other XLA
    flags kept, so that it compiles as this process does and its numbers compare."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return script_env(XLA_FLAGS=" ".join(flags))


def run_script(name, *args, cwd=None, timeout=900):
    """``scripts/<name>`` with ``args`` in a real subprocess (text output captured)."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          env=script_env(), cwd=cwd, timeout=timeout)


def nst_in_process(capsys, *args):
    """Runs ``nst-jax`` in this process: ``(exit code, stdout, stderr)``."""
    from nst_jax.cli._stylize import main

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
    """Every worker's share of the suite starts with its part of the slow tests, so that with ``-n auto``
    the short ones fill the workers' time at the end.

    pytest-xdist's ``worksteal`` hands worker ``k`` of ``n`` a contiguous block of the remaining tests
    (``remaining // (n - k)`` of them), then lets an idle worker take tests from the end of a busy one's
    block. So the slow tests are dealt out in turn, and each block is its slow tests, then short ones.
    """
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    slow = [item for item in items if item.get_closest_marker("slow")]
    short = iter([item for item in items if not item.get_closest_marker("slow")])
    ordered, remaining = [], len(items)
    for k in range(workers):
        block = slow[k::workers]
        size = remaining // (workers - k)
        block += list(itertools.islice(short, max(0, size - len(block))))
        ordered += block
        remaining -= len(block)
    items[:] = ordered + list(short)


HOSTILE_SMALL = ["--size", "32", "--content-layer", "relu1_1", "--style-layers", "relu1_1"]


@pytest.fixture
def pics(tmp_path):
    """A 32 px photo and painting in the test's directory."""
    from nst_jax.files import save_image

    save_image(tmp_path / "content.png", smooth_image(32, 32, 1))
    save_image(tmp_path / "style.png", smooth_image(32, 32, 2))
    return tmp_path / "content.png", tmp_path / "style.png"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished 3-step run: ``a.png`` with its record and ``a.ckpt.npz`` at step 3."""
    from nst_jax.cli._stylize import main
    from nst_jax.files import save_image

    d = tmp_path_factory.mktemp("done")
    save_image(d / "content.png", smooth_image(32, 32, 1))
    save_image(d / "style.png", smooth_image(32, 32, 2))
    assert main([str(d / "content.png"), str(d / "style.png"), "-o", str(d / "a.png"), *HOSTILE_SMALL,
                 "--iterations", "3", "--checkpoint-every", "3"]) == 0
    return d
