"""Neural style transfer (Gatys et al.) from the command line: ``nst-jax`` (or ``scripts/stylize.py``).

  nst-jax photo.jpg painting.jpg -o out.png
  nst-jax --content photo.jpg --style painting.jpg --output out.png
  nst-jax a.jpg b.jpg c.jpg painting.jpg -o outdir/     (each photo on its own, one compile per shape)

Every default comes from the library (``StylizeConfig``, ``make_weights``,
``nst_jax.image.DEFAULT_SIZE``). Every argument, input file, output location, the VGG parameters
and the memory needed are checked before anything is compiled. Nothing is ever written to an
input, and without --overwrite no existing file is replaced, not even one that appears during
the run. Errors are one line on stderr; the exit codes are those of :mod:`nst_jax.cli.common`.
Every image written carries its run record (PNG text, JPEG comment): ``nst-jax --rerun IMAGE``
makes it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from typing import Any

import numpy as np

from nst_jax import (
    Plan,
    __version__,
    check_memory,
    files,
    make_plan,
    make_weights,
    pyramid_sizes,
    resumed_level,
    stylize_multiscale,
)
from nst_jax.cli import batch, common, outputs
from nst_jax.cli.common import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_NUMERICAL, EXIT_OK, Exit
from nst_jax.cli.saved import validated
from nst_jax.compilation import CompileStats
from nst_jax.config import DEFAULT_MIN_SIZE, DEFAULT_PRESET, INITS, PRESETS, StylizeConfig, Weights
from nst_jax.errors import NSTError, NumericalError, OutputExists

# Where a run writes, and whether it may replace: never taken from a checkpoint or a record.
LOCATIONS = ("output", "checkpoint", "overwrite", "resume", "rerun", "compile_cache")
# Options that may differ when resuming or rerunning: they do not change the result.
RESULT_FREE = LOCATIONS + ("save_every", "checkpoint_every", "preview", "preview_every", "progress_every")
PATH_OPTIONS = ("content", "style", "masks", "output", "vgg", "checkpoint", "preview")
EPILOG = ("exit codes: 0 done; 1 internal error (a bug); 2 bad usage, input, file or setting; 3 interrupted "
          "(a checkpoint is saved: --resume it); 4 NaN or Inf (the last finite image is saved); 5 a fault of the "
          "system (disk full, permission denied, out of memory); 6 a file appeared at an output during the run "
          "(kept; the result is saved beside it)")


def build_parser() -> argparse.ArgumentParser:
    p = common.OneLineParser(prog="nst-jax", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"nst_jax {__version__}")
    g = common.groups(p)
    g["basics"].add_argument("images", nargs="*", metavar="CONTENT [CONTENT ...] STYLE",
                             help="the content photo(s) and the style image (instead of --content and --style)")
    common.add_run_arguments(p, several_contents=True)
    g["basics"].add_argument("-o", "--output", help="output image (.png, .jpg, ...) [default: CONTENT_STEM-"
                             "STYLE_STEM.png with CONTENT STYLE; required with --content and --style]; with several "
                             "content images, the directory of their CONTENT_STEM-STYLE_STEM.png [default: .]")
    common.add_weight_arguments(p)
    g["quality"].add_argument("--style-blend", nargs="+", type=float, metavar="B",
                              help="blend weights of several --style images, normalised to sum 1 [default: equal]")
    g["quality"].add_argument("--ema", type=float, default=common.WEIGHT_DEFAULTS["ema_decay"], metavar="DECAY",
                              help="output the exponential moving average of the image over steps with this decay "
                                   "(0: the last iterate)")
    g["basics"].add_argument("--seed", type=common.integer, default=0, help="seed of the noise initialisation")
    _add_output_arguments(g["output"])
    _add_scale_arguments(g["quality"])
    return p


def _add_output_arguments(g) -> None:
    g.add_argument("--preview", metavar="PATH",
                   help="an image file replaced (atomically) with the current result as the run goes, for a viewer "
                        "to keep open; an existing file there is replaced only if nst-jax wrote it, or with "
                        "--overwrite")
    g.add_argument("--preview-every", type=common.integer, default=0, metavar="N",
                   help="refresh --preview every N iterations (0: whenever a chunk of compiled steps "
                        "returns: every 10 by default)")
    g.add_argument("--progress-every", type=common.integer, default=0, metavar="N",
                   help="move the progress bar every N iterations (0: whenever a chunk of compiled steps returns, "
                        "every 10; 1: every step, one round trip to the host per step; the result is the same)")
    g.add_argument("--save-every", type=common.integer, default=0, metavar="N",
                   help="also save OUTPUT_<step> every N iterations (of each level with --scales; 0: never)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing output, intermediate saves, last-good image and checkpoint (else they "
                        "are refused, and a file appearing during the run is kept)")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file [default: OUTPUT_STEM.ckpt.npz; when "
                   "resuming, the checkpoint resumed]")
    g.add_argument("--checkpoint-every", type=common.integer, default=0, metavar="N",
                   help="write the checkpoint every N iterations and at the end (of each level with --scales; 0: "
                        "only when interrupted)")
    g.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue an interrupted run; its settings come from the checkpoint, never where to write "
                        "(--output, else CHECKPOINT_STEM.png beside it)")
    g.add_argument("--rerun", metavar="IMAGE",
                   help="make an image written by nst-jax again from the run record it carries, given the same "
                        "inputs [default output: IMAGE_STEM_rerun.EXT]")


def _add_scale_arguments(g) -> None:
    presets = "; ".join(
        f"{name}: {preset.summary} ({common.plural(len(preset.iterations), 'level')}, "
        f"{'+'.join(map(str, preset.iterations))} steps, style weight "
        f"{'/'.join(f'{w:g}' for w in preset.style_weights)})" for name, preset in PRESETS.items())
    g.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                   help=f"transfer settings chosen by measurement, from most photo to most painting: {presets}. "
                        "Options given explicitly (--style-weight, --tv-weight, --scales, --min-size, --iterations, "
                        "--scale-iterations, --scale-style-weights) override it; content and style modes and "
                        "--loss-units paper run one level with their own defaults")
    g.add_argument("--scales", type=common.integer, metavar="N",
                   help="coarse-to-fine: optimise at N sizes from --min-size to --size, each level "
                        "starting from the previous one upsampled (steps are counted over all levels) "
                        "[default: the preset's levels, halving from --size]")
    g.add_argument("--min-size", type=common.integer, metavar="PX",
                   help=f"longest side of the coarsest level [default: the preset's; {DEFAULT_MIN_SIZE} with --scales]")
    g.add_argument("--scale-iterations", type=common.integer, nargs="+", metavar="N",
                   help="steps at each level, coarse to fine [default: the preset's; --iterations at each when "
                        "--iterations or --scales is given]")
    g.add_argument("--scale-style-weights", type=float, nargs="+", metavar="W",
                   help="style weight at each level, coarse to fine [default: the preset's; --style-weight at each "
                        "when --style-weight or --scales is given]")


def apply_preset(args: argparse.Namespace) -> None:
    """Fills the level and weight settings left unset from ``--preset`` (transfer in relative units),
    else from the one-level defaults. Explicit options win; a record's settings arrive resolved."""
    preset = PRESETS[args.preset] if args.mode == "transfer" and args.loss_units == "relative" else None
    if preset is not None:
        levels = preset.levels(args.size)
        args.tv_weight = preset.tv_weight if args.tv_weight is None else args.tv_weight
        if args.scales is None:  # the preset's levels, with what was not given explicitly
            args.scales = len(levels)
            args.min_size = levels[0].size if args.min_size is None else args.min_size
            if args.iterations is None and args.scale_iterations is None:
                args.scale_iterations = [level.iterations for level in levels] if len(levels) > 1 else None
                args.iterations = levels[-1].iterations if len(levels) == 1 else None
            if args.style_weight is None and args.scale_style_weights is None and len(levels) > 1:
                args.scale_style_weights = [level.style_weight for level in levels]
        if args.style_weight is None:
            args.style_weight = (args.scale_style_weights or [levels[-1].style_weight])[-1]
    args.scales = 1 if args.scales is None else args.scales
    args.min_size = DEFAULT_MIN_SIZE if args.min_size is None else args.min_size
    if args.scales == 1 and args.scale_iterations is not None and len(args.scale_iterations) == 1:
        # One level: its steps are the run's --iterations (which the config and the run record carry).
        args.iterations, args.scale_iterations = args.scale_iterations[0], None


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """The arguments, with the positional ``CONTENT STYLE`` form turned into ``--content``/``--style``,
    and the options given explicitly (used when resuming or rerunning)."""
    args = build_parser().parse_args(argv)
    given = given_options(argv)
    images = args.__dict__.pop("images")
    if images:
        if len(images) < 2 or args.content is not None or args.style is not None:
            raise NSTError("give CONTENT [CONTENT ...] STYLE (two or more paths) or --content and --style, not both")
        args.content, args.style = images[:-1], images[-1:]
        given |= {"content", "style"}
        if args.output is None and len(images) == 2:
            args.output = str(batch.output_name(images[0], args.style, args.mode))
    if args.content is not None and len(args.content) == 1:
        args.content = args.content[0]  # one photo: recorded as a path, as always
    return args, given - {"images"}


def given_options(argv: list[str] | None) -> set[str]:
    """The destinations of the options given explicitly on the command line."""
    p = build_parser()
    unset = object()  # not a string, so argparse does not convert it
    p.set_defaults(**{action.dest: unset for action in p._actions})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset and v != []}


def normalised(args: argparse.Namespace) -> dict:
    """The arguments as JSON values, with absolute paths (a record resumes or reruns from any directory)."""
    out = {k: v for k, v in vars(args).items() if k not in ("sizes", "other_contents")}
    absolute = lambda path: str(pathlib.Path(path).expanduser().absolute())  # noqa: E731
    for k in PATH_OPTIONS + ("init",):
        if isinstance(out.get(k), list):
            out[k] = [absolute(v) for v in out[k]]
        elif out.get(k) is not None and not (k == "init" and out[k] in INITS) and not (
                k == "vgg" and out[k] in common.VGG_CHOICES):
            out[k] = absolute(out[k])
    return out


def with_saved_args(args: argparse.Namespace, given: set[str], saved: Any, source: str, *,
                    keep: tuple[str, ...] = ()) -> argparse.Namespace:
    """A record's arguments (checked field by field), overridden by the result-neutral options given now.

    Where to write and whether to replace (:data:`LOCATIONS`) never come from the record: they are
    the command line's, or the defaults. Options in ``keep`` stay as recorded unless given anew.

    Raises:
        NSTError: If the record holds no arguments, a field is malformed, or an option given now
            changes the result.
    """
    parser = build_parser()
    saved = validated(saved, parser, source)
    now = normalised(args)
    diffs = [f"--{k.replace('_', '-')} {now[k]!r} (recorded: {saved.get(k)!r})"
             for k in sorted(given - set(RESULT_FREE)) if now[k] != saved.get(k)]
    if diffs:
        raise NSTError(f"cannot continue {source} with different settings: {', '.join(diffs)}; "
                       "drop them to make the run as it was")
    known = {k: v for k, v in vars(parser.parse_args([])).items() if k != "images"}
    merged = argparse.Namespace(**{**known, **saved})
    for k in RESULT_FREE:
        if k in given:
            setattr(merged, k, getattr(args, k))
        elif k not in keep:
            setattr(merged, k, known[k])
    return merged


@dataclasses.dataclass
class Job:
    """A checked command-line run: settings, checked inputs and where everything goes.

    Attributes:
        args: The arguments (completed from the record when resuming or rerunning).
        config: Static settings.
        level_weights: Loss weights of each level, coarse to fine (one without ``--scales``).
        output: The output image's path.
        checkpoint: The checkpoint's path.
        vgg: The VGG-19 parameters.
        plan: The checked inputs (:func:`nst_jax.make_plan`).
        sizes: The levels' longest sides (one level without ``--scales``).
        iterations: Steps per level.
        resume: The checkpoint being continued, if any.
        record: What every written image carries (``nst-jax --rerun`` reads it).
        stop_at: Step at which a rerun of an intermediate save stops (None: the whole run).
        start: The step the run starts at (the resumed checkpoint's).

    Steps are counted over the whole run, level after level (:meth:`run_step`): intermediate
    saves, messages and the progress bar use that count.
    """

    args: argparse.Namespace
    config: StylizeConfig
    level_weights: list[Weights]
    output: pathlib.Path
    checkpoint: pathlib.Path
    vgg: Any
    plan: Plan
    sizes: list[int]
    iterations: list[int]
    resume: files.Checkpoint | None
    record: dict[str, Any]
    stop_at: int | None = None
    start: int = 0

    @property
    def weights(self) -> Weights:
        """The output level's loss weights (the ones the run record names)."""
        return self.level_weights[-1]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.plan.shape

    @property
    def total(self) -> int:
        """Steps of the whole run, every level's."""
        return sum(self.iterations)

    def run_step(self, level: int, step: int) -> int:
        """Step ``step`` of level ``level`` counted over the whole run."""
        return sum(self.iterations[:level]) + step

    def steps_now(self, level: int) -> int:
        """Steps of level ``level`` that this invocation runs (those after the resumed step)."""
        return max(0, self.run_step(level + 1, 0) - max(self.run_step(level, 0), self.start))

    def level_step(self, step: int) -> tuple[int, int]:
        """The level and the level's own step of the run's step ``step`` (1 to :attr:`total`)."""
        for level, n in enumerate(self.iterations):
            if step <= n:
                return level, step
            step -= n
        raise ValueError(step)


def _check_levels(args: argparse.Namespace, config: StylizeConfig) -> list[int]:
    for name in ("scale_iterations", "scale_style_weights"):
        given = getattr(args, name)
        if given is not None and len(given) != args.scales:
            raise NSTError(f"{len(given)} --{name.replace('_', '-')} given for {common.plural(args.scales, 'scale')}")
    if args.scales > 1:
        if any(not 1 <= n <= 1_000_000 for n in args.scale_iterations or []):
            raise NSTError("--scale-iterations must be between 1 and 1000000")
        return list(args.scale_iterations or [config.iterations] * args.scales)
    return [config.iterations]


def _resumed(args: argparse.Namespace, given: set[str]):
    path = pathlib.Path(args.resume)
    resume = files.load_checkpoint(path)
    recorded = resume.notes.get("args")
    args = with_saved_args(args, given, recorded, f"checkpoint {path}", keep=("save_every", "checkpoint_every"))
    args.resume = str(path)
    if "output" not in given:
        args.output = str(outputs.resumed_output(path, recorded.get("output")))
    if "checkpoint" not in given:
        args.checkpoint = str(path)
    return args, resume


def _rerun(args: argparse.Namespace, given: set[str]):
    source = pathlib.Path(args.rerun)
    found = files.read_record(source)
    if found is None:
        raise NSTError(f"{source} carries no nst_jax run record (was it written by nst-jax, as PNG or JPEG?)")
    what = f"the run record of {source}"
    found = files.check_record(found, what)
    args = with_saved_args(args, given, found["args"], what)
    args.rerun = str(source)
    if "output" not in given:
        args.output = str(source.with_name(f"{source.stem}_rerun{source.suffix}"))
    return args, found


def _settings(args: argparse.Namespace):
    if not args.output:
        raise NSTError("--output is required (unless CONTENT STYLE, --resume or --rerun)")
    for name in ("save_every", "checkpoint_every", "preview_every", "progress_every"):
        if getattr(args, name) < 0:
            raise NSTError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.style_weight is not None and args.scale_style_weights and args.scale_style_weights[-1] != args.style_weight:
        raise NSTError("give --style-weight or --scale-style-weights, not both (unless --style-weight is the last)")
    apply_preset(args)
    config = common.run_config(args)
    sizes = pyramid_sizes(args.size, args.scales, args.min_size)
    iterations = _check_levels(args, config)
    level_weights = [make_weights(
        config, content_weight=args.content_weight, style_weight=style_weight, tv_weight=args.tv_weight,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        learning_rate=args.learning_rate, style_blend=args.style_blend, ema_decay=args.ema)
        for style_weight in args.scale_style_weights or [args.style_weight] * args.scales]
    weights = level_weights[-1]
    # The weights the defaults resolved to (per loss units) go into the records.
    args.content_weight, args.style_weight, args.tv_weight = (float(weights.content), float(weights.style),
                                                              float(weights.tv))
    return config, sizes, iterations, level_weights


def _verify_rerun(found: dict, run: dict, source: str, iterations: int) -> int | None:
    diffs = files.run_differences(found["run"], run)
    if diffs:
        raise NSTError(f"cannot make {source} again: this run differs: {'; '.join(diffs)}")
    step = found["step"]
    if step is not None and not 1 <= step <= iterations:
        raise NSTError(f"the run record of {source}: 'step' {step} is outside 1..{iterations}")
    return step


def prepare(args: argparse.Namespace, given: set[str] | None = None) -> Job:
    """Validates every argument, loads every input and checks every destination; raises NSTError
    before any compute."""
    given = given if given is not None else set()
    resume = found = None
    if args.resume is not None and args.rerun is not None:
        raise NSTError("give --resume or --rerun, not both")
    if args.resume is not None:
        args, resume = _resumed(args, given)
    elif args.rerun is not None:
        args, found = _rerun(args, given)
    config, sizes, iterations, weights = _settings(args)
    output, checkpoint = outputs.locations(args)
    vgg, content, style, init, masks = common.load_run_inputs(args, config)
    plan = make_plan(config, content=content, style=style, init=init, masks=masks)
    check_memory(config, plan.canvas, plan.largest_style_shape)
    sizes = pyramid_sizes(max(plan.shape[:2]), args.scales, args.min_size)  # the output's (the style's in style mode)
    levels = {} if args.scales == 1 else {"sizes": sizes, "iterations": iterations,
                                          "style_weights": [float(w.style) for w in weights]}
    run = files.run_record(config, weights[-1], vgg=vgg, seed=args.seed, inputs=plan.digests, extra=levels)
    stop_at = None if found is None else _verify_rerun(found, run, args.rerun, sum(iterations))
    record = {"format": files.RECORD_KEY, "version": __version__, "args": normalised(args), "run": run}
    for path in [output] + ([args.preview] if args.preview else []):
        files.check_record_fits(record, files.image_format(path))
    job = Job(args, config, weights, output, checkpoint, vgg, plan, sizes, iterations, resume, record, stop_at)
    if resume is not None:
        job.start = job.run_step(resumed_level(resume, sizes), resume.step)
    return job


class Interrupted(Exception):
    """Raised from the progress callback once a checkpoint has been written after a signal."""


class Reached(Exception):
    """Raised from the progress callback when a rerun reaches the step of the image it remakes."""


def main(argv: list[str] | None = None) -> int:
    """The ``nst-jax`` console script."""
    # jaxlib's CPU LAPACK kernels (eigh, used by the W2 style loss) run on OpenBLAS, whose own thread pool
    # competes with XLA's: measured 0.02 s vs 0.8-3 s per 512x512 eigh on 2 busy cores. One OpenBLAS
    # thread unless the user chose otherwise; set before jax makes its first LAPACK call.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return common.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args, given = parse(argv)
    if isinstance(args.content, list):
        return run_batch(args)
    job = prepare(args, given if args.resume or args.rerun else None)
    if job.resume is not None:
        common.say(f"resuming {job.args.resume} at step {job.start} of {job.total}; writing {job.output}")
    with CompileStats() as stats:
        code = run_job(job)
    common.say(stats.summary())
    return code


def run_job(job: Job, compiled: bool = False) -> int:
    """Runs one checked job (``compiled``: an earlier job of this process ran its programs already)."""
    h, w = job.shape[:2]
    if len(job.sizes) > 1:
        common.say(f"{common.plural(len(job.sizes), 'scale')}, longest sides {', '.join(map(str, job.sizes))} px, "
                   f"{', '.join(map(str, job.iterations))} iterations")
    common.say(f"running {w}x{h} with the programs compiled already ..." if compiled else f"compiling for {w}x{h} ...")
    return run_levels(job)


def run_batch(args: argparse.Namespace) -> int:
    """Several content photos, one style: every run checked first, then each run on its own."""
    jobs = [prepare(one) for one in batch.split(args)]
    outputs.check_batch(jobs)
    seen = set()
    with CompileStats() as stats:
        for i, job in enumerate(jobs, 1):
            common.say(f"[{i}/{len(jobs)}] {job.args.content} -> {job.output}")
            code = run_job(job, compiled=job.args.scales == 1 and job.plan.canvas in seen)
            seen.add(job.plan.canvas)
            if code != EXIT_OK:
                return code
    common.say(stats.summary())
    return EXIT_OK


def _saved_state(job: Job, writer: outputs.Writer) -> str:
    if writer.has_checkpoint():
        return f"the last checkpoint is {job.checkpoint}; resume with: nst-jax --resume {job.checkpoint}"
    return "no checkpoint was saved"


def _last_good(job: Job, writer: outputs.Writer, err: NumericalError) -> Exit:
    path = outputs.last_good_path(job.output)
    step = job.run_step(err.level, err.step)
    try:
        writer.image(path, err.image, step=step, last_good=True)
        saved = f"saved to {path}"
    except OutputExists as clash:
        saved = f"saved to {clash.saved_as} ({path} appeared during the run and was kept)"
    return Exit(EXIT_NUMERICAL, f"{err}; last finite image (step {step}) {saved}")


def _outcome(job: Job, writer: outputs.Writer, err: BaseException) -> BaseException:
    """The exit for an exception that stopped a run (the exception itself if it has none)."""
    if isinstance(err, Interrupted):
        return Exit(EXIT_INTERRUPTED, f"interrupted at step {err.args[0]} of {job.total}; checkpoint "
                                      f"saved to {job.checkpoint}; resume with: nst-jax --resume {job.checkpoint}")
    if isinstance(err, KeyboardInterrupt):
        return Exit(EXIT_INTERRUPTED, f"interrupted twice, stopped at once; {_saved_state(job, writer)}")
    if isinstance(err, NumericalError):
        return _last_good(job, writer, err)
    fault = common.environment_fault(err)
    if fault is not None:
        return Exit(EXIT_ENVIRONMENT, f"the system refused: {fault}; {_saved_state(job, writer)}")
    return err


def run_levels(job: Job) -> int:
    """The run, every level of it (one without --scales): saves, checkpoints and signals count the run's steps."""
    args = job.args
    writer, notes = outputs.Writer(job), {"args": job.record["args"]}
    stop = 0 if job.stop_at is None else job.level_step(job.stop_at)[1]
    seconds: dict[int, float] = {}  # each level's optimisation time so far
    with common.SignalFlag() as flag, common.Bar(job.total, initial=job.start) as bar:
        def on_chunk(level, progress):
            step, seconds[level] = job.run_step(level, progress.step), progress.seconds
            bar.update(step, sum(seconds.values()), loss=f"{progress.terms['total']:.4g}")
            if job.stop_at is not None and step == job.stop_at:
                raise Reached(np.asarray(progress.image))
            if args.save_every and progress.step % args.save_every == 0 and step < job.total:
                writer.intermediate(step, np.asarray(progress.image))
            writer.preview(step, progress.image, progress.step)
            periodic = args.checkpoint_every and (progress.step % args.checkpoint_every == 0
                                                  or progress.step == progress.iterations)
            if periodic or flag.signum is not None or (job.resume and step == job.total):
                writer.checkpoint(progress, notes)
            if flag.signum is not None and step < job.total:
                raise Interrupted(step)

        try:
            sync_every = (args.save_every, args.checkpoint_every, args.preview_every, args.progress_every, stop)
            result = stylize_multiscale(job.vgg, sizes=job.sizes, iterations=job.iterations, plan=job.plan,
                                        weights=job.level_weights, seed=args.seed, callback=on_chunk, resume=job.resume,
                                        sync_every=sync_every)
        except Reached as reached:
            bar.close()
            writer.image(job.output, np.clip(reached.args[0], 0.0, 1.0), step=job.stop_at)
            common.say(f"wrote {job.output} (the run at step {job.stop_at})")
            writer.check_conflicts()
            return EXIT_OK
        except BaseException as err:  # noqa: B036 - signals, divergence and system faults have exits of their own
            bar.close()
            raise _outcome(job, writer, err) from None
    writer.image(job.output, result.image)
    _summary(job, result)
    writer.check_conflicts()
    return EXIT_OK


def _summary(job: Job, result) -> None:
    h, w = result.image.shape[:2]
    common.say(f"wrote {job.output} ({w}x{h})")
    steps = job.total - job.start
    evaluations = sum(int(done.history["evaluations_per_step"][job.iterations[level] - job.steps_now(level):].sum())
                      for level, done in enumerate(result.levels) if done is not None)
    common.say(f"time per iteration: {result.run_seconds / max(steps, 1):.3f} s "
               f"({common.plural(steps, 'iteration')}, {common.plural(evaluations, 'loss evaluation')}, "
               f"in {result.run_seconds:.1f} s; compile {result.compile_seconds:.1f} s)")
    common.say(common.loss_line({k: v[-1] for k, v in result.levels[-1].history.items()}))


if __name__ == "__main__":
    sys.exit(main())
