"""The CLI's reliability contract: bad inputs, signals, resume, numerical failure (real subprocesses where a
process matters: signals, kills, exit codes)."""

import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_jax._src.record import read_record
from nst_jax._src.vgg_io import DEFAULT_VGG_FILE, sha256_of

from .conftest import EXAMPLES, nst_in_process, script_env
from .image_cases import refused_cases

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "stylize.py"
CONTENT = EXAMPLES / "chelsea.png"
STYLE = EXAMPLES / "swirls.png"
SMALL = ["--size", "48", "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1"]


def env(**extra):
    return script_env(**extra)


def stylize(*args, extra_env=None, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env(**(extra_env or {})), cwd=cwd, timeout=600)


def bad_weights(tmp_path):
    """Weights files with each fault: ``{name: (path, words of the error)}``."""
    d = tmp_path / "weights"
    d.mkdir()
    with np.load(DEFAULT_VGG_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}

    def write(name, mutate):
        a = dict(arrays)
        mutate(a)
        np.savez(d / name, **a)
        (d / (name + ".sha256")).write_text(sha256_of(d / name) + "\n")
        return d / name

    def shape(a):
        a["conv2_1/bias"] = np.zeros(7, np.float32)

    def nan(a):
        a["conv4_1/table"] = a["conv4_1/table"].copy()
        a["conv4_1/table"][3] = np.nan

    truncated = d / "truncated.npz"
    truncated.write_bytes(DEFAULT_VGG_FILE.read_bytes()[:100_000])
    shutil.copy(str(DEFAULT_VGG_FILE) + ".sha256", str(truncated) + ".sha256")
    no_sidecar = d / "no_sidecar.npz"
    shutil.copy(DEFAULT_VGG_FILE, no_sidecar)
    wrong_sum = d / "wrong_sum.npz"
    shutil.copy(DEFAULT_VGG_FILE, wrong_sum)
    (d / "wrong_sum.npz.sha256").write_text("0" * 64 + "\n")
    return {
        "weights missing": (d / "nope.npz", "not found"),
        "weights truncated": (truncated, "sha256"),
        "weights wrong sha256": (wrong_sum, "sha256"),
        "weights no checksum file": (no_sidecar, "checksum file"),
        "weights wrong shape": (write("shape.npz", shape), "conv2_1/bias has shape (7,)"),
        "weights NaN": (write("nan.npz", nan), "NaN"),
    }


def bad_cases(tmp_path):
    """``{name: (arguments, words of the one-line error, extra environment)}``."""
    ok = ["--content", CONTENT, "--style", STYLE]
    cases = {}
    for name, (path, needle) in refused_cases(tmp_path).items():
        role = "--style" if len(cases) % 2 else "--content"
        args = ["--content", CONTENT, "--style", STYLE]
        args[args.index(role) + 1] = path
        cases[f"image: {name} ({role})"] = (args, needle, None)
    cases["image: bad --init file"] = (ok + ["--init", tmp_path / "empty.png"], "empty file", None)
    cases["image: --init aspect differs"] = (ok + ["--init", STYLE], "same aspect ratio", None)
    for name, (path, needle) in bad_weights(tmp_path).items():
        cases[name] = (ok + ["--vgg", path], needle, None)
    plain_file = tmp_path / "plainfile"
    plain_file.write_text("x")
    (tmp_path / "existing.png").write_bytes(b"keep me")
    (tmp_path / "junk.ckpt.npz").write_text("junk")
    (tmp_path / "taken.ckpt.npz").write_text("someone's checkpoint")
    cases.update({
        "unknown style layer": (ok + ["--style-layers", "relu1_1", "relu9_1"], "relu9_1", None),
        "style layer weights mismatch": (ok + ["--style-layer-weights", "1", "2"], "style layer weights", None),
        "size too small": (ok + ["--size", 16], "--size", None),
        "zero iterations": (ok + ["--iterations", 0], "iterations", None),
        "negative checkpoint interval": (ok + ["--checkpoint-every", -5], "--checkpoint-every", None),
        "NaN style weight": (ok + ["--style-weight", "nan"], "style weight", None),
        "output directory missing": (ok + ["--output", plain_file / "out.png"], "does not exist", None),
        "output format unknown": (ok + ["--output", tmp_path / "out.xyz"], "unknown image format", None),
        "output exists": (ok + ["--output", tmp_path / "existing.png"], "--overwrite", None),
        "checkpoint exists": (ok + ["--checkpoint", tmp_path / "taken.ckpt.npz"], "--resume", None),
        "not enough memory": (ok + ["--size", 512], "try --size", {"NST_JAX_MEMORY_LIMIT_BYTES": "200e6"}),
        "resume: missing checkpoint": (["--resume", tmp_path / "gone.ckpt.npz"], "not found", None),
        "resume: not a checkpoint": (["--resume", tmp_path / "junk.ckpt.npz"], "not a readable", None),
        "no output": (ok, "--output is required", None),
    })
    return cases


def test_bad_inputs_each_one_line_and_nothing_written(tmp_path, capsys, monkeypatch):
    """Every case in this process (each is refused before anything is compiled, so a process per case
    would mostly time JAX's import); one of them in a real process too, below."""
    out = tmp_path / "out.png"
    cases = bad_cases(tmp_path)
    assert len(cases) >= 20
    for name, (args, needle, extra_env) in cases.items():
        defaults = [] if "--output" in args or "--resume" in args or name == "no output" else ["--output", out]
        with monkeypatch.context() as patch:
            for key, value in (extra_env or {}).items():
                patch.setenv(key, value)
            code, _, err = nst_in_process(capsys, *defaults, "--size", 64, "--iterations", 2, *args)
        lines = err.strip().splitlines()
        assert code == 2, (name, code, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (name, lines)
        assert needle in lines[0], (name, lines[0])
        if name.startswith("weights"):
            assert "convert_weights.py" in lines[0], (name, lines[0])
        assert not out.exists() and not out.with_name("out.ckpt.npz").exists(), name
    proc = stylize("--output", out, "--size", 64, *cases["not enough memory"][0],
                   extra_env=cases["not enough memory"][2])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "try --size" in proc.stderr, proc.stderr
    assert (tmp_path / "existing.png").read_bytes() == b"keep me"
    assert (tmp_path / "taken.ckpt.npz").read_text() == "someone's checkpoint"
    assert not [p for p in tmp_path.rglob(".*.tmp")]
    # ... and a good input still works afterwards.
    proc = stylize("--content", CONTENT, "--style", STYLE, "--output", out, *SMALL, "--iterations", 2)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (48, 32)


def wait_for(path, proc, timeout=120):
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout
        time.sleep(0.02)


# ``scripts/stylize.py`` that holds still after its first checkpoint until a signal has arrived, so that a
# test's SIGINT lands at that step (never by timing): the signal itself comes from outside, as a user's would.
HOLD_AFTER_FIRST_CHECKPOINT = """
import sys, time
from nst_jax.cli import _common, _outputs
from nst_jax.cli._stylize import main
signals, handle, checkpoint = [], _common.SignalFlag.handle, _outputs.Writer.checkpoint
def on_signal(self, signum, frame):
    signals.append(signum)
    handle(self, signum, frame)
def hold(self, progress, notes):
    first = not self.checkpoint_written
    checkpoint(self, progress, notes)
    while first and not signals:
        time.sleep(0.01)
_common.SignalFlag.handle, _outputs.Writer.checkpoint = on_signal, hold
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_and_resume_is_bitwise_equal(tmp_path, capsys):
    """A run stopped by SIGINT in a real process, resumed from its checkpoint, ends bitwise equal to a run
    never stopped. The stopped run is held after its first checkpoint (step 10 of 30) until the signal
    comes; the reference, the refusals and the resume run in this process (each refusal before compute)."""
    content = tmp_path / "content.png"
    shutil.copy(CONTENT, content)
    common = ["--content", content, "--style", STYLE, *SMALL, "--iterations", 30, "--checkpoint-every", 10]
    cut = tmp_path / "cut.png"
    ckpt = tmp_path / "cut.ckpt.npz"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AFTER_FIRST_CHECKPOINT, *map(str, common), "--output",
                             str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        # The reference runs while the other process starts up.
        code, _, err = nst_in_process(capsys, *common, "--output", tmp_path / "ref.png")
        assert code == 0, err
        wait_for(ckpt, proc)  # the first periodic checkpoint: the run is under way, and held there
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 3, err
    assert "Traceback" not in err and f"--resume {ckpt}" in last, err
    assert "interrupted at step 10 of 30" in last, last
    assert not cut.exists()

    # A different configuration, or a changed input, is refused, naming what differs.
    code, _, err = nst_in_process(capsys, "--resume", ckpt, "--style-weight", 5)
    assert code == 2 and "--style-weight 5.0" in err and "from its record" in err, err
    original = content.read_bytes()
    Image.open(CONTENT).transpose(Image.FLIP_LEFT_RIGHT).save(content)
    code, _, err = nst_in_process(capsys, "--resume", ckpt)
    assert code == 2 and "inputs.content" in err, err
    content.write_bytes(original)
    assert not cut.exists()

    code, out, err = nst_in_process(capsys, "--resume", ckpt)
    assert code == 0 and "at step 10 of 30" in out + err, err
    # The same pixels, and the same run in the records they carry.
    np.testing.assert_array_equal(np.asarray(Image.open(cut)), np.asarray(Image.open(tmp_path / "ref.png")))
    assert read_record(cut) == read_record(tmp_path / "ref.png")
    with np.load(tmp_path / "ref.ckpt.npz") as a, np.load(ckpt) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert json.loads(str(a["meta"]))["step"] == json.loads(str(b["meta"]))["step"] == 30


def test_sigterm_checkpoints_and_exits_3(tmp_path):
    out = tmp_path / "out.png"
    args = ["--content", CONTENT, "--style", STYLE, "--output", out, *SMALL, "--iterations", 100000,
            "--save-every", 10]
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    wait_for(tmp_path / "out_00010.png", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in err, err
    assert "checkpoint saved to" in err and (tmp_path / "out.ckpt.npz").is_file()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_divergence_exits_4_with_last_good_image(tmp_path):
    out = tmp_path / "out.png"
    proc = stylize("--content", CONTENT, "--style", STYLE, "--output", out, *SMALL, "--iterations", 40,
                   "--optimizer", "adam", "--learning-rate", "1e30")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4, proc.stderr
    assert "diverged" in lines[-1] and "last finite image" in lines[-1] and "Traceback" not in proc.stderr
    assert not out.exists()
    with Image.open(tmp_path / "out_last_good.png") as im:
        assert im.size == (48, 32)
