"""The quality-control flags of scripts/stylize.py reach the library (checked in-process with prepare())."""

import importlib.util
import pathlib

import pytest

from .conftest import EXAMPLES

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "stylize.py"
CONTENT = str(EXAMPLES / "chelsea.png")
STYLE = str(EXAMPLES / "swirls.png")


@pytest.fixture(scope="module")
def stylize_script():
    spec = importlib.util.spec_from_file_location("stylize_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepared(script, tmp_path, *extra):
    args = script.build_parser().parse_args(
        ["--content", CONTENT, "--style", STYLE, "--output", str(tmp_path / "out.png"), "--size", "64", *extra])
    return script.prepare(args)


def test_style_loss_flag(stylize_script, tmp_path):
    assert prepared(stylize_script, tmp_path)[1].style_loss == "gram"
    assert prepared(stylize_script, tmp_path, "--style-loss", "w2")[1].style_loss == "w2"
    with pytest.raises(SystemExit):
        prepared(stylize_script, tmp_path, "--style-loss", "l1")
