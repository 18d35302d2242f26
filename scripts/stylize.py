"""Neural style transfer (Gatys et al.) from the command line.

  python scripts/stylize.py --content photo.jpg --style painting.jpg --output out.png

Every default comes from the library (`StylizeConfig`, `loss_weights`,
`nst_jax.image.DEFAULT_SIZE`). Every argument, input file, the weights and the
memory needed are checked before anything is compiled. Errors are one line on
stderr. Exit codes: 0 done; 1 internal error (set NST_JAX_DEBUG=1 for the
traceback); 2 bad usage, input, file or setting; 3 interrupted (SIGINT or
SIGTERM; a checkpoint is written, resume with --resume CHECKPOINT);
4 numerical failure (NaN or Inf; the last finite image is saved as
OUTPUT_last_good). Nothing is written at OUTPUT unless the run finishes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import signal
import sys

import numpy as np

from nst_jax import cli
from nst_jax import image as imageio
from nst_jax.checkpoint import differences, load_checkpoint, run_record, save_checkpoint
from nst_jax.cli import EXIT_INTERRUPTED, EXIT_NUMERICAL, EXIT_OK, EXIT_USAGE, WEIGHT_DEFAULTS
from nst_jax.errors import NSTError, NumericalError
from nst_jax.memory import check_memory
from nst_jax.multiscale import DEFAULT_MIN_SIZE, pyramid_sizes, stylize_multiscale
from nst_jax.optimize import INITS, loss_weights, stylize

# Options that may differ when resuming: they do not change the result.
RESUME_FREE = ("output", "save_every", "checkpoint_every", "checkpoint", "overwrite", "resume", "compile_cache")
PATH_OPTIONS = ("content", "style", "masks", "output", "weights", "checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(description=__doc__.split("\n\n")[0])
    cli.add_run_arguments(p)
    p.add_argument("--output", help="output image (.png, .jpg, ...); required unless --resume")
    p.add_argument("--learning-rate", type=float, default=WEIGHT_DEFAULTS["learning_rate"], help="Adam step size")
    p.add_argument("--content-weight", type=float, default=WEIGHT_DEFAULTS["content_weight"], help="alpha")
    p.add_argument("--style-weight", type=float, default=WEIGHT_DEFAULTS["style_weight"], help="beta")
    p.add_argument("--tv-weight", type=float, default=WEIGHT_DEFAULTS["tv_weight"], help="total-variation weight")
    p.add_argument("--style-blend", nargs="+", type=float, metavar="B",
                   help="blend weights of several --style images, normalised to sum 1 [default: equal]")
    p.add_argument("--ema", type=float, default=WEIGHT_DEFAULTS["ema_decay"], metavar="DECAY",
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
                   help="continue an interrupted run; its settings come from the checkpoint")
    p.add_argument("--scales", type=int, default=1, metavar="N",
                   help="coarse-to-fine: optimise at N sizes, geometric from --min-size to --size, each level "
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


def with_resumed_args(args: argparse.Namespace, given: set[str]):
    """The checkpoint's arguments, overridden by the (result-neutral) options given now.

    Raises:
        NSTError: If the checkpoint is unreadable or an option given now changes the result.
    """
    checkpoint = load_checkpoint(args.resume)
    saved = checkpoint.notes.get("args")
    if not isinstance(saved, dict):
        raise NSTError(f"checkpoint {args.resume} was not written by scripts/stylize.py")
    now = normalised(args)
    diffs = [f"--{k.replace('_', '-')} {now[k]!r} (checkpoint: {saved.get(k)!r})"
             for k in sorted(given - set(RESUME_FREE)) if now[k] != saved.get(k)]
    if diffs:
        raise NSTError(f"cannot resume {args.resume} with different settings: {', '.join(diffs)}; "
                       "drop them to continue the run as it was")
    merged = argparse.Namespace(**{**vars(build_parser().parse_args([])), **saved})  # options added since
    for k in RESUME_FREE:
        if k in given:
            setattr(merged, k, getattr(args, k))
    merged.resume = args.resume
    return merged, checkpoint


def normalised(args: argparse.Namespace) -> dict:
    """The arguments as JSON values, with absolute paths (a checkpoint resumes from any directory)."""
    out = dict(vars(args))
    absolute = lambda path: str(pathlib.Path(path).expanduser().absolute())  # noqa: E731
    for k in PATH_OPTIONS + ("init",):
        if isinstance(out.get(k), list):
            out[k] = [absolute(v) for v in out[k]]
        elif out.get(k) is not None and not (k == "init" and out[k] in INITS) and not (
                k == "weights" and out[k] in cli.WEIGHT_CHOICES):
            out[k] = absolute(out[k])
    return out


def default_checkpoint(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(output.stem + ".ckpt.npz")


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


def prepare(args: argparse.Namespace, given: set[str] | None = None):
    """Validates every argument and loads every input; raises NSTError before any compute.

    Returns:
        ``(args, config, weights, output, vgg, content, style, init_image, masks, resume)``,
        ``args`` completed from the checkpoint when resuming.
    """
    resume = None
    if args.resume is not None:
        args, resume = with_resumed_args(args, given if given is not None else set())
    if not args.output:
        raise NSTError("--output is required (unless --resume)")
    for name in ("save_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            raise NSTError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    config = cli.run_config(args)
    args.sizes = pyramid_sizes(args.size, args.scales, args.min_size)
    if args.scales > 1:
        for name in ("save_every", "checkpoint_every"):
            if getattr(args, name):
                raise NSTError(f"--{name.replace('_', '-')} is not supported with --scales > 1")
        if args.scale_iterations is not None and len(args.scale_iterations) != args.scales:
            raise NSTError(f"{len(args.scale_iterations)} --scale-iterations given for {args.scales} scales")
        if any(n < 1 for n in args.scale_iterations or []):
            raise NSTError("--scale-iterations must be >= 1")
    elif args.scale_iterations is not None:
        raise NSTError("--scale-iterations needs --scales > 1")
    weights = loss_weights(
        config, content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        learning_rate=args.learning_rate, style_blend=args.style_blend, ema_decay=args.ema)
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
    vgg, content, style, init_image, masks = cli.load_run_inputs(args, config)
    styles = style if isinstance(style, list) else [style]
    shape = (content if content is not None else init_image if init_image is not None else styles[0]).shape
    check_memory(config, tuple(shape), None if style is None else max((s.shape for s in styles),
                                                                       key=lambda s: s[0] * s[1]))
    if resume is not None:
        record = run_record(config, weights, convention=vgg.convention, seed=args.seed, content=content,
                            style=style, init=init_image, masks=masks, extra={"weights_sha256": vgg.sha256})
        diffs = differences(resume.run, record)
        if diffs:
            raise NSTError(f"cannot resume {args.resume}: the run differs from the checkpoint's: {'; '.join(diffs)}")
    return args, config, weights, output, vgg, content, style, init_image, masks, resume


class Interrupted(Exception):
    """Raised from the progress callback once a checkpoint has been written after a signal."""


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
    return cli.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        (args, config, weights, output, vgg, content, style, init_image, masks,
         resume) = prepare(args, given_options(argv) if args.resume else None)
    except NSTError as err:
        print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
        return EXIT_USAGE

    from tqdm import tqdm

    checkpoint_path = pathlib.Path(args.checkpoint)
    notes = {"args": normalised(args)}
    resume_hint = f"resume with: python scripts/stylize.py --resume {checkpoint_path}"
    h, w = (content if content is not None else init_image if init_image is not None else
            style if not isinstance(style, list) else style[0]).shape[:2]
    print(f"compiling for {w}x{h} ...", flush=True)
    bar = None

    def close_bar():
        if bar is not None:
            bar.close()

    if args.scales > 1:
        return run_multiscale(args, config, weights, output, vgg, content, style, init_image, masks)

    with SignalFlag() as flag:
        def on_chunk(progress):
            nonlocal bar
            if bar is None:  # started after compilation, so it/s and ETA measure the optimisation only
                bar = tqdm(total=config.iterations, initial=resume.step if resume else 0, unit="it",
                           dynamic_ncols=True)
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.terms['total']:.4g}")
            if args.save_every and progress.step % args.save_every == 0 and progress.step < progress.iterations:
                path = output.with_name(f"{output.stem}_{progress.step:05d}{output.suffix}")
                imageio.save_image(path, np.asarray(progress.image))
            periodic = args.checkpoint_every and (progress.step % args.checkpoint_every == 0
                                                  or progress.step == progress.iterations)
            if periodic or flag.signum is not None or (resume and progress.step == progress.iterations):
                save_checkpoint(checkpoint_path, progress.checkpoint(notes))
            if flag.signum is not None and progress.step < progress.iterations:
                raise Interrupted(progress.step)

        try:
            result = stylize(vgg.params, convention=vgg.convention, content=content, style=style,
                             init=init_image, config=config, weights=weights, seed=args.seed, masks=masks,
                             callback=on_chunk,
                             sync_every=(args.save_every, args.checkpoint_every), resume=resume,
                             record={"weights_sha256": vgg.sha256})
        except Interrupted as stop:
            close_bar()
            print(f"error: interrupted at step {stop.args[0]} of {config.iterations}; checkpoint saved to "
                  f"{checkpoint_path}; {resume_hint}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            close_bar()
            where = f"the last checkpoint is {checkpoint_path}" if checkpoint_path.exists() else "no checkpoint"
            print(f"error: interrupted twice, stopped at once; {where}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except NumericalError as err:
            close_bar()
            path = output.with_name(f"{output.stem}_last_good{output.suffix}")
            imageio.save_image(path, err.image)
            print(f"error: {imageio.one_line(err, None)}; last finite image (step {err.step}) saved to {path}",
                  file=sys.stderr)
            return EXIT_NUMERICAL
        except NSTError as err:
            close_bar()
            print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
            return EXIT_USAGE
        close_bar()
        imageio.save_image(output, result.image)
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


def run_multiscale(args, config, weights, output, vgg, content, style, init_image, masks) -> int:
    """--scales > 1: one stylize() per level (no checkpoints; SIGINT/SIGTERM stop between chunks)."""
    from tqdm import tqdm

    iterations = args.scale_iterations or [config.iterations] * args.scales
    print(f"{args.scales} scales, longest sides {', '.join(map(str, args.sizes))} px, "
          f"{', '.join(map(str, iterations))} iterations", flush=True)
    bars = {}
    with SignalFlag() as flag:
        def on_chunk(level, progress):
            if level not in bars:
                for bar in bars.values():
                    bar.close()
                bars[level] = tqdm(total=progress.iterations, unit="it", dynamic_ncols=True,
                                   desc=f"{args.sizes[level]} px")
            bars[level].update(progress.step - bars[level].n)
            bars[level].set_postfix(loss=f"{progress.terms['total']:.4g}")
            if flag.signum is not None:
                raise Interrupted(progress.step)

        try:
            result = stylize_multiscale(vgg.params, convention=vgg.convention, sizes=args.sizes, content=content,
                                        style=style, init=init_image, masks=masks, config=config, weights=weights,
                                        iterations=iterations, seed=args.seed, callback=on_chunk)
        except (Interrupted, KeyboardInterrupt):
            for bar in bars.values():
                bar.close()
            print("error: interrupted; multi-scale runs are not checkpointed, nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        except NumericalError as err:
            for bar in bars.values():
                bar.close()
            print(f"error: {imageio.one_line(err, None)}", file=sys.stderr)
            return EXIT_NUMERICAL
        for bar in bars.values():
            bar.close()
        imageio.save_image(output, result.image)
    h, w = result.image.shape[:2]
    final = result.levels[-1].history
    terms = "  ".join(f"{k}={final[k][-1]:.4g}" for k in ("content", "style", "tv", "total"))
    print(f"wrote {output} ({w}x{h})")
    print(f"time: {result.run_seconds:.1f} s over {len(args.sizes)} scales "
          f"({', '.join(f'{lv.run_seconds:.1f}' for lv in result.levels)} s; "
          f"compile {result.compile_seconds:.1f} s)")
    print(f"final loss: {terms}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
