"""Choose the default settings by measurement: a panel of photo x painting pairs, a grid of candidates.

  python scripts/calibrate_defaults.py                     # the panel, the grid, the table (about 40 min on 2 cores)
  python scripts/calibrate_defaults.py --peer   # plus pastiche's defaults on two pairs (pip install -e '.[peer]')
  python scripts/calibrate_defaults.py --sizes 1024 --pairs chelsea:swirls --candidates default

Panel: every content photo x style image among examples/ and ../shared/images (chelsea and
tubingen x swirls, starry_night, the_scream, shipwreck), at each --sizes. Every candidate runs on
every cell; after each of its checkpoints (steps) the output is scored with the three ratios of
nst_jax/metrics.py (style, content, speckle; lower is better) and the wall time so far is noted
(compilation and targets included, scoring excluded). A candidate at a checkpoint *passes* a cell
when style <= 0.20, content <= 0.7 and speckle <= 1.3; the chosen defaults are those that pass
every cell in the least total wall time. The table has one row per candidate and checkpoint: the
worst ratio of each kind over the cells, the cells passed, and the wall time summed over the panel.
--json writes every cell's figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
CONTENTS = {"chelsea": ROOT / "examples" / "chelsea.png", "tubingen": SHARED / "tubingen.jpg"}
STYLES = {"swirls": ROOT / "examples" / "swirls.png", "starry_night": SHARED / "starry_night.jpg",
          "the_scream": SHARED / "the_scream.jpg", "shipwreck": SHARED / "shipwreck.jpg"}
THRESHOLDS = {"style_ratio": 0.20, "content_ratio": 0.7, "speckle_ratio": 1.3}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting of the grid: loss weights, start, scales, optimiser and its checkpoints (steps)."""

    name: str
    style_weight: float
    tv_weight: float
    init: str = "content"
    scales: int = 1
    optimizer: str = "lbfgs"
    checkpoints: tuple[int, ...] = (100, 200, 300)
    coarse_iterations: int = 0  # multi-scale: steps at the half-size level


def default_candidate(checkpoints=(100, 200, 300)) -> Candidate:
    """The library's defaults as a candidate (so the table shows what users get with no flags)."""
    from nst_jax import StylizeConfig, loss_weights

    config = StylizeConfig()
    weights = loss_weights(config)
    return Candidate("default", float(weights.style), float(weights.tv), config.init, 1, config.optimizer,
                     tuple(checkpoints))


def grid() -> list[Candidate]:
    """The candidates tried: style weight x TV weight x start, single scale, L-BFGS; plus Adam, multi-scale."""
    out = []
    for beta in (3.0, 10.0, 30.0):
        for tv in (1.0, 10.0):
            out.append(Candidate(f"b{beta:g}_tv{tv:g}", beta, tv))
    out.append(Candidate("b10_tv10_noise", 10.0, 10.0, init="noise"))
    out.append(Candidate("b10_tv10_adam", 10.0, 10.0, optimizer="adam"))
    out.append(Candidate("b10_tv10_2scales", 10.0, 10.0, scales=2, coarse_iterations=100, checkpoints=(50, 100)))
    return out


def run_cell(vgg, candidate: Candidate, content_path, style_path, size: int) -> list[dict]:
    """One candidate on one pair at one size: ratios and wall time at each checkpoint."""
    from nst_jax import StylizeConfig, load_image, loss_weights, stylize, stylize_multiscale
    from nst_jax.metrics import Evaluator

    content, style = load_image(content_path, size), load_image(style_path, size)
    iterations = max(candidate.checkpoints)
    config = StylizeConfig(init=candidate.init, optimizer=candidate.optimizer, iterations=iterations,
                           chunk_size=min(candidate.checkpoints + (10,)))
    weights = loss_weights(config, style_weight=candidate.style_weight, tv_weight=candidate.tv_weight,
                           learning_rate=0.02)
    evaluator = Evaluator(vgg, content=content, style=style, shape=content.shape)
    rows, scoring = [], [0.0]
    start = time.perf_counter()

    def score(step, image):
        t = time.perf_counter()
        wall = t - start - scoring[0]
        rows.append({"step": step, "seconds": wall, **evaluator(np.asarray(image))})
        scoring[0] += time.perf_counter() - t

    def on_chunk(progress, level=None):
        final = level is None or level == candidate.scales - 1
        if final and progress.step in candidate.checkpoints:
            score(progress.step, progress.image)

    if candidate.scales == 1:
        stylize(vgg, content=content, style=style, config=config, weights=weights, callback=on_chunk,
                sync_every=candidate.checkpoints)
    else:
        sizes = [size // 2, size]
        stylize_multiscale(vgg, sizes=sizes, content=content, style=style, config=config, weights=weights,
                           iterations=[candidate.coarse_iterations, iterations],
                           callback=lambda level, p: on_chunk(p, level))
    return rows


def run_peer(content_path, style_path, size: int, steps: int) -> dict:
    """pastiche's defaults (its CLI, content start, L-BFGS without line search) for `steps` steps, scored."""
    import subprocess
    import tempfile

    from nst_jax import load_image, load_vgg19
    from nst_jax.metrics import evaluate

    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark import PEER_CHILD, cpu_threads

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "pastiche.png"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PEER_CHILD, str(cpu_threads()), "--content", str(content_path),
                               "--styles", str(style_path), "--output", str(out), "--device", "cpu",
                               "--num-steps", str(steps), "--size", str(size), "--style-size", str(size)],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"pastiche failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        image = load_image(out)
    content, style = load_image(content_path, size), load_image(style_path, size)
    if image.shape != content.shape:
        from nst_jax import colour

        image = colour.resize(image, content.shape[:2])
    return {"step": steps, "seconds": wall, **evaluate(load_vgg19(), content=content, style=style, output=image)}


def passes(row: dict) -> bool:
    return all(row[k] <= v for k, v in THRESHOLDS.items())


def summarise(results: dict, cells: list) -> list[dict]:
    """Per candidate and checkpoint: worst ratios over the cells, cells passed, total wall time."""
    table = []
    for name, per_cell in results.items():
        steps = sorted({row["step"] for rows in per_cell.values() for row in rows})
        for step in steps:
            at = [next(r for r in per_cell[cell] if r["step"] == step) for cell in cells if cell in per_cell]
            table.append({"candidate": name, "step": step, "cells": len(at),
                          "passed": sum(passes(r) for r in at),
                          **{k: max(r[k] for r in at) for k in THRESHOLDS},
                          "seconds": sum(r["seconds"] for r in at)})
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--pairs", nargs="+", metavar="CONTENT:STYLE",
                   help="a subset of the panel, e.g. chelsea:swirls tubingen:the_scream [default: all]")
    p.add_argument("--candidates", nargs="+", metavar="NAME",
                   help="a subset of the grid by name ('default': the library's defaults) [default: all]")
    p.add_argument("--peer", action="store_true",
                   help="also pastiche's defaults (its CLI, --peer-steps steps) on --peer-pairs at every size")
    p.add_argument("--peer-pairs", nargs="+", default=["tubingen:starry_night", "chelsea:the_scream"])
    p.add_argument("--peer-steps", type=int, default=500)
    p.add_argument("--json", type=pathlib.Path, help="write every cell's figures here")
    args = p.parse_args(argv)

    from nst_jax import load_vgg19
    from nst_jax.cache import enable_compilation_cache

    enable_compilation_cache()
    available = {f"{c}:{s}" for c, cp in CONTENTS.items() for s, sp in STYLES.items() if cp.is_file() and sp.is_file()}
    pairs = args.pairs or sorted(available)
    missing = [pair for pair in pairs if pair not in available]
    if missing:
        print(f"error: unknown or unavailable pair(s) {', '.join(missing)} (have {', '.join(sorted(available))})",
              file=sys.stderr)
        return 2
    candidates = {c.name: c for c in [default_candidate(), *grid()]}
    chosen = args.candidates or list(candidates)
    if any(name not in candidates for name in chosen):
        print(f"error: unknown candidate(s); have {', '.join(candidates)}", file=sys.stderr)
        return 2
    vgg = load_vgg19()
    cells = [(pair, size) for size in args.sizes for pair in pairs]
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name in chosen:
        candidate = candidates[name]
        results[name] = {}
        for pair, size in cells:
            c, s = pair.split(":")
            rows = run_cell(vgg, candidate, CONTENTS[c], STYLES[s], size)
            results[name][(pair, size)] = rows
            last = rows[-1]
            print(f"{name:>18} {pair:>22} {size:>4}px: " + ", ".join(
                f"{r['step']} steps {r['seconds']:.0f}s s{r['style_ratio']:.3f} c{r['content_ratio']:.3f} "
                f"k{r['speckle_ratio']:.2f}" for r in rows) + ("" if passes(last) else "  (fails)"), flush=True)
    if args.peer:
        results["pastiche"] = {}
        for pair in args.peer_pairs:
            for size in args.sizes:
                c, s = pair.split(":")
                row = run_peer(CONTENTS[c], STYLES[s], size, args.peer_steps)
                results["pastiche"][(pair, size)] = [row]
                print(f"{'pastiche':>18} {pair:>22} {size:>4}px: {row['step']} steps {row['seconds']:.0f}s "
                      f"s{row['style_ratio']:.3f} c{row['content_ratio']:.3f} k{row['speckle_ratio']:.2f}",
                      flush=True)
    table = summarise({k: v for k, v in results.items() if k != "pastiche"}, cells)
    print(f"\npanel: {len(pairs)} pairs x sizes {args.sizes} = {len(cells)} cells; thresholds: style <= 0.20, "
          f"content <= 0.7, speckle <= 1.3 (worst cell shown); wall time summed over the cells; "
          f"{(time.perf_counter() - t0) / 60:.1f} min in all")
    print("| candidate | steps | cells passed | worst style | worst content | worst speckle | panel wall time |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['candidate']} | {row['step']} | {row['passed']}/{row['cells']} | {row['style_ratio']:.3f} | "
              f"{row['content_ratio']:.3f} | {row['speckle_ratio']:.2f} | {row['seconds']:.0f} s |")
    winners = [row for row in table if row["passed"] == row["cells"]]
    if winners:
        best = min(winners, key=lambda row: row["seconds"])
        print(f"\nfastest candidate passing every cell: {best['candidate']} at {best['step']} steps "
              f"({best['seconds']:.0f} s over the panel)")
    else:
        print("\nno candidate passes every cell")
    if "pastiche" in results:
        print("\n| pair | size | who | steps | style | content | speckle | wall time |")
        print("|---|---|---|---|---|---|---|---|")
        pick = winners and min(winners, key=lambda row: row["seconds"])
        for (pair, size), rows in results["pastiche"].items():
            peer = rows[0]
            print(f"| {pair} | {size} | pastiche defaults | {peer['step']} | {peer['style_ratio']:.3f} | "
                  f"{peer['content_ratio']:.3f} | {peer['speckle_ratio']:.2f} | {peer['seconds']:.0f} s |")
            if pick and (pair, size) in results[pick["candidate"]]:
                ours = next(r for r in results[pick["candidate"]][(pair, size)] if r["step"] == pick["step"])
                print(f"| {pair} | {size} | nst_jax {pick['candidate']} | {ours['step']} | {ours['style_ratio']:.3f} | "
                      f"{ours['content_ratio']:.3f} | {ours['speckle_ratio']:.2f} | {ours['seconds']:.0f} s |")
    if args.json:
        args.json.write_text(json.dumps({name: {f"{pair}@{size}": rows for (pair, size), rows in per.items()}
                                         for name, per in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
