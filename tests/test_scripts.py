"""scripts/sweep.py and scripts/reproduce_paper.py end to end (small sizes)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax.cli.args import expand_values
from nst_jax.errors import NSTError
from nst_jax.figures import labelled_grid, psnr, save_reduced

from .conftest import EXAMPLES, SHARED_IMAGES

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def run_script(name, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900)


def test_expand_values():
    np.testing.assert_allclose(expand_values(["1e1:1e4:4"], "x"), [10, 100, 1000, 10000], rtol=1e-12)
    assert expand_values(["2", "3.5"], "x") == [2.0, 3.5]
    with pytest.raises(NSTError, match="START:STOP:NUM"):
        expand_values(["1:0:3"], "--style-weights")
    with pytest.raises(NSTError, match="START:STOP:NUM"):
        expand_values(["abc"], "--style-weights")


def test_psnr_and_grid():
    a = np.zeros((4, 5, 3), np.float32)
    np.testing.assert_allclose(psnr(a + 0.1, a), 20.0, rtol=1e-6)  # MSE 0.01 -> 20 dB
    sheet = labelled_grid([[a, a], [a, None]], [["x", "y"], ["z", ""]], col_titles=["c1", "c2"], row_titles=["r"] * 2)
    assert sheet.size[0] > 10 and sheet.size[1] > 8


def test_save_reduced_shrinks_keeping_the_aspect_and_never_enlarges(tmp_path):
    big = Image.new("RGBA", (1000, 300), (10, 200, 30, 255))
    reduced = save_reduced(tmp_path / "big.jpg", big, 512)
    with Image.open(tmp_path / "big.jpg") as written:
        assert written.format == "JPEG" and written.size == reduced.size == (512, 154)
        assert np.abs(np.asarray(written, np.float32) - (10, 200, 30)).mean() < 3  # the colours survive
    save_reduced(tmp_path / "small.png", Image.new("RGB", (100, 50)), 512)
    with Image.open(tmp_path / "small.png") as written:
        assert written.format == "PNG" and written.size == (100, 50)


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


@pytest.mark.skipif(not (SHARED_IMAGES / "tubingen.jpg").is_file(), reason="../shared/images is absent")
def test_reproduce_paper_quick(tmp_path):
    proc = run_script("reproduce_paper.py", "--output-dir", tmp_path / "paper", "--quick",
                      "--reduced-dir", tmp_path / "reduced")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "paper" / "metrics.json").read_text())
    for fig in ("1a", "1b", "2", "3"):
        assert (tmp_path / "paper" / f"fig{fig}.png").is_file()
        with Image.open(tmp_path / "paper" / f"fig{fig}.png") as full, \
                Image.open(tmp_path / "reduced" / f"fig{fig}.jpg") as reduced:
            assert reduced.format == "JPEG" and max(reduced.size) == min(512, max(full.size)), (full.size, reduced.size)
            assert abs(reduced.size[0] / reduced.size[1] - full.size[0] / full.size[1]) < 0.05
    psnrs = [metrics["fig1a"][f"relu{b}_1"]["psnr_db"] for b in range(1, 6)]
    assert all(np.isfinite(psnrs)) and psnrs[0] > psnrs[-1]  # lower layers reconstruct better
    assert all(v["factor"] > 1 for k, v in metrics["fig1b"].items() if k != "seconds_total")
    assert len(metrics["fig3"]) == 6  # five rows + timing


def test_benchmark_peer_missing(tmp_path):
    # A pastiche module earlier on the path that fails to import stands in for an uninstalled one.
    (tmp_path / "pastiche.py").write_text("raise ImportError('No module named pastiche')\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(SCRIPTS / "benchmark.py"), "--optimizers", "lbfgs", "--precisions",
                           "fp32", "--peer"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and ".[peer]" in proc.stderr


def test_highres_benchmark_small(tmp_path):
    # 64 px output, levels 32 and 64, the 64 px level in 32 px tiles: the tiled multi-scale path end to end.
    out, summary = tmp_path / "hr.png", tmp_path / "hr.json"
    proc = run_script("highres_benchmark.py", "--size", 64, "--tile-size", 32, "--scales", 2, "--min-size", 32,
                      "--scale-iterations", 2, 2, "--output", out, "--json", summary)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 64)
    levels = json.loads(summary.read_text())["levels"]
    assert [row["size"] for row in levels] == [32, 64] and all(row["peak_rss_gib"] > 0 for row in levels)
    assert "peak RSS" in proc.stdout
