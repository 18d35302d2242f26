"""Hostile round three (issue 29): special files, the sweep's outputs, name lengths, checkpoints validated before
compiling, image guards, resource bounds, the environment, signals from start to end, and the messages.

In-process on 32 px images with 1-3 steps, except where a process is the point (the environment a backend
starts from, the output encoding). Each case asserts the exit code, one line on stderr, and what was (not)
written.
"""

import io
import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import nst_jax.files
from nst_jax._src.image import load_image, save_image
from nst_jax.cli import _stylize as stylize_cli
from nst_jax.cli import _sweep as sweep_cli
from nst_jax.errors import NSTError

from .conftest import SCRIPTS, script_env, smooth_image
from .image_cases import gradient
from .test_hostile import SMALL, nst, refused, tampered_checkpoint, tampered_record

SWEEP_SMALL = ["--size", "32", "--content-layer", "relu1_1", "--style-layers", "relu1_1", "--iterations", "2",
               "--no-metrics"]


def not_compiled(monkeypatch):
    """Makes any optimisation of the CLI an internal error (exit 1), so that a refusal (exit 2) shows that the
    run was refused before anything was compiled."""
    def compiled(*args, **kwargs):
        raise AssertionError("the run was started")

    monkeypatch.setattr(stylize_cli, "run_spec", compiled)


def sweep(capsys, *args):
    try:
        code = sweep_cli.main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.startswith("error") or "Traceback" in line]


# --- Only regular files are ever replaced ------------------------------------------------------------------------

def special_files(tmp_path):
    """A FIFO, a Unix socket and (as root) a character device like /dev/null, in ``tmp_path``."""
    import socket

    made = {}
    os.mkfifo(tmp_path / "fifo.png")
    made["fifo"] = tmp_path / "fifo.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.png"))
    made["socket"] = tmp_path / "sock.png"
    try:
        os.mknod(tmp_path / "null.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        made["character device"] = tmp_path / "null.png"
    except (PermissionError, OSError):
        pass
    return made, sock


@pytest.mark.parametrize("role", ["--checkpoint", "-o", "--preview"])
def test_special_files_never_replaced(capsys, pics, tmp_path, monkeypatch, role):
    content, style = pics
    made, sock = special_files(tmp_path)
    not_compiled(monkeypatch)
    try:
        for kind, path in made.items():
            before = os.lstat(path)
            args = [content, style, *SMALL, "--iterations", 1]
            args += ["-o", tmp_path / "o.png", role, path] if role != "-o" else ["-o", path]
            for overwrite in ([], ["--overwrite"]):
                refused(capsys, 2, *args, *overwrite, needle="not a regular file")
                after = os.lstat(path)
                assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino, kind
    finally:
        sock.close()


def test_intermediate_save_name_that_is_special(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    os.mkfifo(tmp_path / "o_00001.png")
    not_compiled(monkeypatch)
    refused(capsys, 2, content, style, "-o", tmp_path / "o.png", *SMALL, "--iterations", 2, "--save-every", 1,
            "--overwrite", needle="not a regular file")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "o_00001.png").st_mode)


def test_fifo_checkpoint_is_not_called_an_interrupted_run(capsys, pics, tmp_path):
    content, style = pics
    os.mkfifo(tmp_path / "o.ckpt.npz")
    line = refused(capsys, 2, content, style, "-o", tmp_path / "o.png", *SMALL, needle="not a regular file")
    assert "interrupted" not in line
    refused(capsys, 2, "--rerun", tmp_path / "o.ckpt.npz", needle="not a regular file")  # never opened: it would block


# --- Every name the run writes is distinct, up front ------------------------------------------------------------

def test_preview_named_like_an_intermediate_save(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    not_compiled(monkeypatch)
    refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--preview", tmp_path / "o_00002.png",
            "--save-every", 2, *SMALL, "--iterations", 4, needle="intermediate save")
    refused(capsys, 2, content, style, "-o", tmp_path / "p.png", "--checkpoint", tmp_path / "p_00002.png",
            "--save-every", 2, *SMALL, "--iterations", 4, needle="intermediate save")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def test_rerun_never_replaces_its_source(capsys, done, tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes((done / "a.png").read_bytes())
    before = src.read_bytes()
    refused(capsys, 2, "--rerun", src, "-o", src, "--overwrite", needle="image being rerun")
    assert src.read_bytes() == before


# --- Names that cannot be written are refused before the compute -------------------------------------------------

def test_long_names_refused_before_the_compute(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    not_compiled(monkeypatch)
    for length in (limit - 5, limit + 45):  # valid but too long for a save beside it, and invalid
        name = "x" * (length - 4) + ".png"
        line = refused(capsys, 2, content, style, "-o", tmp_path / name, *SMALL, needle="too long")
        assert str(limit) in line and "free space" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def test_refused_run_creates_no_cache_directory(capsys, pics, tmp_path):
    _, style = pics
    cache = tmp_path / "new" / "a" / "b"
    refused(capsys, 2, tmp_path / "missing.png", style, "-o", tmp_path / "o.png", "--compile-cache", cache, *SMALL,
            needle="no such file")
    assert not (tmp_path / "new").exists()


# --- A file appearing at the checkpoint: the run goes on, and says what it did ----------------------------------

def test_checkpoint_appearing_mid_run_keeps_the_run_going(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    out, ckpt = tmp_path / "o.png", tmp_path / "o.ckpt.npz"
    original = nst_jax.files.save_checkpoint

    def racing(path, checkpoint, **kw):
        if pathlib.Path(path) == ckpt and not ckpt.exists():
            ckpt.write_bytes(b"theirs")
        return original(path, checkpoint, **kw)

    monkeypatch.setattr(nst_jax.files, "save_checkpoint", racing)
    code, stdout, err = nst(capsys, content, style, "-o", out, *SMALL, "--iterations", 4, "--checkpoint-every", 1)
    assert code == 6 and len(err) == 1, err
    assert ckpt.read_bytes() == b"theirs"
    assert Image.open(out).size == (32, 32) and f"wrote {out}" in stdout  # the whole run, and its output
    beside = tmp_path / "o.ckpt.nst-jax-1.npz"
    assert str(beside) in err[0] and str(out) in err[0]
    assert nst_jax.files.load_checkpoint(beside).step == 4  # every later checkpoint went beside it too


# --- Checkpoints validated before compiling ----------------------------------------------------------------------

def _drop(name):
    return lambda a: a.pop(name)


def _encrypted(src, dst):
    """The checkpoint with the zip's 'encrypted' flag set on one entry (local header and directory)."""
    data = bytearray(src.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = data.find(sig)
        data[i + offset] |= 1
    dst.write_bytes(bytes(data))
    return dst


def _huge_header(src, dst):
    """The checkpoint with one .npy header claiming 10^12 elements (the data left as it was)."""
    with zipfile.ZipFile(src) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    name = "history/total.npy"
    raw = entries[name]
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + header_len].decode("latin1")
    header = re.sub(r"'shape': \([^)]*\)", "'shape': (1000000000000,)", header)
    header = header.rstrip().ljust(header_len - 1) + "\n"
    assert len(header) == header_len
    entries[name] = raw[:10] + header.encode("latin1") + raw[10 + header_len:]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for k, v in entries.items():
            z.writestr(k, v)
    return dst


CHECKPOINT_FIELDS = {
    "history/step removed": (None, _drop("history/step"), "history/step"),
    "history/total 0-d": (None, lambda a: a.update({"history/total": np.float32(1)}), "history/total"),
    "step beyond the run": (lambda m: m.update(step=999), None, "step 999"),
    "float64 state": (None, lambda a: a.update({"state/0": a["state/0"].astype(np.float64)}), "float64"),
    "image of another shape": (None, lambda a: a.update({"state/0": np.zeros((1, 16, 16, 3), np.float32)}),
                               "state/0"),
    "a leaf without the member axis": (None, lambda a: a.update({"state/0": a["state/0"][0]}), "state/0"),
    "an optimiser leaf of another shape": (None, lambda a: a.update({"state/1": np.zeros((1, 7), np.float32)}),
                                           "state/1"),
}


def test_checkpoints_validated_before_compiling(capsys, done, tmp_path, monkeypatch):
    from nst_jax._src import driver

    class Uncompiled:
        """The start program, which may be lowered for its shapes but never compiled nor run."""

        def __init__(self, program):
            self.program = program

        def lower(self, *args):
            lowered = self.program.lower(*args)
            lowered.compile = self  # noqa: B010 - compiling it is what the check must not do
            return lowered

        def __call__(self, *args):
            raise AssertionError("the start program was compiled or run")

    real = driver.start_program
    monkeypatch.setattr(driver, "start_program", lambda *args: Uncompiled(real(*args)))
    for name, (meta, arrays, needle) in CHECKPOINT_FIELDS.items():
        ck = tampered_checkpoint(done / "a.ckpt.npz", tmp_path / "t.ckpt.npz", meta, arrays)
        line = refused(capsys, 2, "--resume", ck, "-o", tmp_path / "r.png", needle=needle)
        assert "internal error" not in line, name
    for name, make, needle in (("encrypted", _encrypted, "encrypted"), ("huge header", _huge_header, "history/total")):
        ck = make(done / "a.ckpt.npz", tmp_path / f"{name}.ckpt.npz")
        refused(capsys, 2, "--resume", ck, "-o", tmp_path / "r.png", needle=needle)
    assert not (tmp_path / "r.png").exists()


# --- Images ---------------------------------------------------------------------------------------------------------

def corrupt_jpeg(path):
    """A JPEG whose scan data has one byte flipped: libjpeg decodes it with a warning (most pixels wrong)."""
    buf = io.BytesIO()
    Image.fromarray(gradient(64, 96)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    data[data.find(b"\xff\xda") + 20] ^= 0xAA
    path.write_bytes(bytes(data))
    return path


def test_corrupt_jpeg_refused(tmp_path):
    with pytest.raises(NSTError, match="corrupt"):
        load_image(corrupt_jpeg(tmp_path / "c.jpg"))
    buf = io.BytesIO()
    Image.fromarray(gradient(64, 96)).save(buf, "JPEG", quality=90)
    (tmp_path / "ok.jpg").write_bytes(buf.getvalue())
    assert load_image(tmp_path / "ok.jpg").shape == (64, 96, 3)


@pytest.mark.parametrize("mode,key", [("RGB", (10, 20, 30)), ("L", 10)])
def test_colour_key_transparency_composited_on_white(tmp_path, mode, key):
    pixels = gradient(40, 40)
    if mode == "L":
        pixels = pixels[..., 0]
    pixels[:10] = key
    im = Image.fromarray(pixels, mode)
    im.save(tmp_path / "k.png", transparency=key)
    loaded = load_image(tmp_path / "k.png")
    np.testing.assert_array_equal(loaded[:10], 1.0)
    expected = np.asarray(im.convert("RGB"), np.float32)[10:] / 255
    np.testing.assert_array_equal(loaded[10:], expected)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_float_images_refused(tmp_path, bad):
    arr = np.full((40, 40), 0.5, np.float32)
    arr[3, 4] = bad
    Image.fromarray(arr, "F").save(tmp_path / "f.tif")
    with pytest.raises(NSTError, match="not finite"):
        load_image(tmp_path / "f.tif")


def test_eps_input_refused(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    eps = tmp_path / "e.eps"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\n"
                   "%%EOF\n")
    ran = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a) or Image.new("RGB", (64, 64)))
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    with pytest.raises(NSTError, match="PostScript"):
        load_image(eps)
    assert not ran


def test_output_format_that_cannot_hold_the_size(capsys, pics, tmp_path, monkeypatch):
    content, _ = pics
    wide = tmp_path / "wide.png"
    save_image(wide, smooth_image(32, 48, 3))
    not_compiled(monkeypatch)
    refused(capsys, 2, wide, content, "-o", tmp_path / "o.ico", "--size", 48, "--content-layer", "relu1_1",
            "--style-layers", "relu1_1", needle="cannot hold")
    assert not (tmp_path / "o.ico").exists()


# --- Resource bounds before allocation ----------------------------------------------------------------------------

def test_scales_bounded(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    not_compiled(monkeypatch)
    for scales in ("1000000000000", "40"):
        refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--size", 64, "--scales", scales,
                "--min-size", 32, needle="--scales")
        refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--size", 64, "--scales", scales,
                needle="--scales")


def test_style_scale_checked_before_resizing(capsys, pics, tmp_path, monkeypatch):
    import nst_jax._src.image

    content, style = pics
    resized = []
    original = nst_jax._src.image.resize_longest
    monkeypatch.setattr(nst_jax._src.image, "resize_longest",
                        lambda im, size: resized.append(size) or original(im, size))
    monkeypatch.setenv("NST_JAX_MEMORY_LIMIT_BYTES", str(4 * 2**30))
    line = refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--size", 1024, "--style-scale", 8,
                   "--content-layer", "relu1_1", "--style-layers", "relu1_1", needle="--style-scale")
    assert max(resized, default=0) < 8192, resized
    # The parts listed add up to the total.
    def gib(text):
        value, unit = re.search(r"(\d+(?:\.\d+)?) (GiB|MiB)", text).groups()
        return float(value) * (1 if unit == "GiB" else 2**-10)

    total = gib(line.split("needs about ")[1])
    parts = [gib(part) for part in line.split("needs about ")[1].split("(", 1)[1].split(")")[0].split(" + ")]
    assert len(parts) >= 4 and abs(sum(parts) - total) <= 0.01 * total + 0.01, (line, parts)


# --- The environment ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-1", "nan", "0", "lots"])
def test_memory_limit_variable_validated(capsys, pics, tmp_path, monkeypatch, value):
    content, style = pics
    monkeypatch.setenv("NST_JAX_MEMORY_LIMIT_BYTES", value)
    refused(capsys, 2, content, style, "-o", tmp_path / "o.png", *SMALL, needle="NST_JAX_MEMORY_LIMIT_BYTES")


def test_cache_variable_validated(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("NST_JAX_CACHE_DIR", str(tmp_path / "afile"))
    refused(capsys, 2, content, style, "-o", tmp_path / "o.png", *SMALL, needle="NST_JAX_CACHE_DIR")
    assert (tmp_path / "afile").read_text() == "x"


def tool(script, *args, **env):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=script_env(**env), timeout=300)


@pytest.mark.parametrize("env,needle", [({"JAX_PLATFORMS": "gpu"}, "JAX_PLATFORMS=gpu"),
                                        ({"XLA_FLAGS": "--bogus_flag=1"}, "XLA_FLAGS")])
def test_backend_faults_exit_5(pics, tmp_path, env, needle):
    content, style = pics
    proc = tool("stylize.py", content, style, "-o", tmp_path / "o.png", *SMALL, **env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 5 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0] and "rocm" not in lines[0] and "internal" not in lines[0], lines
    assert not (tmp_path / "o.png").exists()


def test_output_encoding_never_fails_a_written_result(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    out = tmp_path / "sortie_été.png"
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # as with PYTHONIOENCODING=ascii
    monkeypatch.setattr(sys, "stdout", stdout)
    code, _, err = nst(capsys, content, style, "-o", out, *SMALL, "--iterations", 1)
    assert code == 0 and not err, err
    assert Image.open(out).size == (32, 32)
    stdout.flush()
    shown = str(out).replace("é", "\\xe9")
    assert f"wrote {shown}" in stdout.buffer.getvalue().decode("ascii")


# --- Signals from the first instruction to the last ---------------------------------------------------------------

class Killed(Exception):
    """What SIGTERM raises here if the tool installed no handler of its own (so the test fails, not pytest)."""


@pytest.fixture
def sigterm_guard():
    def raise_killed(signum, frame):
        raise Killed

    previous = signal.signal(signal.SIGTERM, raise_killed)
    yield
    signal.signal(signal.SIGTERM, previous)


def _terminate(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_start_up(capsys, pics, tmp_path, monkeypatch, sigterm_guard):
    from nst_jax.cli import _common as common

    content, style = pics
    original = common.load_vgg
    monkeypatch.setattr(common, "load_vgg", lambda choice: (_terminate(), original(choice))[1])
    line = refused(capsys, 3, content, style, "-o", tmp_path / "o.png", *SMALL, needle="interrupted")
    assert "nothing written" in line and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("script", ["stylize.py", "sweep.py"])
def test_sigterm_while_python_imports_jax(pics, tmp_path, script):
    """A real process: SIGTERM half a second after it starts (Python is importing JAX, which takes
    seconds here; later it would be main's own handler, with the same outcome) ends it with exit 3 and one
    line, not with the signal."""
    import time

    content, style = pics
    target = ["-o", tmp_path / "o.png"] if script == "stylize.py" else ["--output-dir", tmp_path / "sw"]
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / script), str(content), str(style), *map(str, target),
                             *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1 and "interrupted" in lines[0], (proc.returncode, err)
    assert "nothing written" in lines[0] and sorted(os.listdir(tmp_path)) == ["content.png", "style.png"]


def test_sigterm_after_the_output_is_written(capsys, pics, tmp_path, monkeypatch, sigterm_guard):
    content, style = pics
    original = stylize_cli._summary
    monkeypatch.setattr(stylize_cli, "_summary", lambda job, result: (_terminate(), original(job, result)))
    line = refused(capsys, 3, content, style, "-o", tmp_path / "o.png", *SMALL, "--iterations", 1,
                   needle="interrupted")
    assert f"{tmp_path / 'o.png'} was written" in line and Image.open(tmp_path / "o.png").size == (32, 32)


def test_sigterm_in_the_sweep(capsys, pics, tmp_path, monkeypatch, sigterm_guard):
    content, style = pics
    original = sweep_cli.sweep_specs

    def terminated(vgg, specs, callback=None, **kw):
        def on_chunk(*args):
            _terminate()
            return callback(*args)

        return original(vgg, specs, callback=on_chunk, **kw)

    monkeypatch.setattr(sweep_cli, "sweep_specs", terminated)
    code, _, err = sweep(capsys, content, style, "--output-dir", tmp_path / "sw", *SWEEP_SMALL)
    assert code == 3 and len(err) == 1 and "interrupted" in err[0], err
    assert not (tmp_path / "sw").exists()


# --- The sweep follows the CLI's rules -------------------------------------------------------------------------------

def test_sweep_keeps_a_file_that_appears(capsys, pics, tmp_path, monkeypatch):
    content, style = pics
    out = tmp_path / "sw"
    original = sweep_cli.sweep_specs

    def racing(*args, **kw):
        out.mkdir(exist_ok=True)
        (out / "losses.json").write_text("theirs")
        (out / "contact_sheet.png").write_text("theirs")
        return original(*args, **kw)

    monkeypatch.setattr(sweep_cli, "sweep_specs", racing)
    code, _, err = sweep(capsys, content, style, "--output-dir", out, *SWEEP_SMALL)
    assert code == 6 and len(err) == 1 and "appeared" in err[0], err
    assert (out / "losses.json").read_text() == "theirs" and (out / "contact_sheet.png").read_text() == "theirs"
    assert json.loads((out / "losses.nst-jax-1.json").read_text())["members"]
    assert (out / "member_00.png").is_file()


def test_sweep_special_files_refused(capsys, pics, tmp_path):
    content, style = pics
    out = tmp_path / "sw"
    out.mkdir()
    os.mkfifo(out / "losses.json")
    for overwrite in ([], ["--overwrite"]):
        code, _, err = sweep(capsys, content, style, "--output-dir", out, *SWEEP_SMALL, *overwrite)
        assert code == 2 and len(err) == 1 and "not a regular file" in err[0], err
    assert stat.S_ISFIFO(os.lstat(out / "losses.json").st_mode) and sorted(os.listdir(out)) == ["losses.json"]


# --- Messages ---------------------------------------------------------------------------------------------------

def test_output_directory_message(capsys, pics, tmp_path):
    content, style = pics
    line = refused(capsys, 2, content, style, "-o", f"{tmp_path}/", *SMALL, needle="directory")
    assert "unknown image format" not in line


def test_vgg_choice_misspelt(capsys, pics, tmp_path):
    content, style = pics
    line = refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--vgg", "Original", *SMALL,
                   needle="original, normalized")
    assert "regenerate" not in line


def test_exit_5_advice_names_the_destination(capsys, pics, tmp_path, monkeypatch):
    import errno

    from nst_jax._src import atomic

    content, style = pics

    def full(src, dst):  # the move of the finished temporary file fails, naming it (as the system does)
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(atomic.os, "link", full)
    line = refused(capsys, 5, content, style, "-o", tmp_path / "o.png", *SMALL, "--iterations", 1,
                   needle="No space left")
    assert str(tmp_path / "o.png") in line and ".tmp" not in line


def test_record_of_another_version_is_named(capsys, done, tmp_path):
    src = tampered_record(done / "a.png", tmp_path / "old.png", lambda r: r.update(version="0.0.1"))
    code, out, err = nst(capsys, "--rerun", src, "-o", tmp_path / "r.png")
    assert code == 0, err
    notes = [line for line in out.splitlines() if "0.0.1" in line]
    assert len(notes) == 1 and "note:" in notes[0], out
