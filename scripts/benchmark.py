"""Time per optimisation step, FLOP rate, and the machine's own fp32 matmul peak, in one run.

  python scripts/benchmark.py            # 512 px, L-BFGS and Adam
  python scripts/benchmark.py --quick    # 256 px, fewer steps
  python scripts/benchmark.py --optimizers lbfgs --precisions fp32 --peer   # and pastiche (PyTorch) beside it
  python scripts/benchmark.py --peer --time-to-quality                       # wall time to pastiche's image quality

For each size and optimiser it reports seconds per step, loss evaluations per step (L-BFGS's line
search may evaluate more than once), FLOPs per evaluation (the analytic count of nst_jax._src.flops, the
same on every backend; XLA's cost analysis beside it as a check: on a GPU it misses the cuDNN
convolutions), the achieved GFLOP/s, and that as a fraction of the matmul peak of the same
precision measured at the start of the same run (fp32 at JAX's default precision, which is TF32 on
a GPU, and at HIGHEST; bf16 with float32 accumulation). Every mode ends with the compile summary
line of nst_jax.compilation; --compile prints one row per XLA program of one CLI run.

With --peer (needs the optional extra: pip install -e '.[peer]'), each L-BFGS fp32 measurement is
followed by pastiche, a PyTorch Gatys implementation, run through its command-line entry point on
the same image files, output size and step count, on the CPU with as many torch threads as the
cores JAX's CPU backend uses, and the time ratio is printed per loss evaluation and per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nst_jax import (
    StylizeConfig,
    compute_targets,
    load_image,
    load_vgg19,
    loss_terms,
    make_stylizer,
    make_weights,
    stack_weights,
    stylize,
    sweep,
)
from nst_jax._src.flops import analytic_flops
from nst_jax.compilation import CompileStats

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def matmul_peak(n: int, dtype=jnp.float32, repeats: int = 5, precision=None) -> float:
    """Best GFLOP/s of an n x n matmul on the default device (float32 accumulation).

    ``precision`` None is JAX's default (TF32 on NVIDIA GPUs for float32); ``lax.Precision.HIGHEST``
    is full float32.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision, preferred_element_type=jnp.float32))
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def matmul_peaks(n: int) -> dict[str, float]:
    """GFLOP/s: ``fp32`` at JAX's default precision, ``fp32_highest`` at HIGHEST, ``bf16`` (float32 accumulation)."""
    return {"fp32": matmul_peak(n), "fp32_highest": matmul_peak(n, precision=lax.Precision.HIGHEST),
            "bf16": matmul_peak(n, jnp.bfloat16)}


def conv_precision(precision: str = "fp32") -> str:
    """The arithmetic the VGG convolutions run in, from the backend and JAX's precision setting."""
    if precision == "bf16":
        return "bf16 inputs, float32 accumulation"
    setting = str(jax.config.jax_default_matmul_precision or "default").lower()
    if jax.default_backend() == "gpu":
        if setting in ("highest", "float32", "precision.highest"):
            return "float32 (jax_default_matmul_precision=highest)"
        if os.environ.get("NVIDIA_TF32_OVERRIDE") == "0":
            return "float32 (NVIDIA_TF32_OVERRIDE=0)"
        return f"TF32 (XLA:GPU's default precision; jax_default_matmul_precision={setting})"
    return f"float32 ({jax.default_backend()}, jax_default_matmul_precision={setting})"


def print_peaks(peaks: dict[str, float], n: int) -> None:
    print(f"matmul peaks ({n}x{n}): fp32 at JAX's default precision {peaks['fp32']:.1f} GFLOP/s "
          f"({'TF32 on this GPU' if jax.default_backend() == 'gpu' else 'float32'}); fp32 at HIGHEST "
          f"{peaks['fp32_highest']:.1f} GFLOP/s; bf16 (float32 accumulation) {peaks['bf16']:.1f} GFLOP/s",
          flush=True)


def bench_compile(size: int, cache: str) -> None:
    """One CLI run (its defaults at ``size``) in this process: a table of every XLA program it compiled."""
    from nst_jax.cli._stylize import main as cli_main

    content, style, source = image_files()
    with tempfile.TemporaryDirectory() as tmp, CompileStats() as stats:
        code = cli_main(["--content", str(content), "--style", str(style), "--size", str(size),
                         "--output", f"{tmp}/o.png", "--overwrite", "--compile-cache", cache])
    print(f"CLI run at {size} px ({source}, --compile-cache {cache}), exit {code}: one row per XLA program")
    print(stats.table(), flush=True)


def image_files() -> tuple[pathlib.Path, pathlib.Path, str]:
    """Content and style files of the benchmark: Tübingen + Starry Night where shared/ has them."""
    if (SHARED / "tubingen.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg", "tubingen + starry_night"
    return EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "examples/"


def images(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    content, style, source = image_files()
    return load_image(content, size), load_image(style, size), source


def flops_per_eval(vgg, image, targets, weights, config) -> float:
    """XLA's FLOP count of one loss value-and-gradient evaluation."""
    fn = jax.jit(jax.value_and_grad(lambda x, v, t, w: loss_terms(v, x, t, w, config=config)["total"]))
    cost = fn.lower(image, vgg, targets, weights).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def compiled_chunk(config: StylizeConfig):
    """``make_stylizer``'s pure step run ``n`` times in one ``lax.fori_loop``, jitted: (state, evaluations)."""
    stylizer = make_stylizer(config)

    def chunk(state, vgg, targets, weights, n):
        def body(i, carry):
            state, evaluations = carry
            state, info = stylizer.step(vgg, targets, weights, state)
            return state, evaluations + info.evaluations

        return jax.lax.fori_loop(0, n, body, (state, jnp.zeros((), jnp.int32)))

    return stylizer, jax.jit(chunk, donate_argnums=0)


def bench(vgg, content, style, optimizer: str, steps: int, warmup: int, precision: str) -> dict:
    """Times `steps` optimiser steps run as one compiled chunk, after `warmup` steps."""
    config = StylizeConfig(optimizer=optimizer, chunk_size=max(steps, warmup), iterations=steps, precision=precision)
    weights = make_weights(config)
    t0 = time.perf_counter()
    vgg = jax.device_put(vgg)
    targets = jax.jit(lambda v, c, s: compute_targets(v, content=c, style=s, config=config))(vgg, content, style)
    stylizer, chunk_fn = compiled_chunk(config)
    state = jax.jit(stylizer.init)(vgg, targets, weights, jax.random.uniform(jax.random.key(0), content.shape))
    chunk = chunk_fn.lower(state, vgg, targets, weights, jnp.int32(1)).compile()
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    state, _ = chunk(state, vgg, targets, weights, jnp.int32(warmup))
    jax.block_until_ready(state)
    t = time.perf_counter()
    state, evaluations = chunk(state, vgg, targets, weights, jnp.int32(steps))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t
    terms = jax.jit(lambda v, x, t, w: loss_terms(v, x, t, w, config=config))(vgg, state.image, targets, weights)
    return {"s_per_step": seconds / steps, "evals_per_step": int(evaluations) / steps, "compile_s": compile_s,
            "config": config, "weights": weights, "targets": targets,
            "terms": {k: float(v) for k, v in jax.device_get(terms).items()}}


def bench_sweep(vgg, content, style, optimizer: str, members: int, steps: int,
                batch_sizes: list[int] | None = None) -> None:
    """A sweep of `members` style weights vs the same runs one after another (one sweep per batch size)."""
    config = StylizeConfig(optimizer=optimizer, iterations=steps, chunk_size=steps)
    betas = np.geomspace(1.0, 100.0, members)
    weights = [make_weights(config, style_weight=float(b)) for b in betas]
    seq_run = seq_compile = 0.0
    t = time.perf_counter()
    for w in weights:
        r = stylize(vgg, content=content, style=style, config=config, weights=w)
        seq_run += r.run_seconds
        seq_compile += r.compile_seconds
    seq_wall = time.perf_counter() - t
    h, w_ = content.shape[:2]
    print(f"{w_}x{h} {optimizer}, {members} members x {steps} steps; {members} runs in sequence: {seq_wall:.1f} s "
          f"(compile {seq_compile:.1f} s, run {seq_run:.1f} s)", flush=True)
    for batch in batch_sizes or [None]:
        t = time.perf_counter()
        result = sweep(vgg, weights=stack_weights(weights), content=content, style=style, config=config,
                       batch_size=batch)
        wall = time.perf_counter() - t
        label = "default batch size" if batch is None else f"batch size {batch}"
        print(f"  sweep, {label}: {wall:.1f} s (compile {result.compile_seconds:.1f} s, run "
              f"{result.run_seconds:.1f} s); sequential/sweep: wall {seq_wall / wall:.2f}x, "
              f"run {seq_run / result.run_seconds:.2f}x", flush=True)


MEMORY_CHILD = """
import resource, sys
import numpy as np
from nst_jax import StylizeConfig, load_vgg19, stylize
size, optimizer, precision = int(sys.argv[1]), sys.argv[2], sys.argv[3]
vgg = load_vgg19()
rng = np.random.default_rng(0)
content = rng.uniform(size=(size, size, 3)).astype(np.float32)
style = rng.uniform(size=(size, size, 3)).astype(np.float32)
config = StylizeConfig(optimizer=optimizer, iterations=2, chunk_size=2, precision=precision)
stylize(vgg, content=content, style=style, config=config)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def bench_memory(sizes: list[int], optimizer: str, precision: str) -> None:
    """Peak resident memory of a 2-step run per square size (fresh process each), and a linear fit in pixels."""
    pixels, peaks = [], []
    for size in sizes:
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(size), optimizer, precision],
                             capture_output=True, text=True, check=True)
        peaks.append(int(out.stdout.strip().splitlines()[-1]))
        pixels.append(size * size)
        print(f"peak memory {size}x{size} {optimizer} {precision}: {peaks[-1] / 2**30:.2f} GiB", flush=True)
    if len(sizes) >= 2:
        slope, intercept = np.polyfit(pixels, peaks, 1)
        fit = np.polyval([slope, intercept], pixels)
        worst = max(abs(f - p) / p for f, p in zip(fit, peaks, strict=True))
        print(f"linear fit: {slope / 1024:.1f} KiB per pixel + {intercept / 2**30:.2f} GiB "
              f"(largest deviation {worst:.1%})")


def bench_warm_start(size: int) -> None:
    """Compile-and-prepare time of scripts/stylize.py, cold then warm (persistent cache), in fresh processes."""
    content, style, _ = image_files()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(pathlib.Path(__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("cold", "warm"):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "nst_jax.compilation", "nst_jax.cli._stylize",
                                  "--content", str(content), "--style", str(style),
                                  "--size", str(size), "--iterations", "1", "--output", f"{tmp}/o.png", "--overwrite",
                                  "--compile-cache", f"{tmp}/cache"],
                                 capture_output=True, text=True, check=True, env=env)
            wall = time.perf_counter() - t
            compile_s = float(re.search(r"compile ([0-9.]+) s", out.stdout).group(1))
            print(f"{label} start at {size} px: {compile_s:.2f} s from loaded inputs to the first step "
                  f"(trace, compile or load from the cache, style and content targets); "
                  f"process wall {wall:.1f} s; {out.stdout.strip().splitlines()[-1]}", flush=True)


PEER_CHECK = "import pastiche, torch; print(pastiche.__version__, torch.__version__)"

# pastiche's own command-line entry point, after pinning torch's intra-op threads; argv[1] is the thread count.
PEER_CHILD = """
import sys
import torch
torch.set_num_threads(int(sys.argv[1]))
print(f"torch threads: {torch.get_num_threads()}", flush=True)
from pastiche.pastiche import main
sys.exit(main(["pastiche", *sys.argv[2:]]))
"""


def peer_versions() -> tuple[str, str] | None:
    """pastiche's and torch's versions, or None if either does not import.

    Checked in a child process, as the peer runs, so torch is never loaded into the JAX process.
    """
    out = subprocess.run([sys.executable, "-c", PEER_CHECK], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    pastiche_version, torch_version = out.stdout.split()[-2:]
    return pastiche_version, torch_version


def cpu_threads() -> int:
    """CPUs this process may run on: the size of XLA's CPU thread pool, and the torch thread count we set."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bench_peer(size: int, steps: int, warmup: int, threads: int) -> dict:
    """Seconds per L-BFGS step of pastiche (PyTorch) through its command line, on the CPU.

    Same content and style files and longest side as :func:`images` (``--size``, ``--style-size``),
    a random start, pastiche's default layers (relu4_2 content, relu1_1..relu5_1 style, max
    pooling) and loss weights. pastiche's L-BFGS is ``torch.optim.LBFGS(max_iter=1, lr=1)``
    without a line search, so one step is exactly one loss-and-gradient evaluation. Its progress
    log (``--info-step 1``) gives the elapsed time after each step at 0.1 s resolution; steps
    ``warmup + 1 .. warmup + steps`` are timed, the start-up (weights, images, targets, first loss)
    is not.
    """
    content, style, _ = image_files()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PEER_CHILD, str(threads), "--content", str(content),
                              "--styles", str(style), "--output", f"{tmp}/pastiche.png", "--device", "cpu",
                              "--optimizer", "lbfgs", "--num-steps", str(warmup + steps), "--size", str(size),
                              "--style-size", str(size), "--random-init", "--seed", "0", "--info-step", "1"],
                             capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"pastiche exited with status {out.returncode}: {last}")
    elapsed = {int(m[1]): float(m[2]) for m in re.finditer(r"^(\d+)\s+([0-9.]+)\s+\S+$", out.stdout, re.M)}
    width, height = re.search(r"^size: (\d+)x(\d+)$", out.stdout, re.M).groups()
    return {"s_per_step": (elapsed[warmup + steps] - elapsed[warmup]) / steps, "startup_s": elapsed[0],
            "wall_s": wall, "threads": int(re.search(r"^torch threads: (\d+)$", out.stdout, re.M)[1]),
            "shape": (int(height), int(width))}


def peer_report(peer: dict, ours: dict, versions: tuple[str, str], shape: tuple[int, ...], steps: int,
                warmup: int) -> str:
    """The comparison (per loss evaluation, the like-for-like unit, and per step) and what was timed."""
    (h, w), (ph, pw) = shape[:2], peer["shape"]
    ours_eval = ours["s_per_step"] / ours["evals_per_step"]
    resolved = peer["s_per_step"] > 0
    per_eval = f"{peer['s_per_step'] / ours_eval:.2f}x" if resolved else "n/a (below the log's resolution)"
    per_step = f"{peer['s_per_step'] / ours['s_per_step']:.2f}x" if resolved else "n/a"
    size_note = "" if (ph, pw) == (h, w) else f" (nst_jax at {w}x{h})"
    return "\n".join([
        f"pastiche {versions[0]} (torch {versions[1]}, CPU, {peer['threads']} threads) at {pw}x{ph}{size_note}: "
        f"{peer['s_per_step']:.3f} s/step = s/eval; nst_jax ({jax.default_backend()}, fp32) {ours['s_per_step']:.3f} "
        f"s/step, {ours_eval:.3f} s/eval ({ours['evals_per_step']:.2f} evals/step); nst_jax is {per_eval} faster "
        f"per loss evaluation, {per_step} per step",
        f"  timed: pastiche steps {warmup + 1}..{warmup + steps} of one run of its CLI, from its progress log "
        f"(0.1 s resolution, +-{0.1 / steps:.3f} s/step); not timed: its start-up to step 0, {peer['startup_s']:.1f} s "
        f"(weights, images, targets, first loss; process wall {peer['wall_s']:.1f} s). nst_jax: {steps} steps as one "
        f"compiled chunk after {warmup} warm-up steps",
        "  a pastiche step is one loss+gradient evaluation (torch LBFGS max_iter=1, no line search, unit step "
        "length); an nst_jax L-BFGS step runs a line search, so per evaluation is the like-for-like ratio. Same "
        "files and longest side, random start, float32, relu4_2 content, relu1_1..relu5_1 style, max pooling; "
        f"torch.set_num_threads({peer['threads']}) and OMP_NUM_THREADS to match the {cpu_threads()} CPUs of XLA's "
        "CPU thread pool",
    ])


def bench_time_to_quality(vgg, size: int, peer_steps: int, threads: int, versions: tuple[str, str]) -> None:
    """pastiche's defaults for `peer_steps` steps vs nst_jax's defaults, scored by nst_jax/_src/metrics.py.

    pastiche runs through its command line (its defaults: the content photo as the start, its loss
    weights, L-BFGS without a line search, the style image at the content's pixel count) at
    ``--size`` on its longest side. nst_jax runs ``stylize`` with the library's defaults (the
    command line's) and scores its output after every chunk; the time to a good image is the wall
    time (compilation and targets included, scoring excluded) of the first chunk whose three
    ratios are all at least as good as pastiche's final ones.
    """
    from nst_jax import StylizeConfig, stylize
    from nst_jax._src.metrics import Evaluator

    content_path, style_path, source = image_files()
    content, style = load_image(content_path, size), load_image(style_path, size)
    evaluator = Evaluator(vgg, content=content, style=style, shape=content.shape)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "pastiche.png"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PEER_CHILD, str(threads), "--content", str(content_path),
                               "--styles", str(style_path), "--output", str(out), "--device", "cpu",
                               "--num-steps", str(peer_steps), "--size", str(size)],
                              capture_output=True, text=True, env=env)
        peer_wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"pastiche exited with status {proc.returncode}: "
                               f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        peer_image = load_image(out)
    peer = evaluator(peer_image)
    print(f"pastiche {versions[0]} (torch {versions[1]}, CPU, {threads} threads), its defaults, {peer_steps} steps at "
          f"{peer_image.shape[1]}x{peer_image.shape[0]}: {peer_wall:.0f} s (process wall); style "
          f"{peer['style_ratio']:.3f}, content {peer['content_ratio']:.3f}, speckle {peer['speckle_ratio']:.2f}",
          flush=True)
    config = StylizeConfig()
    reached, scoring, rows = None, [0.0], []
    start = time.perf_counter()

    def on_chunk(progress):
        nonlocal reached
        t = time.perf_counter()
        ratios = evaluator(np.asarray(progress.image))
        wall = t - start - scoring[0]
        rows.append((progress.step, wall, ratios))
        if reached is None and all(ratios[k] <= peer[k] for k in ratios):
            reached = rows[-1]
        scoring[0] += time.perf_counter() - t

    result = stylize(vgg, content=content, style=style, config=config, callback=on_chunk)
    total = time.perf_counter() - start - scoring[0]
    final = evaluator(result.image)
    print(f"nst_jax {jax.__version__} ({jax.default_backend()}), its defaults ({config.iterations} {config.optimizer} "
          f"steps from the {config.init}): {total:.0f} s in all (compile {result.compile_seconds:.1f} s); style "
          f"{final['style_ratio']:.3f}, content {final['content_ratio']:.3f}, speckle {final['speckle_ratio']:.2f}")
    if reached is None:
        print("nst_jax did not reach pastiche's three ratios together within its default steps")
    else:
        step, wall, ratios = reached
        print(f"time to a good image: nst_jax reached ratios at least as good as pastiche's after {step} steps, "
              f"{wall:.0f} s (style {ratios['style_ratio']:.3f}, content {ratios['content_ratio']:.3f}, speckle "
              f"{ratios['speckle_ratio']:.2f}): {wall / peer_wall:.2f} of pastiche's wall time "
              f"({peer_wall / wall:.1f}x faster)")
    print(f"images: {source}; size {size}")


def main() -> int:
    """The benchmark, then the compile summary line of everything this process compiled."""
    with CompileStats() as stats:
        code = run()
    if code == 0:  # a refused run (exit 1, one line on stderr) prints nothing else
        print(stats.summary(), flush=True)
    return code


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--optimizers", nargs="+", default=["lbfgs", "adam"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-n", type=int, default=4096, help="matmul size for the peak measurement")
    parser.add_argument("--quick", action="store_true", help="256 px, 4 steps, 2048 matmul")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: a sweep of --sweep-members style weights vs the same runs in sequence")
    parser.add_argument("--sweep-members", type=int, default=8)
    parser.add_argument("--sweep-size", type=int, default=256)
    parser.add_argument("--sweep-steps", type=int, default=20)
    parser.add_argument("--sweep-batch-sizes", type=int, nargs="+",
                        help="with --sweep: members vmapped together per device, one sweep each [default: the "
                             "library's default, 1 on CPUs]")
    parser.add_argument("--warm-start", action="store_true",
                        help="instead: cold vs warm (compilation cache) start of scripts/stylize.py at --sizes")
    parser.add_argument("--memory", action="store_true",
                        help="instead: peak resident memory per --sizes (fresh process each) and a linear fit")
    parser.add_argument("--peer", action="store_true",
                        help="also time pastiche (PyTorch, CPU) on the same images, size and steps after each L-BFGS "
                             "fp32 measurement and print the ratio; needs pip install -e '.[peer]'")
    parser.add_argument("--time-to-quality", action="store_true",
                        help="with --peer, instead: pastiche's defaults for --peer-steps steps vs nst_jax's defaults, "
                             "the wall time nst_jax needs to reach pastiche's three quality ratios (at --sizes)")
    parser.add_argument("--peer-steps", type=int, default=500)
    parser.add_argument("--compile", action="store_true",
                        help="instead: one CLI run with its defaults at the first of --sizes, in this process, and a "
                             "table of every XLA program it compiled (name, seconds, cache hit, input shapes)")
    parser.add_argument("--compile-cache", default="off", metavar="DIR|off",
                        help="with --compile: the CLI's persistent compilation cache [default: off, a cold start]")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.peak_n = [256], 4, 2048
    versions = None
    if args.time_to_quality and not args.peer:
        print("error: --time-to-quality compares with pastiche: add --peer", file=sys.stderr)
        return 2
    if args.peer:
        if args.sweep or args.warm_start or args.memory or "lbfgs" not in args.optimizers \
                or "fp32" not in args.precisions:
            print("error: --peer compares L-BFGS fp32 step times: include lbfgs in --optimizers and fp32 in "
                  "--precisions, without --sweep, --warm-start or --memory", file=sys.stderr)
            return 2
        versions = peer_versions()
        if versions is None:
            print("error: --peer needs pastiche and torch, which do not import here: pip install -e '.[peer]'",
                  file=sys.stderr)
            return 1

    if args.compile:
        bench_compile(args.sizes[0], args.compile_cache)
        return 0
    if args.warm_start:
        for size in args.sizes:
            bench_warm_start(size)
        return 0
    if args.memory:
        for precision in args.precisions:
            bench_memory(args.sizes, args.optimizers[0], precision)
        return 0
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {jax.device_count()} device(s); "
          f"host: {platform.processor() or platform.machine()}, jax {jax.__version__}")
    peaks = matmul_peaks(args.peak_n)
    print_peaks(peaks, args.peak_n)
    print(f"convolutions: fp32 runs in {conv_precision('fp32')}; bf16 in {conv_precision('bf16')}", flush=True)
    vgg = load_vgg19()
    if args.time_to_quality:
        for size in args.sizes:
            bench_time_to_quality(vgg, size, args.peer_steps, cpu_threads(), versions)
        return 0
    if args.sweep:
        content, style, source = images(args.sweep_size)
        for optimizer in args.optimizers:
            bench_sweep(vgg, content, style, optimizer, args.sweep_members, args.sweep_steps, args.sweep_batch_sizes)
        print(f"images: {source}")
        return 0
    header = f"{'size':>9} {'optimizer':>9} {'precision':>9} {'s/step':>8} {'evals/step':>10} {'GFLOP/eval':>10} " \
             f"{'XLA GFLOP':>9} {'GFLOP/s':>8} {'%peak':>6} {'compile s':>9}"
    print(header)
    notes = []
    for size in args.sizes:
        content, style, source = images(size)
        for optimizer in args.optimizers:
            runs = {}
            for precision in args.precisions:
                r = runs[precision] = bench(vgg, content, style, optimizer, args.steps, args.warmup, precision)
                if precision == args.precisions[0] or "fp32" not in runs:
                    # Useful work, the same for bf16: the analytic count; XLA's (fp32) figure as a check.
                    config = dataclasses.replace(r["config"], precision="fp32")
                    gflop = analytic_flops(config, content.shape) / 1e9
                    xla_gflop = flops_per_eval(vgg, jnp.asarray(content), r["targets"], r["weights"], config) / 1e9
                rate = gflop * r["evals_per_step"] / r["s_per_step"]
                h, w = content.shape[:2]
                print(f"{w:>4}x{h:<4} {optimizer:>9} {precision:>9} {r['s_per_step']:>8.3f} "
                      f"{r['evals_per_step']:>10.2f} {gflop:>10.1f} {xla_gflop:>9.1f} {rate:>8.1f} "
                      f"{100 * rate / peaks[precision]:>5.1f}% {r['compile_s']:>9.1f}", flush=True)
            if "fp32" in runs and "bf16" in runs:
                a, b = runs["fp32"], runs["bf16"]
                diffs = ", ".join(f"{k} {abs(b['terms'][k] - a['terms'][k]) / abs(a['terms'][k]):.2%}"
                                  for k in ("content", "style", "total"))
                notes.append(f"{w}x{h} {optimizer}: bf16 per-step speed-up {a['s_per_step'] / b['s_per_step']:.2f}x; "
                             f"loss terms after {args.warmup + args.steps} steps differ by {diffs}")
            if versions is not None and optimizer == "lbfgs":
                try:
                    peer = bench_peer(size, args.steps, args.warmup, cpu_threads())
                except RuntimeError as err:
                    print(f"pastiche at {size} px: {err}", flush=True)
                else:
                    print(peer_report(peer, runs["fp32"], versions, content.shape, args.steps, args.warmup),
                          flush=True)
    for note in notes:
        print(note)
    print(f"images: {source}; loss: transfer, relu4_2 content, relu1_1..relu5_1 style; GFLOP/eval: the analytic "
          "count of one value-and-gradient evaluation (nst_jax._src.flops), XLA GFLOP: XLA's cost analysis of the "
          "float32 one (a check; on a GPU it misses the cuDNN convolutions); %peak: achieved rate / the matmul peak "
          "of the same precision (fp32: JAX's default precision, TF32 on a GPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
