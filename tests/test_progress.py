"""The command line's progress bar over a run of several levels, by what it prints."""

from __future__ import annotations

import re
import time

from nst_jax.cli import _common as common

from .conftest import EXAMPLES, nst_in_process


def _lines(text: str) -> list[str]:
    """What a terminal would have shown, line by line (tqdm redraws with carriage returns)."""
    return [part.strip() for line in text.splitlines() for part in line.split("\r") if part.strip()]


def test_time_left_adds_the_pending_compilation_and_elapsed_counts_from_the_start(capsys):
    bar = common.Bar(10, start=time.time() - 30.0)  # the run began 30 s ago (the first level compiling)
    bar.update(5, 5.0, 100.0)  # 5 steps in 5 s, 100 s of compiling to come
    bar.close()
    last = _lines(capsys.readouterr().err)[-1]
    assert re.search(r"5/10 \[00:30<01:45, +1.00it/s\]", last), last  # 5 steps at 1 it/s + 100 s; 30 s since the start


def test_a_two_level_run_reports_each_level_and_its_wall_time(tmp_path, capsys):
    start = time.perf_counter()
    code, out, err = nst_in_process(
        capsys, EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "-o", tmp_path / "o.png", "--size", 64,
        "--scales", 2, "--min-size", 32, "--iterations", 3, "--content-layer", "relu1_1", "--style-layers",
        "relu1_1")
    wall = time.perf_counter() - start
    assert code == 0, err
    shown = _lines(out + err)
    levels = [line for line in shown if line.startswith("level ")]
    w, h = map(int, re.search(r"wrote .* \((\d+)x(\d+)\)", out).groups())
    assert levels == [f"level 1 of 2: {round(w / 2)}x{round(h / 2)}, 3 iterations; compiling ...",
                      f"level 2 of 2: {w}x{h}, 3 iterations; compiling (begun while level 1 ran) ..."], shown
    assert not any(line.startswith("compiling for") for line in shown)  # no size that is not the level's
    bars = [line for line in err.replace("\r", "\n").splitlines() if re.search(r"\d+/6 \[", line)]
    assert re.search(r" 3/6 \[", bars[0]) and re.search(r" 6/6 \[", bars[-1])  # one bar over both levels
    minutes, seconds = map(int, re.search(r"6/6 \[(\d+):(\d+)<", bars[-1]).groups())
    compile_s, run_s = map(float, re.search(r"in ([\d.]+) s; compile ([\d.]+) s", out).groups()[::-1])
    # The last line's time is the run's: its compiling included (at least the summary's compile and run
    # seconds), and no more than the wall time around the whole command.
    assert compile_s + run_s - 1.0 <= 60 * minutes + seconds <= wall + 1.0, (bars[-1], compile_s, run_s, wall)
