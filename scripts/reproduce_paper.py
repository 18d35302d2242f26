"""Regenerate Figures 1-3 of Gatys et al. as labelled PNG grids, with their metrics in JSON.

  python scripts/reproduce_paper.py --output-dir paper/          # defaults: each figure < ~30 min on 2 CPU cores
  python scripts/reproduce_paper.py --output-dir /tmp/p --quick  # all figures in a few minutes (smoke test)
  python scripts/reproduce_paper.py --output-dir /tmp/p --quick --size 32 --iterations 8  # smaller still

Fig. 1 top: content reconstructions from white noise, one layer each (conv1_1 ... conv5_1; the
paper's layers were Caffe blobs after in-place ReLUs, i.e. relu1_1 ... here; --layer-index 2
for the _2 layers). Metric: PSNR against the photo.
Fig. 1 bottom: style reconstructions from white noise over growing layer sets {1_1}, {1_1, 2_1},
... Metric: the factor by which the style loss fell.
Fig. 2: the content photo in three styles (Shipwreck, Starry Night, The Scream).
Fig. 3: rows = the five style-layer sets, columns = alpha/beta ratios; each row is one compiled
sweep (nst_jax.sweep). The paper's ratios (1e-5 ... 1e-2) refer to its normalised VGG;
with the shipped un-normalised weights the loss units differ, so the default columns span the
same four decades where this network shows the same progression (see --ratios).

Every figure uses the paper's loss units (eqs. 1 and 4, StylizeConfig(loss_units="paper")),
where its alpha/beta ratios have their meaning; the weights given here are in those units.
"""

from __future__ import annotations

import pathlib
import sys
import time

from nst_jax import load_vgg19, make_weights, stack_weights, stylize, sweep
from nst_jax._src import image as imageio
from nst_jax._src.cache import enable_compilation_cache
from nst_jax._src.figures import labelled_grid, psnr, save_json, save_reduced, save_sheet
from nst_jax.cli import _args as cli
from nst_jax.config import TERMS, StylizeConfig
from nst_jax.errors import NSTError

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"
STYLES = {"shipwreck": "Shipwreck (Turner)", "starry_night": "The Starry Night (van Gogh)",
          "the_scream": "The Scream (Munch)"}
FIGURES = ("1a", "1b", "2", "3")
REDUCED = 512  # longest side of the --reduced-dir copies
# --size, --iterations and --sweep-iterations when not given: the full figures', and --quick's.
FULL = {"size": 256, "iterations": 500, "sweep_iterations": 150}
QUICK = {"size": 64, "iterations": 20, "sweep_iterations": 10}


def build_parser():
    p = cli.OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", required=True, help="directory for the figures and metrics.json (created)")
    p.add_argument("--images", default=str(SHARED), help="folder with tubingen.jpg and the three paintings")
    p.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES), help="figures to make")
    p.add_argument("--size", type=int, help=f"longest side, pixels [default: {FULL['size']}; --quick: "
                                            f"{QUICK['size']}]")
    p.add_argument("--iterations", type=int, help="L-BFGS steps per reconstruction / transfer [default: "
                                                  f"{FULL['iterations']}; --quick: {QUICK['iterations']}]")
    p.add_argument("--sweep-iterations", type=int, help="L-BFGS steps per Fig. 3 cell [default: "
                                                        f"{FULL['sweep_iterations']}; --quick: "
                                                        f"{QUICK['sweep_iterations']}]")
    p.add_argument("--layer-index", type=int, choices=(1, 2), default=1, help="Fig. 1: use the _1 or _2 layers")
    p.add_argument("--layer-kind", choices=("relu", "conv"), default="relu",
                   help="feature maps after (relu, as the paper's Caffe blobs) or before the ReLU")
    p.add_argument("--style", default="starry_night", choices=sorted(STYLES), help="painting of Fig. 1 and 3")
    p.add_argument("--style-weight", type=float, default=30.0, help="beta of Fig. 2 (alpha = 1), paper units")
    p.add_argument("--fig1-tv-weight", type=float, default=None,
                   help="TV weight of the Fig. 1 top reconstructions (default: the library's). Without it "
                        "(0, the paper's bare objective) the image drifts along directions the layer cannot "
                        "see: relu2_1 at 256 px measured 28.4 dB at 500 steps and 25.6 dB at 1000")
    p.add_argument("--ratios", type=float, nargs="+", default=[1.0, 1e-1, 1e-2, 1e-3], help="Fig. 3 alpha/beta")
    p.add_argument("--quick", action="store_true",
                   help="smaller and shorter defaults (see --size, --iterations, --sweep-iterations; a value given "
                        "stands): every figure in a few minutes")
    p.add_argument("--vgg", default=None, help="VGG-19 file (default: the shipped one)")
    p.add_argument("--reduced-dir", default=None, metavar="DIR",
                   help="also write every figure reduced to at most 512 px, as JPEG, here (e.g. docs/paper)")
    cli.add_cache_argument(p)
    return p


def layer(block: int, index: int, kind: str) -> str:
    return f"{kind}{block}_{index}"


def paper_config(**kwargs) -> StylizeConfig:
    """A config in the paper's loss units, every run from white noise as in the paper."""
    return StylizeConfig(**{"loss_units": "paper", "init": "noise", **kwargs})


def run_params(args, steps=None) -> str:
    """The settings a figure's title names."""
    return f"{args.size} px, {steps or args.iterations} L-BFGS steps from noise, paper units"


def run(vgg, *, content=None, style=None, config, **weights):
    return stylize(vgg, content=content, style=style, config=config, weights=make_weights(config, **weights))


def final_terms(history, i=None):
    return {t: float(history[t][-1] if i is None else history[t][i, -1]) for t in TERMS}


def fig1a(vgg, photo, args, log):
    tiles, labels, metrics = [photo], ["photo"], {}
    for block in range(1, 6):
        name = layer(block, args.layer_index, args.layer_kind)
        config = paper_config(mode="content", content_layers=(name,), iterations=args.iterations, chunk_size=50)
        tv = {} if args.fig1_tv_weight is None else {"tv_weight": args.fig1_tv_weight}
        result = run(vgg, content=photo, config=config, **tv)
        value = psnr(result.image, photo)
        metrics[name] = {"psnr_db": value, **final_terms(result.history), "seconds": result.run_seconds,
                         "tv_weight": float(make_weights(config, **tv).tv)}
        tiles.append(result.image)
        labels.append(f"{name}\nPSNR {value:.1f} dB")
        log(f"fig 1a  {name}: PSNR {value:.2f} dB ({result.run_seconds:.0f} s)")
    return labelled_grid([tiles], [labels], title="Fig. 1 (top): content reconstructions from white noise; "
                         f"{run_params(args)}, TV weight {metrics[name]['tv_weight']:g}"), metrics


def fig1b(vgg, painting, args, log):
    tiles, labels, metrics = [painting], ["style image"], {}
    for block in range(1, 6):
        layers = tuple(layer(b, 1, args.layer_kind) for b in range(1, block + 1))
        config = paper_config(mode="style", style_layers=layers, iterations=args.iterations, chunk_size=50)
        result = run(vgg, style=painting, config=config, tv_weight=0.0)
        h = result.history
        factor = float(h["style"][0] / h["style"][-1])
        key = "+".join(layers)
        metrics[key] = {"style_loss_initial": float(h["style"][0]), "style_loss_final": float(h["style"][-1]),
                        "factor": factor, "seconds": result.run_seconds}
        tiles.append(result.image)
        labels.append(f"up to {layers[-1]}\nloss /{factor:.3g}")
        log(f"fig 1b  {key}: style loss fell by {factor:.3g} ({result.run_seconds:.0f} s)")
    return labelled_grid([tiles], [labels], title="Fig. 1 (bottom): style reconstructions from white noise; "
                         f"{run_params(args)}, no TV"), metrics


def fig2(vgg, photo, paintings, args, log):
    config = paper_config(iterations=args.iterations, chunk_size=50)
    tiles, labels, metrics = [photo], ["photo"], {}
    for key, painting in paintings.items():
        result = run(vgg, content=photo, style=painting, config=config, style_weight=args.style_weight)
        metrics[key] = {**final_terms(result.history), "seconds": result.run_seconds}
        tiles.append(result.image)
        labels.append(STYLES[key].split(" (")[0])
        log(f"fig 2   {key}: {metrics[key]['seconds']:.0f} s, final total {metrics[key]['total']:.4g}")
    tv = float(make_weights(config).tv)
    return labelled_grid([tiles], [labels], title=f"Fig. 2: the photo in three styles; {run_params(args)}, "
                         f"a = 1, b = {args.style_weight:g}, TV {tv:g}"), metrics


def fig3(vgg, photo, painting, args, log):
    rows, metrics, titles = [], {}, []
    for block in range(1, 6):
        layers = tuple(layer(b, 1, args.layer_kind) for b in range(1, block + 1))
        config = paper_config(style_layers=layers, iterations=args.sweep_iterations, chunk_size=50)
        weights = stack_weights([make_weights(config, content_weight=1.0, style_weight=1.0 / r) for r in args.ratios])
        t = time.perf_counter()
        result = sweep(vgg, weights=weights, content=photo, style=painting, config=config)
        images = result.images
        rows.append(list(images))
        titles.append(f"to {layers[-1]}")
        metrics["+".join(layers)] = {f"{r:g}": final_terms(result.history, i) for i, r in enumerate(args.ratios)}
        log(f"fig 3   row up to {layers[-1]}: one sweep of {len(args.ratios)} members, "
            f"{time.perf_counter() - t:.0f} s (compile {result.compile_seconds:.0f} s)")
    sheet = labelled_grid(rows, row_titles=titles, col_titles=[f"a/b = {r:g}" for r in args.ratios],
                          title="Fig. 3: style layers (rows) x content/style ratio (columns); "
                                f"{run_params(args, args.sweep_iterations)}")
    return sheet, metrics


def main(argv=None) -> int:
    return cli.guarded_main(_main, argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    for name, default in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not imageio.MIN_SIZE <= args.size <= imageio.MAX_SIZE:
        raise NSTError(f"--size must be between {imageio.MIN_SIZE} and {imageio.MAX_SIZE}, got {args.size}")
    if args.iterations < 1 or args.sweep_iterations < 1:
        raise NSTError("--iterations and --sweep-iterations must be at least 1")
    images = pathlib.Path(args.images)
    photo = imageio.load_image(images / "tubingen.jpg", args.size)
    paintings = {key: imageio.load_image(images / f"{key}.jpg", args.size) for key in STYLES}
    out = pathlib.Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise NSTError(f"--output-dir {out} exists and is not a directory")
    imageio.check_output_path((out if out.is_dir() else out.parent) / "probe.png")
    vgg = load_vgg19(args.vgg)
    enable_compilation_cache(args.compile_cache)
    out.mkdir(exist_ok=True)
    if args.reduced_dir:
        pathlib.Path(args.reduced_dir).mkdir(parents=True, exist_ok=True)

    def log(line):
        print(line, flush=True)

    metrics = {"settings": {k: v for k, v in vars(args).items() if k != "output_dir"}}
    makers = {
        "1a": lambda: fig1a(vgg, photo, args, log),
        "1b": lambda: fig1b(vgg, paintings[args.style], args, log),
        "2": lambda: fig2(vgg, photo, paintings, args, log),
        "3": lambda: fig3(vgg, photo, paintings[args.style], args, log),
    }
    for fig in args.figures:
        t = time.perf_counter()
        sheet, metrics[f"fig{fig}"] = makers[fig]()
        save_sheet(out / f"fig{fig}.png", sheet)
        if args.reduced_dir:
            save_reduced(pathlib.Path(args.reduced_dir) / f"fig{fig}.jpg", sheet, REDUCED)
        metrics[f"fig{fig}"]["seconds_total"] = time.perf_counter() - t
        save_json(out / "metrics.json", metrics)
        log(f"wrote {out / f'fig{fig}.png'} ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
