"""Several content photos with one style in one ``nst-jax`` command.

``nst-jax --content a.jpg b.jpg --style s.jpg -o outdir/`` (or ``nst-jax a.jpg b.jpg s.jpg -o
outdir/``) stylizes each photo on its own, exactly as a separate run would, into
``outdir/<content stem>-<style stem>.png`` with its own run record and checkpoint name. The runs
share one process, so photos whose canvases have one shape (``--shape-bucket`` rounds
different aspect ratios up to a shared canvas) reuse the compiled programs of the first. Every
run is checked before the first one computes.
"""

from __future__ import annotations

import argparse
import os
import pathlib

from nst_jax.errors import NSTError

# Options that name one file of one run, so they cannot serve several.
ONE_RUN_ONLY = ("resume", "rerun", "checkpoint")


def output_folder(output: str | None) -> pathlib.Path:
    """``--output`` with several contents: an existing directory (the current one if not given).

    Raises:
        NSTError: If it names a file or a missing directory.
    """
    folder = pathlib.Path(output if output is not None else ".")
    if not folder.is_dir():
        what = "does not exist" if not os.path.lexists(folder) else "is not a directory"
        raise NSTError(f"--output {folder} {what}; with several content images, --output is the directory their "
                       "results go to")
    return folder


def output_name(content: str, style: list[str] | None, mode: str) -> str:
    """The default output file name: ``<content stem>-<style stem>.png`` (``-<mode>`` without a style)."""
    suffix = pathlib.Path(style[0]).stem if style else mode
    return f"{pathlib.Path(content).stem}-{suffix}.png"


def split(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(content photo, output path)`` of each run of a batch.

    Raises:
        NSTError: For an option that names one run's file, a bad ``--output``, or two photos whose
            results would have one name.
    """
    for name in ONE_RUN_ONLY:
        if getattr(args, name) is not None:
            raise NSTError(f"--{name} names one run's file; it cannot be combined with several content images")
    folder = output_folder(args.output)
    runs, seen = [], {}
    for content in args.content:
        output = str(folder / output_name(content, args.style, args.mode))
        if output in seen:
            raise NSTError(f"content images {seen[output]} and {content} would both be written to {output}; "
                           "rename one")
        seen[output] = content
        runs.append((content, output))
    return runs
