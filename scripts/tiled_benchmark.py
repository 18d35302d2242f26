"""Peak memory and time of one loss-and-gradient evaluation, untiled and tiled (a fresh process per case).

  python scripts/tiled_benchmark.py --size 1024 --tile-sizes 0 512 256

Each case runs in its own process: the targets (tiled too when tiled), an ahead-of-time compilation
of ``jax.value_and_grad`` of the total loss (the function the optimisers call), then one timed
evaluation at a random image. It reports the process's peak resident memory (``ru_maxrss``) before
and after the evaluation, the seconds of the evaluation (compilation excluded), and the loss value
and gradient norm, which agree between cases up to float32 rounding. Loss: transfer, relu4_2
content, relu1_1..relu5_1 style, fp32, L-BFGS's defaults otherwise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

CHILD = """
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from nst_jax import StylizeConfig, compute_targets, load_image, load_vgg19, loss_terms, make_weights
from nst_jax._src import colour, tiled
from nst_jax._src.objective import style_reference

size, tile_size, content_path, style_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
vgg = load_vgg19()
content = jnp.asarray(colour.resize(load_image(content_path, size), (size, size)))
style = jnp.asarray(colour.resize(load_image(style_path, size), (size, size)))
config = StylizeConfig(tile_size=tile_size)
weights = make_weights(config)
t0 = time.perf_counter()
targets = compute_targets(vgg, content=content, style=style, config=config)
reference = style_reference(targets, weights, config=config)
if tile_size:
    value = lambda x, v, t, w, r: tiled.total_loss(x, v, t, w, r, config)
else:
    value = lambda x, v, t, w, r: loss_terms(v, x, t, w, config=config, reference=r)["total"]
image = jax.random.uniform(jax.random.key(0), content.shape)
args = (image, vgg, targets, weights, reference)
fn = jax.jit(jax.value_and_grad(value)).lower(*args).compile()
jax.block_until_ready(reference)
prepare_s, before = time.perf_counter() - t0, rss()
t = time.perf_counter()
v, g = jax.block_until_ready(fn(*args))
seconds = time.perf_counter() - t
print(json.dumps({"size": size, "tile_size": tile_size, "seconds": seconds, "prepare_seconds": prepare_s,
                  "peak_rss_before_eval": before, "peak_rss": rss(), "value": float(v),
                  "grad_norm": float(jnp.linalg.norm(g))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="side of the square image")
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[0, 512], help="0 = untiled")
    args = parser.parse_args()
    if (SHARED / "tubingen.jpg").is_file():
        content, style = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    else:
        content, style = EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png"
    print(f"{'case':>14} {'s/eval':>8} {'peak RSS GiB':>12} {'(before eval)':>13} {'prepare s':>9} "
          f"{'loss':>12} {'|grad|':>12}")
    for tile_size in args.tile_sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.size), str(tile_size), str(content), str(style)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"tile size {tile_size}: failed (exit {out.returncode}): {out.stderr.strip()[-300:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        case = f"{args.size} tile {tile_size}" if tile_size else f"{args.size} untiled"
        print(f"{case:>14} {r['seconds']:>8.2f} {r['peak_rss'] / 2**30:>12.2f} "
              f"{r['peak_rss_before_eval'] / 2**30:>13.2f} {r['prepare_seconds']:>9.1f} "
              f"{r['value']:>12.6g} {r['grad_norm']:>12.6g}", flush=True)
    print(f"images: {content.name} + {style.name} resized to {args.size}x{args.size}; s/eval excludes compilation; "
          "prepare s: weights-to-compiled (targets + compilation)")


if __name__ == "__main__":
    main()
