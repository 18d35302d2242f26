"""Many runs of one photo, as compiled programs that serve every member: ``nst-jax-sweep``.

  nst-jax-sweep photo.jpg painting.jpg other.jpg --output-dir sweep/ --style-weight-factors 0.5 1 2
  nst-jax-sweep --content photo.jpg --style painting.jpg --output-dir sweep/ --style-weights 1:100:5

Every member is a run as ``nst-jax`` makes it (the preset's levels, coarse to fine, by default),
resolved by :func:`nst_jax.make_spec`; the members are every combination of the paintings and the
swept values (the last varying fastest). Level by level they run as one compiled program whose
member axis is laid out over every device JAX sees (:func:`nst_jax.sweep_specs`); with
--distributed, over every device of every process started with the same command. Writes
member_NN.png, each carrying its run record (``nst-jax --rerun member_NN.png`` makes it again),
contact_sheet.png (the swept values under each tile) and losses.json (per member: its painting and
settings, each level's style weight, the loss terms at the start and the end, and the quality ratios
of :mod:`nst_jax.evaluation`: the VGG-16/LPIPS judge's and VGG-19's where the eval extra is installed,
VGG-19's alone otherwise; ``judged_by`` says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import pathlib
import sys
from typing import Any

import numpy as np

from nst_jax import RunSpec, files, make_spec, sweep_specs
from nst_jax.cli import _common as common
from nst_jax.cli import _outputs as outputs
from nst_jax.cli._common import EXIT_CONFLICT, Exit
from nst_jax.cli._request import record_of
from nst_jax.compilation import CompileStats, enable_compilation_cache
from nst_jax.config import TERMS
from nst_jax.errors import NSTError, OutputExists, one_line
from nst_jax.evaluation import Evaluator, optional_judge
from nst_jax.host import check_memory

SWEPT = {  # option -> (Choices field, label)
    "content_weights": ("content_weight", "alpha"),
    "style_weights": ("style_weight", "beta"),
    "scale_style_weights": ("scale_style_weights", "betas"),
    "tv_weights": ("tv_weight", "tv"),
    "learning_rates": ("learning_rate", "lr"),
    "content_term_weights": ("content_term_weights", "terms"),
}
# Swept options whose every value is a list or a mapping (the option repeated).
LISTS = ("scale_style_weights", "content_term_weights")
OUTPUTS = ("contact_sheet.png", "losses.json")


def build_parser() -> argparse.ArgumentParser:
    p = common.OneLineParser(prog="nst-jax-sweep", description=__doc__.split("\n\n")[0])
    g = common.groups(p)
    g["basics"].add_argument("images", nargs="*", metavar="PHOTO PAINTING [PAINTING ...]",
                             help="the content photo and one or more paintings (instead of --content and --style)")
    common.add_run_arguments(p)
    g["output"].add_argument("--output-dir", required=True, help="directory for the images and losses.json (created)")
    g["output"].add_argument("--overwrite", action="store_true", help="replace the files of an earlier sweep there")
    common.add_weight_arguments(p, swept=True)
    g["quality"].add_argument("--style-weight-factors", nargs="+", metavar="F",
                              help="multiply every level's style weight (the preset's, or --style-weights) by each "
                                   "factor: values or START:STOP:NUM (1 is the plain run)")
    g["basics"].add_argument("--seeds", nargs="+", type=common.integer, default=[0], help="noise seeds")
    common.add_level_arguments(p, style_option="--style-weights", tv_option="--tv-weights", swept=True)
    g["output"].add_argument("--columns", type=common.integer, default=0,
                             help="contact sheet columns (0: as many as values of the last swept option)")
    g["output"].add_argument("--no-metrics", action="store_true", help="skip the quality ratios in losses.json")
    g["basics"].add_argument("--dry-run", action="store_true", help="print every member's resolved run and the files "
                             "the sweep would write as JSON, and stop: nothing is compiled or written")
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


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with the positional ``PHOTO PAINTING ...`` form turned into ``--content``/``--style``."""
    args = build_parser().parse_args(argv)
    images = args.__dict__.pop("images")
    if images:
        if len(images) < 2 or args.content is not None or args.style is not None:
            raise NSTError("give PHOTO PAINTING [PAINTING ...] or --content and --style, not both")
        args.content, args.style = images[0], images[1:]
    return args


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


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of the sweep: its painting, preset, explicit values, style-weight factor and seed."""

    painting: str
    preset: str
    values: dict[str, Any]
    factor: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a member's run gave: its image, its loss terms at the start and the end, and its share of the
    compile and run time of the sweep it ran in."""

    image: np.ndarray
    initial: dict[str, float]
    final: dict[str, float]
    compile_seconds: float
    run_seconds: float


def grids_of(args: argparse.Namespace) -> dict[str, list[Any]]:
    """Every swept option's values (``[None]`` where not given: the preset's or the default); a value of
    ``scale_style_weights`` is one list of per-level style weights (one per ``--scale-style-weights``), one
    of ``content_term_weights`` one mapping ``{term: weight}`` (one per ``--content-term-weights``)."""
    grids: dict[str, list[Any]] = {
        option: common.expand_values(getattr(args, option), f"--{option.replace('_', '-')}")
        if getattr(args, option) is not None else [None] for option in SWEPT if option not in LISTS}
    grids["scale_style_weights"] = ([None] if args.scale_style_weights is None else
                                    [tuple(values) for values in args.scale_style_weights])
    grids["content_term_weights"] = [None] if args.content_term_weights is None else list(args.content_term_weights)
    grids["style_weight_factors"] = ([1.0] if args.style_weight_factors is None else
                                     common.expand_values(args.style_weight_factors, "--style-weight-factors"))
    return grids


def members_of(args: argparse.Namespace, grids: dict[str, list[Any]]) -> list[Member]:
    """Every combination of paintings, presets and swept values: paintings outermost, seeds innermost."""
    if not args.style:
        raise NSTError("give one or more paintings (PHOTO PAINTING ... or --style)")
    members = []
    for painting, preset, *values, factor, seed in itertools.product(
            args.style, args.preset, *(grids[o] for o in SWEPT), grids["style_weight_factors"], args.seeds):
        chosen = {SWEPT[o][0]: v for o, v in zip(SWEPT, values, strict=True) if v is not None}
        members.append(Member(painting, preset, chosen, factor, seed))
    if len(members) > 4096:
        raise NSTError(f"{len(members)} sweep members is too many (at most 4096)")
    return members


def member_spec(args: argparse.Namespace, member: Member, config, inputs: dict[str, Any]) -> RunSpec:
    """A member's run: ``nst-jax``'s for its painting and values, every level's style weight times its factor."""
    spec = make_spec(config, **inputs, choices=common.choices_of(args, preset=member.preset, **member.values),
                     seed=member.seed)
    if member.factor == 1.0:
        return spec
    if not (np.isfinite(member.factor) and member.factor >= 0):
        raise NSTError(f"--style-weight-factors must be finite and >= 0, got {member.factor}")
    scaled = [(max(level.shape), level.iterations,
               level.weights._replace(style=np.float32(level.weights.style * np.float32(member.factor))))
              for level in spec.levels]
    return make_spec(plan=spec.plan, levels=scaled, seed=member.seed)


def member_file(index: int) -> str:
    """The file name of the sweep's member ``index``: ``member_NN.png``."""
    return f"member_{index:02d}.png"


def check_outputs(args: argparse.Namespace, out_dir: pathlib.Path, count: int) -> None:
    """No file the sweep writes may be one of its inputs, nor a special file (a FIFO, a device, ...), nor
    (without --overwrite) exist already."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NSTError(f"--output-dir {out_dir} exists and is not a directory")
    files.check_output_path((out_dir if out_dir.is_dir() else out_dir.parent) / "probe.png")
    names = [member_file(i) for i in range(count)] + list(OUTPUTS)
    for role, path in common.input_files(args):
        path = pathlib.Path(path)
        if os.path.realpath(path.parent) == os.path.realpath(out_dir) and path.name in names:
            raise NSTError(f"the {role} {path} would be overwritten by the sweep's output; choose another --output-dir")
    for name in names:
        outputs.check_regular(out_dir / name, "sweep output")
    existing = [name for name in names if os.path.lexists(out_dir / name)]
    if existing and not args.overwrite:
        raise NSTError(f"{out_dir / existing[0]} exists (an earlier sweep?); pass --overwrite to replace its files")


def main(argv: list[str] | None = None) -> int:
    """The ``nst-jax-sweep`` console script."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see nst_jax.cli._stylize.main
    return common.guarded_main(run, argv)


def prepare(args: argparse.Namespace):
    """Every member's run and inputs, checked before anything is compiled."""
    # One painting per member; steps are the levels' (Choices.iterations).
    config = common.run_config(args, iterations=None, num_styles=1)
    grids = grids_of(args)
    members = members_of(args, grids)
    out_dir = pathlib.Path(args.output_dir)
    check_outputs(args, out_dir, len(members))
    sources = common.sources_of(args).absolute()
    vgg = common.load_vgg(sources.vgg)
    paintings = {p: common.load_inputs(dataclasses.replace(sources, style=(p,)), config) for p in args.style}
    specs = [member_spec(args, m, config, paintings[m.painting]) for m in members]
    import jax

    per_device = -(-len(members) // jax.device_count())  # every member's state stays for its whole level
    estimate = max(check_memory(spec.config, spec.plan.canvas, spec.plan.largest_style_shape, members=per_device)[
        "total"] for spec in {m.painting: s for m, s in zip(members, specs, strict=True)}.values())
    if not args.dry_run:  # only once every check passed: a refused sweep (or a dry run) creates nothing
        enable_compilation_cache(args.compile_cache)
        common.say(f"memory estimate: {estimate / 2**20:.0f} MiB per device")
    records = [record_of(spec, dataclasses.replace(sources, style=(str(pathlib.Path(m.painting).absolute()),)), vgg)
               for spec, m in zip(specs, members, strict=True)]
    return vgg, members, specs, records, grids, out_dir, estimate


def run(argv: list[str] | None) -> int:
    args = parse(argv)
    common.check_environment()
    common.probe_xla_flags()  # before the distributed runtime starts: a flag XLA refuses is one line, no abort
    start_distributed(args)
    common.start_backend()
    vgg, members, specs, records, grids, out_dir, estimate = prepare(args)
    import jax

    if args.dry_run:
        print(json.dumps(dry_run(members, records, out_dir, args.overwrite, estimate), indent=1))
        if args.distributed:
            jax.distributed.shutdown()  # every process together, as after a real sweep
        return 0
    writer, devices, processes = jax.process_index() == 0, jax.device_count(), jax.process_count()
    levels = max(len(spec.levels) for spec in specs)
    common.say(f"{common.plural(len(members), 'member')} on {common.plural(devices, 'device')} of "
               f"{common.plural(processes, 'process')} ({common.plural(len(set(args.style)), 'painting')}, "
               f"{'up to ' if len({len(spec.levels) for spec in specs}) > 1 else ''}{common.plural(levels, 'level')}); "
               "compiling ...")
    done: dict[tuple, int] = {}
    by_levels: dict[tuple, list[int]] = {}  # members whose levels agree run as one sweep (presets may differ)
    for i, spec in enumerate(specs):
        by_levels.setdefault(tuple((level.shape, level.iterations) for level in spec.levels), []).append(i)
    total = sum(specs[idx[0]].total * len({members[i].painting for i in idx}) for idx in by_levels.values())

    def on_chunk(key, level, group, progress):
        done[key, level, tuple(group)] = progress.step
        bar.update(sum(done.values()), progress.seconds, mean_loss=f"{float(np.mean(progress.terms['total'])):.4g}")

    outcomes: list[Any] = [None] * len(specs)
    with common.Bar(total, disable=not writer) as bar, CompileStats() as stats:
        for key, idx in by_levels.items():
            results = sweep_specs(vgg, [specs[i] for i in idx], batch_size=args.batch_size,
                                  callback=functools.partial(on_chunk, key))
            for j, i in enumerate(idx):
                outcomes[i] = Outcome(results[-1].images[j], {t: float(results[0].history[t][j, 0]) for t in TERMS},
                                      {t: float(results[-1].history[t][j, -1]) for t in TERMS},
                                      sum(r.compile_seconds for r in results) / len(idx),
                                      sum(r.run_seconds for r in results) / len(idx))
    if writer:
        common.say(stats.summary())
    if args.distributed:
        # Every process holds every result now. Leave the runtime here, all together: at exit its shutdown
        # barrier would hold the other processes while process 0 writes, and abort them all after 300 s.
        jax.distributed.shutdown()
    if writer:
        written: list[pathlib.Path] = []
        try:
            conflicts = write_results(args, vgg, specs, records, outcomes, members, grids, out_dir, devices, processes,
                                      written)
        except KeyboardInterrupt as err:
            if written:
                err.add_note(f"{common.plural(len(written), 'file')} of the sweep were written to {out_dir}")
            raise
        if conflicts:
            more = f" (and {common.plural(len(conflicts) - 1, 'more file')})" if len(conflicts) > 1 else ""
            raise Exit(EXIT_CONFLICT, f"{conflicts[0]}{more}; the sweep wrote its other files to {out_dir}")
    return 0


def dry_run(members: list[Member], records: list[dict[str, Any]], out_dir: pathlib.Path, overwrite: bool,
            estimate: float) -> dict[str, Any]:
    """What ``--dry-run`` prints: each member's file, painting, preset, factor, seed and resolved run (its
    spec, sources and VGG digest, as its image would carry them), the memory estimate per device and every
    file the sweep would write."""
    import jax

    names = [member_file(i) for i in range(len(members))]
    return {
        "members": [{"file": name, "painting": m.painting, "preset": m.preset, "factor": m.factor, "seed": m.seed,
                     **{k: record[k] for k in ("spec", "sources", "vgg")}}
                    for name, m, record in zip(names, members, records, strict=True)],
        "devices": jax.device_count(), "processes": jax.process_count(),
        "memory": {"estimate_bytes_per_device": int(estimate)},
        "writes": {"output_dir": str(out_dir), "files": names + list(OUTPUTS), "overwrite": overwrite},
    }


def _ratios(args: argparse.Namespace, specs: list[RunSpec], members: list[Member], vgg, images):
    """Each member's quality ratios and what judged them: the VGG-16/LPIPS judge where the eval extra is
    installed (and the outputs are large enough for it), else VGG-19's ratios only; one evaluator per painting."""
    if args.no_metrics or specs[0].config.mode != "transfer":
        return None, None
    judge = optional_judge(images.shape[1:3])
    evaluators: dict[str, Evaluator] = {}
    ratios = []
    for spec, member, image in zip(specs, members, images, strict=True):
        if member.painting not in evaluators:
            evaluators[member.painting] = Evaluator(vgg, content=spec.plan.content, style=spec.plan.styles[0],
                                                    shape=images.shape[1:3], judge=judge)
        ratios.append(evaluators[member.painting](image))
    return ratios, next(iter(evaluators.values())).judged_by


def _member_record(member: Member, spec: RunSpec, outcome: Outcome, name: str) -> dict[str, Any]:
    weights = spec.levels[-1].weights
    return {"file": name, "painting": member.painting, "preset": member.preset, "factor": member.factor,
            "seed": member.seed, "content_weight": float(weights.content), "style_weight": float(weights.style),
            "scale_style_weights": [float(level.weights.style) for level in spec.levels],
            "tv_weight": float(weights.tv), "learning_rate": float(weights.learning_rate),
            "content_term_weights": dict(zip(spec.config.content_terms, np.asarray(weights.content_terms).tolist(),
                                             strict=True)),
            "levels": [{"shape": list(level.shape), "iterations": level.iterations,
                        "style_weight": float(level.weights.style)} for level in spec.levels],
            "initial": outcome.initial, "final": outcome.final}


def _shown(value: float | list[float] | dict[str, float]) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v:.3g}" for k, v in value.items())
    return "/".join(f"{v:.3g}" for v in value) if isinstance(value, list) else f"{value:.3g}"


def _labels(members: list[Member], grids: dict[str, list[Any]], rows: list[list[int]], records) -> list[list[str]]:
    paintings = len({m.painting for m in members}) > 1
    presets = len({m.preset for m in members}) > 1
    swept = [o for o in SWEPT if len(grids[o]) > 1]
    factors = len(grids["style_weight_factors"]) > 1
    seeds = len({m.seed for m in members}) > 1

    def label(i):
        parts = [pathlib.Path(members[i].painting).stem] if paintings else []
        parts += [members[i].preset] if presets else []
        parts += [f"{SWEPT[o][1]}={_shown(records[i][SWEPT[o][0]])}" for o in swept]
        parts += [f"x{members[i].factor:.3g}"] if factors else []
        return " ".join(parts + ([f"seed={members[i].seed}"] if seeds else []))

    return [[label(i) for i in row] for row in rows]


def write_results(args, vgg, specs, records, outcomes, members, grids, out_dir, devices, processes,
                  written: list[pathlib.Path]) -> list[OutputExists]:
    """Writes member_NN.png (each with its run record), contact_sheet.png and losses.json under the CLI's rule:
    without --overwrite nothing is replaced, a file that appeared during the sweep is kept (this sweep's goes
    beside it) and the clashes are returned; ``written`` gets each file as it is written."""
    images = np.stack([outcome.image for outcome in outcomes])
    ratios, judged_by = _ratios(args, specs, members, vgg, images)
    out_dir.mkdir(exist_ok=True)
    conflicts: list[OutputExists] = []

    def write(save, path, *values, **kwargs):
        try:
            save(path, *values, replace=args.overwrite, **kwargs)
        except OutputExists as err:
            conflicts.append(err)
        written.append(path)

    rows_json = []
    for i, (member, spec, record, outcome) in enumerate(zip(members, specs, records, outcomes, strict=True)):
        name = member_file(i)
        write(files.save_image, out_dir / name, outcome.image, record=record)
        rows_json.append({**_member_record(member, spec, outcome, name),
                          **({"ratios": ratios[i]} if ratios is not None else {})})
    # Members are all combinations, the last list varying fastest: one row per combination of the others.
    sizes = [len(set(args.style)), len(args.preset)] + [len(grids[o]) for o in SWEPT] + [
        len(grids["style_weight_factors"]), len(args.seeds)]
    columns = args.columns or next((n for n in reversed(sizes) if n > 1), len(members))
    rows = [list(range(r, min(r + columns, len(members)))) for r in range(0, len(members), columns)]
    steps = {"+".join(str(level.iterations) for level in spec.levels) for spec in specs}
    title = f"{len(members)} members, {' or '.join(sorted(steps))} {specs[0].config.optimizer} steps"
    sheet = files.labelled_grid([[images[i] for i in row] for row in rows], _labels(members, grids, rows, rows_json),
                                title=title)
    write(files.save_sheet, out_dir / "contact_sheet.png", sheet)
    compile_seconds, run_seconds = (sum(getattr(o, k) for o in outcomes) for k in ("compile_seconds", "run_seconds"))
    write(files.save_json, out_dir / "losses.json", {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(specs[0].config).items()},
        "devices": devices, "processes": processes, "compile_seconds": compile_seconds, "run_seconds": run_seconds,
        **({"judged_by": judged_by} if judged_by else {}), "members": rows_json})
    steps_run = sum(spec.total for spec in specs) / len(specs)
    common.say(f"wrote {common.plural(len(members), 'image')}, contact_sheet.png and losses.json to {out_dir}")
    common.say(f"{run_seconds / steps_run:.3f} s per iteration for all {len(members)} members "
               f"(compile {compile_seconds:.1f} s)")
    return conflicts


if __name__ == "__main__":
    sys.exit(main())
