"""scripts/device_report.py --dry-run: every stage runs at tiny sizes on the CPU and lands in the table."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
STAGES = ("env", "cold", "warm", "steps500", "sizes", "per_eval", "sweep", "tests", "pastiche")


@pytest.mark.slow
def test_dry_run_walks_every_stage(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_report.py"), "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "device_report.md").read_text()
    log = (tmp_path / "device_report.log").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {line.split("|")[1].strip(): line for line in lines}
    for stage in STAGES:
        assert stage in rows, stage
        assert "| ok |" in rows[stage], rows[stage]
        assert f"===== stage {stage} " in log
    assert "compiled " in rows["cold"] and "XLA program" in rows["cold"]
    assert "cropped to 3:4" in rows["warm"]
    assert "pct_peak" in rows["per_eval"] and "gflop" in rows["per_eval"]
    assert "throughput_run" in rows["sweep"]
    assert "passed: 0" not in rows["tests"]
