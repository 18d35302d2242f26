"""``nst-jax serve``: the studio on a local port (uvicorn), until Ctrl-C.

  nst-jax serve                       http://127.0.0.1:8765/, jobs under ~/.cache/nst_jax/studio
  nst-jax serve --port 9000 --jobs-dir jobs/

SIGINT or SIGTERM stops it cleanly: a running one-member job writes its checkpoint at its next
chunk of steps and every unfinished job stays queued in the jobs directory; the next start resumes
them. Exit codes are the command line's (:mod:`nst_jax.cli._common`).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys

from nst_jax.cli import _common as common
from nst_jax.compilation import enable_compilation_cache
from nst_jax.errors import NSTError

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]


def default_jobs_dir() -> str:
    """``$XDG_CACHE_HOME/nst_jax/studio``, else ``~/.cache/nst_jax/studio``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nst_jax", "studio")


def build_parser():
    p = common.OneLineParser(prog="nst-jax serve", description="The studio in the browser: a local page that runs, "
                             "shows and sweeps nst-jax jobs, until Ctrl-C (running jobs checkpoint and resume at the "
                             "next start).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but the loopback lets other machines start jobs")
    p.add_argument("--port", type=common.integer, default=8765, help="port (0: any free one)")
    p.add_argument("--jobs-dir", default=default_jobs_dir(), metavar="DIR",
                   help="where the jobs live (created); it survives a restart")
    common.add_cache_argument(p)
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket (made here so that a port in use is one line, and port 0 is known before serving)."""
    if not 0 <= port <= 65535:
        raise NSTError(f"--port must be from 0 to 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise NSTError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from nst_jax.studio._app import create_app
        from nst_jax.studio._jobs import Studio
    except ImportError as err:
        raise NSTError(f"nst-jax serve needs the studio extra (pip install 'nst_jax[studio]'): {err}") from None
    loopback = is_loopback(args.host)
    sock = listen(args.host, args.port)
    enable_compilation_cache(args.compile_cache)
    studio = Studio(args.jobs_dir, vgg=common.load_vgg("original"))
    app = create_app(studio, trusted_hosts=LOOPBACK_NAMES if loopback else None)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # A signal: the running job checkpoints at its next chunk (Studio.stop, at the app's shutdown,
            # waits for it) and event streams end, so the server's graceful shutdown is not held open. A
            # second Ctrl-C stops at once, as the command line does (the worker thread is a daemon). Not
            # uvicorn's own handler, which would raise the signal again once stopped (no clean exit code).
            if self.should_exit and sig == signal.SIGINT:
                raise KeyboardInterrupt("interrupted twice, stopped at once; unfinished jobs start again from their "
                                        "last checkpoint at the next start")
            studio.stopping.set()
            self.should_exit = True

    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, lifespan="on"))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not loopback:
        print(f"warning: listening on {args.host}: anyone who can reach this machine can start jobs and read their "
              "images", file=sys.stderr, flush=True)
    common.say(f"nst-jax studio at http://{shown}:{port}/ (jobs in {studio.jobs_dir}); Ctrl-C stops it")
    server.run(sockets=[sock])
    unfinished = sum(job.state not in ("done", "failed", "cancelled") for job in studio.jobs.values())
    common.say(f"stopped; {common.plural(unfinished, 'unfinished job')} resume at the next start" if unfinished
               else "stopped")
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``nst-jax serve``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see nst_jax.cli._stylize.main
    return common.guarded_main(run, argv)
