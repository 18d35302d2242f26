"""A hostile run of the command line: untrusted checkpoints and records, outputs that would clobber inputs,
files appearing during a run, unwritable formats, faults of the system and file modes (issue 17).

Everything runs in-process on 32 px images with 1-3 steps; each case asserts the exit code, one line on
stderr, and that no file the user did not name was touched.
"""

import errno
import json
import os
import pathlib
import random
import shutil
import string
import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import nst_jax.files
from nst_jax._src import checkpoint as ckpt
from nst_jax._src.record import RECORD_KEY, read_record, save_options
from nst_jax.cli import _common as common
from nst_jax.errors import NSTError, OutputExists, clean, one_line

from .conftest import HOSTILE_SMALL, nst_in_process, script_env

SMALL = HOSTILE_SMALL


def nst(capsys, *args):
    """Runs ``nst-jax`` in-process: ``(exit code, stdout, stderr lines)``."""
    code, out, err = nst_in_process(capsys, *args)
    return code, out, [line for line in err.splitlines() if line.startswith("error") or "Traceback" in line]


def refused(capsys, code, *args, needle=""):
    got, _, err = nst(capsys, *args)
    assert got == code, (args, got, err)
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not any(ch in err[0] for ch in "\x1b\x07\x00"), err
    return err[0]


def tampered_checkpoint(src, dst, meta=None, arrays=None):
    with np.load(src) as npz:
        data = {k: npz[k] for k in npz.files}
    m = json.loads(str(data["meta"]))
    (meta or (lambda m: None))(m)
    (arrays or (lambda a: None))(data)
    data["meta"] = np.array(json.dumps(m))
    with open(dst, "wb") as f:
        np.savez(f, **data)
    return dst


def tampered_record(src, dst, change):
    record = read_record(src)
    change(record)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECORD_KEY, json.dumps(record), zip=True)
    Image.open(src).save(dst, pnginfo=info)
    return dst


# --- 1. A checkpoint never chooses where to write ---------------------------------------------------------------

def test_checkpoint_cannot_redirect_writes(capsys, done, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "important.png").write_bytes(b"precious")
    (elsewhere / "dotbashrc").write_text("alias ls=ls")

    def redirect(m):
        m["notes"].update(output=str(elsewhere / "important.png"), checkpoint=str(elsewhere / "dotbashrc"),
                          overwrite=True)

    ck = tampered_checkpoint(done / "a.ckpt.npz", tmp_path / "redirect2.ckpt.npz", redirect)
    code, out, err = nst(capsys, "--resume", ck)
    assert code == 0, err
    assert (elsewhere / "important.png").read_bytes() == b"precious"
    assert (elsewhere / "dotbashrc").read_text() == "alias ls=ls"
    assert (tmp_path / "redirect2.png").is_file() and f"writing {tmp_path / 'redirect2.png'}" in out
    # Resumed again without --overwrite: the output now exists and is refused (overwrite came from nowhere).
    refused(capsys, 2, "--resume", ck, needle="--overwrite")


# --- 2-4. Outputs never resolve to inputs, and are distinct ----------------------------------------------------

def test_outputs_never_clobber_inputs(capsys, pics, tmp_path):
    content, style = pics
    before = content.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(content)
    cases = {
        "output is content": (["-o", content, "--overwrite"], "content image"),
        "output is style (symlink)": (["-o", link, "--overwrite"], "content image"),
        "checkpoint is content": (["-o", tmp_path / "o.png", "--checkpoint", content, "--overwrite"], "content image"),
        "output is checkpoint": (["-o", tmp_path / "same.png", "--checkpoint", tmp_path / "same.png"], "same file"),
        "last-good is checkpoint": (["-o", tmp_path / "x.png", "--checkpoint", tmp_path / "x_last_good.png"],
                                    "same file"),
        "intermediate is content": (["-o", tmp_path / "cont.png", "--save-every", 1, "--content",
                                     tmp_path / "cont_00001.png"], "intermediate save"),
    }
    shutil.copy(content, tmp_path / "cont_00001.png")
    for name, (extra, needle) in cases.items():
        base = [] if "--content" in extra else [content]
        args = [*base, *([] if "--content" in extra else [style]), *extra, *SMALL, "--iterations", 1]
        if "--content" in extra:
            args += ["--style", style]
        line = refused(capsys, 2, *args, needle=needle)
        assert "Traceback" not in line, name
    assert content.read_bytes() == before
    assert not (tmp_path / "same.png").exists() and not (tmp_path / "o.png").exists()


def test_vgg_file_and_resumed_checkpoint_are_inputs(capsys, done, tmp_path, pics):
    from nst_jax._src.vgg_io import DEFAULT_VGG_FILE

    content, style = pics
    refused(capsys, 2, content, style, "-o", DEFAULT_VGG_FILE.with_suffix(".png"), "--checkpoint", DEFAULT_VGG_FILE,
            "--overwrite", *SMALL, needle="VGG file")
    ck = tmp_path / "r.png"  # a checkpoint under an image's name
    shutil.copy(done / "a.ckpt.npz", ck)
    refused(capsys, 2, "--resume", ck, "-o", ck, "--overwrite", needle="checkpoint being resumed")
    assert ck.read_bytes() == (done / "a.ckpt.npz").read_bytes()
    refused(capsys, 2, "--resume", ck, "-o", tmp_path / "o.png", "--checkpoint", tmp_path / "o_last_good.png",
            needle="same file")


# --- 4-5. The overwrite rule holds for every file and to the very end ----------------------------------------

def test_last_good_follows_overwrite_rule(capsys, pics, tmp_path):
    content, style = pics
    (tmp_path / "out_last_good.png").write_bytes(b"keep")
    refused(capsys, 2, content, style, "-o", tmp_path / "out.png", *SMALL, needle="last-good")
    assert (tmp_path / "out_last_good.png").read_bytes() == b"keep"


def test_file_appearing_during_the_run_is_kept(capsys, pics, tmp_path, monkeypatch):
    import nst_jax.files as image_files  # what the CLI calls

    content, style = pics
    out = tmp_path / "out.png"
    original = image_files.save_image

    def racing(path, image, **kw):  # another writer gets there between the start checks and the end
        if pathlib.Path(path) in (out, tmp_path / "out_00001.png"):
            pathlib.Path(path).write_bytes(b"theirs")
        return original(path, image, **kw)

    monkeypatch.setattr(image_files, "save_image", racing)
    line = refused(capsys, 6, content, style, "-o", out, *SMALL, "--iterations", 2, needle="appeared")
    assert out.read_bytes() == b"theirs"
    beside = tmp_path / "out.nst-jax-1.png"
    assert str(beside) in line and Image.open(beside).size == (32, 32)
    # An intermediate save clashing: the run goes on, writes its output, and reports the clash.
    out.unlink()
    beside.unlink()
    out = tmp_path / "other.png"
    monkeypatch.setattr(image_files, "save_image", lambda p, i, **kw: (
        pathlib.Path(p).name == "other_00001.png" and pathlib.Path(p).write_bytes(b"theirs"), original(p, i, **kw)))
    refused(capsys, 6, content, style, "-o", out, *SMALL, "--iterations", 2, "--save-every", 1,
            needle="other_00001.png appeared")
    assert out.is_file() and (tmp_path / "other_00001.png").read_bytes() == b"theirs"
    assert (tmp_path / "other_00001.nst-jax-1.png").is_file()
    # With --overwrite, replacing is what was asked for.
    monkeypatch.setattr(image_files, "save_image", racing)
    code, _, err = nst(capsys, content, style, "-o", tmp_path / "out.png", *SMALL, "--iterations", 1, "--overwrite")
    assert code == 0 and Image.open(tmp_path / "out.png").size == (32, 32), err


def test_no_replace_move_keeps_the_other_file(tmp_path):
    from nst_jax._src.atomic import atomic_open

    target = tmp_path / "t.bin"
    with pytest.raises(OutputExists) as info, atomic_open(target, replace=False) as f:
        f.write(b"mine")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs" and pathlib.Path(info.value.saved_as).read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin", "t.nst-jax-1.bin"]


# --- 6. File modes follow the umask ---------------------------------------------------------------------------

@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_file_modes_follow_umask(capsys, pics, tmp_path, mask, mode):
    content, style = pics
    old = os.umask(mask)
    try:
        code, _, err = nst(capsys, content, style, "-o", tmp_path / "m.png", *SMALL, "--iterations", 2,
                           "--save-every", 1, "--checkpoint-every", 2)
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("m.png", "m_00001.png", "m.ckpt.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# --- 7. Late failures caught before the compute ----------------------------------------------------------------

def test_unwritable_formats_refused_up_front(capsys, pics, tmp_path):
    content, style = pics
    for ext in (".xbm", ".msp", ".palm", ".blp"):
        refused(capsys, 2, content, style, "-o", tmp_path / f"o{ext}", *SMALL, needle="cannot write RGB")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _long_paths(tmp_path, style, count, alphabet):
    rng = random.Random(0)
    paths = []
    for i in range(count):
        d = tmp_path
        for _ in range(12):
            d = d / "".join(rng.choice(alphabet) for _ in range(240))
        d.mkdir(parents=True, exist_ok=True)
        (d / f"s{i}.png").symlink_to(style)
        paths.append(d / f"s{i}.png")
    return paths


def test_jpeg_record_over_64kb(capsys, pics, tmp_path):
    content, style = pics
    # A large but regular record goes in compressed, and reads back.
    paths = _long_paths(tmp_path / "a", style, 24, "a")
    code, _, err = nst(capsys, "--content", content, "--style", *paths, "-o", tmp_path / "big.jpg", *SMALL,
                       "--iterations", 1)
    assert code == 0, err
    record = read_record(tmp_path / "big.jpg")
    assert len(json.dumps(record)) > 65_533 and record["sources"]["style"][0].endswith("s0.png")
    # One that does not fit even compressed is refused before any compute.
    paths = _long_paths(tmp_path / "b", style, 40, string.ascii_letters + string.digits)
    refused(capsys, 2, "--content", content, "--style", *paths, "-o", tmp_path / "huge.jpg", *SMALL,
            needle="JPEG comment")
    assert not (tmp_path / "huge.jpg").exists()
    with pytest.raises(NSTError, match="JPEG comment"):
        save_options({"x": os.urandom(60_000).hex()}, "JPEG")


# --- 8. Exit codes: faults of the system, and out-of-range values ----------------------------------------------

def test_big_seed_is_a_usage_error(capsys, pics, tmp_path):
    content, style = pics
    refused(capsys, 2, content, style, "-o", tmp_path / "o.png", "--seed", "99999999999999999999999",
            needle="out of range")


@pytest.mark.parametrize("fault,needle", [(OSError(errno.ENOSPC, "No space left on device", "x.ckpt.npz"),
                                           "No space left"),
                                          (PermissionError(errno.EACCES, "Permission denied", "x.ckpt.npz"),
                                           "Permission denied"),
                                          (MemoryError(), "out of memory")])
def test_faults_of_the_system_mid_run(capsys, pics, tmp_path, monkeypatch, fault, needle):
    content, style = pics

    def fail(*args, **kwargs):
        raise fault

    monkeypatch.setattr(nst_jax.files, "save_checkpoint", fail)  # what the CLI calls
    line = refused(capsys, 5, content, style, "-o", tmp_path / "x.png", *SMALL, "--iterations", 2,
                   "--checkpoint-every", 1, needle=needle)
    assert "internal error" not in line and not (tmp_path / "x.png").exists()


def test_exit_code_mapping():
    assert common.exit_code(OSError(errno.ENOSPC, "No space left on device"))[0] == 5
    assert common.exit_code(MemoryError())[0] == 5
    assert common.exit_code(NSTError("x"))[0] == 2
    assert common.exit_code(OutputExists("a", "b"))[0] == 6
    assert common.exit_code(KeyboardInterrupt())[0] == 3
    code, message = common.exit_code(ZeroDivisionError("bug"))
    assert code == 1 and message.startswith("internal error")


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_full_disk_exit_5(capsys, pics, tiny_fs, tmp_path):
    content, style = pics
    # The checkpoint (hundreds of KB) does not fit: exit 5, one line, and nothing half-written is left.
    line = refused(capsys, 5, content, style, "-o", tiny_fs / "o.png", *SMALL, "--iterations", 2,
                   "--checkpoint-every", 1, needle="No space left on device")
    assert "no checkpoint was saved" in line
    assert not [p for p in tiny_fs.iterdir() if p.name.startswith(".")]


# --- 8-9, 11. Tampered records and checkpoints -----------------------------------------------------------------

RECORD_TAMPERING = {
    "size as a string": (lambda r: r["sources"].update(size="64"), "size must be an integer"),
    "size out of range": (lambda r: r["sources"].update(size=10**6), "--size must be between"),
    "content as a list": (lambda r: r["sources"].update(content=["a", "b"]), "content must be a path"),
    "style as a number": (lambda r: r["sources"].update(style=5), "style must be a list"),
    "a write option smuggled in": (lambda r: r["sources"].update(overwrite=True), "unknown field 'overwrite'"),
    "terminal escapes": (lambda r: r["sources"].update(content="/tmp/\x1b]0;pwned\x07\x1b[2J\u202enope.png"),
                         "no such file"),
    "iterations fractional": (lambda r: r["spec"]["levels"][0].update(iterations=1.5),
                              "iterations must be an integer"),
    "iterations out of range": (lambda r: r["spec"]["levels"][0].update(iterations=0), "between 1 and"),
    "unknown mode": (lambda r: r["spec"]["config"].update(mode="bogus"), "unknown mode 'bogus'"),
    "config field of the wrong type": (lambda r: r["spec"]["config"].update(tile_size="0"), "'tile_size'"),
    "unknown config field": (lambda r: r["spec"]["config"].update(shell="rm"), "unknown config field 'shell'"),
    "negative weight": (lambda r: r["spec"]["levels"][0]["weights"].update(style=-1), "style weight must be"),
    "weights missing": (lambda r: r["spec"]["levels"][0]["weights"].pop("tv"), "weights must hold"),
    "shape edited": (lambda r: r["spec"]["levels"][0].update(shape=[16, 16]), "must be 32 px"),
    "seed out of range": (lambda r: r["spec"].update(seed=10**30), "int64 range"),
    "levels emptied": (lambda r: r["spec"].update(levels=[]), "'levels' must be a list of 1 to 16"),
    "an older version": (lambda r: (r.pop("spec"), r.update(version="0.3.0")), "written by nst_jax 0.3.0"),
    "another spec version": (lambda r: r["spec"].update(spec_version=99), "version 99"),
    "spec not a dict": (lambda r: r.update(spec=[1]), "holds no run specification"),
    "another VGG": (lambda r: r["vgg"].update(sha256="0" * 64), "VGG parameters differ"),
    "no VGG digest": (lambda r: r.pop("vgg"), "sha256 of the VGG file"),
    "step negative": (lambda r: r.update(step=-3), "'step'"),
    "step beyond the run": (lambda r: r.update(step=99), "outside 1..3"),
}


def test_tampered_records_refused(capsys, done, tmp_path):
    for name, (change, needle) in RECORD_TAMPERING.items():
        src = tampered_record(done / "a.png", tmp_path / "t.png", change)
        line = refused(capsys, 2, "--rerun", src, "-o", tmp_path / "r.png", needle=needle)
        assert "internal error" not in line, name
        assert not (tmp_path / "r.png").exists(), name


def test_record_size_capped(capsys, done, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECORD_KEY, json.dumps({"format": "nst_jax", "pad": "x" * 20_000_000}), zip=True)
    Image.open(done / "a.png").save(tmp_path / "bomb.png", pnginfo=info)
    refused(capsys, 2, "--rerun", tmp_path / "bomb.png", needle="larger than")


CHECKPOINT_TAMPERING = {
    "notes not a dict": (lambda m: m.update(notes=[1, 2]), None, "must be JSON objects"),
    "sources with a wrong type": (lambda m: m["notes"]["sources"].update(size="64"), None, "must be an integer"),
    "spec edited": (lambda m: m["notes"]["spec"]["levels"][0].update(iterations=2), None, "different run"),
    "step a string": (lambda m: m.update(step="3"), None, "'step' must be"),
    "all NaN": (None, lambda a: a.update({k: np.full_like(v, np.nan) for k, v in a.items()
                                          if k.startswith("state/") and v.dtype.kind == "f"}), "NaN or Inf"),
    "a run edited": (lambda m: m["run"]["config"].update(iterations=2), None, "different run"),
}


def test_tampered_checkpoints_refused(capsys, done, tmp_path):
    for name, (meta, arrays, needle) in CHECKPOINT_TAMPERING.items():
        ck = tampered_checkpoint(done / "a.ckpt.npz", tmp_path / "t.ckpt.npz", meta, arrays)
        _, _, err = nst(capsys, "--resume", ck, "-o", tmp_path / "r.png")
        assert len(err) == 1 and needle in err[0] and "internal error" not in err[0], (name, err)
        assert not (tmp_path / "r.png").exists(), name


def test_zip_bomb_and_oversized_checkpoints(capsys, done, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.ckpt.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.npy", b"")
        with z.open("state/0.npy", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(64):
                member.write(block)
    assert bomb.stat().st_size < 1 << 20
    refused(capsys, 2, "--resume", bomb, needle="compressed data")
    monkeypatch.setattr(ckpt, "MAX_CHECKPOINT_BYTES", 1000)
    refused(capsys, 2, "--resume", done / "a.ckpt.npz", "-o", tmp_path / "r.png", needle="more than the 1000")


def test_messages_are_cleaned():
    assert clean("a\x1b[2Jb\x07c\u202ed") == "a[2Jbcd"
    assert one_line(ValueError("x\n\x1b]0;t\x07y")) == "x ]0;ty"


def test_two_processes_one_output(pics, tmp_path):
    """Two real runs racing for one output: one writes it, the other keeps it and saves beside it (exit 6)."""
    import sys

    content, style = pics
    out = tmp_path / "shared.png"
    script = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "stylize.py"
    env = script_env()
    procs = [subprocess.Popen([sys.executable, str(script), str(content), str(style), "-o", str(out), *SMALL,
                               "--iterations", "2", "--checkpoint", str(tmp_path / f"c{i}.npz")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 6], [0, 2]), results  # 2: the second started after the first had finished
    loser = next(err for code, err in results if code != 0)
    lines = [line for line in loser.splitlines() if line.startswith("error")]  # the rest is the progress bar
    assert len(lines) == 1 and "Traceback" not in loser, loser
    assert Image.open(out).size == (32, 32)
    if codes == [0, 6]:
        assert (tmp_path / "shared.nst-jax-1.png").is_file()
