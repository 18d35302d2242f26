"""``nst-jax`` with several content photos (one command, one compile per shape), ``--preview``, and the
progress bar's measured rate."""

import collections
import os

import numpy as np
import pytest

from nst_jax.cli import _common as common
from nst_jax.cli._stylize import parse
from nst_jax.files import load_image, read_record, save_image

from .conftest import compiled_programs, nst_in_process, smooth_image

# Tiny and fast to compile: one shallow layer each, 3 steps.
FAST = ("--iterations", 3, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "--compile-cache", "off")


@pytest.fixture
def pics(tmp_path):
    """Two content photos of one shape, a style image, an output folder."""
    for name, (h, w, seed) in {"a": (36, 48, 1), "b": (36, 48, 2), "paint": (32, 32, 4)}.items():
        save_image(tmp_path / f"{name}.png", smooth_image(h, w, seed))
    (tmp_path / "out").mkdir()
    return tmp_path


def one_line_error(capsys, *args, needle):
    code, _, err = nst_in_process(capsys, *args)
    lines = [line for line in err.splitlines() if line.startswith("error") or "Traceback" in line]
    assert code == 2 and len(lines) == 1 and needle in lines[0], (code, err)


def test_several_contents_equal_separate_runs_and_compile_once(capsys, pics):
    d = pics
    with compiled_programs() as in_batch:
        code, out, err = nst_in_process(capsys, "--content", d / "a.png", d / "b.png", "--style", d / "paint.png",
                                        "-o", d / "out", "--size", 48, *FAST)
    assert code == 0, err
    assert "[1/2]" in out and "[2/2]" in out and "running 48x36 with the programs compiled already" in out
    # One single run of a fresh shape (size 46) compiles the same programs as the two-photo command did.
    with compiled_programs() as single:
        code, _, err = nst_in_process(capsys, "--content", d / "a.png", "--style", d / "paint.png",
                                      "-o", d / "single46.png", "--size", 46, *FAST)
    assert code == 0, err
    assert in_batch and collections.Counter(in_batch) == collections.Counter(single), (in_batch, single)
    for name in ("a", "b"):
        code, _, err = nst_in_process(capsys, "--content", d / f"{name}.png", "--style", d / "paint.png",
                                      "-o", d / f"{name}_alone.png", "--size", 48, *FAST)
        assert code == 0, err
        batch = load_image(d / "out" / f"{name}-paint.png")
        np.testing.assert_allclose(batch, load_image(d / f"{name}_alone.png"), atol=1.5 / 255)
        record = read_record(d / "out" / f"{name}-paint.png")  # each its own run record
        assert record["sources"]["content"] == str(d / f"{name}.png") and record["sources"]["style"] == [
            str(d / "paint.png")]
    assert not np.array_equal(load_image(d / "out" / "a-paint.png"), load_image(d / "out" / "b-paint.png"))


def test_positional_form_with_several_contents():
    args, given = parse(["a.jpg", "b.jpg", "c.jpg", "s.jpg", "-o", "outdir"])
    assert args.content == ["a.jpg", "b.jpg", "c.jpg"] and args.style == ["s.jpg"] and args.output == "outdir"
    one, _ = parse(["--content", "a.jpg", "--style", "s.jpg", "-o", "x.png"])
    assert one.content == "a.jpg"  # one photo stays a plain path (and so in the record)


def test_several_contents_checked_before_any_compute(capsys, pics):
    d = pics
    base = ("--style", d / "paint.png", "--size", 48, *FAST)
    one_line_error(capsys, "--content", d / "a.png", d / "missing.png", "-o", d / "out", *base, needle="missing.png")
    one_line_error(capsys, "--content", d / "a.png", d / "b.png", "-o", d / "nowhere", *base,
                   needle="does not exist")
    one_line_error(capsys, "--content", d / "a.png", d / "b.png", "-o", d / "paint.png", *base,
                   needle="is not a directory")
    (d / "sub").mkdir()
    save_image(d / "sub" / "a.png", smooth_image(36, 48, 5))
    one_line_error(capsys, "--content", d / "a.png", d / "sub" / "a.png", "-o", d / "out", *base,
                   needle="would both be written to")
    one_line_error(capsys, "--content", d / "a.png", d / "b.png", "-o", d / "out", "--checkpoint", d / "c.npz",
                   *base, needle="--checkpoint names one run's file")
    # A result that would overwrite another photo of the batch: a.png's result out/a-paint.png is the second photo.
    save_image(d / "out" / "a-paint.png", smooth_image(36, 48, 6))
    one_line_error(capsys, "--content", d / "a.png", d / "out" / "a-paint.png", "-o", d / "out", *base,
                   needle="never writes to its inputs")
    assert sorted(os.listdir(d / "out")) == ["a-paint.png"]  # nothing written


def test_preview_is_replaced_with_the_current_image(capsys, pics, monkeypatch):
    d = pics
    written = []
    real_replace = os.replace

    def spy(src, dst, *a, **kw):  # every write of the preview is a rename onto it: atomic for a viewer
        if str(dst) == str(d / "live.png"):
            written.append(read_record(src)["step"])
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", spy)
    code, _, err = nst_in_process(capsys, "--content", d / "a.png", "--style", d / "paint.png", "-o", d / "o.png",
                                  "--size", 48, "--preview", d / "live.png", "--preview-every", 2, *FAST)
    assert code == 0, err
    assert written == [2, 3], written  # every 2 steps and at the end
    np.testing.assert_array_equal(load_image(d / "live.png"), load_image(d / "o.png"))  # no EMA: the last iterate
    # The next run may replace a preview nst-jax wrote.
    code, _, err = nst_in_process(capsys, "--content", d / "a.png", "--style", d / "paint.png", "-o", d / "o2.png",
                                  "--size", 48, "--preview", d / "live.png", *FAST)
    assert code == 0, err


def test_preview_obeys_the_write_rules(capsys, pics):
    d = pics
    base = ("--content", d / "a.png", "--style", d / "paint.png", "-o", d / "o.png", "--size", 48, *FAST)
    for clash in ("a.png", "paint.png", "o.png", "o.ckpt.npz"):
        one_line_error(capsys, *base, "--preview", d / clash, needle=str(d / clash))
    (d / "mine.png").write_bytes(b"not written by nst-jax")
    one_line_error(capsys, *base, "--preview", d / "mine.png", needle="was not written by nst-jax")
    one_line_error(capsys, *base, "--preview", d / "live.txt", needle="unknown image format")
    one_line_error(capsys, *base, "--preview", d / "live.png", "--preview-every", -1, needle="--preview-every")
    assert (d / "mine.png").read_bytes() == b"not written by nst-jax"
    assert not (d / "o.png").exists() and not (d / "live.png").exists()


def test_bar_rate_is_the_measured_one():
    bar = common.Bar(10, disable=True)
    bar.update(4, 2.0)  # 4 steps in 2 s of measured optimisation, however long compiling took
    assert bar.bar.format_dict["rate"] == 2.0
    bar.update(10, 3.0)
    assert bar.bar.format_dict["rate"] == 10 / 3
    bar.close()
    resumed = common.Bar(10, initial=6, disable=True)
    resumed.update(8)  # no measured time yet: unknown, never tqdm's near-zero interval
    assert resumed.bar.format_dict["rate"] is None
    resumed.update(10, 0.5)
    assert resumed.bar.format_dict["rate"] == 8.0  # 4 steps since the resumed step, in 0.5 s
    resumed.close()


def test_progress_every_step_moves_the_bar_each_step_and_keeps_the_result(capsys, pics, monkeypatch):
    seen = []
    update = common.Bar.update
    monkeypatch.setattr(common.Bar, "update", lambda self, step, *a, **k: (seen.append(step), update(self, step, *a,
                                                                                                      **k))[1])
    outputs = {}
    for every in (0, 1):
        seen.clear()
        out = pics / f"p{every}.png"
        code, _, err = nst_in_process(capsys, pics / "a.png", pics / "paint.png", "-o", out, "--size", 48,
                                      "--progress-every", every, *FAST)
        assert code == 0, err
        outputs[every] = (list(seen), load_image(out))
    assert outputs[0][0] == [3]  # one chunk of 3 steps: the bar moves once
    assert outputs[1][0] == [1, 2, 3]
    np.testing.assert_array_equal(outputs[1][1], outputs[0][1])
