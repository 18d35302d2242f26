"""The API reference: every public name documented in the Google style pdoc renders
(``__docformat__ = "google"``), with Args/Returns/Raises sections where they apply, and the
reference builds (when pdoc is installed)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pathlib
import subprocess
import sys
import textwrap

import pytest

import nst_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _raises_directly(func) -> bool:
    """Whether the function's own body has a ``raise`` statement (nested functions excluded)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Raise):
                return True
            if walk(child):
                return True
        return False

    return walk(body)


def docstring_problems(name: str, obj) -> list[str]:
    """What a public name's docstring lacks: a docstring at all; for a function, Args naming every
    parameter, Returns unless it returns None, Raises if its body raises."""
    doc = inspect.getdoc(obj)
    if not doc:
        return [f"{name}: no docstring"]
    if inspect.isclass(obj) or not callable(obj):
        return []
    problems = []
    params = list(inspect.signature(obj).parameters.values())
    if params:
        if "Args:" not in doc:
            problems.append(f"{name}: no Args section")
        else:
            args = doc.split("Args:", 1)[1]
            for p in params:
                label = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
                if f"{label}:" not in args:
                    problems.append(f"{name}: Args does not describe {label}")
    returns = inspect.signature(obj).return_annotation
    if returns not in (None, "None", inspect.Signature.empty) and "Returns:" not in doc and "Yields:" not in doc:
        problems.append(f"{name}: no Returns section")
    if _raises_directly(obj) and "Raises:" not in doc:
        problems.append(f"{name}: raises but has no Raises section")
    return problems


def test_docformat_is_google():
    assert nst_jax.__docformat__ == "google"


# Public names whose docstrings live in modules outside this test's change (config.py's make_weights and
# stack_weights, step.py, driver.py, multiscale.py, api.py) and still lack sections. Strictly expected to
# fail below: once they are fixed, that test passes, which fails the run until the set is emptied.
KNOWN_GAPS: set[str] = set()


def _problems(names) -> list[str]:
    return [p for name in names if not name.startswith("__") for p in docstring_problems(name, getattr(nst_jax, name))]


def test_every_public_name_is_documented():
    problems = _problems(n for n in nst_jax.__all__ if n not in KNOWN_GAPS)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", ["nst_jax.config", "nst_jax.spec", "nst_jax.files", "nst_jax.errors",
                                    "nst_jax.compilation", "nst_jax.data"])
def test_every_name_of_a_public_module_is_documented(module):
    mod = importlib.import_module(module)
    assert inspect.getdoc(mod)
    names = [n for n in mod.__all__ if callable(getattr(mod, n))]  # constants carry comments, not docstrings
    problems = [p for n in names for p in docstring_problems(f"{module}.{n}", getattr(mod, n))]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_missing_section():
    def bad(x: int) -> int:
        """Does something."""
        if x < 0:
            raise ValueError
        return x

    problems = docstring_problems("bad", bad)
    assert {p.split(": ", 1)[1] for p in problems} == {
        "no Args section", "no Returns section", "raises but has no Raises section"}


@pytest.mark.skipif(importlib.util.find_spec("pdoc") is None, reason="pdoc not installed (pip install -e .[docs])")
def test_reference_builds(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "build_docs.sh"), str(tmp_path / "api")],
                            capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={"PATH": f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin",
                                 "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "api" / "nst_jax.html").read_text(encoding="utf-8")
    assert "perceptual_loss" in page and "extract_features" in page
    # Google style rendered: the Args of extract_features become a definition list, not run-on text.
    assert '<h6 id="arguments">Arguments:</h6>' in page and '<h6 id="returns">Returns:</h6>' in page
    assert "autodiff_mode" in (tmp_path / "api" / "nst_jax" / "vgg.html").read_text(encoding="utf-8")
    for module in ("vgg", "perceptual", "flax_nnx"):
        assert (tmp_path / "api" / "nst_jax" / f"{module}.html").is_file()
