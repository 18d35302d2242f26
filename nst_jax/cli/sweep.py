"""A grid of style transfers differing in loss weights, learning rate or seed, as one compiled program.

  nst-jax-sweep --content photo.jpg --style painting.jpg --output-dir sweep/ --style-weights 1:100:5 --size 256

Every list option takes numbers or START:STOP:NUM (log-spaced); the members are all
combinations. The members run as one compiled optimisation whose member axis is laid out over
every device JAX sees (:func:`nst_jax.sweep`); with --distributed, over every device of every
process started with the same command (JAX's multi-controller runtime). Writes member_NN.png,
contact_sheet.png (the swept values under each tile) and losses.json (per member: the settings,
the loss terms at the start and the end, and the quality ratios of :mod:`nst_jax.metrics`: the
VGG-16/LPIPS judge's and VGG-19's where the eval extra is installed, VGG-19's alone otherwise;
``judged_by`` says which).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import sys

import numpy as np

from nst_jax import Evaluator, files, make_plan, make_weights, optional_judge, stack_weights, sweep
from nst_jax.cli import common
from nst_jax.compilation import CompileStats
from nst_jax.config import TERMS
from nst_jax.errors import NSTError, one_line

SWEPT = {  # option -> (make_weights argument, label)
    "content_weights": ("content_weight", "alpha"),
    "style_weights": ("style_weight", "beta"),
    "tv_weights": ("tv_weight", "tv"),
    "learning_rates": ("learning_rate", "lr"),
}


def build_parser() -> argparse.ArgumentParser:
    p = common.OneLineParser(prog="nst-jax-sweep", description=__doc__.split("\n\n")[0])
    common.add_run_arguments(p)
    g = common.groups(p)
    g["output"].add_argument("--output-dir", required=True, help="directory for the images and losses.json (created)")
    common.add_weight_arguments(p, swept=True)
    g["basics"].add_argument("--seeds", nargs="+", type=common.integer, default=[0], help="noise seeds")
    g["output"].add_argument("--columns", type=common.integer, default=0,
                             help="contact sheet columns (0: as many as values of the last swept option)")
    g["output"].add_argument("--no-metrics", action="store_true", help="skip the quality ratios in losses.json")
    g["performance"].add_argument("--batch-size", type=common.integer, default=None, metavar="B",
                                  help="members vmapped together on a device [default: 1 on CPUs, all on "
                                       "accelerators]")
    g["performance"].add_argument(
        "--distributed", action="store_true",
        help="start JAX's multi-controller runtime first (jax.distributed.initialize) and lay the members over every "
             "process's devices; run the same command in every process. Without the three options below JAX reads "
             "the cluster from its environment (Slurm, Open MPI, TPU pods)")
    g["performance"].add_argument("--coordinator", metavar="HOST:PORT",
                                  help="address of process 0's coordinator (--distributed)")
    g["performance"].add_argument("--num-processes", type=common.integer, help="number of processes (--distributed)")
    g["performance"].add_argument("--process-id", type=common.integer,
                                  help="this process's index, 0 to N-1 (--distributed)")
    return p


def start_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from the options (or the cluster's environment), before any JAX work."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in explicit) and not args.distributed:
        raise NSTError("--coordinator, --num-processes and --process-id need --distributed")
    if not args.distributed:
        return
    if any(v is None for v in explicit) and any(v is not None for v in explicit):
        raise NSTError("give all of --coordinator, --num-processes and --process-id, or none (from the environment)")
    import jax

    # CPU processes exchange results through gloo (cross-process collectives of the CPU backend);
    # accelerators use their own, so this is harmless there.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {} if args.coordinator is None else {
        "coordinator_address": args.coordinator, "num_processes": args.num_processes, "process_id": args.process_id}
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as err:
        raise NSTError(f"cannot start the distributed runtime: {one_line(err)}") from None


def members_of(args: argparse.Namespace) -> tuple[list[tuple[dict, int]], dict[str, list[float]]]:
    """Every combination of the swept values (the last option varying fastest) and the value lists."""
    grids = {option: common.expand_values(getattr(args, option), f"--{option.replace('_', '-')}")
             if getattr(args, option) is not None else [None] for option in SWEPT}
    members = []
    for values in itertools.product(*grids.values(), args.seeds):
        kwargs = {SWEPT[o][0]: v for o, v in zip(grids, values[:-1], strict=True) if v is not None}
        members.append((kwargs, values[-1]))
    if len(members) > 4096:
        raise NSTError(f"{len(members)} sweep members is too many (at most 4096)")
    return members, grids


def prepare(args: argparse.Namespace):
    config = common.run_config(args)
    members, grids = members_of(args)
    weights = [make_weights(config, content_layer_weights=args.content_layer_weights,
                            style_layer_weights=args.style_layer_weights, **kw) for kw, _ in members]
    if args.columns < 0:
        raise NSTError(f"--columns must be >= 0, got {args.columns}")
    out_dir = pathlib.Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NSTError(f"--output-dir {out_dir} exists and is not a directory")
    files.check_output_path((out_dir if out_dir.is_dir() else out_dir.parent) / "probe.png")
    swept = [o for o in SWEPT if len(grids[o]) > 1] + (["seeds"] if len(args.seeds) > 1 else [])
    return config, members, weights, out_dir, swept, grids


def check_outputs(args: argparse.Namespace, out_dir: pathlib.Path, count: int) -> None:
    """No file the sweep writes may be one of its inputs."""
    names = [f"member_{i:02d}.png" for i in range(count)] + ["contact_sheet.png", "losses.json"]
    for role, path in common.input_files(args):
        path = pathlib.Path(path)
        if os.path.realpath(path.parent) == os.path.realpath(out_dir) and path.name in names:
            raise NSTError(f"the {role} {path} would be overwritten by the sweep's output; choose another --output-dir")


def main(argv: list[str] | None = None) -> int:
    """The ``nst-jax-sweep`` console script."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see nst_jax.cli.stylize.main
    return common.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    start_distributed(args)
    config, members, weights, out_dir, swept, grids = prepare(args)
    check_outputs(args, out_dir, len(members))
    vgg, content, style, init_image, masks = common.load_run_inputs(args, config)
    plan = make_plan(config, content=content, style=style, init=init_image, masks=masks)
    import jax

    writer, devices, processes = jax.process_index() == 0, jax.device_count(), jax.process_count()
    common.say(f"{common.plural(len(members), 'member')} on {common.plural(devices, 'device')} of "
               f"{common.plural(processes, 'process')}; compiling ...")
    with common.Bar(config.iterations, disable=not writer) as bar, CompileStats() as stats:
        result = sweep(vgg, weights=stack_weights(weights), seeds=[s for _, s in members], plan=plan,
                       batch_size=args.batch_size,
                       callback=lambda p: bar.update(p.step, p.seconds,
                                                     mean_loss=f"{float(np.mean(p.terms['total'])):.4g}"))
    if writer:
        common.say(stats.summary())
    if args.distributed:
        # Every process holds every result now. Leave the runtime here, all together: at exit its shutdown
        # barrier would hold the other processes while process 0 writes, and abort them all after 300 s.
        jax.distributed.shutdown()
    if writer:
        write_results(args, config, vgg, plan, result, members, weights, out_dir, swept, grids, devices, processes)
    return 0


def _ratios(args: argparse.Namespace, config, vgg, plan, images) -> tuple[list | None, str | None]:
    """Each member's quality ratios and what judged them: the VGG-16/LPIPS judge where the eval extra is
    installed (and the outputs are large enough for it), else VGG-19's ratios only."""
    if args.no_metrics or config.mode != "transfer":
        return None, None
    evaluator = Evaluator(vgg, content=plan.content, style=plan.styles[0], shape=images.shape[1:3],
                          judge=optional_judge(images.shape[1:3]))
    return [evaluator(image) for image in images], evaluator.judged_by


def write_results(args, config, vgg, plan, result, members, weights, out_dir, swept, grids, devices, processes):
    """Writes member_NN.png, contact_sheet.png and losses.json."""
    ratios, judged_by = _ratios(args, config, vgg, plan, result.images)
    out_dir.mkdir(exist_ok=True)
    records = []
    for i, ((_, seed), image, w) in enumerate(zip(members, result.images, weights, strict=True)):
        name = f"member_{i:02d}.png"
        files.save_image(out_dir / name, image)
        settings = {arg: float(getattr(w, field)) for arg, field in (
            ("content_weight", "content"), ("style_weight", "style"), ("tv_weight", "tv"),
            ("learning_rate", "learning_rate"))}
        records.append({"file": name, **settings, "seed": seed,
                        "final": {t: float(result.history[t][i, -1]) for t in TERMS},
                        "initial": {t: float(result.history[t][i, 0]) for t in TERMS},
                        **({"ratios": ratios[i]} if ratios is not None else {})})
    # Members are all combinations, the last list varying fastest: one row per combination of the others.
    sizes = [len(grids[o]) for o in SWEPT] + [len(args.seeds)]
    columns = args.columns or next((n for n in reversed(sizes) if n > 1), len(members))
    rows = [list(range(r, min(r + columns, len(members)))) for r in range(0, len(members), columns)]
    labels = [[" ".join([f"{SWEPT[o][1]}={records[i][SWEPT[o][0]]:.3g}" for o in swept if o in SWEPT]
                        + ([f"seed={members[i][1]}"] if "seeds" in swept else [])) for i in row] for row in rows]
    sheet = files.labelled_grid([[result.images[i] for i in row] for row in rows], labels,
                          title=f"{len(members)} members, {config.iterations} {config.optimizer} steps")
    files.save_sheet(out_dir / "contact_sheet.png", sheet)
    files.save_json(out_dir / "losses.json", {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "devices": devices, "processes": processes,
        "compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds,
        **({"judged_by": judged_by} if judged_by else {}), "members": records})
    common.say(f"wrote {common.plural(len(members), 'image')}, contact_sheet.png and losses.json to {out_dir}")
    common.say(f"{result.run_seconds / config.iterations:.3f} s per iteration for all {len(members)} members "
               f"(compile {result.compile_seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
