"""The command-line tools' first instruction: a SIGINT or SIGTERM while Python imports JAX (a second
or more, before ``main`` runs) ends the tool with exit 3 and one line, as one at any later point does.

Nothing changes for a library import: the handlers are set only when the process's program is one of
the tools (the console scripts ``nst-jax`` and ``nst-jax-sweep``, or this checkout's
``scripts/stylize.py`` and ``scripts/sweep.py``). Their ``main`` then takes the signals over
(:func:`nst_jax.cli._common.interruptible`). ``nst_jax/__init__.py`` imports this module first, and
only ``os``, ``signal`` and ``sys`` are imported here, so the handlers are in place (:func:`install`,
run on import) before anything slow starts.
"""

from __future__ import annotations

import os
import signal
import sys

TOOLS = ("nst-jax", "nst-jax-sweep")
SCRIPTS = ("stylize.py", "sweep.py")


def is_tool(program: str) -> bool:
    """Whether ``program`` (``sys.argv[0]``) is one of nst_jax's command-line tools."""
    name = os.path.basename(program)
    if name.removesuffix(".exe") in TOOLS:
        return True
    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    return name in SCRIPTS and os.path.dirname(os.path.abspath(program)) == scripts


def interrupted(signum: int, frame: object) -> None:
    """The start-up handler: one line on stderr, exit 3 at once."""
    os.write(2, b"error: interrupted while starting; nothing written\n")
    os._exit(3)  # nothing was written, and the import it interrupts cannot be unwound cleanly


def install() -> None:
    """Sets the start-up handlers when this process is a tool (see the module docstring)."""
    if sys.argv and sys.argv[0] and is_tool(sys.argv[0]):
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, interrupted)


install()
