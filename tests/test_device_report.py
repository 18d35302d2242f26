"""scripts/device_report.py: --dry-run walks every stage at tiny sizes on the CPU; the XLA stages, which run
only on a GPU, are checked here on their flags, their commands and canned output of the CLI."""

import contextlib
import importlib.util
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from nst_jax._src import backend
from nst_jax.cli import _stylize as stylize

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("device_report", ROOT / "scripts" / "device_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)

RUN_STAGES = ("env", "preset", "warm", "steps500", "sizes", "per_eval", "sweep", "tests", "pastiche")
# What nst-jax printed on a three-level cold run (its lines, the progress bar's carriage returns, the summary
# line of nst_jax.compilation after the CLI's own).
COLD = ("3 scales, longest sides 128, 256, 512 px, 80, 40, 40 iterations\n"
        "compiling for 512x341 ...\n"
        "\r  0%|          | 0/160 [00:00<?, ?it/s]\r100%|##########| 160/160 [00:00<00:00, 285.71it/s, loss=1.9]\n"
        "wrote /tmp/preset.png (512x341)\n"
        "time per iteration: 0.003 s (160 iterations, 171 loss evaluations, in 0.6 s; compile 97.0 s)\n"
        "final loss: content=0.5872  style=0.8785  tv=0.4294  total=1.895\n"
        "compiled 16 XLA programs (16 cache misses, 0 hits): trace 9.6 s, lower 1.9 s, compile 80.5 s\n"
        "compiled 16 XLA programs (16 cache misses, 0 hits): trace 9.9 s, lower 1.9 s, compile 80.5 s\n")
WARM = COLD.replace("16 cache misses, 0 hits", "0 cache misses, 16 hits").replace("compile 80.5 s", "compile 0.6 s")
UNKNOWN = ("F1207 16:37:04.698981   17547 parse_flags_from_env.cc:234] Unknown flag in XLA_FLAGS: "
           "--xla_gpu_experimental_enable_fusion_autotuner=false\n")
# Every XLA setting's flags, as the rows' runs get them with no XLA_FLAGS of the user's.
EXPECTED_FLAGS = {
    "xla_autotune4": "--xla_gpu_autotune_level=4 --xla_gpu_per_fusion_autotune_cache_dir={cache}",
    "xla_autotune_cache": "--xla_gpu_per_fusion_autotune_cache_dir={cache}",
    "xla_autotune3": "--xla_gpu_autotune_level=3",
    "xla_autotune1": "--xla_gpu_autotune_level=1",
    "xla_no_triton_gemm": "--xla_gpu_enable_triton_gemm=false",
    "xla_no_fusion_autotuner": "--xla_gpu_experimental_enable_fusion_autotuner=false",
    "xla_autotune2": "--xla_gpu_autotune_level=2",
    "xla_autotune0": "--xla_gpu_autotune_level=0",
}


def test_parse_cli_reads_every_line_it_uses():
    fields = report.parse_cli(COLD)
    assert fields["summary"].startswith("compiled 16 XLA programs") and fields["timing"].startswith("time per")
    assert (fields["programs"], fields["misses"], fields["hits"], fields["compile_s"]) == (16, 16, 0, 80.5)
    assert fields["ms_per_step"] == pytest.approx(1e3 / 285.71, abs=1e-3)  # the bar's rate, not the 3 ms line
    assert fields["levels"] == "3 levels 128/256/512 px, 80+40+40 steps"
    assert fields["unknown_flags"] == []
    one = report.parse_cli("compiling for 512x341 ...\ntime per iteration: 0.562 s (40 iterations)\n"
                           "compiled 6 XLA programs (5 cache misses, 0 hits, 1 uncached): trace 1.5 s, lower 0.4 s, "
                           "compile 4.2 s\n")
    assert (one["levels"], one["ms_per_step"], one["programs"], one["misses"], one["compile_s"]) == (
        "1 level", 562.0, 6, 5, 4.2)
    slow = report.parse_cli("\r100%|##########| 40/40 [01:11<00:00,  1.78s/it]\ncompiled 1 XLA program: trace 0.1 s, "
                            "lower 0.0 s, compile 0.3 s\n")
    assert (slow["ms_per_step"], slow["programs"], slow["hits"]) == (1780.0, 1, 0)
    assert report.parse_cli(UNKNOWN)["unknown_flags"] == ["--xla_gpu_experimental_enable_fusion_autotuner=false"]
    empty = report.parse_cli("")
    assert empty["summary"] == "no summary" and empty["programs"] is None and empty["levels"] is None


def _ran(text, rc=0, wall=0.0):
    return {**report.parse_cli(text), "rc": rc, "wall_s": wall, "status": report.run_status(rc, [], None)}


def test_preset_row_holds_cold_warm_and_the_target():
    p = report.params(dry=False)
    row = report.preset_row(p, _ran(COLD, wall=104.2), _ran(WARM, wall=12.5))
    assert row["run"] == "default preset at 512 px, 3 levels 128/256/512 px, 80+40+40 steps"
    assert (row["cold_wall_s"], row["warm_wall_s"], row["cold_compile_s"], row["warm_compile_s"]) == (
        104.2, 12.5, 80.5, 0.6)
    assert (row["programs"], row["cold_misses"], row["warm_hits"], row["status"]) == (16, 16, 16, "cold ok, warm ok")
    assert row["cold_to_warm"] == "8.34x" and row["target"] == "cold <= 3x warm: missed"
    assert report.preset_row(p, _ran(COLD, wall=30.0), _ran(WARM, wall=12.5))["target"] == "cold <= 3x warm: met"
    failed = report.preset_row(p, {**_ran(COLD[:120], rc=None, wall=165.0), "status": "timed out after 165 s"}, None)
    assert failed["status"] == "timed out after 165 s" and failed["warm_wall_s"] == "not run"
    assert failed["run"] == "default preset at 512 px, 3 levels 128/256/512 px, 80+40+40 steps"


def test_xla_flags_are_merged_without_overriding_the_users(tmp_path):
    assert list(report.XLA_SETTINGS) == list(EXPECTED_FLAGS)
    cache = tmp_path / report.AUTOTUNE_CACHE
    user = "--xla_gpu_autotune_level=2 --xla_dump_to=/tmp/dump"
    for name, expected in EXPECTED_FLAGS.items():
        expected = expected.format(cache=cache)
        env, kept = report.xla_env(name, tmp_path, "")
        assert (env["XLA_FLAGS"], kept) == (expected, []), name
        flags = dict(part.lstrip("-").split("=", 1) for part in expected.split())
        env, kept = report.xla_env(name, tmp_path, user)
        assert env["XLA_FLAGS"] == backend.merged_xla_flags(user, flags), name
        assert env["XLA_FLAGS"].startswith(user) and env["XLA_FLAGS"].count("xla_gpu_autotune_level") == 1, name
        assert kept == (["xla_gpu_autotune_level"] if "xla_gpu_autotune_level" in flags else []), name
        note = report.xla_row(name, env, kept, None, "skipped (GPU only)").get("note", "")
        assert ("xla_gpu_autotune_level" in note) == bool(kept), name
        # JAX would point the autotune cache into each run's own compilation cache, over the flag.
        shared = "xla_gpu_per_fusion_autotune_cache_dir" in flags
        assert (env.get("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES") == "none") == shared, name


@pytest.mark.parametrize("output, rc, sleep, status", [
    (COLD.replace("16", "6").replace("3 scales, longest sides 128, 256, 512 px, 80, 40, 40 iterations\n", ""), 0, 0,
     "ok"),
    (UNKNOWN, 1, 0, "unknown flag: --xla_gpu_experimental_enable_fusion_autotuner=false"),
    ("compiling for 512x341 ...\n", None, 30, "timed out after"),
], ids=["ok", "unknown flag", "timed out"])
def test_xla_stage_runs_its_command_and_writes_its_row(tmp_path, monkeypatch, capsys, output, rc, sleep, status):
    # The CLI stands in as a script that prints what nst-jax would and records its command and environment.
    seen = tmp_path / "seen.json"
    fake = ("import json, os, sys, time; "
            f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(seen)!r}, 'w')); "
            f"sys.stdout.write({output!r}); sys.stdout.flush(); time.sleep({sleep}); sys.exit({rc or 0})")
    real_argv = report.cli_argv
    monkeypatch.setattr(report, "cli_argv", lambda *a, **k: [sys.executable, "-c", fake, *real_argv(*a, **k)[1:]])
    monkeypatch.setenv("NST_REPORT_STAGE_TIMEOUT", "3")  # the run gets what is left less 2 s for the row
    monkeypatch.setattr(report, "_STARTED", report.time.perf_counter())
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    report.CHILDREN["xla_no_fusion_autotuner"](report.params(dry=False), tmp_path)
    rows = [json.loads(line[4:]) for line in capsys.readouterr().out.splitlines() if line.startswith("ROW ")]
    assert len(rows) == 1
    row = rows[0]
    assert row["setting"] == "fusion autotuner off" and row["status"].startswith(status)
    assert row["xla_flags"] == "--xla_gpu_experimental_enable_fusion_autotuner=false"
    if status == "ok":
        assert (row["compile_s"], row["programs"], row["ms_per_step"]) == (80.5, 6, pytest.approx(3.5, abs=1e-3))
        assert row["cold_wall_s"] > 0
    else:
        assert row["compile_s"] is None
    ran = json.loads(seen.read_text())
    assert ran["env"]["XLA_FLAGS"] == row["xla_flags"]
    argv = ran["argv"][3:]  # after "-m nst_jax.compilation nst_jax.cli._stylize"
    assert argv[argv.index("--size") + 1] == "512" and argv[argv.index("--iterations") + 1] == "40"
    assert argv[argv.index("--scales") + 1] == "1"
    assert argv[argv.index("--compile-cache") + 1] == str(tmp_path / "cache_xla_no_fusion_autotuner")


def _resolved_levels(argv):
    """The levels nst-jax resolves for a report's command (its --dry-run, in this process)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert stylize.main(argv[argv.index("nst_jax.cli._stylize") + 1:] + ["--dry-run"]) == 0
    return [(max(level["shape"]), level["iterations"]) for level in json.loads(out.getvalue())["spec"]["levels"]]


def test_the_commands_run_the_default_preset_and_one_level(tmp_path):
    p = report.params(dry=False)
    content, style, _ = report.image_files()
    preset = report.cli_argv(p, tmp_path, content, style, str(tmp_path / "cache"), "preset")
    assert _resolved_levels(preset) == [(128, 80), (256, 40), (512, 40)]
    flags = report.cli_argv(p, tmp_path, content, style, str(tmp_path / "cache"), "x", steps=p["flag_iterations"],
                            extra=["--scales", "1"])
    assert _resolved_levels(flags) == [(512, 40)]


def test_the_installed_jaxlib_names_an_unknown_flag():
    flags = {"xla_gpu_autotune_level": "3", "xla_nst_jax_no_such_flag": "1"}
    assert report.unknown_xla_flags(flags, os.environ.get("XLA_FLAGS", "")) == ["--xla_nst_jax_no_such_flag=1"]


def test_plan_puts_the_core_stages_first_within_the_budget(capsys):
    names = [s.name for s in report.STAGES]
    assert set(names) == set(report.CHILDREN) and len(names) == len(set(names))
    assert names[:2] == ["env", "preset"]
    core = [s for s in report.STAGES if s.core]
    assert report.STAGES[:len(core)] == core  # the optional stages run after every core one
    assert sum(s.timeout for s in core) <= report.DEFAULT_BUDGET
    assert {s.name for s in report.STAGES if s.gpu_only} == set(report.XLA_SETTINGS)
    assert [s.name for s in report.selected(["pastiche", "xla", "env"])] == ["env", *report.XLA_SETTINGS, "pastiche"]
    assert report.main(["--plan"]) == 0
    plan = capsys.readouterr().out
    assert all(f"\n{name} " in plan for name in names)
    assert f"core stages {sum(s.timeout for s in core):.0f} s in all (budget {report.DEFAULT_BUDGET:.0f} s)" in plan


@pytest.mark.slow
def test_dry_run_walks_every_stage(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_report.py"), "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "device_report.md").read_text()
    log = (tmp_path / "device_report.log").read_text()
    assert "stage timeouts on the device: core stages" in table
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {line.split("|")[1].strip(): line for line in lines}
    for stage in RUN_STAGES:
        assert stage in rows, stage
        assert "| ok |" in rows[stage], rows[stage]
        assert f"===== stage {stage} " in log
    for stage, flags in EXPECTED_FLAGS.items():  # each says what it would set, after the suite's CPU flags
        assert "| skipped (GPU only) |" in rows[stage] and "xla_flags: " in rows[stage], rows[stage]
        assert flags.split()[0].split("=")[0] in rows[stage], rows[stage]
    assert "known to this jaxlib" in rows["env"]
    assert all(field in rows["preset"] for field in ("cold_wall_s", "warm_wall_s", "programs", "target: cold <= 3x"))
    assert "compile:" in rows["warm"] and "cropped to 3:4" in rows["warm"]
    assert "pct_peak" in rows["per_eval"] and "gflop" in rows["per_eval"]
    assert "throughput_run" in rows["sweep"]
    assert "passed: 0" not in rows["tests"]
