"""Compile-time accounting on every backend: XLA programs built, cache hits and misses, seconds.

    from nst_jax.compilation import CompileStats

    with CompileStats() as stats:
        result = nst_jax.stylize(...)
    print(stats.summary())
    # compiled 3 XLA programs (2 cache misses, 1 hit): trace 0.4 s, lower 0.2 s, compile 2.1 s
    for record in stats.records:          # one per XLA program: name, input shapes, seconds, hit
        print(record)

The figures come from ``jax.monitoring``'s events (the same ones JAX's own metrics use):

- ``/jax/core/compile/jaxpr_trace_duration``: tracing a Python function to a jaxpr;
- ``/jax/core/compile/jaxpr_to_mlir_module_duration``: lowering the jaxpr to an MLIR module;
- ``/jax/core/compile/backend_compile_duration``: one XLA program handed to the backend, compiled
  or loaded from the persistent cache (one such event is one program: :attr:`CompileStats.programs`);
- ``/jax/compilation_cache/compile_requests_use_cache`` and ``/jax/compilation_cache/cache_hits``:
  whether that program went through the persistent cache, and whether it was found there
  (a miss is a request without a hit while ``jax_compilation_cache_dir`` is set: JAX asks the
  cache also when it has no directory; its ``cache_misses`` event is recorded only when an
  entry is written, so it is not read);
- ``/jax/compilation_cache/compile_time_saved_sec``: compile time a hit saved, by JAX's record.

The input shapes of each program come from JAX's own "Compiling <name> with global shapes and
types" debug log record, caught by a filter on that logger while a :class:`CompileStats` is open
(the filter passes on to the usual handlers only what would have been shown without it).

Listeners are process-global and not every JAX version can remove them, so they are registered
once, on first use (importing this module registers nothing), and each :class:`CompileStats`
reads the events recorded between its start and its end. Programs compiled by any thread count.
An event name a JAX version does not emit simply reads as zero.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from typing import Any

from nst_jax._src.cache import default_cache_dir, enable_compilation_cache

__all__ = ["CompileStats", "ProgramRecord", "default_cache_dir", "enable_compilation_cache"]

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
TIME_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"

# Loggers that may emit "Compiling <module> with global shapes and types [...]" (its home moved between versions).
_SHAPE_LOGGERS = ("jax._src.interpreters.pxla", "jax._src.pjit", "jax._src.dispatch")
_COMPILING = re.compile(r"Compiling (\S+) with global shapes and types (.*?)\. Argument mapping", re.S)


@dataclasses.dataclass(frozen=True)
class ProgramRecord:
    """One XLA program handed to the backend.

    Attributes:
        name: The program's module name (``jit_<function name>``).
        shapes: Its input shapes and types, as JAX prints them (``"f32[384,512,3], ..."``), or ``"?"``.
        seconds: Backend time: compiling it, or loading it from the persistent cache.
        cache: ``"hit"`` (loaded from the persistent cache), ``"miss"`` (compiled, then written
            there) or ``"off"`` (compiled; the persistent cache was not used for it).
        saved_seconds: For a hit, the compile time JAX recorded that the hit saved.
    """

    name: str
    shapes: str
    seconds: float
    cache: str
    saved_seconds: float = 0.0


class _Collector:
    """The process-wide listener: an append-only log of programs and running totals."""

    def __init__(self) -> None:
        self.lock: threading.Lock = threading.Lock()
        self.records: list[ProgramRecord] = []
        self.totals: dict[str, float] = {"trace": 0.0, "lower": 0.0, "compile": 0.0, "saved": 0.0}
        self.counts: dict[str, int] = {"traces": 0, "lowerings": 0}
        # Per thread: what the program now being compiled has recorded so far.
        self.pending: threading.local = threading.local()
        self.shapes: dict[str, list[str]] = {}

    def _pending(self) -> dict[str, Any]:
        state = getattr(self.pending, "state", None)
        if state is None:
            state = self.pending.state = {"request": False, "hit": False, "saved": 0.0}
        return state

    def on_event(self, event: str, **kwargs: Any) -> None:
        if event == CACHE_REQUEST_EVENT:
            self._pending()["request"] = True
        elif event == CACHE_HIT_EVENT:
            self._pending()["hit"] = True

    def on_duration(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == TRACE_EVENT:
            with self.lock:
                self.totals["trace"] += duration
                self.counts["traces"] += 1
        elif event == LOWER_EVENT:
            with self.lock:
                self.totals["lower"] += duration
                self.counts["lowerings"] += 1
        elif event == TIME_SAVED_EVENT:
            self._pending()["saved"] = float(duration)
        elif event == COMPILE_EVENT:
            state = self._pending()
            self.pending.state = None
            name = str(kwargs.get("fun_name", "?"))
            cache = "hit" if state["hit"] else "miss" if state["request"] and _cache_dir_set() else "off"
            with self.lock:
                queue = self.shapes.get(name)
                shapes = queue.pop(0) if queue else "?"
                self.records.append(ProgramRecord(name, shapes, float(duration), cache,
                                                  state["saved"] if state["hit"] else 0.0))
                self.totals["compile"] += duration
                self.totals["saved"] += state["saved"] if state["hit"] else 0.0

    def on_shapes(self, name: str, shapes: str) -> None:
        with self.lock:
            self.shapes.setdefault(name, []).append(shapes)

    def snapshot(self) -> tuple[int, dict[str, float], dict[str, int]]:
        with self.lock:
            return len(self.records), dict(self.totals), dict(self.counts)


def _cache_dir_set() -> bool:
    """Whether JAX's persistent cache has a directory (JAX asks the cache even when it has none)."""
    try:
        import jax

        return bool(jax.config.jax_compilation_cache_dir)
    except Exception:
        return True


_collector: _Collector | None = None
_register_lock = threading.Lock()


def collector() -> _Collector:
    """The process-wide collector, its listeners registered on the first call (idempotent)."""
    global _collector
    with _register_lock:
        if _collector is None:
            from jax import monitoring

            c = _Collector()
            monitoring.register_event_listener(c.on_event)
            monitoring.register_event_duration_secs_listener(c.on_duration)
            _collector = c
    return _collector


def _format_shapes(avals: Any) -> str:
    try:
        return ", ".join(a.str_short() if hasattr(a, "str_short") else str(a) for a in avals)
    except TypeError:
        return str(avals)


class _ShapeFilter(logging.Filter):
    """Catches JAX's "Compiling ... with global shapes" records; passes on only what the logger showed before."""

    def __init__(self, target: _Collector, threshold: int):
        super().__init__()
        self.target, self.threshold = target, threshold

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.msg if isinstance(record.msg, str) else ""
            if msg.startswith("Compiling %s with global shapes") and isinstance(record.args, tuple) \
                    and len(record.args) >= 2:
                self.target.on_shapes(str(record.args[0]), _format_shapes(record.args[1]))
            elif "with global shapes and types" in msg or "with global shapes and types" in record.getMessage():
                m = _COMPILING.search(record.getMessage())
                if m:
                    self.target.on_shapes(m.group(1), m.group(2))
        except Exception:  # accounting must never break a compilation
            pass
        return record.levelno >= self.threshold


_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")


def short_shapes(shapes: str, limit: int = 4) -> str:
    """A long list of input shapes as its count and the ``limit`` largest distinct ones."""
    arrays = _ARRAY.findall(shapes)
    if len(arrays) <= limit or not arrays:
        return shapes

    def size(item):
        n = 1
        for d in filter(None, item[1].split(",")):
            n *= int(d)
        return n

    # VGG parameters (3x3 kernels and their biases) would crowd out the images and states.
    params = [a for a in arrays if a[1].startswith("3,3,") and a[1].count(",") == 3]
    biases = [a for a in arrays if a[1] and "," not in a[1] and any(p[1].endswith("," + a[1]) for p in params)]
    rest = [a for a in arrays if a not in params and a not in biases] or arrays
    largest = sorted(dict.fromkeys(rest), key=size, reverse=True)[:limit]
    note = f" ({len(params)} conv kernels, {len(biases)} biases)" if params else ""
    return f"{len(arrays)} inputs{note}, largest " + ", ".join(f"{t}[{d}]" for t, d in largest)


class CompileStats:
    """Programs compiled or loaded, cache hits and misses, and seconds, between ``__enter__`` and ``__exit__``.

    Use as a context manager (nesting is fine: each reads its own window), or call
    :meth:`start` and :meth:`stop`. While open, the properties read up to now.

    Attributes:
        records: One :class:`ProgramRecord` per XLA program, in order.
        wall_seconds: Wall time between start and stop (or now).
    """

    def __init__(self, shapes: bool = True):
        self._shapes = shapes
        self._start: tuple[int, dict[str, float], dict[str, int]] | None = None
        self._end: tuple[int, dict[str, float], dict[str, int]] | None = None
        self._filters: list[tuple[logging.Logger, logging.Filter, int]] = []
        self._t0 = self._t1 = 0.0

    def start(self) -> CompileStats:
        c = collector()
        if self._shapes:
            for name in _SHAPE_LOGGERS:
                logger = logging.getLogger(name)
                threshold = logger.getEffectiveLevel()
                f = _ShapeFilter(c, threshold)
                logger.addFilter(f)
                self._filters.append((logger, f, logger.level))
                if threshold > logging.DEBUG:
                    logger.setLevel(logging.DEBUG)
        self._start, self._end = c.snapshot(), None
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> CompileStats:
        self._end = collector().snapshot()
        self._t1 = time.perf_counter()
        for logger, f, level in reversed(self._filters):
            logger.removeFilter(f)
            logger.setLevel(level)
        self._filters.clear()
        return self

    def __enter__(self) -> CompileStats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _window(self):
        if self._start is None:
            raise RuntimeError("CompileStats was not started")
        end = self._end or collector().snapshot()
        return self._start, end

    @property
    def records(self) -> list[ProgramRecord]:
        (i, _, _), (j, _, _) = self._window()
        with collector().lock:
            return list(collector().records[i:j])

    def seconds(self, what: str) -> float:
        """Seconds of ``"trace"``, ``"lower"``, ``"compile"`` (backend, cache loads included) or ``"saved"``."""
        (_, a, _), (_, b, _) = self._window()
        return b[what] - a[what]

    @property
    def programs(self) -> int:
        """XLA programs handed to the backend: compiled, or loaded from the persistent cache."""
        return len(self.records)

    @property
    def hits(self) -> int:
        return sum(r.cache == "hit" for r in self.records)

    @property
    def misses(self) -> int:
        return sum(r.cache == "miss" for r in self.records)

    @property
    def uncached(self) -> int:
        return sum(r.cache == "off" for r in self.records)

    @property
    def traces(self) -> int:
        (_, _, a), (_, _, b) = self._window()
        return b["traces"] - a["traces"]

    @property
    def wall_seconds(self) -> float:
        return (self._t1 if self._end is not None else time.perf_counter()) - self._t0

    def summary(self) -> str:
        """One line: ``compiled 3 XLA programs (2 cache misses, 1 hit): trace 0.4 s, lower 0.2 s, compile 2.1 s``."""
        n, hits, misses, off = self.programs, self.hits, self.misses, self.uncached
        parts = []
        if misses or hits:
            parts += [f"{misses} cache miss{'es' if misses != 1 else ''}", f"{hits} hit{'s' if hits != 1 else ''}"]
        if off:
            parts.append("persistent cache off" if not (misses or hits) else f"{off} uncached")
        cache = f" ({', '.join(parts)})" if parts else ""
        return (f"compiled {n} XLA program{'s' if n != 1 else ''}{cache}: trace {self.seconds('trace'):.1f} s, "
                f"lower {self.seconds('lower'):.1f} s, compile {self.seconds('compile'):.1f} s")

    def table(self, full_shapes: bool = False) -> str:
        """A plain-text table, one row per program: name, seconds, cache, input shapes (:func:`short_shapes`)."""
        rows = self.records
        width = max([len(r.name) for r in rows] + [7])
        lines = [f"{'program':<{width}} {'seconds':>8} {'cache':>5}  input shapes"]
        for r in rows:
            shapes = r.shapes if full_shapes else short_shapes(r.shapes)
            lines.append(f"{r.name:<{width}} {r.seconds:>8.2f} {r.cache:>5}  {shapes}")
        lines.append(self.summary())
        return "\n".join(lines)


def run_module(argv: list[str]) -> int:
    """``python -m nst_jax.compilation [--table] MODULE [ARGS...]``: ``MODULE.main(ARGS)`` under CompileStats.

    Prints the summary line (and with ``--table`` the per-program table) after the module's own
    output, e.g. ``python -m nst_jax.compilation nst_jax.cli._stylize --content a.jpg ...``.
    """
    import importlib
    import sys

    table = bool(argv) and argv[0] == "--table"
    argv = argv[1:] if table else argv
    if not argv:
        print("usage: python -m nst_jax.compilation [--table] MODULE [ARGS...]", file=sys.stderr)
        return 2
    module = importlib.import_module(argv[0])
    with CompileStats() as stats:
        try:
            code = module.main(argv[1:])
        finally:
            stats.stop()
            print(stats.table() if table else stats.summary(), flush=True)
    return int(code or 0)


if __name__ == "__main__":
    import sys

    sys.exit(run_module(sys.argv[1:]))
