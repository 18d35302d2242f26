"""The package's layout rules: the command-line tools use the public API only, and every public
module says what it exports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib

import pytest

import nst_jax

PACKAGE = pathlib.Path(nst_jax.__file__).resolve().parent
# The modules besides the package itself whose __all__ is public (named in nst_jax's docstring).
PUBLIC_MODULES = ("nst_jax.config", "nst_jax.spec", "nst_jax.files", "nst_jax.errors", "nst_jax.compilation",
                  "nst_jax.host", "nst_jax.evaluation", "nst_jax.data")


def nst_jax_imports(path: pathlib.Path) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` of every import of an nst_jax module in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "nst_jax"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "nst_jax":
            found += [(node.module, a.name, node.lineno) for a in node.names]
    return found


def non_public_imports(path: pathlib.Path) -> list[str]:
    """The imports in a file that reach past the public API (nst_jax.__all__, the public modules'
    __all__, and the front doors nst_jax.cli and nst_jax.studio themselves)."""
    bad = []
    for module, name, line in nst_jax_imports(path):
        where = f"{path.name}:{line}"
        if module in ("nst_jax.cli", "nst_jax.studio") or module.startswith(("nst_jax.cli.", "nst_jax.studio.")):
            continue  # the front doors (the command line and the studio, a front door over it)
        if name is None:
            if module != "nst_jax":
                bad.append(f"{where}: import {module}")
        elif module == "nst_jax":
            if name not in nst_jax.__all__ and f"nst_jax.{name}" not in PUBLIC_MODULES:
                bad.append(f"{where}: from nst_jax import {name}")
        elif module not in PUBLIC_MODULES:
            bad.append(f"{where}: from {module} import {name}")
        elif name not in importlib.import_module(module).__all__:
            bad.append(f"{where}: {name} is not in {module}.__all__")
    return bad


def test_the_cli_imports_the_public_api_only():
    paths = sorted((PACKAGE / "cli").glob("*.py"))
    assert len(paths) >= 5
    bad = [b for path in paths for b in non_public_imports(path)]
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_private_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from nst_jax import files, stylize\nfrom nst_jax.config import TERMS\n"
                      "from nst_jax import image\nfrom nst_jax._src.plan import make_plan\n"
                      "from nst_jax.config import tile_alignment\nimport nst_jax._src.objective\n"
                      "def f():\n    from nst_jax._src.metrics import Evaluator\n")
    assert [b.split(": ", 1)[1] for b in non_public_imports(sample)] == [
        "from nst_jax import image", "from nst_jax._src.plan import make_plan",
        "tile_alignment is not in nst_jax.config.__all__", "import nst_jax._src.objective",
        "from nst_jax._src.metrics import Evaluator"]


@pytest.mark.parametrize("module", ("nst_jax",) + PUBLIC_MODULES)
def test_public_modules_export_what_they_define(module):
    mod = importlib.import_module(module)
    assert len(set(mod.__all__)) == len(mod.__all__)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, missing


def test_no_function_has_more_than_60_lines_of_its_own():
    spec = importlib.util.spec_from_file_location("layout_report", PACKAGE.parent / "scripts" / "layout_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    sample = ast.parse('def f(x):\n    """Doc\n\n    more."""\n    y = x\n\n    def g():\n        return 1\n'
                       '    # a comment\n    return y\n')
    assert report.functions(sample) == [("f", 4), ("f.g", 1)]  # y =, the blank, the comment, return
    long = [(name, n) for path, source in report.modules_at(None).items()
            for name, n in report.functions(ast.parse(source)) if n > 60]
    assert not long, long
