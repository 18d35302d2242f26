"""The whole GPU report in one command, each stage in its own process with its own timeout.

  cd <copy of the repository> && PYTHONPATH=. python3 scripts/device_report.py --out "$OUT"
  PYTHONPATH=. python3 scripts/device_report.py --dry-run --out /tmp/report     # the same stages, tiny, on a CPU
  PYTHONPATH=. python3 scripts/device_report.py --plan     # the stages in order, their timeouts and their sum

It needs only what the repository imports (jax, flax, optax, numpy, pillow, h5py, tqdm; pytest for
the test stage; torch and pastiche for the peer stage, which is skipped when they do not import):
no pip install. The stages run in the order of their value to the GPU decisions still open (the
list and the timeouts are ``STAGES``; ``--plan`` prints them). The core stages' timeouts add up to
the default budget, which fits one device command; the optional stages after them run while the
budget lasts (each only with half its timeout left), and ``--stages`` picks any of them, e.g.
``--stages optional`` in a second command. No stage runs past the budget (``--budget``):

  env                   device, driver (nvidia-smi), versions, backend, XLA_FLAGS, and which of the
                        report's XLA flags the installed jaxlib knows
  preset                the CLI's defaults (the default preset's levels) at 512 px with an empty
                        compilation cache, then the same command again with that cache: one row of
                        cold and warm wall time, compile seconds and programs (target: cold within
                        3x warm)
  xla_*                 one row per setting of XLA's compile/run trade (``XLA_SETTINGS``): a cold
                        one-level run at 512 px, 40 steps, with an empty compilation cache under its
                        XLA_FLAGS: wall time, compile seconds, ms per step; a flag the installed
                        jaxlib does not know is reported in its row (GPU only)
  warm (optional)       a second photo with another aspect ratio (a crop of the first) at the same
                        size, with the cache the preset stage filled
  steps500 (optional)   500 L-BFGS steps at 512 px: their run time (compile excluded), evaluations
  sizes (optional)      the defaults at 512, 1024, 2048, 4096 px in one process: wall time, compile
                        summary and peak device memory (memory_stats()['peak_bytes_in_use']), a row each
  per_eval (optional)   matmul peaks (fp32 at JAX's default precision = TF32 on a GPU, fp32 HIGHEST,
                        bf16), then the time of one loss value-and-gradient evaluation at 512..4096 px
                        in fp32 and bf16, and % of the matching peak by the analytic FLOP count
                        (nst_jax._src.flops), XLA's count beside it
  sweep (optional)      a sweep of 8 members at 512 px, then the same 8 runs in sequence: throughput
  tests (optional)      a subset of the test suite on the device (pass/fail counts)
  pastiche (optional)   pastiche (PyTorch Gatys) on CUDA with its defaults, 500 steps at 512 px

The ``cold`` row of the earlier reports (docs/gpu/) was the CLI's defaults when they were one level of
40 steps: xla_autotune4 is its like now; their ``warm`` same-photo row is the preset row's warm run.

Every stage appends its output to OUT/device_report.log and its rows (lines ``ROW {json}``) to
the table OUT/device_report.md; a stage that times out or fails is marked so and costs only its
own time, and a run inside a stage that times out still writes its row. Images: ../shared/images
(Tübingen, Starry Night) when present, else examples/.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
_STARTED = time.perf_counter()  # a stage's child process starts its clock here (seconds_left)


class Stage(NamedTuple):
    """One stage of the report: its name (a ``stage_*`` function, or a key of ``XLA_SETTINGS``),
    timeouts in seconds on the device and in ``--dry-run``, whether it is in the core plan, and
    whether it runs only on a GPU (elsewhere its rows say it was skipped)."""

    name: str
    timeout: float
    dry_timeout: float
    core: bool = True
    gpu_only: bool = False


# One device command may run 600 s (the session's 15 minutes of device time also pay for the machine's start,
# a minute or more), so the core stages' timeouts add up to this, leaving the parent 40 s of slack. A cold
# one-level run at 512 px took 59 s on an H200 (docs/gpu/device_report_2.md): the baseline row gets 85 s; a
# setting slower than 50 s saves too little against it to become a default, so the other XLA rows get 50 s.
DEFAULT_BUDGET = 560.0
# In the order of their value: the default run cold and warm, the XLA settings that could make it cheaper,
# then the stages measured before (docs/gpu/), which run with what is left. The pastiche stage's --dry-run
# timeout is 60 s: importing torch and pastiche and running its 5 steps took 18 s of CPU time, 78 s of wall
# time beside other work on 2 cores, and so timed out at 20 s.
STAGES = [
    Stage("env", 15, 30), Stage("preset", 210, 60),
    Stage("xla_autotune4", 85, 30, gpu_only=True), Stage("xla_autotune_cache", 50, 30, gpu_only=True),
    Stage("xla_autotune3", 50, 30, gpu_only=True), Stage("xla_autotune1", 50, 30, gpu_only=True),
    Stage("xla_no_triton_gemm", 50, 30, gpu_only=True), Stage("xla_no_fusion_autotuner", 50, 30, gpu_only=True),
    Stage("xla_autotune2", 50, 30, core=False, gpu_only=True),
    Stage("xla_autotune0", 60, 30, core=False, gpu_only=True),
    Stage("warm", 40, 60, core=False), Stage("steps500", 50, 40, core=False), Stage("sizes", 90, 60, core=False),
    Stage("per_eval", 70, 60, core=False), Stage("sweep", 40, 60, core=False), Stage("tests", 40, 60, core=False),
    Stage("pastiche", 40, 60, core=False),
]
GROUPS = {"all": [s.name for s in STAGES], "core": [s.name for s in STAGES if s.core],
          "optional": [s.name for s in STAGES if not s.core],
          "xla": [s.name for s in STAGES if s.name.startswith("xla_")]}
TEST_SUBSET = ["tests/test_compilation.py", "tests/test_flops.py", "tests/test_losses.py", "tests/test_vgg.py",
               "tests/test_statistics.py", "tests/test_api.py"]
DRY_TEST_SUBSET = ["tests/test_flops.py", "tests/test_backend.py"]
# The issue's target for the default run: a cold first run within this multiple of the warm one.
COLD_TO_WARM_TARGET = 3.0


def params(dry: bool) -> dict:
    """Sizes and counts of each stage: the report's, or tiny ones for --dry-run."""
    if dry:
        return {"size": 64, "sizes": [64], "eval_sizes": [64], "steps": 5, "cli_iterations": 2, "level_steps": 2,
                "flag_iterations": 2, "warm_reserve": 25, "members": 2, "sweep_steps": 3, "peak_n": 256, "evals": 2,
                "tests": DRY_TEST_SUBSET, "peer_steps": 5}
    return {"size": 512, "sizes": [512, 1024, 2048, 4096], "eval_sizes": [512, 1024, 2048, 4096], "steps": 500,
            "cli_iterations": None, "level_steps": None, "flag_iterations": 40, "warm_reserve": 40, "members": 8,
            "sweep_steps": 40, "peak_n": 8192, "evals": 5, "tests": TEST_SUBSET, "peer_steps": 500}


def image_files() -> tuple[pathlib.Path, pathlib.Path, str]:
    if (SHARED / "tubingen.jpg").is_file() and (SHARED / "starry_night.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg", "tubingen + starry_night"
    return ROOT / "examples" / "chelsea.png", ROOT / "examples" / "swirls.png", "examples/chelsea + swirls"


def second_photo(content: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """The content photo cropped to a portrait 3:4 (another aspect ratio at the same --size)."""
    from PIL import Image

    im = Image.open(content).convert("RGB")
    w, h = im.size
    side_w, side_h = (min(w, h * 3 // 4), h) if w >= h else (w, min(h, w * 3 // 4))
    left, top = (w - side_w) // 2, (h - side_h) // 2
    path = work / "photo2.png"
    im.crop((left, top, left + side_w, top + side_h)).save(path)
    return path


def row(**fields) -> None:
    """A table row of the current stage (read by the parent from stdout)."""
    print("ROW " + json.dumps(fields, default=str), flush=True)


# ---------------------------------------------------------------------------------------------- stages (children)

def stage_env(p: dict, work: pathlib.Path) -> None:
    import flax
    import jax
    import jaxlib
    import optax

    dev = jax.devices()[0]
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5).stdout.strip() or "no output"
    except (OSError, subprocess.SubprocessError):
        smi = "nvidia-smi absent"
    row(what="device", value=f"{dev.device_kind} ({jax.default_backend()}, {jax.device_count()} device(s))")
    row(what="nvidia-smi", value=smi)
    row(what="versions", value=f"python {sys.version.split()[0]}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
                               f"flax {flax.__version__}, optax {optax.__version__}")
    row(what="XLA_FLAGS", value=os.environ.get("XLA_FLAGS", "(unset)"))
    # Which of the XLA rows' flags this jaxlib knows, told before those rows spend their minutes (and on a CPU).
    flags = {k: v for name in XLA_SETTINGS for k, v in setting_flags(name, work).items()}
    unknown = unknown_xla_flags(flags, os.environ.get("XLA_FLAGS", ""), timeout=seconds_left(2))
    row(what="XLA flags of the xla_* stages",
        value=unknown if isinstance(unknown, str) else f"unknown to this jaxlib: {' '.join(unknown)}" if unknown
        else f"all {len(flags)} known to this jaxlib ({', '.join(sorted(flags))})")


def seconds_left(reserve: float = 0.0) -> float:
    """Seconds this stage's process may still run (its timeout, from the parent through the environment),
    less ``reserve``: a run inside a stage stops in time for the stage to write its row."""
    limit = float(os.environ.get("NST_REPORT_STAGE_TIMEOUT", "60"))
    return max(limit - (time.perf_counter() - _STARTED) - reserve, 1.0)


# ---------------------------------------------------------------------------------------------- the CLI in a process

# The lines of nst-jax (nst_jax.cli._stylize), of nst_jax.compilation's summary and of XLA's flag parser that
# the report reads.
_SUMMARY = re.compile(r"compiled (\d+) XLA programs?(?: \((.*)\))?: .*compile ([\d.]+) s")
_TIMING = re.compile(r"time per iteration: ([\d.]+) s")
_LEVELS = re.compile(r"(\d+) scales, longest sides (.+) px, (.+) iterations")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(it/s|s/it)")
_UNKNOWN = re.compile(r"Unknown flags? in XLA_FLAGS: (.*)")


def parse_cli(text: str) -> dict:
    """What a run of nst-jax under ``python -m nst_jax.compilation`` printed, as the report's fields.

    Args:
        text: The run's stdout and stderr.

    Returns:
        ``summary`` (the last compile summary line, or "no summary") and from it ``programs``,
        ``misses``, ``hits`` and ``compile_s`` (XLA's seconds); ``timing`` (the "time per
        iteration" line); ``ms_per_step``; ``levels`` ("3 levels 128/256/512 px, 80+40+40 steps",
        "1 level", or None if the run stopped before saying); ``unknown_flags`` (the flags XLA
        refused, [] if none). A number is None where its line is missing.
    """
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
    summary = next((line for line in reversed(lines) if line.startswith("compiled ")), "no summary")
    timing = next((line for line in lines if line.startswith("time per iteration")), "")
    fields: dict = {"summary": summary, "programs": None, "misses": None, "hits": None, "compile_s": None,
                    "timing": timing, "ms_per_step": None, "levels": None, "unknown_flags": []}
    if m := _SUMMARY.match(summary):
        cache = m.group(2) or ""
        count = lambda word: int(c.group(1)) if (c := re.search(rf"(\d+) {word}", cache)) else 0  # noqa: E731
        fields.update(programs=int(m.group(1)), misses=count("cache miss"), hits=count("hit"),
                      compile_s=float(m.group(3)))
    # The progress bar's last rate comes from the run's measured step time with 3 significant digits; the
    # "time per iteration" line rounds to 1 ms, a third of a 512 px step on a GPU.
    rates = [m for line in lines if "|" in line for m in _RATE.finditer(line)]
    if rates:
        value, unit = float(rates[-1].group(1)), rates[-1].group(2)
        fields["ms_per_step"] = round(1e3 * value if unit == "s/it" else 1e3 / value, 3) if value else None
    elif m := _TIMING.match(timing):
        fields["ms_per_step"] = round(1e3 * float(m.group(1)), 3)
    if m := next(filter(None, map(_LEVELS.fullmatch, lines)), None):
        sizes, steps = m.group(2).split(", "), m.group(3).split(", ")
        fields["levels"] = f"{m.group(1)} levels {'/'.join(sizes)} px, {'+'.join(steps)} steps"
    elif any(line.startswith("compiling for ") for line in lines):
        fields["levels"] = "1 level"
    for line in lines:
        if m := _UNKNOWN.search(line):
            fields["unknown_flags"] += m.group(1).split()
    return fields


def cli_argv(p: dict, work: pathlib.Path, content, style, cache: str, name: str, steps: int | None = None,
             extra: Sequence[str] = ()) -> list[str]:
    """nst-jax at ``p['size']`` px under nst_jax.compilation (which adds the compile summary line).

    Args:
        p: :func:`params`.
        work: The report's work directory (the output goes to ``work/name.png``).
        content, style: Image paths.
        cache: The persistent compilation cache directory of the run.
        name: Names the output file.
        steps: Steps of every level (``--iterations``) [default: ``p['cli_iterations']``, else the preset's].
        extra: More options.
    """
    argv = [sys.executable, "-m", "nst_jax.compilation", "nst_jax.cli._stylize", "--content", str(content),
            "--style", str(style), "--size", str(p["size"]), "--output", str(work / f"{name}.png"), "--overwrite",
            "--compile-cache", cache]
    steps = steps or p["cli_iterations"]
    return argv + (["--iterations", str(steps)] if steps else []) + list(extra)


def cli_run(argv: list[str], env_extra: Mapping[str, str] | None = None, timeout: float | None = None) -> dict:
    """Runs ``argv`` in a fresh process, its output appended to the log.

    Returns:
        :func:`parse_cli`'s fields of its output, with ``rc`` (None when killed at ``timeout``),
        ``wall_s`` (the process's wall time) and ``status``: "ok", "unknown flag: ...",
        "timed out after N s" or "failed (exit N)".
    """
    env = dict(os.environ, **(env_extra or {}))
    t = time.perf_counter()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as err:
        rc, text = None, _text(err.stdout) + _text(err.stderr)
    wall = time.perf_counter() - t
    print(text, flush=True)
    fields = parse_cli(text)
    fields.update(rc=rc, wall_s=round(wall, 2), status=run_status(rc, fields["unknown_flags"], timeout))
    return fields


def run_status(rc: int | None, unknown_flags: Sequence[str], timeout: float | None) -> str:
    """One word or phrase for a run's end: an unknown XLA flag first, since XLA then stops the process at once."""
    if unknown_flags:
        return "unknown flag: " + " ".join(unknown_flags)
    if rc is None:
        return f"timed out after {timeout or 0:.0f} s"
    return "ok" if rc == 0 else f"failed (exit {rc})"


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def stage_preset(p, work):
    """The CLI's defaults (the default preset's levels) with an empty compilation cache, then again with it."""
    content, style, _ = image_files()
    argv = cli_argv(p, work, content, style, str(work / "cache"), "preset")
    # A slow cold run must leave the warm one its share of the stage's time, or the row would lose both.
    cold = cli_run(argv, timeout=seconds_left(p["warm_reserve"]))
    warm = cli_run(argv, timeout=seconds_left(2)) if cold["status"] == "ok" else None
    row(**preset_row(p, cold, warm))


def preset_row(p: dict, cold: dict, warm: dict | None) -> dict:
    """The preset stage's row from its runs' :func:`cli_run` fields (``warm`` None: not run, the cold one failed)."""
    fields = {"run": f"default preset at {p['size']} px, {cold['levels'] or (warm or {}).get('levels')}",
              "status": cold["status"] if warm is None else f"cold {cold['status']}, warm {warm['status']}",
              "cold_wall_s": cold["wall_s"], "cold_compile_s": cold["compile_s"], "programs": cold["programs"],
              "cold_misses": cold["misses"]}
    if warm is None:
        return {**fields, "warm_wall_s": "not run"}
    ratio = cold["wall_s"] / max(warm["wall_s"], 1e-9)
    met = ratio <= COLD_TO_WARM_TARGET and warm["status"] == "ok"
    return {**fields, "warm_wall_s": warm["wall_s"], "warm_compile_s": warm["compile_s"], "warm_hits": warm["hits"],
            "mean_ms_per_step": warm["ms_per_step"] or cold["ms_per_step"], "cold_to_warm": f"{ratio:.2f}x",
            "target": f"cold <= {COLD_TO_WARM_TARGET:g}x warm: {'met' if met else 'missed'}"}


def stage_warm(p, work):
    """A second photo with another aspect ratio at the same size, with the cache the preset stage filled."""
    content, style, _ = image_files()
    cache = work / "cache"
    cold = not (cache.is_dir() and any(cache.iterdir()))
    r = cli_run(cli_argv(p, work, second_photo(content, work), style, str(cache), "warm_crop"),
                timeout=seconds_left(2))
    row(run="warm, photo cropped to 3:4", rc=r["rc"], wall_s=r["wall_s"], compile=r["summary"], timing=r["timing"],
        **({"note": "the cache was empty (the preset stage did not run): a cold run"} if cold else {}))


# ---------------------------------------------------------------------------------------------- XLA settings

class XlaSetting(NamedTuple):
    """One setting of XLA's compile/run trade: XLA flags (name -> value; ``{autotune_cache}`` stands for the
    report's autotune cache directory) and other environment variables of its run."""

    label: str
    flags: dict[str, str]
    env: tuple[tuple[str, str], ...] = ()


AUTOTUNE_CACHE = "autotune_cache"  # under the report's work directory
# JAX points XLA's per-fusion autotune cache at <compilation cache>/xla_gpu_per_fusion_autotune_cache_dir
# whenever its persistent compilation cache is on (jax_persistent_cache_enable_xla_caches; the CLI's default),
# over the flag in XLA_FLAGS (seen with jax 0.10.2): so every CLI run already keeps one beside its programs.
# "none" leaves the flag in force, so that two runs, each with an empty compilation cache, share one.
_OWN_AUTOTUNE_CACHE = (("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", "none"),)
# Keys are stage names (STAGES). XLA's autotune levels: 0 off; 1 on; 2 also initialises the buffers; 3 also
# reinitialises them between candidates; 4 (XLA's default) also checks each candidate's result.
XLA_SETTINGS = {
    "xla_autotune4": XlaSetting(
        "autotune level 4 (XLA's default: the baseline), filling an autotune cache",
        {"xla_gpu_autotune_level": "4", "xla_gpu_per_fusion_autotune_cache_dir": "{autotune_cache}"},
        _OWN_AUTOTUNE_CACHE),
    "xla_autotune_cache": XlaSetting(
        "the autotune cache xla_autotune4 filled, read (an empty compilation cache)",
        {"xla_gpu_per_fusion_autotune_cache_dir": "{autotune_cache}"}, _OWN_AUTOTUNE_CACHE),
    "xla_autotune3": XlaSetting("autotune level 3 (no correctness checks)", {"xla_gpu_autotune_level": "3"}),
    "xla_autotune1": XlaSetting("autotune level 1 (no checks, buffers not initialised)",
                                {"xla_gpu_autotune_level": "1"}),
    "xla_no_triton_gemm": XlaSetting("Triton GEMM fusions off", {"xla_gpu_enable_triton_gemm": "false"}),
    "xla_no_fusion_autotuner": XlaSetting("fusion autotuner off",
                                          {"xla_gpu_experimental_enable_fusion_autotuner": "false"}),
    "xla_autotune2": XlaSetting("autotune level 2 (no checks)", {"xla_gpu_autotune_level": "2"}),
    "xla_autotune0": XlaSetting("autotune level 0 (no autotuning)", {"xla_gpu_autotune_level": "0"}),
}


def backend():
    """nst_jax._src.backend, loaded from its file: importing it through the package would import JAX
    (nst_jax/__init__.py), seconds that the parent and the XLA stages, which start no backend, need not spend."""
    spec = importlib.util.spec_from_file_location("nst_jax_backend", ROOT / "nst_jax" / "_src" / "backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def xla_env(name: str, work: pathlib.Path, user_flags: str) -> tuple[dict[str, str], list[str]]:
    """The environment of an XLA setting's run, and the setting's flags that ``user_flags`` already sets.

    Args:
        name: A key of ``XLA_SETTINGS``.
        work: The report's work directory.
        user_flags: The user's ``XLA_FLAGS``.

    Returns:
        ``XLA_FLAGS`` (the setting's flags added to ``user_flags`` by nst_jax._src.backend.merged_xla_flags,
        which keeps a value the user set) with the setting's other variables, and the names of the
        setting's flags whose value is the user's.
    """
    flags, b = setting_flags(name, work), backend()
    kept = sorted(set(flags) & b.flag_names(user_flags))
    return {"XLA_FLAGS": b.merged_xla_flags(user_flags, flags), **dict(XLA_SETTINGS[name].env)}, kept


def setting_flags(name: str, work: pathlib.Path) -> dict[str, str]:
    """The XLA flags of ``XLA_SETTINGS[name]``, with the report's autotune cache directory in ``work``."""
    return {k: v.format(autotune_cache=work / AUTOTUNE_CACHE) for k, v in XLA_SETTINGS[name].flags.items()}


def xla_row(name: str, env: Mapping[str, str], kept: Sequence[str], run: dict | None, status: str = "") -> dict:
    """An XLA setting's row from its run's :func:`cli_run` fields (None: not run, for ``status``)."""
    fields = {"setting": XLA_SETTINGS[name].label, "xla_flags": env["XLA_FLAGS"]}
    if kept:
        fields["note"] = f"XLA_FLAGS already sets {', '.join(kept)}: the user's value stands"
    if run is None:
        return {**fields, "status": status}
    return {**fields, "status": run["status"], "cold_wall_s": run["wall_s"], "compile_s": run["compile_s"],
            "ms_per_step": run["ms_per_step"], "programs": run["programs"]}


def stage_xla(p, work, name: str):
    """One XLA setting: a cold one-level run of p['flag_iterations'] steps with an empty compilation cache."""
    content, style, _ = image_files()
    env, kept = xla_env(name, work, os.environ.get("XLA_FLAGS", ""))
    autotune_cache = work / AUTOTUNE_CACHE
    autotune_cache.mkdir(exist_ok=True)  # XLA writes its entries there but expects the directory
    before = len(list(autotune_cache.iterdir()))
    argv = cli_argv(p, work, content, style, str(work / f"cache_{name}"), name, steps=p["flag_iterations"],
                    extra=["--scales", "1"])
    fields = xla_row(name, env, kept, cli_run(argv, env, timeout=seconds_left(2)))
    if "xla_gpu_per_fusion_autotune_cache_dir" in XLA_SETTINGS[name].flags:
        # Entries before and after: the filling row starts from none, the reading one should add none.
        fields["autotune_cache_entries"] = f"{before} -> {len(list(autotune_cache.iterdir()))}"
    row(**fields)


def unknown_xla_flags(flags: Mapping[str, str], user_flags: str, timeout: float = 30.0) -> list[str] | str:
    """The flags in ``flags`` and ``user_flags`` that the installed jaxlib's XLA does not know, from a CPU
    backend started under them (XLA reads every flag when a backend starts, whatever the platform).

    Returns:
        The flags XLA named ([] if it started), or a line saying why the check could not tell.
    """
    merged = backend().merged_xla_flags(user_flags, flags)
    env = dict(os.environ, XLA_FLAGS=merged, JAX_PLATFORMS="cpu")
    try:
        out = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, text=True,
                             env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the check timed out after {timeout:.0f} s"
    unknown = parse_cli(out.stdout + out.stderr)["unknown_flags"]
    if out.returncode != 0 and not unknown:
        return f"the check failed (exit {out.returncode}): {(out.stderr.strip().splitlines() or [''])[-1][:200]}"
    return unknown


def _defaults_run(vgg, size: int, iterations: int | None = None, chunk_size: int | None = None,
                  level_steps: int | None = None):
    """The command line's defaults through the library (the default preset's levels, each of at most
    ``level_steps`` steps if given), or one level of ``iterations`` steps."""
    import jax

    from nst_jax import StylizeConfig, load_image, preset_levels, stylize, stylize_multiscale
    from nst_jax.compilation import CompileStats

    content, style, _ = image_files()
    kwargs = {k: v for k, v in (("iterations", iterations), ("chunk_size", chunk_size)) if v}
    config = StylizeConfig(**kwargs)
    t = time.perf_counter()
    with CompileStats() as stats:
        c, s = load_image(content, size), load_image(style, size)
        if iterations is None:
            levels = preset_levels(size, config)
            if level_steps:
                levels["iterations"] = [min(n, level_steps) for n in levels["iterations"]]
            result = stylize_multiscale(vgg, content=c, style=s, config=config, **levels)
        else:
            result = stylize(vgg, content=c, style=s, config=config)
    wall = time.perf_counter() - t
    try:
        peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**30
    except Exception:  # CPU backends may have no memory stats
        peak = None
    return result, stats, wall, peak, c.shape


def stage_steps500(p, work):
    from nst_jax import load_vgg19

    result, stats, wall, _, shape = _defaults_run(load_vgg19(), p["size"], iterations=p["steps"])
    evals = int(result.history["evaluations_per_step"].sum())
    row(run=f"{p['steps']} L-BFGS steps at {shape[1]}x{shape[0]}", run_s=round(result.run_seconds, 3),
        ms_per_step=round(1e3 * result.run_seconds / p["steps"], 2), evaluations=evals,
        compile_s=round(result.compile_seconds, 2), wall_s=round(wall, 2), compile=stats.summary())


def stage_sizes(p, work):
    from nst_jax import load_vgg19

    vgg = load_vgg19()
    for size in p["sizes"]:
        result, stats, wall, peak, shape = _defaults_run(vgg, size, level_steps=p["level_steps"])
        row(size=f"{shape[1]}x{shape[0]}", wall_s=round(wall, 2), run_s=round(result.run_seconds, 2),
            compile_s=round(result.compile_seconds, 2),
            peak_gib="n/a" if peak is None else round(peak, 2), compile=stats.summary())


def stage_per_eval(p, work):
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nst_jax import StylizeConfig, compute_targets, load_image, load_vgg19, loss_terms, make_weights
    from nst_jax._src.flops import analytic_flops

    def peak(dtype, precision=None):
        n = p["peak_n"]
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
        mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision, preferred_element_type=jnp.float32))
        mm(a, b).block_until_ready()
        best = min(_timed(lambda: mm(a, b).block_until_ready()) for _ in range(5))
        return 2 * n**3 / best / 1e12

    peaks = {"fp32": peak(jnp.float32), "fp32_highest": peak(jnp.float32, lax.Precision.HIGHEST),
             "bf16": peak(jnp.bfloat16)}
    gpu = jax.default_backend() == "gpu"
    row(what="matmul peak TFLOP/s", fp32_default=round(peaks["fp32"], 2), fp32_highest=round(peaks["fp32_highest"], 2),
        bf16=round(peaks["bf16"], 2), note=("fp32 default = TF32 on this GPU" if gpu else "CPU: default = float32"))
    vgg = load_vgg19()
    content, style, _ = image_files()
    for size in p["eval_sizes"]:
        c, s = load_image(content, size), load_image(style, size)
        for precision in ("fp32", "bf16"):
            config = StylizeConfig(precision=precision)
            weights = make_weights(config)
            targets = jax.jit(lambda v, c_, s_, cfg=config: compute_targets(v, content=c_, style=s_, config=cfg))(
                vgg, c, s)
            fn = jax.jit(jax.value_and_grad(lambda x, v, t, w, cfg=config: loss_terms(v, x, t, w, config=cfg)["total"]))
            x = jnp.asarray(c)
            t0 = time.perf_counter()
            compiled = fn.lower(x, vgg, targets, weights).compile()
            compile_s = time.perf_counter() - t0
            try:
                cost = compiled.cost_analysis()
                cost = cost[0] if isinstance(cost, list) else cost
                xla = float(cost["flops"]) / 1e9
            except Exception:
                xla = float("nan")
            args_ = (x, vgg, targets, weights)
            jax.block_until_ready(compiled(*args_))
            best = min(_timed(lambda f=compiled, a=args_: jax.block_until_ready(f(*a))) for _ in range(p["evals"]))
            flops = analytic_flops(config, c.shape)
            rate = flops / best / 1e12
            row(size=f"{c.shape[1]}x{c.shape[0]}", precision=precision, ms_per_eval=round(1e3 * best, 3),
                gflop=round(flops / 1e9, 1), xla_gflop=round(xla, 1), tflops=round(rate, 2),
                pct_peak=round(100 * rate / peaks[precision], 1), compile_s=round(compile_s, 2))
            del compiled


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def stage_sweep(p, work):
    """A sweep of K members with the default preset (every level) against the same K runs one after another,
    both in this process: cold (compiling), then warm (the programs compiled already)."""
    import numpy as np

    from nst_jax import load_image, load_vgg19, make_spec, run_spec, sweep_specs
    from nst_jax.spec import Choices

    vgg = load_vgg19()
    content, style, _ = image_files()
    c, s = load_image(content, p["size"]), load_image(style, p["size"])
    base = make_spec(content=c, style=s, choices=Choices(iterations=p["sweep_steps"]))
    specs = [make_spec(plan=base.plan, seed=0, levels=[
        (max(level.shape), level.iterations, level.weights._replace(style=np.float32(level.weights.style * f)))
        for level in base.levels]) for f in np.geomspace(0.25, 4.0, p["members"])]
    what = (f"{p['members']} members of the default preset at {c.shape[1]}x{c.shape[0]}, "
            f"{'+'.join(str(n) for n in base.iterations)} steps")
    for when in ("cold", "warm"):
        t = time.perf_counter()
        results = sweep_specs(vgg, specs)
        sweep_wall = time.perf_counter() - t
        t = time.perf_counter()
        singles = [run_spec(vgg, spec) for spec in specs]
        seq_wall = time.perf_counter() - t
        sweep_run = sum(r.run_seconds for r in results)
        seq_run = sum(r.run_seconds for r in singles)
        row(run=f"{when}: sweep of {what} vs the same runs in sequence", sweep_wall_s=round(sweep_wall, 2),
            sequence_wall_s=round(seq_wall, 2), sweep_compile_s=round(sum(r.compile_seconds for r in results), 2),
            throughput_wall=f"{seq_wall / sweep_wall:.2f}x", throughput_run=f"{seq_run / max(sweep_run, 1e-9):.2f}x")


def stage_tests(p, work):
    import re

    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *p["tests"]]
    # Stop pytest a little before the stage's own timeout, so the counts so far still make a row.
    limit = max(float(os.environ.get("NST_REPORT_STAGE_TIMEOUT", "60")) - 8, 5)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=limit)
    except subprocess.TimeoutExpired as err:
        text = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        out = subprocess.CompletedProcess(argv, f"timeout {limit:.0f} s", text + f"\n(stopped after {limit:.0f} s)", "")
    print(out.stdout[-20000:] + out.stderr[-5000:], flush=True)
    last = (out.stdout.strip().splitlines() or ["no output"])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", out.stdout)}
    if not counts:  # cut short: count the progress dots and letters of pytest's -q lines
        lines = [ln for ln in out.stdout.splitlines() if re.fullmatch(r"[.FEsx]+( +\[.*)?", ln)]
        progress = "".join(ln.split(" [")[0] for ln in lines)
        counts = {"passed": progress.count("."), "failed": progress.count("F") + progress.count("E"),
                  "skipped": progress.count("s")}
    row(tests=" ".join(p["tests"]), rc=out.returncode, passed=counts.get("passed", 0),
        failed=counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
        skipped=counts.get("skipped", 0), summary=last)


def stage_pastiche(p, work):
    check = subprocess.run([sys.executable, "-c", "import torch, pastiche; print(pastiche.__version__, "
                            "torch.__version__, torch.cuda.is_available())"], capture_output=True, text=True)
    if check.returncode != 0:
        row(run="pastiche", status="skipped: torch or pastiche does not import")
        return
    version, torch_version, cuda = check.stdout.split()[-3:]
    device = "cuda" if cuda == "True" else "cpu"
    content, style, _ = image_files()
    child = "import sys; from pastiche.pastiche import main; sys.exit(main(sys.argv))"
    argv = [sys.executable, "-c", child, "--content", str(content), "--styles", str(style),
            "--output", str(work / "pastiche.png"), "--device", device, "--num-steps", str(p["peer_steps"]),
            "--size", str(p["size"])]
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t
    print(out.stdout[-5000:] + out.stderr[-5000:], flush=True)
    row(run=f"pastiche {version} (torch {torch_version}, {device}), defaults, {p['peer_steps']} steps, {p['size']} px",
        rc=out.returncode, wall_s=round(wall, 2))


# Stages that call the library in-process share one persistent compilation cache (not the CLI's cold/warm one),
# so a program compiled by one (the 512 px step chunk, the sequential sweep runs) is loaded by the next; each row's
# compile summary says which programs were cache hits.
LIBRARY_STAGES = ("steps500", "sizes", "per_eval", "sweep")

CHILDREN = {"env": stage_env, "preset": stage_preset, "warm": stage_warm, "steps500": stage_steps500,
            "sizes": stage_sizes, "per_eval": stage_per_eval, "sweep": stage_sweep, "tests": stage_tests,
            "pastiche": stage_pastiche, **{name: functools.partial(stage_xla, name=name) for name in XLA_SETTINGS}}


# ---------------------------------------------------------------------------------------------- the parent

def run_stage(name: str, argv: list[str], timeout: float, log, env: dict) -> dict:
    """One stage in its own process group; its output appended to the log; killed at the timeout."""
    log.write(f"\n===== stage {name} (timeout {timeout:.0f} s) {time.strftime('%H:%M:%S')} =====\n")
    log.flush()
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        status = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t
    log.write(out or "")
    log.write(f"----- {name}: {status}, {seconds:.1f} s\n")
    log.flush()
    rows = []
    for line in (out or "").splitlines():
        if line.startswith("ROW "):
            try:
                rows.append(json.loads(line[4:]))
            except json.JSONDecodeError:
                pass
    return {"stage": name, "status": status, "seconds": seconds, "rows": rows}


def markdown(results: list[dict], header: str) -> str:
    lines = [header, "", "| stage | status | seconds | results |", "|---|---|---|---|"]
    for r in results:
        cells = "<br>".join("; ".join(f"{k}: {v}" for k, v in row.items()) for row in r["rows"]) or "—"
        lines.append(f"| {r['stage']} | {r['status']} | {r['seconds']:.1f} | {cells.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def selected(names: Sequence[str] | None) -> list[Stage]:
    """The stages named (stage names or ``GROUPS``), in the plan's order; all of them if None."""
    wanted = {stage for name in names or ["all"] for stage in GROUPS.get(name, [name])}
    return [s for s in STAGES if s.name in wanted]


def budget_line(stages: Sequence[Stage], full_timeouts: Mapping[str, float], budget: float) -> str:
    """The sum of the stages' timeouts on the device, core and optional, against the budget."""
    core = sum(full_timeouts[s.name] for s in stages if s.core)
    optional = sum(full_timeouts[s.name] for s in stages if not s.core)
    over = f", {core - budget:.0f} s OVER it" if core > budget else ""
    return (f"stage timeouts on the device: core stages {core:.0f} s in all (budget {budget:.0f} s{over}); "
            f"optional stages {optional:.0f} s more, each run only with half its timeout left in the budget")


def plan_text(stages: Sequence[Stage], timeouts: Mapping[str, float], full_timeouts: Mapping[str, float],
              budget: float) -> str:
    """``--plan``: the stages in order with their timeouts and running sum, then :func:`budget_line`."""
    lines, total = [f"{'stage':<26}{'timeout s':>10}{'sum s':>8}  kind"], 0.0
    for s in stages:
        total += timeouts[s.name]
        kind = ("core" if s.core else "optional") + (", GPU only" if s.gpu_only else "")
        lines.append(f"{s.name:<26}{timeouts[s.name]:>10.0f}{total:>8.0f}  {kind}")
    return "\n".join([*lines, budget_line(stages, full_timeouts, budget)])


def without_rows(stage: Stage, work: pathlib.Path, env: Mapping[str, str], status: str) -> dict:
    """The result of a stage that did not run or wrote no row: its XLA setting's row (what it set), if it has one."""
    rows = []
    if stage.name in XLA_SETTINGS:
        setting_env, kept = xla_env(stage.name, work, env.get("XLA_FLAGS", ""))
        rows = [xla_row(stage.name, setting_env, kept, None, status)]
    return {"stage": stage.name, "status": status, "seconds": 0.0, "rows": rows}


def run_stages(stages: Sequence[Stage], timeouts: Mapping[str, float], budget: float, dry: bool,
               work: pathlib.Path, env: dict, log) -> list[dict]:
    """Each stage in its own process, in order, within ``budget`` seconds: their results, each with its rows."""
    on_gpu = not dry and backend().gpu_present()
    start, results = time.perf_counter(), []
    for stage in stages:
        timeout, left = timeouts[stage.name], budget - (time.perf_counter() - start)
        if stage.gpu_only and not on_gpu:
            r = without_rows(stage, work, env, "skipped (GPU only)")
        elif left < (1 if stage.core else timeout / 2):
            r = without_rows(stage, work, env, "skipped (no budget left)")
        else:
            argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--stage", stage.name, "--work",
                    str(work)] + (["--dry-run"] if dry else [])
            env["NST_REPORT_STAGE_TIMEOUT"] = str(min(timeout, left))
            r = run_stage(stage.name, argv, min(timeout, left), log, env)
            r["rows"] = r["rows"] or without_rows(stage, work, env, r["status"])["rows"]
        results.append(r)
        print(f"{r['stage']}: {r['status']} ({r['seconds']:.1f} s)", flush=True)
        for row_ in r["rows"]:
            print("  " + "; ".join(f"{k}: {v}" for k, v in row_.items()), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "device_report_out",
                        help="directory of device_report.log and device_report.md [default: $OUT, else "
                             "./device_report_out]")
    parser.add_argument("--dry-run", action="store_true", help="the same stages at tiny sizes (a CPU check)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="seconds for all stages together [default: %(default)s, the core stages' timeouts]")
    parser.add_argument("--stages", nargs="+", choices=[s.name for s in STAGES] + list(GROUPS), metavar="STAGE",
                        help=f"run only these stages, or groups of them ({', '.join(GROUPS)}), in the plan's "
                             "order [default: all: the core ones, then the optional ones while the budget lasts]")
    parser.add_argument("--plan", action="store_true",
                        help="print the stages in order with their timeouts and the sums, and stop")
    parser.add_argument("--timeout", nargs="+", default=[], metavar="STAGE=SECONDS",
                        help="override stage timeouts, e.g. --timeout sizes=150 tests=30")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    p = params(args.dry_run)
    if args.stage:  # a child: one stage
        work = pathlib.Path(args.work)
        if args.stage in LIBRARY_STAGES:
            from nst_jax._src.cache import enable_compilation_cache

            enable_compilation_cache(work / "cache_library")
        CHILDREN[args.stage](p, work)
        return 0

    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.timeout)}
    stages = selected(args.stages)
    timeouts = {s.name: overrides.get(s.name, s.dry_timeout if args.dry_run else s.timeout) for s in stages}
    full_timeouts = {s.name: s.timeout if args.dry_run else timeouts[s.name] for s in stages}
    if args.plan:
        print(plan_text(stages, timeouts, full_timeouts, args.budget))
        return 0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="nst_jax_report_"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", NST_JAX_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.dry_run:
        env.setdefault("JAX_PLATFORMS", "cpu")
    plan = budget_line(stages, full_timeouts, args.budget)
    print(plan, flush=True)
    start = time.perf_counter()
    with open(out / "device_report.log", "a") as log:
        log.write(f"\n##### nst_jax device report {time.strftime('%Y-%m-%d %H:%M:%S')} dry_run={args.dry_run} "
                  f"budget={args.budget:.0f} s\n{plan}\n")
        results = run_stages(stages, timeouts, args.budget, args.dry_run, work, env, log)
    _, _, source = image_files()
    header = (f"# nst_jax device report{' (dry run)' if args.dry_run else ''}\n\n"
              f"{time.strftime('%Y-%m-%d %H:%M')}; images: {source}; total {time.perf_counter() - start:.0f} s "
              f"of a {args.budget:.0f} s budget; log: device_report.log\n\n{plan}")
    table = markdown(results, header)
    (out / "device_report.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
