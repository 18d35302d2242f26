"""Gradient time of the VGG features in an optimisation loop, per autodiff mode, and the compiled program.

  python scripts/autodiff_speed.py [--size 128] [--steps 5] [--repeats 5] [--modes fast,stock] [--precision fp32]

For each mode: ``jax.jit`` of a ``lax.fori_loop`` of ``--steps`` gradient-descent steps on the
image, the loss the mean square of the paper's layers (relu1_1 ... relu5_1 and relu4_2) with the
shipped weights; the time per step is the best of ``--repeats`` runs of the compiled loop, the
modes interleaved so a busy machine slows each alike. It also prints a fingerprint of each mode's
compiled program (optimised HLO with names, numbering and metadata removed): run the script on
two versions of the library (``PYTHONPATH=...``) and equal fingerprints mean XLA runs the same
instructions, whatever the clock says.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import nst_jax
from nst_jax._src import vgg as vgg_mod

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def gradient_loop(vgg, mode: str, steps: int, precision: str = "fp32"):
    def loss(x):
        feats = vgg_mod.unchecked_features(vgg, x, layers=LAYERS, autodiff=mode, precision=precision)
        return sum(jnp.mean(f * f) for f in feats.values())

    @jax.jit
    def loop(x):
        return lax.fori_loop(0, steps, lambda i, x: x - 1e-6 * jax.grad(loss)(x), x)

    return loop


def fingerprint(compiled_text: str) -> str:
    text = re.sub(r", metadata=\{[^}]*\}", "", compiled_text)
    text = re.sub(r"[._][0-9]+", "", text)
    lines = [line for line in text.splitlines()
             if not line.startswith("HloModule") and not re.match(r'^\s*\d+ ["{]', line)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", default="fast,stock")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    vgg = nst_jax.load_vgg19()
    x = jnp.asarray(np.random.default_rng(0).uniform(0.1, 0.9, (args.size, args.size, 3)), jnp.float32)
    modes = args.modes.split(",")
    loops = {mode: gradient_loop(vgg, mode, args.steps, args.precision) for mode in modes}
    prints = {mode: fingerprint(loops[mode].lower(x).compile().as_text()) for mode in modes}
    for loop in loops.values():
        loop(x).block_until_ready()
    best = {mode: float("inf") for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            start = time.perf_counter()
            loops[mode](x).block_until_ready()
            best[mode] = min(best[mode], (time.perf_counter() - start) / args.steps)
    cpu = platform.processor() or platform.machine()
    print(f"nst_jax {nst_jax.__file__}, JAX {jax.__version__}, {jax.default_backend()}, {cpu}")
    print(f"{args.size}x{args.size} px, {args.precision}, gradient of {len(LAYERS)} layers, "
          f"best of {args.repeats} x {args.steps} steps")
    for mode in modes:
        print(f"  autodiff={mode:6s} {best[mode] * 1e3:8.1f} ms/step   program {prints[mode]}")


if __name__ == "__main__":
    main()
