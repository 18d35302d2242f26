"""A grid of style transfers differing in loss weights, learning rate or seed, as one compiled call.

  python scripts/sweep.py --content photo.jpg --style painting.jpg --output-dir sweep/ \\
      --style-weights 1e0:1e3:4 --size 256 --iterations 200

Every list option takes numbers or START:STOP:NUM (log-spaced); the members are all
combinations. The members run as one vmapped optimisation, its member axis sharded over
every device JAX sees. Writes member_NN.png, contact_sheet.png (the swept values under each
tile) and losses.json (final loss terms per member).
"""

from __future__ import annotations

import itertools
import pathlib
import sys

import numpy as np

from nst_jax import cli
from nst_jax import image as imageio
from nst_jax.errors import NSTError
from nst_jax.figures import labelled_grid, save_json, save_sheet
from nst_jax.optimize import TERMS, loss_weights
from nst_jax.sweep import stack_weights, sweep

SWEPT = {  # option -> (loss_weights argument, label)
    "content_weights": ("content_weight", "alpha"),
    "style_weights": ("style_weight", "beta"),
    "tv_weights": ("tv_weight", "tv"),
    "learning_rates": ("learning_rate", "lr"),
}


def build_parser():
    p = cli.OneLineParser(description=__doc__.split("\n\n")[0])
    cli.add_run_arguments(p)
    p.add_argument("--output-dir", required=True, help="directory for the images and losses.json (created)")
    for option, (name, label) in SWEPT.items():
        p.add_argument(f"--{option.replace('_', '-')}", nargs="+", default=[str(cli.WEIGHT_DEFAULTS[name])],
                       metavar="V", help=f"{label} values or START:STOP:NUM")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="noise seeds")
    p.add_argument("--columns", type=int, default=0,
                   help="contact sheet columns (0: as many as values of the last swept option)")
    return p


def prepare(args):
    config = cli.run_config(args)
    grids = {option: cli.expand_values(getattr(args, option), f"--{option.replace('_', '-')}") for option in SWEPT}
    members = []
    for values in itertools.product(*grids.values(), args.seeds):
        kwargs = {SWEPT[o][0]: v for o, v in zip(grids, values[:-1], strict=True)}
        members.append((kwargs, values[-1]))
    if len(members) > 4096:
        raise NSTError(f"{len(members)} sweep members is too many (at most 4096)")
    weights = [loss_weights(config, content_layer_weights=args.content_layer_weights,
                            style_layer_weights=args.style_layer_weights, **kw) for kw, _ in members]
    out_dir = pathlib.Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NSTError(f"--output-dir {out_dir} exists and is not a directory")
    imageio.check_output_path((out_dir if out_dir.is_dir() else out_dir.parent) / "probe.png")
    swept = [o for o in SWEPT if len(grids[o]) > 1] + (["seeds"] if len(args.seeds) > 1 else [])
    return config, members, stack_weights(weights), out_dir, swept, grids


def label(kwargs, seed, swept):
    parts = [f"{SWEPT[o][1]}={kwargs[SWEPT[o][0]]:.3g}" for o in swept if o in SWEPT]
    return " ".join(parts + ([f"seed={seed}"] if "seeds" in swept else []))


def main(argv=None) -> int:
    return cli.guarded_main(run, argv)


def run(argv) -> int:
    args = build_parser().parse_args(argv)
    config, members, weights, out_dir, swept, grids = prepare(args)
    vgg, content, style, init_image, masks = cli.load_run_inputs(args, config)
    import jax
    from tqdm import tqdm

    print(f"{len(members)} members on {jax.device_count()} device(s); compiling ...", flush=True)
    bar = None

    def on_chunk(progress):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=config.iterations, unit="it", dynamic_ncols=True)
        bar.update(progress.step - bar.n)
        bar.set_postfix(mean_loss=f"{progress.terms['total']:.4g}")

    result = sweep(vgg.params, convention=vgg.convention, weights=weights, seeds=[s for _, s in members],
                   content=content, style=style, init=init_image, masks=masks, config=config,
                   callback=on_chunk)
    bar.close()
    out_dir.mkdir(exist_ok=True)
    images = np.asarray(result.images)
    records = []
    for i, ((kwargs, seed), image) in enumerate(zip(members, images, strict=True)):
        name = f"member_{i:02d}.png"
        imageio.save_image(out_dir / name, image)
        records.append({"file": name, **kwargs, "seed": seed,
                        "final": {t: float(result.history[t][i, -1]) for t in TERMS},
                        "initial": {t: float(result.history[t][i, 0]) for t in TERMS}})
    # Members are all combinations, the last list varying fastest: one row per combination of the others.
    sizes = [len(grids[o]) for o in SWEPT] + [len(args.seeds)]
    columns = args.columns or next((n for n in reversed(sizes) if n > 1), len(members))
    rows = [list(range(r, min(r + columns, len(members)))) for r in range(0, len(members), columns)]
    sheet = labelled_grid([[images[i] for i in row] for row in rows],
                          [[label(*members[i], swept) for i in row] for row in rows],
                          title=f"{len(members)} members, {config.iterations} {config.optimizer} steps")
    save_sheet(out_dir / "contact_sheet.png", sheet)
    save_json(out_dir / "losses.json", {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "devices": jax.device_count(), "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds, "members": records})
    print(f"wrote {len(members)} images, contact_sheet.png and losses.json to {out_dir}")
    print(f"{result.run_seconds / config.iterations:.3f} s per iteration for all {len(members)} members "
          f"(compile {result.compile_seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
