"""scripts/sweep.py (the ``nst-jax-sweep`` tool) end to end in a real subprocess."""

import json

import numpy as np
from PIL import Image

from .conftest import EXAMPLES, run_script


def test_sweep_cli(tmp_path):
    proc = run_script("sweep.py", "--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png",
                      "--output-dir", tmp_path / "sw", "--size", 48, "--iterations", 3, "--optimizer", "adam",
                      "--style-weights", "1e1:1e3:2", "--seeds", 0, 1, "--style-layers", "relu1_1", "relu2_1",
                      "--content-layer", "relu2_1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "sw" / "losses.json").read_text())
    members = report["members"]
    assert [(m["style_weight"], m["seed"]) for m in members] == [(10.0, 0), (10.0, 1), (1000.0, 0), (1000.0, 1)]
    for m in members:
        assert (tmp_path / "sw" / m["file"]).is_file() and np.isfinite(m["final"]["total"])
        assert set(m["ratios"]) == {"style_ratio", "content_ratio", "speckle_ratio"}, m
        assert all(np.isfinite(v) and v >= 0 for v in m["ratios"].values()), m
    assert members[2]["final"]["style"] > members[0]["final"]["style"]  # beta scales the weighted style term
    assert Image.open(tmp_path / "sw" / "contact_sheet.png").size[0] > 80


def test_sweep_cli_bad_range(tmp_path):
    proc = run_script("sweep.py", "--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png",
                      "--output-dir", tmp_path / "sw", "--style-weights", "1e3:1e1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()
