"""scripts/stylize.py end to end in real subprocesses."""

import concurrent.futures

import numpy as np
import pytest
from PIL import Image

from nst_jax import StylizeConfig, preset_levels, stylize
from nst_jax.cli import stylize as cli
from nst_jax.cli.stylize import parse, prepare
from nst_jax.config import DEFAULT_PRESET, MIN_LEVEL_SIZE, PRESETS
from nst_jax.errors import NSTError
from nst_jax.image import load_image

from .conftest import EXAMPLES, run_cli

CONTENT = EXAMPLES / "chelsea.png"
STYLE = EXAMPLES / "swirls.png"


@pytest.mark.slow
def test_end_to_end_writes_image_and_reports(tmp_path, vgg):
    out = tmp_path / "out.png"
    proc = run_cli("--content", CONTENT, "--style", STYLE, "--output", out, "--size", 48, "--iterations", 6,
                   "--save-every", 3)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.size == (48, 32) and im.mode == "RGB"
    assert (tmp_path / "out_00003.png").is_file()
    assert "time per iteration:" in proc.stdout and "final loss: content=" in proc.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    # The image is the library's for the same settings (the default preset, whose levels at 48 px reduce to
    # the output's with its style weight; seed 0; both images at --size 48), up to the 8-bit rounding of the
    # file, and the photo visibly changed into it.
    content = load_image(CONTENT, 48)
    config = StylizeConfig(iterations=6)
    (weights,) = preset_levels(48, config)["weights"]
    want = stylize(vgg, content=content, style=load_image(STYLE, 48), config=config, weights=weights).image
    got = np.asarray(Image.open(out), np.float32) / 255
    assert np.abs(got - want).max() <= 1.5 / 255, np.abs(got - want).max()
    assert np.abs(got - content).mean() > 0.02, np.abs(got - content).mean()


def test_style_mode_needs_no_content(tmp_path):
    out = tmp_path / "texture.jpg"
    proc = run_cli("--mode", "style", "--style", STYLE, "--output", out, "--size", 48, "--iterations", 2,
                   "--style-layers", "relu1_1", "relu2_1", "--style-layer-weights", "1", "2")
    assert proc.returncode == 0, proc.stderr
    assert np.asarray(Image.open(out)).shape == (36, 48, 3)


def test_help_shows_defaults(tmp_path):
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "(default: lbfgs)" in proc.stdout and "relu4_2" in proc.stdout
    # What the help shows is what a run without options does: the library's default settings, and the
    # default preset's levels and weights (nst_jax.preset_levels).
    assert "--preset {faithful,balanced,painterly}" in proc.stdout and f"(default: {DEFAULT_PRESET})" in proc.stdout
    args, given = parse([str(CONTENT), str(STYLE), "--output", str(tmp_path / "out.png")])
    job = prepare(args, given)
    assert job.config == StylizeConfig() and job.config.optimizer == "lbfgs"
    assert job.config.content_layers == ("relu4_2",)
    levels = preset_levels(max(job.shape[:2]), StylizeConfig())
    assert job.sizes == levels["sizes"] and job.iterations == levels["iterations"]
    for got_level, want_level in zip(job.level_weights, levels["weights"], strict=True):
        for got, want in zip(got_level, want_level, strict=True):
            np.testing.assert_array_equal(got, want)
    shown = " ".join(proc.stdout.split())
    for option, value in [("--optimizer", job.config.optimizer), ("--content-layer", *job.config.content_layers),
                          ("--pooling", job.config.pooling), ("--style-loss", job.config.style_loss)]:
        assert f"(default: {value})" in shown[shown.index(option + " "):], option


def _bad_cases(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    plain_file = tmp_path / "plainfile"
    plain_file.write_text("x")
    ok = ["--content", CONTENT, "--style", STYLE]
    return {
        "missing content": (["--content", tmp_path / "nope.jpg", "--style", STYLE], "no such file"),
        "non-image style": (["--content", CONTENT, "--style", text], "not an image"),
        "directory as image": (["--content", tmp_path, "--style", STYLE], "not a file"),
        "unknown style layer": (ok + ["--style-layers", "relu1_1", "relu9_1"], "relu9_1"),
        "unknown content layer": (ok + ["--content-layer", "conv4_7"], "conv4_7"),
        "layer weights mismatch": (ok + ["--style-layer-weights", "1", "2"], "style layer weights"),
        "size too small": (ok + ["--size", 16], "--size"),
        "size absurd": (ok + ["--size", 100000], "--size"),
        "zero iterations": (ok + ["--iterations", 0], "iterations"),
        "negative style weight": (ok + ["--style-weight", "-1"], "style weight"),
        "unknown optimizer": (ok + ["--optimizer", "sgd"], "invalid choice"),
        "no content in transfer": (["--style", STYLE], "--content is required"),
        "output dir is a file": (ok + ["--output", plain_file / "out.png"], "does not exist"),
        "output unknown format": (ok + ["--output", tmp_path / "out.xyz"], "unknown image format"),
    }


def test_bad_input_one_line_no_output(tmp_path):
    out = tmp_path / "out.png"
    cases = _bad_cases(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # the processes are independent: run them together
        procs = {}
        for name, (args, _) in cases.items():
            defaults = {"--output": out, "--size": 64, "--iterations": 2}
            procs[name] = pool.submit(run_cli, *args, *[str(v) for k, v in defaults.items() if k not in args
                                                         for v in (k, v)])
    for name, (_, needle) in cases.items():
        proc = procs[name].result()
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert needle in lines[0], (name, lines[0])
        assert not out.exists(), name


# Interruption (SIGINT/SIGTERM), resume and numerical failure: tests/test_cli_reliability.py.


@pytest.mark.slow
def test_images_carry_their_run_record_and_rerun_makes_them_again(tmp_path):
    from nst_jax.record import read_record

    content = tmp_path / "content.png"
    content.write_bytes(CONTENT.read_bytes())
    out = tmp_path / "out.png"
    small = ["--size", 48, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1"]
    proc = run_cli("--content", content, "--style", STYLE, "--output", out, *small, "--iterations", 6,
                   "--save-every", 3)
    assert proc.returncode == 0, proc.stderr
    record = read_record(out)
    assert record["format"] == "nst_jax" and record["args"]["iterations"] == 6
    run = record["run"]
    assert len(run["vgg_sha256"]) == 64 and run["inputs"]["content"]["sha256"] and run["config"]["iterations"] == 6
    assert read_record(tmp_path / "out_00003.png")["step"] == 3

    # From another directory: the record's paths are absolute.
    again = run_cli("--rerun", out, cwd=tmp_path.parent)
    assert again.returncode == 0, again.stderr
    rerun = tmp_path / "out_rerun.png"
    np.testing.assert_array_equal(np.asarray(Image.open(rerun)), np.asarray(Image.open(out)))
    assert read_record(rerun)["run"] == run
    # An intermediate save is made again at its step.
    middle = run_cli("--rerun", tmp_path / "out_00003.png", "--output", tmp_path / "middle.png")
    assert middle.returncode == 0, middle.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "middle.png")),
                                  np.asarray(Image.open(tmp_path / "out_00003.png")))
    # A changed input, or a changed setting, is refused with what differs; nothing is written.
    Image.open(CONTENT).transpose(Image.FLIP_LEFT_RIGHT).save(content)
    changed = run_cli("--rerun", out, "--output", tmp_path / "changed.png")
    assert changed.returncode == 2 and "inputs.content" in changed.stderr, changed.stderr
    setting = run_cli("--rerun", out, "--output", tmp_path / "changed.png", "--iterations", 7)
    assert setting.returncode == 2 and "--iterations 7" in setting.stderr, setting.stderr
    assert not (tmp_path / "changed.png").exists()
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    none = run_cli("--rerun", plain)
    assert none.returncode == 2 and "carries no nst_jax run record" in none.stderr


@pytest.mark.parametrize("extra,want", [
    # The default preset at 384 px: its three levels, halving from the output, steps and weights per level.
    ([], dict(scales=3, min_size=96, scale_iterations=[80, 40, 40], scale_style_weights=[100.0, 100.0, 10.0],
              style_weight=10.0, iterations=None)),
    # Explicit options win; the rest still comes from the preset.
    (["--style-weight", "30"], dict(scales=3, scale_style_weights=None, style_weight=30.0)),
    (["--iterations", "10"], dict(scales=3, scale_iterations=None, iterations=10)),
    (["--scales", "1"], dict(scales=1, scale_iterations=None, scale_style_weights=None, style_weight=10.0)),
    (["--preset", "faithful"], dict(scales=1, iterations=40, style_weight=20.0, scale_style_weights=None)),
    (["--size", "100"], dict(scales=1, iterations=40, style_weight=10.0)),  # 25 and 50 px levels dropped
    # One level: a single --scale-iterations is its step count (not ignored).
    (["--size", "100", "--scale-iterations", "7"], dict(scales=1, iterations=7, scale_iterations=None)),
    (["--scales", "1", "--scale-iterations", "7"], dict(scales=1, iterations=7, scale_iterations=None)),
    (["--size", "128"], dict(scales=2, min_size=64, scale_iterations=[40, 40], scale_style_weights=[100.0, 10.0])),
    # Presets are for transfer in relative units; elsewhere one level and the mode's own defaults.
    (["--mode", "content"], dict(scales=1, min_size=128, style_weight=None, tv_weight=None)),
    (["--loss-units", "paper"], dict(scales=1, style_weight=None, tv_weight=None)),
])
def test_preset_fills_what_was_not_given(extra, want):
    assert DEFAULT_PRESET == "balanced" and PRESETS[DEFAULT_PRESET].iterations == (80, 40, 40)
    args, _ = cli.parse(["a.png", "b.png", "--size", "384", *extra])
    cli.apply_preset(args)
    assert {k: getattr(args, k) for k in want} == want


def test_preset_levels_halve_from_the_output():
    for preset in PRESETS.values():
        for size in (64, 100, 128, 384, 512, 1000, 4096):
            levels = preset.levels(size)
            assert levels[-1].size == size and all(b.size == round(size / 2 ** (len(levels) - 1 - k))
                                                   for k, b in enumerate(levels))
            assert all(level.size >= MIN_LEVEL_SIZE for level in levels[:-1])
            n = len(preset.iterations)
            assert [tuple(level[1:]) for level in levels] == list(zip(preset.iterations, preset.style_weights,
                                                                       strict=True))[n - len(levels):]


def test_library_preset_levels_are_the_command_lines():
    for size in (100, 128, 384, 1000):
        args, _ = cli.parse(["a.png", "b.png", "--size", str(size)])
        cli.apply_preset(args)
        levels = preset_levels(size)
        assert levels["sizes"] == cli.pyramid_sizes(size, args.scales, args.min_size)
        assert levels["iterations"] == (args.scale_iterations or [args.iterations])
        assert [float(w.style) for w in levels["weights"]] == (args.scale_style_weights or [args.style_weight])
        assert {float(w.tv) for w in levels["weights"]} == {args.tv_weight}
    with pytest.raises(NSTError, match="relative"):
        preset_levels(384, StylizeConfig(mode="content"))
