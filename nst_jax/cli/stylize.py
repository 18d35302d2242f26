"""Neural style transfer (Gatys et al.) from the command line: ``nst-jax`` (or ``scripts/stylize.py``).

  nst-jax --content photo.jpg --style painting.jpg --output out.png

Every default comes from the library (``StylizeConfig``, ``loss_weights``,
``nst_jax.image.DEFAULT_SIZE``). Every argument, input file, the VGG parameters and the memory
needed are checked before anything is compiled. Errors are one line on stderr. Exit codes:
0 done; 1 internal error (set NST_JAX_DEBUG=1 for the traceback); 2 bad usage, input, file or
setting; 3 interrupted (SIGINT or SIGTERM; a checkpoint is written, resume with --resume
CHECKPOINT); 4 numerical failure (NaN or Inf; the last finite image is saved as
OUTPUT_last_good). Nothing is written at OUTPUT unless the run finishes. Every image written
carries its run record (PNG text, JPEG comment): ``nst-jax --rerun IMAGE`` makes it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import signal
import sys
from typing import Any

import numpy as np

from nst_jax import __version__
from nst_jax import checkpoint as ckpt
from nst_jax import image as imageio
from nst_jax.cli import args as cli
from nst_jax.cli.args import EXIT_INTERRUPTED, EXIT_NUMERICAL, EXIT_OK, EXIT_USAGE
from nst_jax.config import INITS, LossWeights, StylizeConfig, loss_weights
from nst_jax.errors import NSTError, NumericalError
from nst_jax.memory import check_memory
from nst_jax.multiscale import DEFAULT_MIN_SIZE, pyramid_sizes, stylize_multiscale
from nst_jax.plan import Plan as InputPlan
from nst_jax.plan import make_plan

# Options that may differ when resuming or rerunning: they do not change the result.
RESULT_FREE = ("output", "save_every", "checkpoint_every", "checkpoint", "overwrite", "resume", "rerun",
               "compile_cache")
PATH_OPTIONS = ("content", "style", "masks", "output", "vgg", "checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(prog="nst-jax", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"nst_jax {__version__}")
    cli.add_run_arguments(p)
    p.add_argument("--output", help="output image (.png, .jpg, ...); required unless --resume or --rerun")
    cli.add_weight_arguments(p)
    p.add_argument("--style-blend", nargs="+", type=float, metavar="B",
                   help="blend weights of several --style images, normalised to sum 1 [default: equal]")
    p.add_argument("--ema", type=float, default=cli.WEIGHT_DEFAULTS["ema_decay"], metavar="DECAY",
                   help="output the exponential moving average of the image over steps with this decay "
                        "(0: the last iterate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise initialisation")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save OUTPUT_<step> every N iterations (0: never)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output, intermediate saves and checkpoint (else they are refused)")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file [default: OUTPUT_STEM.ckpt.npz]")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write the checkpoint every N iterations and at the end (0: only when interrupted)")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue an interrupted run; every setting comes from the checkpoint (only --output, "
                        "--save-every, --checkpoint-every, --checkpoint and --overwrite may be given)")
    p.add_argument("--rerun", metavar="IMAGE",
                   help="make an image written by nst-jax again from the run record it carries, given the same "
                        "inputs [default output: IMAGE_STEM_rerun.EXT]")
    p.add_argument("--scales", type=int, default=1, metavar="N",
                   help="coarse-to-fine: optimise at N sizes from --min-size to --size, each level "
                        "starting from the previous one upsampled (not checkpointed)")
    p.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE, metavar="PX",
                   help="longest side of the coarsest level with --scales")
    p.add_argument("--scale-iterations", type=int, nargs="+", metavar="N",
                   help="steps at each level, coarse to fine [default: --iterations at each]")
    return p


def given_options(argv: list[str] | None) -> set[str]:
    """The destinations of the options given explicitly on the command line."""
    p = build_parser()
    unset = object()  # not a string, so argparse does not convert it
    p.set_defaults(**{action.dest: unset for action in p._actions})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset}


def normalised(args: argparse.Namespace) -> dict:
    """The arguments as JSON values, with absolute paths (a record resumes or reruns from any directory)."""
    out = {k: v for k, v in vars(args).items() if k != "sizes"}
    absolute = lambda path: str(pathlib.Path(path).expanduser().absolute())  # noqa: E731
    for k in PATH_OPTIONS + ("init",):
        if isinstance(out.get(k), list):
            out[k] = [absolute(v) for v in out[k]]
        elif out.get(k) is not None and not (k == "init" and out[k] in INITS) and not (
                k == "vgg" and out[k] in cli.VGG_CHOICES):
            out[k] = absolute(out[k])
    return out


def with_saved_args(args: argparse.Namespace, given: set[str], saved: Any, source: str, *,
                    keep_outputs: bool) -> argparse.Namespace:
    """A record's arguments, overridden by the (result-neutral) options given now.

    With ``keep_outputs`` (resume) the recorded output, checkpoint and save options stay unless
    given anew; without (rerun) they return to their defaults unless given.

    Raises:
        NSTError: If the record holds no arguments or an option given now changes the result.
    """
    if not isinstance(saved, dict):
        raise NSTError(f"{source} was not written by nst-jax (it holds no command-line arguments)")
    now = normalised(args)
    diffs = [f"--{k.replace('_', '-')} {now[k]!r} (recorded: {saved.get(k)!r})"
             for k in sorted(given - set(RESULT_FREE)) if now[k] != saved.get(k)]
    if diffs:
        raise NSTError(f"cannot continue {source} with different settings: {', '.join(diffs)}; "
                       "drop them to make the run as it was")
    known = vars(build_parser().parse_args([]))
    merged = argparse.Namespace(**{**known, **{k: v for k, v in saved.items() if k in known}})
    for k in RESULT_FREE:
        if k in given:
            setattr(merged, k, getattr(args, k))
        elif not keep_outputs or k in ("resume", "rerun"):
            setattr(merged, k, known[k])
    return merged


def default_checkpoint(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(output.stem + ".ckpt.npz")


def intermediate_path(output: pathlib.Path, step: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")


def intermediate_paths(output: pathlib.Path) -> list[pathlib.Path]:
    """Existing intermediate saves ``OUTPUT_<step>`` of an earlier run."""
    pattern = re.compile(re.escape(output.stem) + r"_\d{5,}" + re.escape(output.suffix) + "$")
    parent = output.parent if str(output.parent) else pathlib.Path(".")
    return sorted(p for p in parent.iterdir() if pattern.match(p.name))


def check_writable_file(path: pathlib.Path, what: str) -> None:
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    if path.is_dir():
        raise NSTError(f"{what} {path} is a directory")
    if not parent.is_dir():
        raise NSTError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NSTError(f"{what} {path}: directory {parent} is not writable")


@dataclasses.dataclass
class Plan:
    """A checked run: settings, loaded inputs and where everything goes.

    Attributes:
        args: The arguments (completed from the record when resuming or rerunning).
        config: Static settings.
        weights: Loss weights.
        output: The output image's path.
        checkpoint: The checkpoint's path.
        vgg: The VGG-19 parameters.
        inputs: The checked inputs (:func:`nst_jax.plan.make_plan`).
        sizes: The levels' longest sides (one level without ``--scales``).
        iterations: Steps per level.
        resume: The checkpoint being continued, if any.
        record: What every written image carries (``nst-jax --rerun`` reads it).
        stop_at: Step at which a rerun of an intermediate save stops (None: the whole run).
    """

    args: argparse.Namespace
    config: StylizeConfig
    weights: LossWeights
    output: pathlib.Path
    checkpoint: pathlib.Path
    vgg: Any
    inputs: InputPlan
    sizes: list[int]
    iterations: list[int]
    resume: ckpt.Checkpoint | None
    record: dict[str, Any]
    stop_at: int | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.inputs.shape


def _check_levels(args: argparse.Namespace, config: StylizeConfig) -> list[int]:
    if args.scales > 1:
        for name in ("save_every", "checkpoint_every"):
            if getattr(args, name):
                raise NSTError(f"--{name.replace('_', '-')} is not supported with --scales > 1")
        if args.scale_iterations is not None and len(args.scale_iterations) != args.scales:
            raise NSTError(f"{len(args.scale_iterations)} --scale-iterations given for {args.scales} scales")
        if any(n < 1 for n in args.scale_iterations or []):
            raise NSTError("--scale-iterations must be >= 1")
        return list(args.scale_iterations or [config.iterations] * args.scales)
    if args.scale_iterations is not None:
        raise NSTError("--scale-iterations needs --scales > 1")
    return [config.iterations]


def prepare(args: argparse.Namespace, given: set[str] | None = None) -> Plan:
    """Validates every argument and loads every input; raises NSTError before any compute."""
    given = given if given is not None else set()
    resume, rerun, stop_at = None, None, None
    if args.resume is not None and args.rerun is not None:
        raise NSTError("give --resume or --rerun, not both")
    if args.resume is not None:
        resume_path = args.resume
        resume = ckpt.load_checkpoint(args.resume)
        args = with_saved_args(args, given, resume.notes.get("args"), f"checkpoint {args.resume}", keep_outputs=True)
        args.resume = str(resume_path)
    elif args.rerun is not None:
        source = pathlib.Path(args.rerun)
        rerun = imageio.read_record(source)
        if rerun is None:
            raise NSTError(f"{source} carries no nst_jax run record (was it written by nst-jax, as PNG or JPEG?)")
        args = with_saved_args(args, given, rerun.get("args"), f"the run of {source}", keep_outputs=False)
        args.rerun = str(source)
        if "output" not in given:
            args.output = str(source.with_name(f"{source.stem}_rerun{source.suffix}"))
        stop_at = rerun.get("step")
    if not args.output:
        raise NSTError("--output is required (unless --resume or --rerun)")
    for name in ("save_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            raise NSTError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    config = cli.run_config(args)
    sizes = pyramid_sizes(args.size, args.scales, args.min_size)
    iterations = _check_levels(args, config)
    weights = loss_weights(
        config, content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        learning_rate=args.learning_rate, style_blend=args.style_blend, ema_decay=args.ema)
    # The weights the defaults resolved to (per loss units) go into the records.
    args.content_weight, args.style_weight, args.tv_weight = (float(weights.content), float(weights.style),
                                                              float(weights.tv))
    output = imageio.check_output_path(args.output)
    checkpoint = pathlib.Path(args.checkpoint) if args.checkpoint else default_checkpoint(output)
    check_writable_file(checkpoint, "checkpoint")
    if not args.overwrite:
        if output.exists():
            raise NSTError(f"{output} exists; pass --overwrite to replace it")
        resuming_here = resume is not None and checkpoint.resolve() == pathlib.Path(args.resume).resolve()
        if checkpoint.exists() and not resuming_here:
            raise NSTError(f"checkpoint {checkpoint} exists (an interrupted run?); continue it with "
                           f"--resume {checkpoint}, or pass --overwrite to start afresh")
        earlier = intermediate_paths(output) if resume is None else []
        if earlier:
            raise NSTError(f"{earlier[0]} (an intermediate save) exists; pass --overwrite to replace such files")
    args.checkpoint = str(checkpoint)
    vgg, content, style, init, masks = cli.load_run_inputs(args, config)
    inputs = make_plan(config, content=content, style=style, init=init, masks=masks)
    check_memory(config, inputs.shape, inputs.largest_style_shape)
    levels = {} if args.scales == 1 else {"sizes": sizes, "iterations": iterations}
    run = ckpt.run_record(config, weights, vgg=vgg, seed=args.seed, inputs=inputs.digests, extra=levels)
    for saved, what in ((resume.run if resume else None, f"checkpoint {args.resume}"),
                        (rerun.get("run") if rerun else None, f"the run recorded in {args.rerun}")):
        if saved is not None:
            diffs = ckpt.differences({k: v for k, v in saved.items() if k in run}, run)
            if diffs:
                raise NSTError(f"cannot continue {what}: this run differs: {'; '.join(diffs)}")
    record = {"format": imageio.RECORD_KEY, "version": __version__, "args": normalised(args), "run": run}
    return Plan(args, config, weights, output, checkpoint, vgg, inputs, sizes, iterations, resume, record, stop_at)


class Interrupted(Exception):
    """Raised from the progress callback once a checkpoint has been written after a signal."""


class Reached(Exception):
    """Raised from the progress callback when a rerun reaches the step of the image it remakes."""


class SignalFlag:
    """SIGINT/SIGTERM set a flag (checked between chunks); a second signal interrupts at once."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """The ``nst-jax`` console script."""
    # jaxlib's CPU LAPACK kernels (eigh, used by the W2 style loss) run on OpenBLAS, whose own thread pool
    # competes with XLA's: measured 0.02 s vs 0.8-3 s per 512x512 eigh on 2 busy cores. One OpenBLAS
    # thread unless the user chose otherwise; set before jax makes its first LAPACK call.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return cli.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = prepare(args, given_options(argv) if args.resume or args.rerun else None)
    except NSTError as err:
        print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
        return EXIT_USAGE
    h, w = plan.shape[:2]
    print(f"compiling for {w}x{h} ...", flush=True)
    if plan.args.scales > 1:
        return run_multiscale(plan)
    return run_single(plan)


def _save(plan: Plan, path: pathlib.Path, image: np.ndarray, **notes) -> None:
    imageio.save_image(path, image, record={**plan.record, **notes})


def run_single(plan: Plan) -> int:
    from tqdm import tqdm

    from nst_jax.api import stylize

    args, config, output, resume = plan.args, plan.config, plan.output, plan.resume
    notes = {"args": plan.record["args"]}
    resume_hint = f"resume with: nst-jax --resume {plan.checkpoint}"
    bar = None

    def close_bar():
        if bar is not None:
            bar.close()

    with SignalFlag() as flag:
        def on_chunk(progress):
            nonlocal bar
            if bar is None:  # started after compilation, so it/s and ETA measure the optimisation only
                bar = tqdm(total=config.iterations, initial=resume.step if resume else 0, unit="it",
                           dynamic_ncols=True)
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.terms['total']:.4g}")
            if plan.stop_at is not None and progress.step == plan.stop_at:
                raise Reached(np.asarray(progress.image))
            if args.save_every and progress.step % args.save_every == 0 and progress.step < progress.iterations:
                _save(plan, intermediate_path(output, progress.step), np.asarray(progress.image), step=progress.step)
            periodic = args.checkpoint_every and (progress.step % args.checkpoint_every == 0
                                                  or progress.step == progress.iterations)
            if periodic or flag.signum is not None or (resume and progress.step == progress.iterations):
                ckpt.save_checkpoint(plan.checkpoint, progress.checkpoint(notes))
            if flag.signum is not None and progress.step < progress.iterations:
                raise Interrupted(progress.step)

        try:
            result = stylize(plan.vgg, plan=plan.inputs, weights=plan.weights, seed=args.seed, callback=on_chunk,
                             sync_every=(args.save_every, args.checkpoint_every, plan.stop_at or 0), resume=resume)
        except Reached as reached:
            close_bar()
            image = np.clip(reached.args[0], 0.0, 1.0)
            _save(plan, output, image, step=plan.stop_at)
            print(f"wrote {output} (the run at step {plan.stop_at})")
            return EXIT_OK
        except Interrupted as stop:
            close_bar()
            print(f"error: interrupted at step {stop.args[0]} of {config.iterations}; checkpoint saved to "
                  f"{plan.checkpoint}; {resume_hint}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            close_bar()
            where = f"the last checkpoint is {plan.checkpoint}" if plan.checkpoint.exists() else "no checkpoint"
            print(f"error: interrupted twice, stopped at once; {where}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except NumericalError as err:
            close_bar()
            path = output.with_name(f"{output.stem}_last_good{output.suffix}")
            _save(plan, path, err.image, step=err.step, last_good=True)
            print(f"error: {imageio.one_line(err, None)}; last finite image (step {err.step}) saved to {path}",
                  file=sys.stderr)
            return EXIT_NUMERICAL
        except NSTError as err:
            close_bar()
            print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
            return EXIT_USAGE
        close_bar()
        _save(plan, output, result.image)
    h, w = result.image.shape[:2]
    terms = "  ".join(f"{k}={result.history[k][-1]:.4g}" for k in ("content", "style", "tv", "total"))
    print(f"wrote {output} ({w}x{h})")
    steps = config.iterations - (resume.step if resume else 0)
    evaluations = int(result.history["evaluations_per_step"][-steps:].sum()) if steps else 0
    print(f"time per iteration: {result.run_seconds / max(steps, 1):.3f} s "
          f"({steps} iterations, {evaluations} loss evaluations, in {result.run_seconds:.1f} s; "
          f"compile {result.compile_seconds:.1f} s)")
    print(f"final loss: {terms}")
    return EXIT_OK


def run_multiscale(plan: Plan) -> int:
    """--scales > 1: one stylize() per level (no checkpoints; SIGINT/SIGTERM stop between chunks)."""
    from tqdm import tqdm

    sizes, iterations = plan.sizes, plan.iterations
    print(f"{len(sizes)} scales, longest sides {', '.join(map(str, sizes))} px, "
          f"{', '.join(map(str, iterations))} iterations", flush=True)
    bars = {}

    def close_bars():
        for bar in bars.values():
            bar.close()

    with SignalFlag() as flag:
        def on_chunk(level, progress):
            if level not in bars:
                close_bars()
                bars[level] = tqdm(total=progress.iterations, unit="it", dynamic_ncols=True, desc=f"{sizes[level]} px")
            bars[level].update(progress.step - bars[level].n)
            bars[level].set_postfix(loss=f"{progress.terms['total']:.4g}")
            if flag.signum is not None:
                raise Interrupted(progress.step)

        try:
            result = stylize_multiscale(plan.vgg, sizes=sizes, plan=plan.inputs, weights=plan.weights,
                                        iterations=iterations, seed=plan.args.seed, callback=on_chunk)
        except (Interrupted, KeyboardInterrupt):
            close_bars()
            print("error: interrupted; multi-scale runs are not checkpointed, nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        except NumericalError as err:
            close_bars()
            print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
            return EXIT_NUMERICAL
        close_bars()
        _save(plan, plan.output, result.image)
    h, w = result.image.shape[:2]
    final = result.levels[-1].history
    terms = "  ".join(f"{k}={final[k][-1]:.4g}" for k in ("content", "style", "tv", "total"))
    print(f"wrote {plan.output} ({w}x{h})")
    print(f"time: {result.run_seconds:.1f} s over {len(sizes)} scales "
          f"({', '.join(f'{lv.run_seconds:.1f}' for lv in result.levels)} s; "
          f"compile {result.compile_seconds:.1f} s)")
    print(f"final loss: {terms}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
