"""The whole GPU report in one command, each stage in its own process with its own timeout.

  cd <copy of the repository> && PYTHONPATH=. python3 scripts/device_report.py --out "$OUT"
  PYTHONPATH=. python3 scripts/device_report.py --dry-run --out /tmp/report     # the same stages, tiny, on a CPU

It needs only what the repository imports (jax, flax, optax, numpy, pillow, h5py, tqdm; pytest for
the test stage; torch and pastiche for the peer stage, which is skipped when they do not import):
no pip install. Stages, in order (default timeouts in seconds, 480 in all; a stage never runs
past the total budget, ``--budget``):

  env 10         device, driver (nvidia-smi), jax/jaxlib/flax/optax versions, backend
  cold 100       the CLI's defaults at 512 px with a new, empty compilation-cache directory:
                 process wall time and the compile summary line (nst_jax.compilation)
  warm 40        the same command with the now-warm cache; then a second photo with another
                 aspect ratio at the same size (a crop of the first), same cache
  steps500 50    500 L-BFGS steps at 512 px: their run time (compile excluded), evaluations
  sizes 90       the defaults at 512, 1024, 2048, 4096 px in one process: wall time, compile
                 summary and peak device memory (memory_stats()['peak_bytes_in_use']), a row each
  per_eval 70    matmul peaks (fp32 at JAX's default precision = TF32 on a GPU, fp32 HIGHEST,
                 bf16), then the time of one loss value-and-gradient evaluation at 512..4096 px
                 in fp32 and bf16, and % of the matching peak by the analytic FLOP count
                 (nst_jax.flops), XLA's count beside it
  sweep 40       a sweep of 8 members at 512 px, then the same 8 runs in sequence: throughput ratio
  tests 40       a subset of the test suite on the device (pass/fail counts)
  pastiche 40    pastiche (PyTorch Gatys) on CUDA with its defaults, 500 steps at 512 px
  autotune       extra cold-start rows with XLA_FLAGS=--xla_gpu_autotune_level=N for each
                 --xla-autotune-level N (GPU only; only with budget left)

Every stage appends its output to OUT/device_report.log and its rows (lines ``ROW {json}``) to
the table OUT/device_report.md; a stage that times out or fails is marked so and costs only its
own time. Images: ../shared/images (Tübingen, Starry Night) when present, else examples/.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"

# name, timeout (s), dry-run timeout (s)
STAGES = [("env", 10, 30), ("cold", 100, 60), ("warm", 40, 60), ("steps500", 50, 40), ("sizes", 90, 60),
          ("per_eval", 70, 60), ("sweep", 40, 60), ("tests", 40, 60), ("pastiche", 40, 20)]
TEST_SUBSET = ["tests/test_compilation.py", "tests/test_flops.py", "tests/test_losses.py", "tests/test_vgg.py",
               "tests/test_statistics.py", "tests/test_api.py"]
DRY_TEST_SUBSET = ["tests/test_flops.py", "tests/test_backend.py"]


def params(dry: bool) -> dict:
    """Sizes and counts of each stage: the report's, or tiny ones for --dry-run."""
    if dry:
        return {"size": 64, "sizes": [64], "eval_sizes": [64], "steps": 5, "cli_iterations": 2,
                "members": 2, "sweep_steps": 3, "peak_n": 256, "evals": 2, "tests": DRY_TEST_SUBSET,
                "peer_steps": 5}
    return {"size": 512, "sizes": [512, 1024, 2048, 4096], "eval_sizes": [512, 1024, 2048, 4096], "steps": 500,
            "cli_iterations": None, "members": 8, "sweep_steps": 40, "peak_n": 8192, "evals": 5,
            "tests": TEST_SUBSET, "peer_steps": 500}


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


def cli_run(p: dict, work: pathlib.Path, content, style, cache: str, label: str, env_extra=None) -> None:
    """The CLI in a fresh process (its defaults at p['size']) under nst_jax.compilation: wall time and summary."""
    argv = [sys.executable, "-m", "nst_jax.compilation", "nst_jax.cli.stylize", "--content", str(content),
            "--style", str(style), "--size", str(p["size"]), "--output", str(work / f"{label}.png"), "--overwrite",
            "--compile-cache", cache]
    if p["cli_iterations"]:
        argv += ["--iterations", str(p["cli_iterations"])]
    env = dict(os.environ, **(env_extra or {}))
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    print(out.stdout + out.stderr, flush=True)
    lines = out.stdout.strip().splitlines()
    summary = next((ln for ln in reversed(lines) if ln.startswith("compiled ")), "no summary")
    timing = next((ln for ln in lines if ln.startswith("time per iteration")), "")
    row(run=label, rc=out.returncode, wall_s=round(wall, 2), compile=summary, timing=timing)


def stage_cold(p, work):
    content, style, _ = image_files()
    cli_run(p, work, content, style, str(work / "cache"), "cold 512 px" if p["size"] == 512 else f"cold {p['size']}")


def stage_warm(p, work):
    content, style, _ = image_files()
    cache = str(work / "cache")
    cli_run(p, work, content, style, cache, "warm, same photo")
    cli_run(p, work, second_photo(content, work), style, cache, "warm, photo cropped to 3:4")


def stage_autotune(p, work, level: str):
    content, style, _ = image_files()
    flags = (os.environ.get("XLA_FLAGS", "") + f" --xla_gpu_autotune_level={level}").strip()
    cli_run(p, work, content, style, str(work / f"cache_autotune{level}"), f"cold, autotune level {level}",
            {"XLA_FLAGS": flags})


def _defaults_run(vgg, size: int, iterations: int | None = None, chunk_size: int | None = None):
    """The command line's defaults through the library (the default preset's levels), or one level of
    ``iterations`` steps."""
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
            result = stylize_multiscale(vgg, content=c, style=s, config=config, **preset_levels(size, config))
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
        result, stats, wall, peak, shape = _defaults_run(vgg, size)
        row(size=f"{shape[1]}x{shape[0]}", wall_s=round(wall, 2), run_s=round(result.run_seconds, 2),
            compile_s=round(result.compile_seconds, 2),
            peak_gib="n/a" if peak is None else round(peak, 2), compile=stats.summary())


def stage_per_eval(p, work):
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nst_jax import StylizeConfig, compute_targets, load_image, load_vgg19, loss_terms, make_weights
    from nst_jax.flops import analytic_flops

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
    import numpy as np

    from nst_jax import StylizeConfig, load_image, load_vgg19, make_weights, stack_weights, stylize, sweep

    vgg = load_vgg19()
    content, style, _ = image_files()
    c, s = load_image(content, p["size"]), load_image(style, p["size"])
    config = StylizeConfig(iterations=p["sweep_steps"])
    members = [make_weights(config, style_weight=float(b)) for b in np.geomspace(5.0, 80.0, p["members"])]
    t = time.perf_counter()
    result = sweep(vgg, weights=stack_weights(members), content=c, style=s, config=config)
    sweep_wall = time.perf_counter() - t
    row(run=f"sweep of {p['members']} at {c.shape[1]}x{c.shape[0]}, {p['sweep_steps']} steps",
        wall_s=round(sweep_wall, 2), run_s=round(result.run_seconds, 3), compile_s=round(result.compile_seconds, 2))
    seq_run = seq_compile = 0.0
    t = time.perf_counter()
    for w in members:
        r = stylize(vgg, content=c, style=s, config=config, weights=w)
        seq_run += r.run_seconds
        seq_compile += r.compile_seconds
    seq_wall = time.perf_counter() - t
    row(run=f"the same {p['members']} in sequence", wall_s=round(seq_wall, 2), run_s=round(seq_run, 3),
        compile_s=round(seq_compile, 2), throughput_wall=f"{seq_wall / sweep_wall:.2f}x",
        throughput_run=f"{seq_run / max(result.run_seconds, 1e-9):.2f}x")


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

CHILDREN = {"env": stage_env, "cold": stage_cold, "warm": stage_warm, "steps500": stage_steps500,
            "sizes": stage_sizes, "per_eval": stage_per_eval, "sweep": stage_sweep, "tests": stage_tests,
            "pastiche": stage_pastiche}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "device_report_out",
                        help="directory of device_report.log and device_report.md [default: $OUT, else "
                             "./device_report_out]")
    parser.add_argument("--dry-run", action="store_true", help="the same stages at tiny sizes (a CPU check)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all stages together")
    parser.add_argument("--stages", nargs="+", choices=[s for s, _, _ in STAGES] + ["autotune"],
                        help="run only these stages")
    parser.add_argument("--xla-autotune-level", nargs="*", default=None, metavar="N",
                        help="extra cold-start rows with XLA_FLAGS=--xla_gpu_autotune_level=N [default on a GPU: 0; "
                             "never in a dry run]")
    parser.add_argument("--timeout", nargs="+", default=[], metavar="STAGE=SECONDS",
                        help="override stage timeouts, e.g. --timeout sizes=150 tests=30")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--level", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    p = params(args.dry_run)
    if args.stage:  # a child: one stage
        work = pathlib.Path(args.work)
        if args.stage in LIBRARY_STAGES:
            from nst_jax.cache import enable_compilation_cache

            enable_compilation_cache(work / "cache_library")
        if args.stage == "autotune":
            stage_autotune(p, work, args.level)
        else:
            CHILDREN[args.stage](p, work)
        return 0

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="nst_jax_report_"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", NST_JAX_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.dry_run:
        env.setdefault("JAX_PLATFORMS", "cpu")
    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.timeout)}
    plan = [(name, overrides.get(name, dry if args.dry_run else full)) for name, full, dry in STAGES
            if not args.stages or name in args.stages]
    levels = args.xla_autotune_level
    if levels is None:
        levels = [] if args.dry_run or not os.path.exists("/dev/nvidia0") else ["0"]
    if args.stages and "autotune" not in args.stages:
        levels = []
    start = time.perf_counter()
    results = []
    with open(out / "device_report.log", "a") as log:
        log.write(f"\n##### nst_jax device report {time.strftime('%Y-%m-%d %H:%M:%S')} dry_run={args.dry_run} "
                  f"budget={args.budget:.0f} s\n")
        stages = [(name, timeout, []) for name, timeout in plan]
        stages += [("autotune", overrides.get("autotune", 30.0 if args.dry_run else 60.0), ["--level", lv])
                   for lv in levels]
        for name, timeout, extra in stages:
            left = args.budget - (time.perf_counter() - start)
            if name == "autotune" and left < timeout / 2:
                results.append({"stage": f"{name} {extra[-1]}", "status": "skipped (no budget left)", "seconds": 0.0,
                                "rows": []})
                continue
            if left < 1:
                results.append({"stage": name, "status": "skipped (budget spent)", "seconds": 0.0, "rows": []})
                continue
            argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--stage", name, "--work", str(work)]
            argv += (["--dry-run"] if args.dry_run else []) + extra
            env["NST_REPORT_STAGE_TIMEOUT"] = str(min(timeout, left))
            r = run_stage(name if not extra else f"{name} {extra[-1]}", argv, min(timeout, left), log, env)
            results.append(r)
            print(f"{r['stage']}: {r['status']} ({r['seconds']:.1f} s)", flush=True)
            for row_ in r["rows"]:
                print("  " + "; ".join(f"{k}: {v}" for k, v in row_.items()), flush=True)
    _, _, source = image_files()
    header = (f"# nst_jax device report{' (dry run)' if args.dry_run else ''}\n\n"
              f"{time.strftime('%Y-%m-%d %H:%M')}; images: {source}; total {time.perf_counter() - start:.0f} s "
              f"of a {args.budget:.0f} s budget; log: device_report.log")
    table = markdown(results, header)
    (out / "device_report.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
