"""``nst-jax-sweep --dry-run``: every member resolved and every input and output checked, the plan printed as
JSON, nothing compiled or written (not even the compilation cache's directory)."""

import json
import os

import numpy as np

from nst_jax.cli import _stylize as stylize_cli
from nst_jax.cli import _sweep as sweep_cli

from .conftest import EXAMPLES

PHOTO, PAINTING = str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "swirls.png")


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, names in os.walk(root) for n in dirs + names)


def test_a_dry_run_prints_every_member_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NST_JAX_CACHE_DIR", str(tmp_path / "cache"))
    argv = [PHOTO, PAINTING, "--output-dir", "sweep", "--size", "64", "--style-weight-factors", "0.5", "2",
            "--seeds", "0", "3", "--dry-run"]
    assert sweep_cli.main(argv) == 0
    plan = json.loads(capsys.readouterr().out)  # stdout is the plan alone
    assert listing(tmp_path) == []
    names = [f"member_{i:02d}.png" for i in range(4)]
    assert plan["writes"] == {"output_dir": "sweep", "files": [*names, "contact_sheet.png", "losses.json"],
                              "overwrite": False}
    assert [(m["file"], m["factor"], m["seed"]) for m in plan["members"]] == [
        (names[0], 0.5, 0), (names[1], 0.5, 3), (names[2], 2.0, 0), (names[3], 2.0, 3)]
    assert plan["memory"]["estimate_bytes_per_device"] > 0
    # Each member is nst-jax's run of the same photo and painting, every level's style weight times its factor.
    assert stylize_cli.main([PHOTO, PAINTING, "-o", "plain.png", "--size", "64", "--dry-run"]) == 0
    plain = json.loads(capsys.readouterr().out)
    for member in plan["members"]:
        assert member["sources"] == plain["sources"] and member["vgg"] == plain["vgg"]
        assert member["spec"]["seed"] == member["seed"]
        levels, expected = member["spec"]["levels"], plain["spec"]["levels"]
        assert [(x["shape"], x["iterations"]) for x in levels] == [(x["shape"], x["iterations"]) for x in expected]
        styles = [np.float32(x["weights"]["style"]) for x in levels]
        np.testing.assert_allclose(styles, [np.float32(x["weights"]["style"]) * np.float32(member["factor"])
                                            for x in expected], rtol=1e-6)


def test_a_dry_run_checks_the_outputs_as_the_sweep_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "losses.json").write_text("an earlier sweep's")
    argv = [PHOTO, PAINTING, "--output-dir", "sweep", "--size", "64", "--dry-run"]
    assert sweep_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "sweep/losses.json exists" in captured.err and captured.out == ""
    assert sweep_cli.main([*argv, "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["writes"]["overwrite"] is True
    assert listing(tmp_path) == ["sweep", "sweep/losses.json"]
