"""Choose the default settings by measurement: a panel of photo x painting pairs, a grid of candidates.

  python scripts/calibrate_defaults.py --peer   # the panel, the grid, pastiche on two pairs (about 45 min on 2 cores)
  python scripts/calibrate_defaults.py          # without pastiche (pip install -e '.[peer]' for --peer)
  python scripts/calibrate_defaults.py --sizes 1024 --pairs tubingen:starry_night --candidates default

Panel: every content photo x style image among examples/ and ../shared/images (chelsea and
tubingen x swirls, starry_night, the_scream, shipwreck), at each --sizes. After each of a
candidate's checkpoints (steps) the output is scored with the three ratios of
nst_jax/metrics.py (style, content, speckle; lower is better) and the wall time so far is noted
(compilation and targets included, scoring excluded). A candidate at a checkpoint *passes* a
cell when style <= 0.20, content <= 0.7 and speckle <= 1.3 and, with --peer, on the cells where
pastiche ran with its defaults, when each ratio is at least as good as pastiche's. The chosen
defaults are the candidate and checkpoint that pass every cell in the least total wall time.

The search is staged to fit on 2 cores: at the smallest size every candidate runs the pairs
hardest first (pastiche's pairs, then The Scream and Shipwreck) and drops out at the first cell
where none of its checkpoints passes, or keeps only the checkpoints that have passed every cell
so far. At the larger sizes the survivors run fastest first (by their wall time so far at their
earliest surviving checkpoint); once one passes every cell, the others run only the checkpoints
whose time so far is within 10 % of its own (a slower one could not be the answer). Among the settings that pass every
cell within 10 % of the least wall time, the one with the largest margin wins: the margin is the
smallest relative distance of any ratio in any cell below its threshold, so a setting that
scrapes past one threshold on one pair loses to an equally fast one with room to spare.
Multi-scale candidates are measured for comparison but cannot become the defaults (checkpoints,
resume and intermediate saves work within one level), nor end the search.
--exhaustive runs everything (hours). --reuse takes the cells an earlier run's --json already
holds (pastiche's included) instead of running them again. The table has one row
per candidate and checkpoint: the cells passed out of those run, the worst ratio of each kind
and the wall time summed over the cells run; then the chosen candidate's every cell, and the
side-by-side with pastiche. --json writes every cell's figures (after each cell).
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
TIE = 1.10  # settings within 10 % of the least wall time count as equally fast


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


def default_candidate() -> Candidate:
    """The library's defaults as a candidate (so the table shows what users get with no flags),
    scored at half, all and 1.5 times the default step count."""
    from nst_jax import StylizeConfig, make_weights

    config = StylizeConfig()
    weights = make_weights(config)
    n = config.iterations
    return Candidate("default", float(weights.style), float(weights.tv), config.init, 1, config.optimizer,
                     tuple(sorted({max(n // 2, 1), n, n + n // 2})))


def grid() -> list[Candidate]:
    """The candidates tried, each scored at 20, 40 and 60 steps.

    Style weight 10/20 x TV weight 1/10/30 (relative loss units, ``nst_jax.losses``: the weights
    mean the same at every size) from the content photo with L-BFGS; and at style weight 20,
    TV 10: a noise start, Adam, and two scales (40 steps at half size first).
    """
    steps = (20, 40, 60)
    return [Candidate("b10_tv1", 10.0, 1.0, checkpoints=steps),
            Candidate("b10_tv10", 10.0, 10.0, checkpoints=steps),
            Candidate("b20_tv10", 20.0, 10.0, checkpoints=steps),
            Candidate("b20_tv30", 20.0, 30.0, checkpoints=steps),
            Candidate("b20_tv10_noise", 20.0, 10.0, init="noise", checkpoints=steps),
            Candidate("b20_tv10_adam", 20.0, 10.0, optimizer="adam", checkpoints=steps),
            Candidate("b20_tv10_2scales", 20.0, 10.0, scales=2, coarse_iterations=40, checkpoints=steps)]


def run_cell(vgg, candidate: Candidate, content_path, style_path, size: int) -> list[dict]:
    """One candidate on one pair at one size: ratios and wall time at each checkpoint."""
    from nst_jax import StylizeConfig, load_image, make_weights, stylize, stylize_multiscale
    from nst_jax.metrics import Evaluator

    content, style = load_image(content_path, size), load_image(style_path, size)
    iterations = max(candidate.checkpoints)
    config = StylizeConfig(init=candidate.init, optimizer=candidate.optimizer, iterations=iterations,
                           chunk_size=min(candidate.checkpoints + (10,)))
    weights = make_weights(config, style_weight=candidate.style_weight, tv_weight=candidate.tv_weight,
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


def run_peer(vgg, content_path, style_path, size: int, steps: int) -> dict:
    """pastiche's defaults (its CLI, content start, L-BFGS without line search) for `steps` steps, scored."""
    import subprocess
    import tempfile

    from nst_jax import load_image
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
    return {"step": steps, "seconds": wall, **evaluate(vgg, content=content, style=style, output=image)}


def passes(row: dict, peer: dict | None = None) -> bool:
    """The thresholds, and where pastiche ran on the cell, at least as good as pastiche on each ratio."""
    return all(row[k] <= v for k, v in THRESHOLDS.items()) and all(row[k] <= peer[k] for k in THRESHOLDS if peer)


def margin(row: dict) -> float:
    """The smallest relative distance of the row's ratios below their thresholds (negative: fails)."""
    return min((v - row[k]) / v for k, v in THRESHOLDS.items())


def summarise(results: dict, cells: list, peers: dict) -> list[dict]:
    """Per candidate and checkpoint: worst ratios and margin over the cells, cells passed, total wall time."""
    table = []
    for name, per_cell in results.items():
        steps = sorted({row["step"] for rows in per_cell.values() for row in rows})
        for step in steps:
            at = [(r, cell) for cell in cells for r in per_cell.get(cell, []) if r["step"] == step]
            passed = sum(passes(r, peers.get(cell)) for r, cell in at)
            at = [r for r, _ in at]
            table.append({"candidate": name, "step": step, "cells": len(at), "passed": passed,
                          **{k: max(r[k] for r in at) for k in THRESHOLDS},
                          "margin": min(margin(r) for r in at),
                          "seconds": sum(r["seconds"] for r in at)})
    return table


def order_cells(pairs: list[str], first: list[str]) -> list[str]:
    """The order the pairs run in: pastiche's pairs, then the hardest (The Scream, Shipwreck), then the rest."""
    hard = [*first, "chelsea:the_scream", "tubingen:the_scream", "tubingen:shipwreck", "chelsea:shipwreck"]
    return sorted(pairs, key=lambda pair: (hard.index(pair) if pair in hard else len(hard), pair))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--pairs", nargs="+", metavar="CONTENT:STYLE",
                   help="a subset of the panel, e.g. chelsea:swirls tubingen:the_scream [default: all]")
    p.add_argument("--candidates", nargs="+", metavar="NAME",
                   help="a subset of the grid by name ('default': the library's defaults) [default: the grid]")
    p.add_argument("--exhaustive", action="store_true",
                   help="run every candidate on every cell (no elimination; hours on 2 cores)")
    p.add_argument("--peer", action="store_true",
                   help="also pastiche's defaults (its CLI, --peer-steps steps) on --peer-pairs at --peer-size")
    p.add_argument("--peer-pairs", nargs="+", default=["tubingen:starry_night", "chelsea:the_scream"])
    p.add_argument("--peer-steps", type=int, default=500)
    p.add_argument("--peer-size", type=int, default=256)
    p.add_argument("--reuse", type=pathlib.Path, metavar="JSON",
                   help="take the cells (and pastiche's rows) an earlier run's --json holds instead of running them")
    p.add_argument("--json", type=pathlib.Path, help="write every cell's figures here")
    args = p.parse_args(argv)

    from nst_jax import load_vgg19
    from nst_jax.cache import enable_compilation_cache

    enable_compilation_cache()
    available = {f"{c}:{s}" for c, cp in CONTENTS.items() for s, sp in STYLES.items() if cp.is_file() and sp.is_file()}
    pairs = order_cells(args.pairs or sorted(available), args.peer_pairs if args.peer else [])
    missing = [pair for pair in pairs + (args.peer_pairs if args.peer else []) if pair not in available]
    if missing:
        print(f"error: unknown or unavailable pair(s) {', '.join(missing)} (have {', '.join(sorted(available))})",
              file=sys.stderr)
        return 2
    candidates = {c.name: c for c in [*grid(), default_candidate()]}
    chosen = args.candidates or [c.name for c in grid()]
    if any(name not in candidates for name in chosen):
        print(f"error: unknown candidate(s); have {', '.join(candidates)}", file=sys.stderr)
        return 2
    sizes = sorted(args.sizes)
    vgg = load_vgg19()
    cells = [(pair, size) for size in sizes for pair in pairs]
    results: dict[str, dict] = {name: {} for name in chosen}
    alive = {name: set(candidates[name].checkpoints) for name in chosen}
    fate: dict[str, str] = {}
    t0 = time.perf_counter()
    peers: dict = {}

    def dump():  # after every cell, so an interrupted panel keeps what it measured
        if args.json:
            record = {name: {f"{pair}@{size}": rows for (pair, size), rows in per.items()}
                      for name, per in results.items()}
            record["pastiche"] = {f"{pair}@{size}": [row] for (pair, size), row in peers.items()}
            args.json.write_text(json.dumps(record, indent=1))

    earlier = json.loads(args.reuse.read_text()) if args.reuse else {}

    def reused(name, pair, size, steps):  # an earlier run's rows for the cell, if it has every checkpoint
        rows = [r for r in earlier.get(name, {}).get(f"{pair}@{size}", []) if r["step"] in steps]
        return rows if {r["step"] for r in rows} == set(steps) else None

    if args.peer:  # first: on its cells a candidate must also be at least as good as pastiche
        for pair in args.peer_pairs:
            c, s = pair.split(":")
            earlier_rows = reused("pastiche", pair, args.peer_size, [args.peer_steps])
            row = earlier_rows[0] if earlier_rows else run_peer(vgg, CONTENTS[c], STYLES[s], args.peer_size,
                                                                 args.peer_steps)
            peers[(pair, args.peer_size)] = row
            dump()
            print(f"{'pastiche':>16} {pair:>22} {args.peer_size:>4}px: {row['step']} steps {row['seconds']:.0f}s "
                  f"s{row['style_ratio']:.3f} c{row['content_ratio']:.3f} k{row['speckle_ratio']:.2f}", flush=True)
    def time_at(name, step):  # a candidate's wall time summed over the cells run so far, at one checkpoint
        return sum(next(r["seconds"] for r in rows if r["step"] == step) for rows in results[name].values())

    for stage, size in enumerate(sizes):
        order = list(chosen) if args.exhaustive else [name for name in chosen if alive[name]]
        # Later sizes: the survivors, fastest first by their summed wall time so far at their earliest
        # surviving checkpoint; once one passes every cell, only checkpoints within TIE of it still run.
        before = {name: time_at(name, min(alive[name])) for name in order if alive[name]}
        if stage and not args.exhaustive:
            order.sort(key=before.get)
        winner = None
        for name in order:
            if winner and not args.exhaustive:  # only checkpoints that could still tie with the winner
                tied = {step for step in alive[name] if time_at(name, step) <= TIE * before[winner]}
                if not tied:
                    fate[name] = f"not run at {size} px: {winner} passed every cell before it, more than 10 % faster"
                    continue
                alive[name] = tied
                fate[name] = f"at {size} px only {', '.join(map(str, sorted(tied)))} steps (within 10 % of {winner})"
            base = candidates[name]
            for pair in pairs:
                steps = tuple(sorted(alive[name])) if not args.exhaustive else base.checkpoints
                c, s = pair.split(":")
                rows = reused(name, pair, size, steps) or run_cell(
                    vgg, dataclasses.replace(base, checkpoints=steps), CONTENTS[c], STYLES[s], size)
                results[name][(pair, size)] = rows
                dump()
                ok = {r["step"]: passes(r, peers.get((pair, size))) for r in rows}
                alive[name] &= {step for step, passed in ok.items() if passed}
                print(f"{name:>16} {pair:>22} {size:>4}px: " + ", ".join(
                    f"{r['step']} steps {r['seconds']:.0f}s s{r['style_ratio']:.3f} c{r['content_ratio']:.3f} "
                    f"k{r['speckle_ratio']:.2f}{'' if ok[r['step']] else '*'}" for r in rows), flush=True)
                if not alive[name] and not args.exhaustive:
                    fate[name] = f"out at {pair} {size} px: no checkpoint passes there (* = fails)"
                    break
            if alive[name] and stage == len(sizes) - 1 and candidates[name].scales == 1:
                winner = winner or name
    minutes = (time.perf_counter() - t0) / 60
    table = summarise(results, cells, peers)
    print(f"\npanel: {len(pairs)} pairs x sizes {sizes} = {len(cells)} cells; thresholds: style <= 0.20, "
          f"content <= 0.7, speckle <= 1.3 (worst cell shown); wall time summed over the cells run; "
          f"{minutes:.1f} min in all")
    print("| candidate | steps | cells passed | worst style | worst content | worst speckle | margin | wall time |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['candidate']} | {row['step']} | {row['passed']}/{row['cells']} of {len(cells)} | "
              f"{row['style_ratio']:.3f} | {row['content_ratio']:.3f} | {row['speckle_ratio']:.2f} | "
              f"{100 * row['margin']:.0f} % | {row['seconds']:.0f} s |")
    for name, why in fate.items():
        print(f"{name}: {why}")
    winners = [row for row in table if row["passed"] == len(cells) and candidates[row["candidate"]].scales == 1]
    for row in table:
        if row["passed"] == len(cells) and candidates[row["candidate"]].scales > 1:
            print(f"{row['candidate']} at {row['step']} steps also passes every cell ({row['seconds']:.0f} s over "
                  f"the panel, margin {100 * row['margin']:.0f} %); multi-scale is not a candidate for the "
                  f"defaults here (this grid chooses single-scale weights)")
    fastest = min((row["seconds"] for row in winners), default=None)
    best = max((row for row in winners if row["seconds"] <= TIE * fastest), key=lambda row: row["margin"],
               default=None)
    if best:
        print(f"\nchosen: {best['candidate']} at {best['step']} steps ({best['seconds']:.0f} s over the panel, "
              f"margin {100 * best['margin']:.0f} %): the largest margin among the settings passing every cell "
              f"within 10 % of the least wall time ({fastest:.0f} s)")
        c = candidates[best["candidate"]]
        print(f"  style weight {c.style_weight:g}, TV weight {c.tv_weight:g}, init {c.init}, {c.scales} scale(s), "
              f"{c.optimizer}, {best['step']} steps")
        print("\n| pair | size | style | content | speckle | wall time |")
        print("|---|---|---|---|---|---|")
        for (pair, size), rows in results[best["candidate"]].items():
            r = next(r for r in rows if r["step"] == best["step"])
            print(f"| {pair} | {size} | {r['style_ratio']:.3f} | {r['content_ratio']:.3f} | "
                  f"{r['speckle_ratio']:.2f} | {r['seconds']:.0f} s |")
    else:
        print("\nno candidate passes every cell")
    if peers:
        print("\n| pair | size | who | steps | style | content | speckle | wall time |")
        print("|---|---|---|---|---|---|---|---|")
        for (pair, size), peer in peers.items():
            print(f"| {pair} | {size} | pastiche defaults | {peer['step']} | {peer['style_ratio']:.3f} | "
                  f"{peer['content_ratio']:.3f} | {peer['speckle_ratio']:.2f} | {peer['seconds']:.0f} s |")
            if best and (pair, size) in results[best["candidate"]]:
                ours = next(r for r in results[best["candidate"]][(pair, size)] if r["step"] == best["step"])
                print(f"| {pair} | {size} | nst_jax {best['candidate']} | {ours['step']} | {ours['style_ratio']:.3f} | "
                      f"{ours['content_ratio']:.3f} | {ours['speckle_ratio']:.2f} | {ours['seconds']:.0f} s |")
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
