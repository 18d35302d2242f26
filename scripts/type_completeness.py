"""Print nst_jax's type completeness score, as ``pyright --verifytypes`` computes it.

  python scripts/type_completeness.py [--list] [--plain] [--probe]

Runs ``basedpyright --verifytypes nst_jax --ignoreexternal`` (``pip install basedpyright``: it
bundles Node.js, which the plain ``pyright`` package would download) on this checkout's package,
from a directory outside it, and prints the score: the share of the symbols the package exports
(every public module's public names) whose types are fully known. ``--list`` also prints each
symbol that is not, with the checker's reason. ``--plain`` runs ``pyright`` (``pip install
'pyright[nodejs]'``; basedpyright where it is missing) without ``--ignoreexternal``: then a symbol
whose type mentions ``jax.Array`` or a numpy dtype counts as partially unknown too, because
typeshed's ``numbers`` module (reached through ``numpy.dtype``) leaves its operators unannotated,
and so does one mentioning optax's types (optax ships no ``py.typed``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


PROBE = {"jax_array": ("import jax", "jax.Array"),
         "numpy_array": ("import numpy as np\nimport numpy.typing as npt", "npt.NDArray[np.float32]")}


def checker(plain: bool) -> str:
    """The checker's executable: pyright (else basedpyright) with ``plain``, else basedpyright."""
    names = ("pyright", "basedpyright") if plain else ("basedpyright",)
    candidates = [shutil.which(n) or str(pathlib.Path(sys.executable).parent / n) for n in names]
    exe = next((e for e in candidates if os.path.exists(e)), None)
    if exe is None:
        raise SystemExit(f"{' or '.join(names)} is not installed (pip install basedpyright)")
    return exe


def probe(plain: bool) -> None:
    """Scores one-function packages whose only signature is ``jax.Array -> jax.Array`` (or numpy's), so
    that what the checker counts against ``jax.Array`` itself is measured apart from nst_jax."""
    exe = checker(plain)
    for name, (imports, array) in PROBE.items():
        source = f'{imports}\n\n\ndef f(x: {array}) -> {array}:\n    """Doc."""\n    return x\n'
        with tempfile.TemporaryDirectory() as root:
            package = pathlib.Path(root) / name
            package.mkdir()
            (package / "__init__.py").write_text(source)
            (package / "py.typed").write_text("")
            proc = subprocess.run([exe, "--pythonpath", sys.executable, "--verifytypes", name, "--outputjson",
                                   *([] if plain else ["--ignoreexternal"])], cwd=root,
                                  env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True, timeout=600)
        score = json.loads(proc.stdout)["typeCompleteness"]["completenessScore"]
        print(f"probe package: def f(x: {array}) -> {array}: {100 * score:.0f}%")


def verifytypes(plain: bool = False) -> dict:
    """The checker's ``--outputjson`` report of ``--verifytypes nst_jax`` on this checkout: basedpyright's
    with ``--ignoreexternal``, or with ``plain`` pyright's without it."""
    exe = checker(plain)
    flags = [] if plain else ["--ignoreexternal"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout first, ahead of any installed copy
    with tempfile.TemporaryDirectory() as outside:
        proc = subprocess.run([exe, "--pythonpath", sys.executable, "--verifytypes", "nst_jax", *flags, "--outputjson"],
                              cwd=outside, env=env, capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    found = pathlib.Path(report["typeCompleteness"]["packageRootDirectory"]).resolve()
    if found != ROOT / "nst_jax":
        raise SystemExit(f"{exe} checked {found}, not {ROOT / 'nst_jax'}")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print every exported symbol whose type is not known")
    parser.add_argument("--plain", action="store_true", help="pyright without --ignoreexternal")
    parser.add_argument("--probe", action="store_true",
                        help="also score one-function packages taking and returning a jax.Array / np.ndarray")
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.plain)
    report = verifytypes(args.plain)
    print(f"{'pyright' if args.plain else 'basedpyright'} {report['version']}, "
          f"{'without' if args.plain else 'with'} --ignoreexternal")
    completeness = report["typeCompleteness"]
    exported = [s for s in completeness["symbols"] if s["isExported"]]
    unknown = [s for s in exported if not s["isTypeKnown"]]
    if args.list:
        for symbol in unknown:
            reasons = "; ".join(d["message"].splitlines()[0] for d in symbol["diagnostics"]) or "(via another symbol)"
            print(f"{symbol['name']}: {reasons}")
    print(f"exported symbols: {len(exported)}, type not fully known: {len(unknown)}")
    print(f"type completeness score: {100 * completeness['completenessScore']:.1f}%")


if __name__ == "__main__":
    main()
