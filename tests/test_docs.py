"""The documentation: every public name documented in the Google style mkdocstrings renders
(``__docformat__ = "google"``), with Args/Returns/Raises sections where they apply; the site builds
with ``mkdocs build --strict`` (when mkdocs is installed); every code block of the README and the
site's pages has a treatment (tests/doc_blocks.py), and the documented commands parse."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import logging
import pathlib
import re
import shlex
import subprocess
import textwrap
import types

import pytest

import nst_jax
from nst_jax.cli import _stylize as stylize_cli
from nst_jax.cli import _sweep as sweep_cli

from . import doc_blocks

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
                                    "nst_jax.compilation", "nst_jax.host", "nst_jax.evaluation", "nst_jax.data"])
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


HAS_MKDOCS = all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "material", "mkdocstrings_handlers"))
GUIDES = ("cli", "library", "sweeps", "quality", "performance", "reliability", "paper", "weights")
REFERENCE = ("nst_jax", "config", "spec", "files", "errors", "compilation", "data", "flax_nnx")


@pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs, mkdocs-material or mkdocstrings not installed "
                                         "(pip install -e .[docs])")
def test_site_builds_strict(tmp_path, caplog):
    """``mkdocs build --strict`` into tmp_path: any warning, a broken link, image or anchor included, fails;
    the front page is the README, the guides and the reference are there. In this process (what
    scripts/build_docs.sh runs, without a second Python importing JAX: 3.3 s of CPU against 5.8 s)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True)
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    except Abort as abort:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        pytest.fail(f"{abort}\n" + "\n".join(warnings))
    finally:
        config.plugins.on_shutdown()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "build_docs.sh")]).returncode == 0
    site = tmp_path / "site"
    front = (site / "index.html").read_text(encoding="utf-8")
    first_line = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")[2]  # the README's first sentence
    assert first_line.split("—")[0].strip() in front and '<img alt="gallery" src="gallery.jpg"' in front
    for guide in GUIDES:
        assert f'href="guide/{guide}/"' in front, guide
        assert (site / "guide" / guide / "index.html").is_file()
    assert '<img alt="" src="../../quality/baseline.png"' in (site / "guide/quality/index.html").read_text("utf-8")
    pages = {name: (site / "reference" / name / "index.html").read_text(encoding="utf-8") for name in REFERENCE}
    top = pages["nst_jax"]
    for name in ("perceptual_loss", "extract_features", "autodiff_mode", "stylize"):
        assert f'id="nst_jax.{name}"' in top, name
    # Google style rendered as sections; perceptual_loss (made at import time) has its docstring and signature.
    assert 'doc-section-title">Parameters:<' in top and 'doc-section-title">Returns:<' in top
    loss = top[top.index('id="nst_jax.perceptual_loss"'):][:6000]
    assert "content_layers" in loss and "_total_of" not in loss
    assert 'id="nst_jax.files.read_record"' in pages["files"]
    assert 'id="nst_jax.config.PRESETS"' in pages["config"]  # a constant, documented by its comment
    assert 'id="nst_jax.compilation.CompileStats"' in pages["compilation"]
    # Internals are not documented: the reference shows __all__ only. Sphinx roles read as plain code.
    for page in pages.values():
        assert "conv3x3" not in page and "bf16_conv_form" not in page
        assert ":class:" not in page and ":func:" not in page
    assert 'id="nst_jax.compilation.collector"' not in pages["compilation"]


def _script_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs not installed (pip install -e .[docs])")
def test_site_hooks_and_docstring_markup(tmp_path, monkeypatch):
    """The front page's links start at docs/; CHANGELOG.md joins the nav only when there is one; Sphinx
    roles become code; a constant's docstring is the comment that introduces it."""
    hooks = _script_module("mkdocs_hooks")
    assert hooks.front_page("![g](docs/gallery.jpg) [c](docs/guide/cli.md) [x](examples/docs/a.md) "
                            "[n](CHANGELOG.md#030) [r](README.md) [w](weights/README.md)") == (
        "![g](gallery.jpg) [c](guide/cli.md) [x](examples/docs/a.md) [n](changelog.md#030) [r](index.md) "
        "[w](weights/README.md)")
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    config = types.SimpleNamespace(nav=[{"Home": "index.md"}])
    assert hooks.on_config(config).nav == [{"Home": "index.md"}]
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n", encoding="utf-8")
    assert hooks.on_config(config).nav == [{"Home": "index.md"}, {"Changelog": "changelog.md"}]
    extensions = _script_module("griffe_extensions")
    assert extensions.plain_markdown("See :class:`LossConfig` and :func:`~nst_jax.stylize`::\n\n    x = 1") == (
        "See `LossConfig` and `nst_jax.stylize`:\n\n    x = 1")
    lines = ["import x", "# The presets,", "# chosen by measurement.", "PRESETS = {", "}",
             'KEY = "a # b"  # the key', "LIMIT = 3", "NAMES = (  # the names", '    "a",', ")"]
    comment = [extensions.introducing_comment(lines, n) for n in (4, 6, 7, 8)]
    assert comment == ["The presets, chosen by measurement.", "the key", "", "the names"]


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_relative_links_resolve_on_github():
    """Every relative link and image of the README and the site's pages names a file that exists from the
    page's folder, as GitHub resolves it (the strict build checks the site's side, anchors included)."""
    problems = []
    for page in doc_blocks.pages():
        text = re.sub(r"(?ms)^```.*?^```", "", (ROOT / page).read_text(encoding="utf-8"))  # not in code blocks
        for target in LINK.findall(text):
            path = target.split("#", 1)[0]
            if path and "://" not in path and not (ROOT / page).parent.joinpath(path).exists():
                problems.append(f"{page}: {target}")
    assert not problems, "\n".join(problems)
    assert LINK.findall("see [Defaults](docs/guide/quality.md#x) and ![](../a.png)") == [
        "docs/guide/quality.md#x", "../a.png"]


def test_every_code_block_has_a_treatment():
    """Every fenced block of the README and the site's pages is run, type-checked, parsed or skipped for a
    stated reason (tests/doc_blocks.py); the library guide's blocks are the ones run."""
    blocks = doc_blocks.all_blocks()
    treatments = [doc_blocks.treatment(b) for b in blocks]
    pages = {b.page for b in blocks}
    assert {"README.md", doc_blocks.LIBRARY_PAGE, doc_blocks.SWEEPS_PAGE} <= pages
    assert sum(t == doc_blocks.RUN for t in treatments) == len(doc_blocks.library_blocks()) >= 5
    assert all(f"docs/guide/{guide}.md" in doc_blocks.pages() for guide in GUIDES)


def test_a_block_no_rule_covers_is_refused():
    block = doc_blocks.Block("docs/guide/new.md", "New", "rust", "fn main() {}")
    with pytest.raises(LookupError, match="docs/guide/new.md"):
        doc_blocks.treatment(block)


def test_block_finder_reads_fences_and_headings(tmp_path, monkeypatch):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Title\n\n```python\n# not a heading\nx = 1\n```\n\n## Next\n\n"
                    "```bash\nnst-jax a.png b.png \\\n    --size 64 && nst-jax --version  # two\n```\n\n"
                    "```text\n$ nst-jax --help\nusage: ...\n```\n")
    monkeypatch.setattr(doc_blocks, "ROOT", tmp_path)
    blocks = doc_blocks.page_blocks("docs/page.md")
    assert [(b.heading, b.language) for b in blocks] == [("Title", "python"), ("Next", "bash"), ("Next", "text")]
    assert blocks[0].source == "# not a heading\nx = 1\n"
    assert doc_blocks.shell_commands(blocks[1]) == [["nst-jax", "a.png", "b.png", "--size", "64"],
                                                    ["nst-jax", "--version"]]
    assert doc_blocks.shell_commands(blocks[2]) == [["nst-jax", "--help"]]
    assert doc_blocks.shell_commands(blocks[0]) == []


def _cli_parses(command: list[str]) -> str | None:
    """Why a documented ``nst-jax``/``nst-jax-sweep`` command does not parse, or None."""
    parse = {"nst-jax": stylize_cli.parse, "nst-jax-sweep": sweep_cli.parse}[command[0]]
    try:
        parse(command[1:])
    except SystemExit:  # argparse's usage error
        return f"{shlex.join(command)}: not accepted by {command[0]}'s parser"
    return None


def test_documented_commands_parse_and_their_scripts_exist(capsys):
    """The shell blocks' ``nst-jax`` and ``nst-jax-sweep`` commands parse with the CLIs' own parsers (no
    compute), and every ``python scripts/...`` they name exists."""
    commands = [c for b in doc_blocks.all_blocks() for c in doc_blocks.shell_commands(b)]
    cli = [c for c in commands if c[0] in ("nst-jax", "nst-jax-sweep")]
    scripts = [c[1] for c in commands if c[0] in ("python", "python3") and c[1].startswith("scripts/")]
    assert len(cli) >= 6 and len(scripts) >= 4
    problems = [p for c in cli if (p := _cli_parses(c))]
    problems += [f"{s}: no such script" for s in scripts if not (ROOT / s).is_file()]
    assert not problems, "\n".join(problems) + capsys.readouterr().err
    assert _cli_parses(["nst-jax", "a.png", "b.png", "--iter", "3"])  # the check can fail


def test_ci_runs_the_readme_test_command():
    """The README's second "Set up and run" command is what .ci/run runs."""
    setup = [b for b in doc_blocks.page_blocks("README.md") if b.heading == "Set up and run"]
    commands = doc_blocks.shell_commands(setup[1])
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ")  # continuation lines
    ci = [shlex.split(line) for line in script.splitlines() if line and not line.startswith("#")]
    for command in commands[2:]:  # after creating and activating the virtual environment
        assert command in ci, shlex.join(command)
