"""The scripts without a module of their own, end to end at small sizes: reproduce_paper.py, benchmark.py,
highres_benchmark.py, compile_ahead_benchmark.py (stylize.py: test_cli_stylize.py; sweep.py: test_cli_sweep.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax._src.backend import merged_xla_flags

from .conftest import SCRIPTS, SHARED_IMAGES, run_script, script_env


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_IMAGES / "tubingen.jpg").is_file(), reason="../shared/images is absent")
def test_reproduce_paper_quick(tmp_path):
    # --quick with smaller values still: 56 px (The Starry Night's short side then 35 px, over the network's 32),
    # 8 steps, 4 per Fig. 3 cell, two columns. The 34 XLA programs (a start and a step chunk per run or sweep;
    # Fig. 2's three runs share a chunk) stay, and compiling them is most of the time, so XLA's backend
    # optimisation is off as well (measured CPU time of the script on a loaded host: --quick 143 s; these
    # values 120 s; and this level 92 s). Its assertions are about the figures, not XLA's code generation.
    env = script_env(XLA_FLAGS=merged_xla_flags(os.environ.get("XLA_FLAGS", ""),
                                                {"xla_backend_optimization_level": "0"}))
    proc = subprocess.run([sys.executable, str(SCRIPTS / "reproduce_paper.py"), "--output-dir", tmp_path / "paper",
                           "--quick", "--size", "56", "--iterations", "8", "--sweep-iterations", "4", "--ratios", "1",
                           "1e-2", "--reduced-dir", tmp_path / "reduced"], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "paper" / "metrics.json").read_text())
    settings = metrics["settings"]  # the values given stand over --quick's
    assert (settings["size"], settings["iterations"], settings["sweep_iterations"]) == (56, 8, 4), settings
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
    env = script_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, str(SCRIPTS / "benchmark.py"), "--optimizers", "lbfgs", "--precisions",
                           "fp32", "--peer"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and ".[peer]" in proc.stderr


@pytest.mark.slow
def test_highres_benchmark_small(tmp_path):
    # 64 px output, levels 32 and 64, the 64 px level in 32 px tiles: the tiled multi-scale path end to end.
    # Shallow layers, so each tile's halo is 16 px, not the default layers' 96 (tiled equals untiled with deep
    # layers is test_tiled's).
    out, summary = tmp_path / "hr.png", tmp_path / "hr.json"
    proc = run_script("highres_benchmark.py", "--size", 64, "--tile-size", 32, "--scales", 2, "--min-size", 32,
                      "--scale-iterations", 2, 2, "--style-layers", "relu1_1", "relu2_1", "--content-layers", "relu2_2",
                      "--output", out, "--json", summary)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 64)
    levels = json.loads(summary.read_text())["levels"]
    assert [row["size"] for row in levels] == [32, 64] and all(row["peak_rss_gib"] > 0 for row in levels)
    assert "peak RSS" in proc.stdout


def test_compile_ahead_benchmark_small():
    # One cold process per setting, at 64 px (one level) with one shallow layer: the script end to end, fast.
    proc = run_script("compile_ahead_benchmark.py", "--size", 64, "--repeats", 1, "--layers", "relu1_1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "levels [64] px" in proc.stdout and "CPU: " in proc.stdout, proc.stdout
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in proc.stdout.splitlines()
            if line.startswith(("| off ", "| on "))}
    assert sorted(rows) == ["off", "on"] and all(len(cells) == 5 for cells in rows.values()), proc.stdout
    for cells in rows.values():  # "min / median" seconds of wall, compile, run, XLA compile and CPU time
        (wall, wall_median), _, (run, _), _, _ = [[float(x) for x in cell.split("/")] for cell in cells]
        assert wall == wall_median and wall >= run > 0  # one run: its own median; its steps inside its wall time
