"""What a content term of weight 0 cost: the default output level's program with and without it.

  python scripts/content_terms_benchmark.py               # 256 px, the default preset's output level
  python scripts/content_terms_benchmark.py --size 512 --steps 6 --rounds 3

Both content terms (the paper's feature distance and the structure term) are in the default
config, the structure at weight 0. The driver builds its programs with only the terms that have a
non-zero weight (:func:`nst_jax._src.driver.program_settings`); before, the default run computed the
structure term too. This script builds the output level of the default run (``nst-jax PHOTO PAINTING
--size SIZE``: the balanced preset's last level, its config and weights) both ways, through the
driver's own programs, and prints for each: seconds per optimiser step and per loss evaluation
(timed rounds alternate between the two, the best round of each kept, compilation excluded), the
CPU time of the process per evaluation (the median round), and XLA's FLOP count of one loss
value-and-gradient evaluation (``cost_analysis``, compiled on its own; on a GPU it misses the cuDNN
convolutions); then the left-out term's own value and gradient on a map of the content layer's
shape, timed alone (a small program: its best of 20 calls is steady where whole steps, on a machine
other jobs share, are not). The images are ../shared/images tubingen and starry_night where
present, else the examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import platform
import sys
import time

import jax
import numpy as np

from nst_jax import load_image, load_vgg19, loss_terms, make_spec
from nst_jax._src import driver
from nst_jax._src.api import _one_member, _start_images, _targets_args
from nst_jax._src.content_terms import CONTENT_TERMS
from nst_jax._src.objective import layer_shape
from nst_jax._src.plan import optimised_inputs

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reuse_benchmark import images as image_files  # noqa: E402  (Tübingen x Starry Night, else the examples)


class Program:
    """The driver's start and chunk programs of one member for ``config`` and ``weights`` (unbatched)."""

    def __init__(self, vgg, plan, config, weights):
        self.layout = driver.member_layout(1, None, None)
        self.config, self.weights = config, weights
        inputs = optimised_inputs(plan)
        targets_args = _targets_args(plan, inputs)
        vgg, targets_in, w, starts = driver._place(self.layout, vgg, targets_args, _one_member(weights),
                                                   _start_images(plan, inputs, [0]))
        start = driver.start_program(config, self.layout, tuple(targets_args["output_shape"]))
        self.chunk = driver.chunk_program(config, self.layout)
        t = time.perf_counter()
        state, targets = start(vgg, targets_in, starts, w)
        self.args = (vgg, targets, w)
        self.state, *_ = self.chunk(state, *self.args, np.int32(0), np.bool_(True))  # compiles; the start
        jax.block_until_ready(self.state)
        self.compile_seconds = time.perf_counter() - t

    def steps(self, n: int) -> tuple[float, float, int]:
        """Runs ``n`` steps: (wall seconds, CPU seconds of this process's threads, loss evaluations)."""
        t, cpu = time.perf_counter(), time.process_time()
        self.state, records, *_ = self.chunk(self.state, *self.args, np.int32(n), np.bool_(False))
        jax.block_until_ready(self.state)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        return wall, cpu, int(np.asarray(records["evaluations"])[0, :n].sum())

    def flops(self, vgg, image) -> float:
        """XLA's FLOPs of one loss value-and-gradient evaluation of this config at ``image``."""
        config = self.config.loss_config()
        fn = jax.jit(jax.value_and_grad(lambda x, v, t, w: loss_terms(v, x, t, w, config=config)["total"]))
        cost = fn.lower(image, vgg, self.args[1], self.weights).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost["flops"])


def term_seconds(term, shape: tuple[int, int, int], units: str, repeats: int = 20) -> float:
    """Best wall time of one content term's value and gradient on a ``shape`` map of ReLU features."""
    rng = np.random.default_rng(0)
    features, target = (jax.device_put(np.maximum(rng.normal(size=shape), 0).astype(np.float32)) for _ in range(2))
    fn = jax.jit(jax.value_and_grad(lambda f, t: term.loss(f, t, None, units)))
    jax.block_until_ready(fn(features, target))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(features, target))
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256, help="the output's longest side")
    p.add_argument("--steps", type=int, default=5, help="timed L-BFGS steps per round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each program, alternating")
    args = p.parse_args(argv)

    content_path, style_path = image_files()
    vgg = load_vgg19()
    spec = make_spec(content=load_image(content_path, args.size), style=load_image(style_path, args.size))
    level = spec.levels[-1]
    # The output level's settings (its start from the photo; a chunk holds the timed steps).
    config = dataclasses.replace(spec.config, chunk_size=max(args.steps, 1))
    pruned_config, pruned_weights = driver.program_settings(config, level.weights)
    print(f"{content_path.name} + {style_path.name}, the default run's output level: {level.shape[1]}x"
          f"{level.shape[0]} px, {config.optimizer}, content terms {list(config.content_terms)} weighted "
          f"{np.asarray(level.weights.content_terms).tolist()}")
    print(f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {platform.processor() or platform.machine()}); "
          f"{args.rounds} rounds of {args.steps} steps each, best round kept")
    variants = {"with the zero-weight terms (before)": Program(vgg, spec.plan, config, level.weights),
                f"without: {', '.join(pruned_config.content_terms)} only (now)":
                    Program(vgg, spec.plan, pruned_config, pruned_weights)}
    for program in variants.values():
        program.steps(1)  # warm-up
    rounds: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, program in variants.items():
            rounds[name].append(program.steps(args.steps))
    image = jax.device_put(np.asarray(spec.plan.content, np.float32))
    rows = {}
    for name, program in variants.items():
        wall, _, evaluations = min(rounds[name])
        cpu = float(np.median([r[1] / r[2] for r in rounds[name]]))
        rows[name] = (wall / args.steps, wall / max(evaluations, 1), cpu, program.flops(vgg, image))
        print(f"  {name}: {rows[name][0]:.3f} s/step, {evaluations / args.steps:.2f} evaluations/step, "
              f"{rows[name][1]:.3f} s/evaluation (best round's wall time), {cpu:.3f} CPU s/evaluation (median), "
              f"{rows[name][3] / 1e9:.2f} GFLOP/evaluation (XLA), compile+start {program.compile_seconds:.1f} s")
    (before, now) = rows.values()
    print(f"  saved: {1 - now[0] / before[0]:.1%} of the wall time per step, {1 - now[2] / before[2]:.1%} of the CPU "
          f"time per evaluation, {1 - now[3] / before[3]:.1%} of the FLOPs")
    dropped = [name for name in config.content_terms if name not in pruned_config.content_terms]
    seconds = sum(term_seconds(CONTENT_TERMS[name], layer_shape(spec.plan.canvas, layer), config.loss_units)
                  for name in dropped for layer in config.content_layers)
    print(f"  the dropped term{'s' * (len(dropped) != 1)} ({', '.join(dropped)}) alone, value and gradient at "
          f"{', '.join(config.content_layers)}: {seconds * 1e3:.1f} ms per evaluation (best of 20), "
          f"{seconds / before[1]:.1%} of the best evaluation with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
