"""Neural style transfer (Gatys et al.) from the command line: ``nst-jax`` (or ``scripts/stylize.py``).

  nst-jax photo.jpg painting.jpg -o out.png
  nst-jax --content photo.jpg --style painting.jpg --output out.png
  nst-jax a.jpg b.jpg c.jpg painting.jpg -o outdir/     (each photo on its own, one compile per shape)
  nst-jax photo.jpg painting.jpg --dry-run              (the resolved run as JSON; nothing computed)
  nst-jax serve                                         (the studio in the browser: nst_jax.studio._serve)

The command line maps its flags once to the library's values: the static settings
(``StylizeConfig``), what was chosen explicitly (:class:`nst_jax.spec.Choices`, the preset's
levels and weights for the rest), the input files (:class:`~nst_jax.cli._request.Sources`) and
where to write (:class:`~nst_jax.cli._request.Destinations`). :func:`nst_jax.make_spec` resolves
and validates the run, as it does for a library caller, and :func:`nst_jax.run_spec` runs it.
Every input file, output location, the VGG parameters and the memory needed are checked before
anything is compiled. Nothing is ever written to an input, and without --overwrite no existing
file is replaced, not even one that appears during the run. Errors are one line on stderr; the
exit codes are those of :mod:`nst_jax.cli._common`. Every image written carries the run's spec
(PNG text, JPEG comment): ``nst-jax --rerun IMAGE`` makes it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np

from nst_jax import RunSpec, __version__, files, make_spec, run_spec
from nst_jax.cli import _batch as batch
from nst_jax.cli import _common as common
from nst_jax.cli import _outputs as outputs
from nst_jax.cli._common import EXIT_OK
from nst_jax.cli._request import Destinations, Replay, Sources, record_of, replay_of
from nst_jax.compilation import CompileStats, enable_compilation_cache
from nst_jax.config import StylizeConfig
from nst_jax.errors import NSTError, NumericalError, OutputExists
from nst_jax.host import check_memory, resumed_level
from nst_jax.spec import config_from_json, spec_from_json

# Options that may be given with --resume or --rerun: where to write and how often, never what the image is.
RESULT_FREE = ("output", "checkpoint", "overwrite", "resume", "rerun", "compile_cache", "save_every",
               "checkpoint_every", "preview", "preview_every", "progress_every", "dry_run")
EPILOG = ("exit codes: 0 done; 1 internal error (a bug); 2 bad usage, input, file or setting; 3 interrupted "
          "(a checkpoint is saved: --resume it); 4 NaN or Inf (the last finite image is saved); 5 a fault of the "
          "system (disk full, permission denied, out of memory); 6 a file appeared at an output during the run "
          "(kept; the result is saved beside it). nst-jax serve: the studio in the browser (nst-jax serve --help)")


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
                              help="blend weights of several --style images, normalised to sum 1")
    common.show_default(p, "--style-blend", "equal")
    g["quality"].add_argument("--ema", type=float, default=common.WEIGHT_DEFAULTS["ema_decay"], metavar="DECAY",
                              help="output the exponential moving average of the image over steps with this decay "
                                   "(0: the last iterate)")
    g["basics"].add_argument("--seed", type=common.integer, default=0, help="seed of the noise initialisation")
    g["basics"].add_argument("--dry-run", action="store_true",
                             help="print the resolved run as JSON (its levels' shapes, steps and weights, the memory "
                                  "it needs, the programs it compiles, where it would write) and stop: nothing is "
                                  "compiled or written")
    _add_output_arguments(g["output"])
    common.add_level_arguments(p, style_option="--style-weight", tv_option="--tv-weight")
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
                   help="also save OUTPUT_<step> every N iterations (of each level; 0: never)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing output, intermediate saves, last-good image and checkpoint (else they "
                        "are refused, and a file appearing during the run is kept)")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file [default: OUTPUT_STEM.ckpt.npz; when "
                   "resuming, the checkpoint resumed]")
    g.add_argument("--checkpoint-every", type=common.integer, default=0, metavar="N",
                   help="write the checkpoint every N iterations and at the end (of each level; 0: only when "
                        "interrupted)")
    g.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue an interrupted run; its settings come from the checkpoint, never where to write "
                        "(--output, else CHECKPOINT_STEM.png beside it)")
    g.add_argument("--rerun", metavar="IMAGE",
                   help="make an image written by nst-jax again from the run specification it carries, given the "
                        "same inputs [default output: IMAGE_STEM_rerun.EXT]")


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """The arguments, with the positional ``CONTENT STYLE`` form turned into ``--content``/``--style``,
    and the options given explicitly."""
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
        args.content = args.content[0]  # one photo: one run
    return args, given - {"images"}


def given_options(argv: list[str] | None) -> set[str]:
    """The destinations of the options given explicitly on the command line."""
    p = build_parser()
    unset = object()  # not a string, so argparse does not convert it
    p.set_defaults(**{action.dest: unset for action in p._actions})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset and v != []}


def destinations_of(args: argparse.Namespace, output: str | None, resume: str | None = None) -> Destinations:
    """Where a run writes: the output given (or its default), its checkpoint, preview and frequencies."""
    if not output:
        raise NSTError("--output is required (unless CONTENT STYLE, --resume or --rerun)")
    outputs.check_name_length(output, "output")
    out = files.check_output_path(output)
    if args.preview:
        outputs.check_name_length(args.preview, "preview")
        files.check_output_path(args.preview)
    checkpoint = pathlib.Path(args.checkpoint or resume or outputs.default_checkpoint(out))
    outputs.check_writable_file(checkpoint, "checkpoint")
    return Destinations(out, checkpoint, preview=args.preview, overwrite=args.overwrite, save_every=args.save_every,
                        checkpoint_every=args.checkpoint_every, preview_every=args.preview_every,
                        progress_every=args.progress_every, resume=resume)


@dataclasses.dataclass
class Job:
    """A checked command-line run: its spec, its files and where everything goes.

    Attributes:
        spec: The resolved run (:func:`nst_jax.make_spec`).
        sources: The files its inputs came from.
        dest: Where it writes.
        vgg: The VGG-19 parameters.
        record: What every written image carries (``nst-jax --rerun`` reads it).
        memory: The memory estimate checked before the run, by part (:func:`nst_jax.host.check_memory`).
        resume: The checkpoint being continued, if any.
        stop_at: Step at which a rerun of an intermediate save stops (None: the whole run).
        start: The step the run starts at (the resumed checkpoint's).
        others: Files of the other runs of a batch, which this run must not write either.

    Steps are counted over the whole run, level after level (:meth:`run_step`): intermediate
    saves, messages and the progress bar use that count.
    """

    spec: RunSpec
    sources: Sources
    dest: Destinations
    vgg: Any
    record: dict[str, Any]
    memory: dict[str, float]
    resume: files.Checkpoint | None = None
    stop_at: int | None = None
    start: int = 0

    @property
    def config(self) -> StylizeConfig:
        return self.spec.config

    @property
    def plan(self):
        return self.spec.plan

    @property
    def weights(self):
        """The output level's loss weights."""
        return self.spec.levels[-1].weights

    @property
    def sizes(self) -> list[int]:
        return self.spec.sizes

    @property
    def total(self) -> int:
        return self.spec.total

    def run_step(self, level: int, step: int) -> int:
        """Step ``step`` of level ``level`` counted over the whole run."""
        return sum(self.spec.iterations[:level]) + step

    def steps_now(self, level: int) -> int:
        """Steps of level ``level`` that this invocation runs (those after the resumed step)."""
        return max(0, self.run_step(level + 1, 0) - max(self.run_step(level, 0), self.start))

    def level_step(self, step: int) -> tuple[int, int]:
        """The level and the level's own step of the run's step ``step`` (1 to :attr:`total`)."""
        for level, n in enumerate(self.spec.iterations):
            if step <= n:
                return level, step
            step -= n
        raise ValueError(step)


def _replayed(args: argparse.Namespace, given: set[str]) -> tuple[Replay, Destinations, Any, Any]:
    """A ``--resume`` or ``--rerun``: the stored run, where it writes now, and the checkpoint or the step."""
    if args.resume is not None:
        path = pathlib.Path(args.resume)
        checkpoint = files.load_checkpoint(path)
        _no_settings(args, given, path)
        _version_note(checkpoint.notes, path)
        replay = replay_of(checkpoint.notes, f"checkpoint {path}")
        output = args.output or str(outputs.resumed_output(path, checkpoint.notes.get("output")))
        return replay, destinations_of(args, output, resume=str(path)), checkpoint, None
    source = pathlib.Path(args.rerun)
    found = files.read_record(source)
    if found is None:
        raise NSTError(f"{source} carries no nst_jax run record (was it written by nst-jax, as PNG or JPEG?)")
    _no_settings(args, given, source)
    _version_note(found, source)
    step = found.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise NSTError(f"the run record of {source}: 'step' must be a non-negative integer, got {_shown(step)}")
    output = args.output or str(source.with_name(f"{source.stem}_rerun{source.suffix}"))
    return replay_of(found, f"the run record of {source}"), destinations_of(args, output), None, step


def _version_note(record: Any, source: pathlib.Path) -> None:
    """One line when a record was written by another version of nst_jax (its run is replayed all the same)."""
    version = record.get("version") if isinstance(record, dict) else None
    if isinstance(version, str) and version != __version__:
        common.say(f"note: {source} was written by nst_jax {version[:20]}; this is nst_jax {__version__}")


def _no_settings(args: argparse.Namespace, given: set[str], source: pathlib.Path) -> None:
    """A replayed run takes its settings from its record: only where and how often to write may be given."""
    settings = sorted(given - set(RESULT_FREE))
    if settings:
        shown = ", ".join(f"--{k.replace('_', '-')} {_shown(getattr(args, k))}" for k in settings)
        raise NSTError(f"cannot continue {source} with different settings: {shown}; the run's settings come from "
                       "its record: drop them to make the run as it was")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)[:40]


def _spec(args: argparse.Namespace, replay: Replay | None, sources: Sources, vgg: Any) -> RunSpec:
    """The run: resolved from the flags, or the stored one checked against the inputs loaded again."""
    if replay is None:
        config = common.run_config(args, iterations=None)  # steps are the levels': Choices.iterations
        return make_spec(config, **common.load_inputs(sources, config), choices=common.choices_of(args), seed=args.seed)
    config = config_from_json(replay.spec.get("config"), replay.source)
    if vgg.sha256 != replay.vgg_sha256:
        raise NSTError(f"{replay.source}: the VGG parameters differ (sha256 {vgg.sha256[:12]}..., recorded "
                       f"{replay.vgg_sha256[:12]}...)")
    return spec_from_json(replay.spec, replay.source, inputs=common.load_inputs(sources, config))


def prepare(args: argparse.Namespace, given: set[str] | None = None, *,
            others: list[tuple[str, str]] = ()) -> Job:
    """Resolves and validates the run, loads every input and checks every destination; raises
    NSTError before any compute."""
    given = set() if given is None else given
    if args.resume is not None and args.rerun is not None:
        raise NSTError("give --resume or --rerun, not both")
    replay, resume, stop_at = None, None, None
    if args.resume is not None or args.rerun is not None:
        replay, dest, resume, stop_at = _replayed(args, given)
        sources = replay.sources
    else:
        sources = common.sources_of(args).absolute()
        dest = destinations_of(args, args.output)
    replayed = [("image being rerun", args.rerun)] if args.rerun is not None else []
    outputs.check_destinations(dest, sources.files() + list(others) + replayed)
    vgg = common.load_vgg(sources.vgg)
    spec = _spec(args, replay, sources, vgg)
    memory = check_memory(spec.config, spec.plan.canvas, spec.plan.largest_style_shape)
    record = record_of(spec, sources, vgg)
    for path in [dest.output] + ([dest.preview] if dest.preview else []):
        files.check_record_fits(record, files.image_format(path))
        files.check_output_size(path, spec.plan.shape)
    if stop_at is not None and not 1 <= stop_at <= spec.total:
        raise NSTError(f"the run record of {args.rerun}: 'step' {stop_at} is outside 1..{spec.total}")
    job = Job(spec, sources, dest, vgg, record, memory, resume, stop_at)
    if resume is not None:
        job.start = job.run_step(resumed_level(resume, spec.sizes), resume.step)
    if not args.dry_run:  # only once every check passed: a refused run creates nothing
        enable_compilation_cache(args.compile_cache)
    return job


def dry_run(job: Job) -> dict[str, Any]:
    """What ``--dry-run`` prints: the spec, the sources, the memory estimate, the programs it compiles
    and where it would write."""
    memory = job.memory
    canvases = {level.shape for level in job.spec.levels}
    dest = job.dest
    return {
        "spec": job.spec.to_json(), "sources": job.sources.to_json(), "vgg": job.record["vgg"],
        "memory": {"estimate_bytes": int(memory["total"]), "parts": {k: int(v) for k, v in memory.items()}},
        # The optimisation's programs: a start (targets and states) and a chunk of steps per level shape.
        # Small programs (resizing, the noise start) come on top.
        "programs": {"optimisation": 2 * len(canvases), "levels": len(job.spec.levels)},
        "writes": {"output": str(dest.output), "checkpoint": str(dest.checkpoint),
                   "checkpoint_when": "every --checkpoint-every steps" if dest.checkpoint_every else "if interrupted",
                   "last_good": str(outputs.last_good_path(dest.output)), "preview": dest.preview,
                   "intermediate": str(outputs.intermediate_path(dest.output, 0)).replace("00000", "<step>")
                   if dest.save_every else None, "overwrite": dest.overwrite},
        "resume_at_step": job.start,
    }


class Interrupted(KeyboardInterrupt):
    """Raised from the progress callback once a checkpoint has been written after a signal."""


class Reached(Exception):
    """Raised from the progress callback when a rerun reaches the step of the image it remakes."""


def main(argv: list[str] | None = None) -> int:
    """The ``nst-jax`` console script (``nst-jax serve ...``: the studio, :mod:`nst_jax.studio._serve`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from nst_jax.studio._serve import main as serve

        return serve(argv[1:])
    # jaxlib's CPU LAPACK kernels (eigh, used by the W2 style loss) run on OpenBLAS, whose own thread pool
    # competes with XLA's: measured 0.02 s vs 0.8-3 s per 512x512 eigh on 2 busy cores. One OpenBLAS
    # thread unless the user chose otherwise; set before jax makes its first LAPACK call.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return common.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args, given = parse(argv)
    common.check_environment()
    common.start_backend()
    if isinstance(args.content, list):
        return run_batch(args, given)
    job = prepare(args, given)
    if args.dry_run:
        print(json.dumps(dry_run(job), indent=1))
        return EXIT_OK
    if job.resume is not None:
        common.say(f"resuming {job.dest.resume} at step {job.start} of {job.total}; writing {job.dest.output}")
    with CompileStats() as stats:
        code = run_job(job)
    common.say(stats.summary())
    return code


def run_job(job: Job, compiled: bool = False) -> int:
    """Runs one checked job (``compiled``: an earlier job of this process ran its programs already)."""
    h, w = job.spec.plan.shape[:2]
    if len(job.spec.levels) > 1:
        common.say(f"{common.plural(len(job.spec.levels), 'scale')}, longest sides "
                   f"{', '.join(map(str, job.spec.sizes))} px, {', '.join(map(str, job.spec.iterations))} iterations")
    if len(job.spec.levels) == 1:  # a run of several levels says so level by level (run_levels)
        common.say(f"running {w}x{h} with the programs compiled already ..." if compiled
                   else f"compiling for {w}x{h} ...")
    return run_levels(job)


def run_batch(args: argparse.Namespace, given: set[str]) -> int:
    """Several content photos, one style: every run checked first, then each run on its own."""
    runs = batch.split(args)
    contents = [("content image", content) for content, _ in runs]
    jobs = []
    for content, output in runs:
        one = argparse.Namespace(**{**vars(args), "content": content, "output": output})
        jobs.append(prepare(one, given, others=contents))
    outputs.check_batch([(job.sources.content, job.dest) for job in jobs])
    if args.dry_run:
        print(json.dumps([dry_run(job) for job in jobs], indent=1))
        return EXIT_OK
    seen = set()
    with CompileStats() as stats:
        for i, job in enumerate(jobs, 1):
            common.say(f"[{i}/{len(jobs)}] {job.sources.content} -> {job.dest.output}")
            canvas = job.spec.plan.canvas
            code = run_job(job, compiled=len(job.spec.levels) == 1 and canvas in seen)
            seen.add(canvas)
            if code != EXIT_OK:
                return code
    common.say(stats.summary())
    return EXIT_OK


def _saved_state(job: Job, writer: outputs.Writer) -> str:
    if writer.has_checkpoint():
        saved = writer.checkpoint_path
        return f"the last checkpoint is {saved}; resume with: nst-jax --resume {saved}"
    return "no checkpoint was saved"


def _with_state(job: Job, writer: outputs.Writer, err: BaseException) -> BaseException:
    """The exception that stopped a run, with a note of what was saved (the exit code is
    :func:`nst_jax.cli._common.exit_code`'s)."""
    if isinstance(err, Interrupted):
        return err
    if isinstance(err, NumericalError):
        path = outputs.last_good_path(job.dest.output)
        step = job.run_step(err.level, err.step)
        try:
            writer.image(path, err.image, step=step, last_good=True)
            err.add_note(f"last finite image (step {step}) saved to {path}")
        except OutputExists as clash:
            err.add_note(f"last finite image (step {step}) saved to {clash.saved_as} ({path} appeared during the "
                         "run and was kept)")
        return err
    if isinstance(err, KeyboardInterrupt):
        err = KeyboardInterrupt("interrupted twice, stopped at once")
    if isinstance(err, KeyboardInterrupt) or common.environment_fault(err) is not None:
        err.add_note(_saved_state(job, writer))
    return err


def run_levels(job: Job) -> int:
    """The run, every level of it: saves, checkpoints and signals count the run's steps."""
    dest = job.dest
    writer, notes = outputs.Writer(job), {**job.record, "output": str(dest.output)}
    stop = 0 if job.stop_at is None else job.level_step(job.stop_at)[1]
    seconds: dict[int, float] = {}  # each level's optimisation time so far
    levels = job.spec.levels
    began: dict[int, float] = {}  # when each level began (its compiling, then its steps)
    compiling: list[float] = []  # the first level's compile time: the estimate for each level after it
    with common.SignalFlag() as flag, common.Bar(job.total, initial=job.start) as bar:
        def on_level(level):
            began[level] = time.perf_counter()
            if len(levels) > 1:
                h, w = levels[level].shape
                when = f" (begun while level {level} ran)" if level > min(began) else ""
                bar.write(f"level {level + 1} of {len(levels)}: {w}x{h}, "
                          f"{common.plural(levels[level].iterations, 'iteration')}; compiling{when} ...")

        def on_chunk(level, progress):
            step, seconds[level] = job.run_step(level, progress.step), progress.seconds
            if not compiling:
                compiling.append(max(time.perf_counter() - began[level] - progress.seconds, 0.0))
            # The next level's programs compile in the background from about when this level began.
            ahead = max(compiling[0] - (time.perf_counter() - began[level]), 0.0) if level + 1 < len(levels) else 0.0
            pending = ahead + compiling[0] * max(len(levels) - 2 - level, 0)
            bar.update(step, sum(seconds.values()), pending, loss=f"{progress.terms['total']:.4g}")
            if job.stop_at is not None and step == job.stop_at:
                raise Reached(np.asarray(progress.image))
            if dest.save_every and progress.step % dest.save_every == 0 and step < job.total:
                writer.intermediate(step, np.asarray(progress.image))
            writer.preview(step, progress.image, progress.step)
            periodic = dest.checkpoint_every and (progress.step % dest.checkpoint_every == 0
                                                  or progress.step == progress.iterations)
            if periodic or flag.signum is not None or (job.resume and step == job.total):
                writer.checkpoint(progress, notes)
            if flag.signum is not None and step < job.total:
                saved = writer.checkpoint_path
                raise Interrupted(f"interrupted at step {step} of {job.total}; checkpoint saved to "
                                  f"{saved}; resume with: nst-jax --resume {saved}")

        try:
            result = run_spec(job.vgg, job.spec, callback=on_chunk, resume=job.resume,
                              sync_every=(*dest.sync_every, stop), on_level=on_level)
        except Reached as reached:
            bar.close()
            writer.image(dest.output, np.clip(reached.args[0], 0.0, 1.0), step=job.stop_at)
            with common.written(dest.output):
                common.say(f"wrote {dest.output} (the run at step {job.stop_at})")
            writer.check_conflicts()
            return EXIT_OK
        except BaseException as err:  # noqa: B036 - signals, divergence and system faults note what was saved
            bar.close()
            raise _with_state(job, writer, err) from None
    writer.image(dest.output, result.image)
    with common.written(dest.output):
        _summary(job, result)
    writer.check_conflicts()
    return EXIT_OK


def _summary(job: Job, result) -> None:
    h, w = result.image.shape[:2]
    common.say(f"wrote {job.dest.output} ({w}x{h})")
    steps = job.total - job.start
    evaluations = sum(
        int(done.history["evaluations_per_step"][job.spec.iterations[level] - job.steps_now(level):].sum())
        for level, done in enumerate(result.levels) if done is not None)
    common.say(f"time per iteration: {result.run_seconds / max(steps, 1):.3f} s "
               f"({common.plural(steps, 'iteration')}, {common.plural(evaluations, 'loss evaluation')}, "
               f"in {result.run_seconds:.1f} s; compile {result.compile_seconds:.1f} s)")
    common.say(common.loss_line({k: v[-1] for k, v in result.levels[-1].history.items()}))


if __name__ == "__main__":
    sys.exit(main())
