"""The command line's shared parts (nst_jax.cli._common) and friendly forms: positional CONTENT STYLE, no
abbreviations with a suggestion, grouped --help, plurals, value ranges, the run arguments, and one
exception-to-exit-code mapping."""

import argparse
import ast
import errno
import pathlib

import numpy as np
import pytest
from PIL import Image

from nst_jax._src.image import save_image
from nst_jax._src.record import read_record
from nst_jax.cli import _common as common
from nst_jax.cli._stylize import build_parser, parse
from nst_jax.errors import NSTError, NumericalError, OutputExists

from .conftest import EXAMPLES, nst_in_process, run_cli, smooth_image

CLI = pathlib.Path(__file__).resolve().parent.parent / "nst_jax" / "cli"


def run(capsys, *args):
    return nst_in_process(capsys, *args)


def test_positional_form_with_default_output(capsys, tmp_path, monkeypatch):
    save_image(tmp_path / "photo.png", smooth_image(32, 32, 1))
    save_image(tmp_path / "paint.png", smooth_image(32, 32, 2))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "photo.png", "paint.png", "--size", 32, "--iterations", 1,
                         "--content-layer", "relu1_1", "--style-layers", "relu1_1")
    assert code == 0, err
    assert "wrote photo-paint.png (32x32)" in out and "(1 iteration, " in out
    assert Image.open(tmp_path / "photo-paint.png").size == (32, 32)
    assert read_record(tmp_path / "photo-paint.png")["sources"]["content"] == str(tmp_path / "photo.png")
    args, given = parse(["a.jpg", "b.jpg", "-o", "x.png"])
    assert (args.content, args.style, args.output) == ("a.jpg", ["b.jpg"], "x.png") and "images" not in vars(args)
    flags, _ = parse(["--content", "a.jpg", "--style", "b.jpg", "--output", "x.png"])
    assert vars(flags) == vars(args)


def test_positional_form_misused(capsys):
    for argv in (["a.jpg"], ["a.jpg", "b.jpg", "--content", "c.jpg"]):  # a.jpg b.jpg c.jpg: two contents
        code, _, err = run(capsys, *argv)
        assert code == 2 and "CONTENT [CONTENT ...] STYLE" in err and len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.parametrize("typo,meant", [("--iter", "--iterations"), ("--iteratoins", "--iterations"),
                                        ("--stlye-weight", "--style-weight"), ("--over", "--overwrite")])
def test_no_abbreviations_and_a_suggestion(capsys, typo, meant):
    code, _, err = run(capsys, "--content", "a.png", "--style", "b.png", typo, "3")
    assert code == 2 and f"unrecognized arguments: {typo}" in err and f"did you mean {meant}?" in err, err


def test_help_is_grouped(capsys):
    help_text = build_parser().format_help()
    positions = [help_text.index(f"\n{name}:\n") for name in ("basics", "quality", "output", "performance", "advanced")]
    assert positions == sorted(positions)
    section = lambda name: help_text[help_text.index(f"\n{name}:\n"):]  # noqa: E731
    assert section("basics").index("--iterations") < section("basics").index("quality:")
    assert section("output").index("--overwrite") < section("output").index("performance:")
    assert "--tile-size" in section("performance") and "--optimizer" in section("advanced")
    assert "exit codes: 0 done" in help_text and "5 a fault of the system" in help_text


def test_plural():
    assert common.plural(1, "iteration") == "1 iteration" and common.plural(0, "scale") == "0 scales"
    assert common.plural(3, "member") == "3 members"


def test_no_cli_function_over_60_own_lines():
    """No CLI function has more than 60 lines of its own (docstring and nested functions excluded)."""
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = set(range(node.lineno, node.end_lineno + 1))
                if ast.get_docstring(node):
                    doc = node.body[0]
                    lines -= set(range(doc.lineno, doc.end_lineno + 1))
                for inner in ast.walk(node):
                    if inner is not node and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        lines -= set(range(inner.lineno, inner.end_lineno + 1))
                assert len(lines) <= 60, (path.name, node.name, len(lines))


# Each kind of error a run can end with, raised from inside the run (the VGG loader, which both tools call
# after their arguments are checked), with the exit code and the start of the one line it must give.
ERRORS = {
    "bad input": (lambda: NSTError("the input is wrong"), 2, "error: the input is wrong"),
    "output appeared": (lambda: OutputExists("o.png", "o.nst-jax-1.png"), 6, "error: o.png"),
    "diverged": (lambda: NumericalError("the loss became NaN", step=3, image=None), 4, "error: the loss became NaN"),
    "interrupted": (KeyboardInterrupt, 3, "error: interrupted"),
    "disk full": (lambda: OSError(errno.ENOSPC, "No space left on device"), 5,
                  "error: the system refused: No space left on device"),
    "out of memory": (MemoryError, 5, "error: the system refused: out of memory"),
    "bug": (lambda: ZeroDivisionError("oops"), 1, "error: internal error: ZeroDivisionError: oops"),
}


@pytest.mark.parametrize("tool", ["nst-jax", "nst-jax-sweep"])
def test_every_error_kind_exits_with_its_code(tool, tmp_path, capsys, monkeypatch):
    """Both tools map each error kind to its exit code and one line on stderr (one mapping,
    nst_jax.cli._common.exit_code), with no traceback, whatever raises it inside the run."""
    from nst_jax.cli import _stylize as stylize
    from nst_jax.cli import _sweep as sweep

    main = stylize.main if tool == "nst-jax" else sweep.main
    argv = ["--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--size", 48]
    argv += ["--output", tmp_path / "o.png"] if tool == "nst-jax" else ["--output-dir", tmp_path / "sweep"]
    for name, (make, code, start) in ERRORS.items():
        def fail(*args, make=make, **kwargs):
            raise make()

        monkeypatch.setattr(common, "load_vgg", fail)
        assert main([str(a) for a in argv]) == code, name
        err = capsys.readouterr().err
        assert err.startswith(start) and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
    assert not any(tmp_path.iterdir())


def test_cli_flag_reaches_the_config(tmp_path):
    parser = argparse.ArgumentParser()
    common.add_run_arguments(parser)
    assert common.run_config(parser.parse_args([])).tile_size == 0
    assert common.run_config(parser.parse_args(["--tile-size", "64"])).tile_size == 64
    with pytest.raises(NSTError, match="multiple of 16"):
        common.run_config(parser.parse_args(["--tile-size", "40"]))
    out = tmp_path / "out.png"
    proc = run_cli("--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--output", out,
                   "--size", 48, "--iterations", 2, "--tile-size", 16, "--content-layer", "relu2_2",
                   "--style-layers", "relu1_1", "relu2_1")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_expand_values():
    np.testing.assert_allclose(common.expand_values(["1e1:1e4:4"], "x"), [10, 100, 1000, 10000], rtol=1e-12)
    assert common.expand_values(["2", "3.5"], "x") == [2.0, 3.5]
    with pytest.raises(NSTError, match="START:STOP:NUM"):
        common.expand_values(["1:0:3"], "--style-weights")
    with pytest.raises(NSTError, match="START:STOP:NUM"):
        common.expand_values(["abc"], "--style-weights")
