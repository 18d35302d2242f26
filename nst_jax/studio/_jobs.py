"""The studio's jobs: a request mapped once to the command line's options, run by the same library calls.

A job is a photo, one or more paintings and a few settings (:class:`JobRequest`). Its members are
every painting times every style-weight factor, exactly as ``nst-jax-sweep`` makes them: the
request is written as that tool's arguments (:meth:`JobRequest.sweep_argv`), parsed by its parser
and resolved by its functions (:func:`nst_jax.cli._common.run_config`,
:func:`nst_jax.cli._sweep.members_of`, :func:`nst_jax.cli._sweep.member_spec`, so
:func:`nst_jax.make_spec`), with the inputs loaded by :func:`nst_jax.cli._common.load_inputs`, the
command line's guards included. A job of one member runs through :func:`nst_jax.run_spec` (the
``nst-jax`` run: checkpointed when the server stops, resumed when it starts); a job of several
through :func:`nst_jax.sweep_specs` (the ``nst-jax-sweep`` run: started again after a stop, since a
sweep keeps no checkpoint). :class:`Studio` runs the jobs one at a time, in a queue, in one worker
thread, so compiled programs stay in the process between jobs: a second job of the same shapes
compiles nothing.

The jobs directory holds one folder per job, named by its random id; nothing a client sends is
used as a path (the names of its files are kept for display only):

* ``job.json``: the request, the display names, the state, the equivalent commands;
* ``photo.img``, ``painting_N.img``: the uploaded files as sent;
* ``preview.png`` (``preview_NN.png`` per member of a sweep): the newest image while it runs;
* ``result.png`` (``member_NN.png``): the results; every image carries its member's run record
  (``nst-jax --rerun`` makes it again);
* ``checkpoint.npz``: where a one-member job stopped with the server.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import gc
import json
import math
import pathlib
import re
import secrets
import shlex
import shutil
import threading
import time
from typing import Any

import numpy as np

from nst_jax import RunSpec, files, run_spec, sweep_specs
from nst_jax._src.driver import to_host
from nst_jax._src.multiscale import _sweep_groups
from nst_jax.cli import _common as common
from nst_jax.cli import _sweep as sweep
from nst_jax.cli._request import record_of
from nst_jax.config import COLOURS, DEFAULT_PRESET, PRESETS
from nst_jax.errors import NSTError, clean
from nst_jax.host import check_memory, resumed_level

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
MAX_MEMBERS = 36  # paintings x factors of one job: a grid a page can show
MAX_PAINTINGS = 8
JOB_ID = re.compile(r"[0-9a-f]{32}")
PHOTO = "photo.img"
CHECKPOINT = "checkpoint.npz"


def painting_file(i: int) -> str:
    return f"painting_{i}.img"


def member_file(k: int, preview: bool = False) -> str:
    return f"{'preview' if preview else 'member'}_{k:02d}.png"


def display_name(name: Any, fallback: str) -> str:
    """A client's file name, for display only: its last path component, printable, at most 80 characters."""
    text = clean(re.split(r"[\\/]", str(name or ""))[-1]).strip()
    return text[:80] or fallback


def _float32_text(value: Any) -> str:
    """A float32 as the shortest decimal that reads back as the same float32 (what a command line takes)."""
    return str(np.float32(value))


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What a job asks for, checked; every field maps to a command-line option.

    Attributes:
        preset: A key of :data:`nst_jax.config.PRESETS` (``--preset``).
        size: The output's longest side (``--size``).
        factors: Style-weight factors (``nst-jax-sweep --style-weight-factors``).
        seed: The noise seed (``--seed``).
        iterations: Steps at every level, or None for the preset's (``--iterations``).
        preserve_colour: One of :data:`nst_jax.config.COLOURS` (``--preserve-colour``).
        paintings: How many paintings were given.
    """

    preset: str = DEFAULT_PRESET
    size: int = files.DEFAULT_SIZE
    factors: tuple[float, ...] = (1.0,)
    seed: int = 0
    iterations: int | None = None
    preserve_colour: str = common.CONFIG_DEFAULTS["preserve_colour"]
    paintings: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "factors", tuple(self.factors))
        if self.preset not in PRESETS:
            raise NSTError(f"preset must be one of {', '.join(PRESETS)}, got {str(self.preset)[:40]!r}")
        if self.preserve_colour not in COLOURS:
            raise NSTError(f"preserve_colour must be one of {', '.join(COLOURS)}, "
                           f"got {str(self.preserve_colour)[:40]!r}")
        _integer(self.size, "size", files.MIN_SIZE, files.MAX_SIZE)
        _integer(self.seed, "seed", *common.INT_RANGE)
        if self.iterations is not None:
            _integer(self.iterations, "iterations", 1, 100_000)
        _integer(self.paintings, "the number of paintings", 1, MAX_PAINTINGS)
        if not self.factors or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f)
                                       and f >= 0 for f in self.factors):
            raise NSTError("style_weight_factor must be one or more finite numbers >= 0")
        if self.members > MAX_MEMBERS:
            raise NSTError(f"{self.members} members ({self.paintings} paintings x {len(self.factors)} factors) is "
                           f"more than the {MAX_MEMBERS} a studio job runs")

    @property
    def members(self) -> int:
        return self.paintings * len(self.factors)

    def options(self) -> list[str]:
        """The options both tools take alike."""
        return (["--preset", self.preset, "--size", str(self.size), "--preserve-colour", self.preserve_colour]
                + ([] if self.iterations is None else ["--iterations", str(self.iterations)]))

    def sweep_argv(self, photo: pathlib.Path, paintings: list[pathlib.Path], extra: list[str]) -> list[str]:
        """``nst-jax-sweep``'s arguments for this job (``extra``: the server's own options, e.g. layers)."""
        return [str(photo), *map(str, paintings), *self.options(), "--seeds", str(self.seed),
                "--style-weight-factors", *map(repr, map(float, self.factors)), *extra,
                "--output-dir", str(photo.parent / "sweep")]

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "factors": list(self.factors)}

    @classmethod
    def from_json(cls, data: Any) -> JobRequest:
        if not isinstance(data, dict) or not set(data) <= {f.name for f in dataclasses.fields(cls)}:
            raise NSTError("the stored request is malformed")
        return cls(**data)


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise NSTError(f"{what} must be an integer from {low} to {high}, got {str(value)[:40]}")
    return value


@dataclasses.dataclass
class Prepared:
    """A job resolved as the command line resolves it: its members, their specs and records, and the
    equivalent commands."""

    members: list[sweep.Member]
    specs: list[RunSpec]
    records: list[dict[str, Any]]
    commands: list[str]  # each member's ``nst-jax`` command
    command: str  # the job's: ``nst-jax`` for one member, ``nst-jax-sweep`` for several


def _parsed(argv: list[str]):
    try:
        return sweep.parse(argv)
    except SystemExit:  # the request's checks make this unreachable; never let argparse end the server
        raise NSTError("the settings do not form a valid command") from None


def prepare(folder: pathlib.Path, request: JobRequest, vgg: Any, extra: list[str]) -> Prepared:
    """Resolves and checks a job whose inputs are in ``folder``, as ``nst-jax-sweep`` does, before any compute.

    Raises:
        NSTError: For an input that does not load (not an image, truncated, a bomb, too small), or settings
            the run refuses (memory included).
    """
    photo = folder / PHOTO
    paintings = [folder / painting_file(i) for i in range(request.paintings)]
    args = _parsed(request.sweep_argv(photo, paintings, extra))
    config = common.run_config(args, iterations=None, num_styles=1)
    members = sweep.members_of(args, sweep.grids_of(args))
    sources = common.sources_of(args).absolute()
    inputs = {p: common.load_inputs(dataclasses.replace(sources, style=(p,)), config) for p in args.style}
    specs = [sweep.member_spec(args, m, config, inputs[m.painting]) for m in members]
    import jax

    per_device = -(-len(specs) // jax.device_count())
    for spec in specs:
        check_memory(spec.config, spec.plan.canvas, spec.plan.largest_style_shape, members=per_device)
    records = [record_of(spec, dataclasses.replace(sources, style=(m.painting,)), vgg)
               for spec, m in zip(specs, members, strict=True)]
    commands = [_member_command(request, photo, pathlib.Path(m.painting), spec, m, extra)
                for m, spec in zip(members, specs, strict=True)]
    command = commands[0] if len(specs) == 1 else shlex.join(
        ["nst-jax-sweep", *request.sweep_argv(photo, paintings, extra)])
    return Prepared(members, specs, records, commands, command)


def _member_command(request: JobRequest, photo: pathlib.Path, painting: pathlib.Path, spec: RunSpec,
                    member: sweep.Member, extra: list[str]) -> str:
    """The ``nst-jax`` command that makes this member alone (a factor other than 1 as the levels' style weights)."""
    argv = ["nst-jax", str(photo), str(painting), *request.options(), "--seed", str(member.seed), *extra]
    if member.factor != 1.0:
        argv += ["--scale-style-weights", *(_float32_text(level.weights.style) for level in spec.levels)]
    return shlex.join(argv)


class Cancelled(Exception):
    """Raised from a job's progress callback when the job is cancelled."""


class Stopped(Exception):
    """Raised from a job's progress callback when the server stops (after a one-member job's checkpoint)."""


@dataclasses.dataclass
class Job:
    """A job's state; ``version`` grows with every change, for the page's event stream."""

    id: str
    folder: pathlib.Path
    request: JobRequest
    names: dict[str, Any]
    created: float
    state: str = "queued"
    error: str | None = None
    step: int = 0
    total: int = 0
    level: int = 0
    levels: int = 0
    loss: float | None = None
    eta_s: float | None = None
    resumed_at: int | None = None
    command: str | None = None
    commands: list[str] = dataclasses.field(default_factory=list)
    labels: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    version: int = 0
    cancel: bool = False
    prepared: Prepared | None = None

    @property
    def sweep(self) -> bool:
        return self.request.members > 1

    def status(self) -> dict[str, Any]:
        """What ``GET /api/jobs/{id}`` answers."""
        return {"id": self.id, "state": self.state, "step": self.step, "total": self.total, "loss": self.loss,
                "eta_s": self.eta_s, "error": self.error, "level": self.level, "levels": self.levels,
                "members": self.request.members, "sweep": self.sweep, "created": self.created, "names": self.names,
                "labels": self.labels, "request": self.request.to_json(), "command": self.command,
                "commands": self.commands, "resumed_at": self.resumed_at, "version": self.version}

    def stored(self) -> dict[str, Any]:
        keys = ("id", "state", "error", "step", "total", "levels", "loss", "created", "names", "command", "commands",
                "labels")
        return {**{k: getattr(self, k) for k in keys}, "request": self.request.to_json()}


def _job_from_json(folder: pathlib.Path, data: Any) -> Job:
    """A job read back from its ``job.json`` (untrusted: fields checked)."""
    if not isinstance(data, dict) or data.get("id") != folder.name or data.get("state") not in STATES:
        raise NSTError("malformed job.json")
    request = JobRequest.from_json(data.get("request"))
    names = data.get("names") if isinstance(data.get("names"), dict) else {}
    shown = names.get("paintings") if isinstance(names.get("paintings"), list) else []
    job = Job(folder.name, folder, request, {
        "photo": display_name(names.get("photo"), "photo"),
        "paintings": [display_name(shown[i] if i < len(shown) else None, f"painting {i + 1}")
                      for i in range(request.paintings)]}, 0.0)
    for key, kind in (("state", str), ("error", str), ("step", int), ("total", int), ("levels", int),
                      ("loss", float), ("created", float), ("command", str)):
        value = data.get(key)
        if isinstance(value, kind) or (kind is float and isinstance(value, int)):
            setattr(job, key, value)
    if isinstance(data.get("commands"), list) and all(isinstance(c, str) for c in data["commands"]):
        job.commands = data["commands"]
    if isinstance(data.get("labels"), list):
        job.labels = [label for label in data["labels"] if isinstance(label, dict)]
    return job


class Studio:
    """The jobs directory, the queue and the worker thread that runs the jobs one at a time.

    Args:
        jobs_dir: Where the jobs live (created); jobs found there are listed, and those that were
            queued or running are queued again (a one-member job resumes from its checkpoint).
        vgg: VGG-19 parameters (loaded on first use if None).
        extra: Further ``nst-jax`` options every job takes (the server's, e.g. layers); never a client's.
    """

    def __init__(self, jobs_dir: str | pathlib.Path, *, vgg: Any = None, extra: list[str] | tuple[str, ...] = ()):
        self.jobs_dir = pathlib.Path(jobs_dir).expanduser().absolute()
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.extra = list(extra)
        self._vgg, self._vgg_lock = vgg, threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.wake = threading.Condition()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._load()

    @property
    def vgg(self):
        with self._vgg_lock:
            if self._vgg is None:
                self._vgg = common.load_vgg("original")
            return self._vgg

    # --- the jobs directory ----------------------------------------------------------------------------------

    def _load(self) -> None:
        found = []
        for folder in self.jobs_dir.iterdir():
            if not (JOB_ID.fullmatch(folder.name) and folder.is_dir()):
                continue
            try:
                found.append(_job_from_json(folder, json.loads((folder / "job.json").read_text())))
            except (OSError, ValueError, NSTError):
                continue  # a submission that never completed, or not a job: left alone, not listed
        for job in sorted(found, key=lambda j: j.created):
            self.jobs[job.id] = job
            if job.state not in FINISHED:
                job.state = "queued"
                self.queue.append(job.id)

    def _save(self, job: Job) -> None:
        job.version += 1
        files.save_json(job.folder / "job.json", job.stored())

    def _touch(self, job: Job) -> None:
        job.version += 1

    # --- submitting, cancelling, looking up ------------------------------------------------------------------

    def submit(self, request: JobRequest, photo: bytes, paintings: list[bytes], names: dict[str, Any]) -> Job:
        """A new job from uploaded bytes: stored, resolved and checked (nothing kept if not), then queued.

        Raises:
            NSTError: Naming the upload or setting at fault (never a server path).
        """
        if len(paintings) != request.paintings:
            raise NSTError(f"{len(paintings)} paintings sent for a request of {request.paintings}")
        job_id = secrets.token_hex(16)
        folder = self.jobs_dir / job_id
        folder.mkdir()
        try:
            for name, data in [(PHOTO, photo)] + [(painting_file(i), p) for i, p in enumerate(paintings)]:
                (folder / name).write_bytes(data)
                _check_upload(folder / name, request.size)
            prepared = prepare(folder, request, self.vgg, self.extra)
        except BaseException as err:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, NSTError):
                raise NSTError(_without_paths(str(err), folder, names)) from None
            raise
        job = Job(job_id, folder, request, names, time.time())
        self._resolved(job, prepared)
        with self.wake:
            self.jobs[job.id] = job
            self._save(job)
            self.queue.append(job.id)
            self.wake.notify()
        return job

    def carry_on(self, job_id: str, member: int, size: int) -> Job:
        """A new job whose spec is member ``member``'s of job ``job_id`` (painting, factor, seed) at ``size``."""
        job = self.get(job_id)
        if not 0 <= member < job.request.members:
            raise KeyError(member)
        factors, index = len(job.request.factors), member
        painting, factor = index // factors, job.request.factors[index % factors]
        request = dataclasses.replace(job.request, size=size, factors=(factor,), paintings=1)
        shown = job.names.get("paintings") or []
        names = {"photo": job.names.get("photo", "photo"),
                 "paintings": [shown[painting] if painting < len(shown) else "painting"]}
        return self.submit(request, (job.folder / PHOTO).read_bytes(),
                           [(job.folder / painting_file(painting)).read_bytes()], names)

    def get(self, job_id: str) -> Job:
        """The job of this id (KeyError if none: ids are looked up, never used as paths)."""
        return self.jobs[job_id]

    def listed(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> Job:
        """Cancels a queued job at once, a running one at its next chunk of steps; a finished one stays as it is."""
        job = self.get(job_id)
        with self.wake:
            if job.state == "queued":
                if job_id in self.queue:
                    self.queue.remove(job_id)
                job.state = "cancelled"
                self._save(job)
            elif job.state == "running":
                job.cancel = True
        return job

    def image(self, job_id: str, member: int | None = None) -> bytes | None:
        """The newest image of a job (or of a sweep's member): the result, else the preview; None before either."""
        job = self.get(job_id)
        if member is not None and not 0 <= member < job.request.members:
            raise KeyError(member)
        if not job.sweep:  # its one member's image is the job's
            names = ["result.png", "preview.png"]
        else:
            names = [] if member is None else [member_file(member), member_file(member, preview=True)]
        for name in names:
            try:
                return (job.folder / name).read_bytes()
            except FileNotFoundError:
                continue
        return None

    # --- the worker ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="nst-jax-studio", daemon=True)
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops the worker: a running one-member job checkpoints at its next chunk, and every unfinished job
        stays queued in the jobs directory (for the next start)."""
        with self.wake:
            self.stopping.set()
            self.wake.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self.wake:
                while not self.queue and not self.stopping.is_set():
                    self.wake.wait()
                if self.stopping.is_set():
                    return
                job = self.jobs[self.queue.popleft()]
                job.state = "running"
                self._save(job)
            self._run(job)

    def _resolved(self, job: Job, prepared: Prepared) -> None:
        spec = prepared.specs[0]
        groups = len(_sweep_groups(prepared.specs)) if job.sweep else 1
        job.prepared, job.command, job.commands = prepared, prepared.command, prepared.commands
        job.total, job.levels = spec.total * groups, len(spec.levels)
        paintings = job.names.get("paintings", [])
        factors = len(job.request.factors)
        job.labels = [{"painting": paintings[k // factors] if k // factors < len(paintings) else None,
                       "factor": m.factor, "seed": m.seed} for k, m in enumerate(prepared.members)]

    def _run(self, job: Job) -> None:
        try:
            if job.prepared is None:  # a job found in the jobs directory
                self._resolved(job, prepare(job.folder, job.request, self.vgg, self.extra))
            (self._run_sweep if job.sweep else self._run_one)(job, job.prepared)
            job.state, job.eta_s = "done", 0.0
        except Cancelled:
            job.state = "cancelled"
        except Stopped:
            job.state = "queued"  # the next start runs it again (resuming from its checkpoint)
        except BaseException as err:  # noqa: B036 - a failed job never takes the server down
            job.state, job.error = "failed", common.exit_code(err)[1]
        finally:
            job.prepared, job.cancel = None, False
            if job.state != "queued":
                (job.folder / CHECKPOINT).unlink(missing_ok=True)
            release_memory()
            self._save(job)

    def _progress(self, job: Job, step: int, loss: float, seconds: float, start: int) -> None:
        job.step, job.loss = step, loss
        job.eta_s = (job.total - step) * seconds / (step - start) if step > start and seconds > 0 else None
        self._touch(job)

    def _run_one(self, job: Job, prepared: Prepared) -> None:
        spec, record = prepared.specs[0], prepared.records[0]
        checkpoint = job.folder / CHECKPOINT
        resume = files.load_checkpoint(checkpoint) if checkpoint.exists() else None
        start = 0 if resume is None else sum(spec.iterations[:resumed_level(resume, spec.sizes)]) + resume.step
        job.step, job.resumed_at = start, None if resume is None else start
        seconds: dict[int, float] = {}

        def on_chunk(level, progress):
            step, seconds[level] = sum(spec.iterations[:level]) + progress.step, progress.seconds
            job.level = level
            files.save_image(job.folder / "preview.png", np.clip(np.asarray(progress.image), 0.0, 1.0),
                             record={**record, "step": step})
            self._progress(job, step, float(progress.terms["total"]), sum(seconds.values()), start)
            if self.stopping.is_set() and step < spec.total:
                files.save_checkpoint(checkpoint, progress.checkpoint(record))
                raise Stopped
            if job.cancel:
                raise Cancelled

        result = run_spec(self.vgg, spec, callback=on_chunk, resume=resume)
        files.save_image(job.folder / "result.png", result.image, record=record)
        (job.folder / "preview.png").unlink(missing_ok=True)

    def _run_sweep(self, job: Job, prepared: Prepared) -> None:
        specs, records = prepared.specs, prepared.records
        done: dict[tuple[int, tuple[int, ...]], int] = {}
        seconds: dict[tuple[int, tuple[int, ...]], float] = {}
        job.step = 0

        def on_chunk(level, members, progress):
            done[level, tuple(members)], seconds[level, tuple(members)] = progress.step, progress.seconds
            job.level = level
            images = to_host(progress.image)
            for j, k in enumerate(members):
                h, w = specs[k].levels[level].shape
                files.save_image(job.folder / member_file(k, preview=True), np.clip(images[j, :h, :w], 0.0, 1.0),
                                 record={**records[k], "step": progress.step})
            loss = float(np.mean(np.asarray(progress.terms["total"])[:len(members)]))
            self._progress(job, sum(done.values()), loss, sum(seconds.values()), 0)
            if self.stopping.is_set():
                raise Stopped
            if job.cancel:
                raise Cancelled

        results = sweep_specs(self.vgg, specs, callback=on_chunk)
        for k, image in enumerate(results[-1].images):
            files.save_image(job.folder / member_file(k), image, record=records[k])
            (job.folder / member_file(k, preview=True)).unlink(missing_ok=True)


def release_memory() -> None:
    """Collects garbage and hands the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Between jobs the server otherwise keeps what a run freed: measured 1110 MiB of RSS after a 256 px
    job, 573 MiB once trimmed (scripts/studio_benchmark.py)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _check_upload(path: pathlib.Path, size: int) -> None:
    """The command line's checks of an input file (:func:`nst_jax.files.load_image` at the run's size), with the
    file named in every refusal (a size refusal names only the pixels)."""
    try:
        files.load_image(path, size)
    except NSTError as err:
        raise err if str(path) in str(err) else NSTError(f"{path}: {err}") from None


def _without_paths(message: str, folder: pathlib.Path, names: dict[str, Any]) -> str:
    """An error about a stored upload, naming the upload as the client sent it instead of the server's path."""
    paintings = names.get("paintings", [])
    for i in range(MAX_PAINTINGS):
        shown = paintings[i] if i < len(paintings) else f"painting {i + 1}"
        message = message.replace(str(folder / painting_file(i)), f"painting {shown!r}")
    return message.replace(str(folder / PHOTO), f"photo {names.get('photo', 'photo')!r}").replace(str(folder), ".")
