"""scripts/stylize.py end to end in real subprocesses."""

import argparse
import json
import re

import numpy as np
import pytest
from PIL import Image

import nst_jax
from nst_jax import StylizeConfig, make_weights, preset_levels, stylize
from nst_jax._src.image import load_image
from nst_jax.cli import _common as common
from nst_jax.cli import _stylize as cli
from nst_jax.config import DEFAULT_PRESET, MIN_LEVEL_SIZE, PRESETS
from nst_jax.errors import NSTError
from nst_jax.spec import resolve_levels

from .conftest import EXAMPLES, compiled_programs, nst_in_process, run_cli

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


def _dry_run(capsys, *argv):
    """``nst-jax ARGV --dry-run`` in this process: its exit code and the JSON it printed."""
    code = cli.main([*map(str, argv), "--dry-run"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else out


def _same(values: set) -> object:
    """The one value every level has (None where they differ)."""
    return values.pop() if len(values) == 1 else None


# What each run-affecting option decides in a plain run, read from the spec --dry-run prints (transfer, one
# content photo at --size 512): the value its help must show as its default.
PLAIN_RUN = {
    "size": lambda d: max(d["spec"]["levels"][-1]["shape"]),
    "mode": lambda d: d["spec"]["config"]["mode"], "optimizer": lambda d: d["spec"]["config"]["optimizer"],
    "content_layer": lambda d: " ".join(d["spec"]["config"]["content_layers"]),
    "style_layers": lambda d: " ".join(d["spec"]["config"]["style_layers"]),
    "style_loss": lambda d: d["spec"]["config"]["style_loss"], "pooling": lambda d: d["spec"]["config"]["pooling"],
    "precision": lambda d: d["spec"]["config"]["precision"], "tile_size": lambda d: d["spec"]["config"]["tile_size"],
    "noise_scale": lambda d: d["spec"]["config"]["noise_scale"],
    "loss_units": lambda d: d["spec"]["config"]["loss_units"],
    "preserve_colour": lambda d: d["spec"]["config"]["preserve_colour"],
    "style_scale": lambda d: {None: "none"}[d["spec"]["config"]["style_scale"]],
    "init": lambda d: d["spec"]["config"]["init"],
    "shape_bucket": lambda d: {0: "auto"}[d["spec"]["config"]["shape_bucket"]],  # auto is 0 on the CPU
    "seed": lambda d: d["spec"]["seed"], "vgg": lambda d: d["sources"]["vgg"],
    "iterations": lambda d: [level["iterations"] for level in d["spec"]["levels"]],
    "scale_iterations": lambda d: [level["iterations"] for level in d["spec"]["levels"]],
    "style_weight": lambda d: [level["weights"]["style"] for level in d["spec"]["levels"]],
    "scale_style_weights": lambda d: [level["weights"]["style"] for level in d["spec"]["levels"]],
    "scales": lambda d: [len(d["spec"]["levels"])],
    "min_size": lambda d: [max(d["spec"]["levels"][0]["shape"])],
    **{name: (lambda d, key=key: {level["weights"][key] for level in d["spec"]["levels"]}.pop())
       for name, key in (("content_weight", "content"), ("tv_weight", "tv"), ("learning_rate", "learning_rate"),
                         ("ema", "ema_decay"))},
    "content_layer_weights": lambda d: "1 each" if d["spec"]["levels"][-1]["weights"]["content_layers"] == [1.0]
    else None,
    "style_layer_weights": lambda d: "1/L each" if d["spec"]["levels"][-1]["weights"]["style_layers"] == [0.2] * 5
    else None,
    "style_blend": lambda d: "equal" if d["spec"]["levels"][-1]["weights"]["style_blend"] == [1.0] else None,
    "content_term_weights": lambda d: _same({" ".join(f"{t}={w:g}" for t, w in zip(
        d["spec"]["config"]["content_terms"], level["weights"]["content_terms"], strict=True))
        for level in d["spec"]["levels"]}),
    "preset": lambda d: DEFAULT_PRESET,  # checked through the levels it gives (iterations, style_weight, ...)
}
# Options that do not change the image (where to write, how often, what to print) or name inputs.
NOT_RUN = {"help", "version", "images", "content", "style", "masks", "output", "dry_run", "preview", "preview_every",
           "progress_every", "save_every", "overwrite", "checkpoint", "checkpoint_every", "resume", "rerun",
           "compile_cache"}


def test_every_default_the_help_shows_is_the_plain_runs(capsys, tmp_path):
    """Every option's default in --help is the value a run without options uses, read from its --dry-run spec."""
    parser = cli.build_parser()
    shown = "".join(parser.format_help().split())  # without the line breaks of the wrapping
    content = tmp_path / "photo.png"
    Image.open(CONTENT).resize((512, 341)).save(content)
    code, plain = _dry_run(capsys, content, STYLE, "-o", tmp_path / "o.png")
    assert code == 0, plain
    assert {a.dest for a in parser._actions} == set(PLAIN_RUN) | NOT_RUN  # a new option needs its line above
    for action in parser._actions:
        if action.dest in NOT_RUN:
            continue
        flag = max(action.option_strings, key=len)
        described = " ".join(parser._get_formatter()._get_help_string(action).split())
        assert "".join(described.split()) in shown, flag  # the text --help prints for this option
        text = described[described.index("(default: ") + 10:]
        want = PLAIN_RUN[action.dest](plain)
        value = re.split(r"[,;)]| \(", text, maxsplit=1)[0]  # the shown default, before any explanation
        if isinstance(want, list | float | int):
            want = want if isinstance(want, list) else [want]
            assert [float(t) for t in value.split()] == pytest.approx(want), (flag, text[:80], want)
        else:
            assert value == str(want), (flag, text[:80], want)
    assert plain["spec"]["levels"] == json.loads(json.dumps(
        nst_jax.make_spec(content=load_image(content, 512), style=load_image(STYLE, 512)).to_json()))["levels"]


def test_dry_run_computes_and_writes_nothing(capsys, tmp_path):
    """--dry-run decodes the inputs and prints the spec, the memory estimate, the programs and the destinations;
    it compiles nothing and writes nothing. The library builds the same spec from the same arrays."""
    before = sorted(tmp_path.iterdir())
    with compiled_programs() as programs:
        code, out = _dry_run(capsys, CONTENT, STYLE, "-o", tmp_path / "o.png", "--size", 258, "--checkpoint-every",
                             5, "--compile-cache", tmp_path / "cache")
    assert code == 0 and programs == [] and sorted(tmp_path.iterdir()) == before, programs
    levels = out["spec"]["levels"]
    assert [level["shape"] for level in levels] == [[43, 64], [86, 129], [172, 258]]  # halving from 258 px
    assert [level["iterations"] for level in levels] == [80, 40, 40]
    assert [level["weights"]["style"] for level in levels] == [100.0, 100.0, 10.0]
    assert out["programs"]["optimisation"] == 6 and out["writes"]["output"] == str(tmp_path / "o.png")
    assert out["memory"]["estimate_bytes"] > 0 and out["writes"]["checkpoint"] == str(tmp_path / "o.ckpt.npz")
    spec = nst_jax.make_spec(content=load_image(CONTENT, 258), style=load_image(STYLE, 258))
    assert json.loads(json.dumps(spec.to_json())) == out["spec"]
    # Bad input: exit 2, one line, still nothing written.
    assert cli.main([str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--scales", "9", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "9 scales halving from 512 px" in err and len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before


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
        "no content in transfer": (["--style", STYLE], "transfer mode needs a content image"),
        "output dir is a file": (ok + ["--output", plain_file / "out.png"], "does not exist"),
        "output unknown format": (ok + ["--output", tmp_path / "out.xyz"], "unknown image format"),
        "masks with tiles": (ok + ["--masks", STYLE, "--tile-size", 16], "not supported with tiled evaluation"),
        "masks miscounted": (ok + ["--masks", STYLE, STYLE], "2 masks given for 1 style images"),
        "scales below 32 px": (ok + ["--scales", 3], "3 scales halving from 64 px make a 16 px level"),
    }


def test_bad_input_one_line_no_output(tmp_path, capsys):
    out = tmp_path / "out.png"
    for name, (args, needle) in _bad_cases(tmp_path).items():
        defaults = {"--output": out, "--size": 64, "--iterations": 2}
        code, _, err = nst_in_process(capsys, *args, *[v for k, v in defaults.items() if k not in args
                                                       for v in (k, v)])
        lines = err.strip().splitlines()
        assert code == 2, (name, code, err)
        assert len(lines) == 1 and "Traceback" not in err, (name, err)
        assert needle in lines[0], (name, lines[0])
        assert not out.exists(), name


# Interruption (SIGINT/SIGTERM), resume and numerical failure: tests/test_cli_reliability.py.


@pytest.mark.slow
def test_images_carry_their_run_record_and_rerun_makes_them_again(tmp_path, capsys, monkeypatch):
    """In this process (the reruns need no fresh one; test_end_to_end_writes_image_and_reports runs the script)."""
    from nst_jax._src.record import read_record

    content = tmp_path / "content.png"
    content.write_bytes(CONTENT.read_bytes())
    out = tmp_path / "out.png"
    small = ["--size", 48, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1"]
    code, _, err = nst_in_process(capsys, "--content", content, "--style", STYLE, "--output", out, *small,
                                  "--iterations", 6, "--save-every", 3)
    assert code == 0, err
    record = read_record(out)
    spec = record["spec"]
    assert record["format"] == "nst_jax" and [level["iterations"] for level in spec["levels"]] == [6]
    assert len(record["vgg"]["sha256"]) == 64 and spec["inputs"]["content"]["sha256"]
    assert record["sources"]["content"] == str(content) and record["sources"]["size"] == 48
    assert read_record(tmp_path / "out_00003.png")["step"] == 3

    # From another directory: the record's paths are absolute.
    monkeypatch.chdir(tmp_path.parent)
    code, _, err = nst_in_process(capsys, "--rerun", out)
    assert code == 0, err
    rerun = tmp_path / "out_rerun.png"
    np.testing.assert_array_equal(np.asarray(Image.open(rerun)), np.asarray(Image.open(out)))
    assert read_record(rerun)["spec"] == spec
    # An intermediate save is made again at its step.
    code, _, err = nst_in_process(capsys, "--rerun", tmp_path / "out_00003.png", "--output", tmp_path / "middle.png")
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "middle.png")),
                                  np.asarray(Image.open(tmp_path / "out_00003.png")))
    # A changed input, or a changed setting, is refused with what differs; nothing is written.
    Image.open(CONTENT).transpose(Image.FLIP_LEFT_RIGHT).save(content)
    code, _, err = nst_in_process(capsys, "--rerun", out, "--output", tmp_path / "changed.png")
    assert code == 2 and "inputs.content" in err, err
    code, _, err = nst_in_process(capsys, "--rerun", out, "--output", tmp_path / "changed.png", "--iterations", 7)
    assert code == 2 and "--iterations 7" in err, err
    assert not (tmp_path / "changed.png").exists()
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    code, _, err = nst_in_process(capsys, "--rerun", plain)
    assert code == 2 and "carries no nst_jax run record" in err


def _cli_levels(args, size):
    """The levels the command line resolves for ``args`` at ``size``: its one mapping (flags to the config and
    Choices) and the library's one resolution."""
    args = argparse.Namespace(**{**vars(args), "size": size})
    levels = resolve_levels(size, common.run_config(args, iterations=None), common.choices_of(args))
    return [(s, n, float(w.style), float(w.tv)) for s, n, w in levels]


@pytest.mark.parametrize("extra,want", [
    # The default preset at 384 px: its three levels, halving from the output, steps and weights per level.
    ([], [(96, 80, 100.0, 30.0), (192, 40, 100.0, 30.0), (384, 40, 10.0, 30.0)]),
    # Explicit options win; the rest still comes from the preset.
    (["--style-weight", "30"], [(96, 80, 30.0, 30.0), (192, 40, 30.0, 30.0), (384, 40, 30.0, 30.0)]),
    (["--iterations", "10"], [(96, 10, 100.0, 30.0), (192, 10, 100.0, 30.0), (384, 10, 10.0, 30.0)]),
    (["--scales", "1"], [(384, 40, 10.0, 30.0)]),
    (["--scales", "2"], [(192, 40, 10.0, 30.0), (384, 40, 10.0, 30.0)]),  # halving, the output level's beta
    (["--scales", "2", "--min-size", "100"], [(100, 40, 10.0, 30.0), (384, 40, 10.0, 30.0)]),
    (["--preset", "faithful"], [(384, 40, 20.0, 30.0)]),
    (["--tv-weight", "5", "--scale-style-weights", "1", "2", "3"],
     [(96, 80, 1.0, 5.0), (192, 40, 2.0, 5.0), (384, 40, 3.0, 5.0)]),
    # One level: a single --scale-iterations is its step count (not ignored).
    (["--scales", "1", "--scale-iterations", "7"], [(384, 7, 10.0, 30.0)]),
    # Presets are for transfer in relative units; elsewhere one level and the mode's own defaults.
    (["--mode", "content"], [(384, 500, 20.0, 0.0)]),
    (["--loss-units", "paper"], [(384, 40, 30.0, 1e4)]),
])
def test_preset_fills_what_was_not_given(extra, want):
    assert DEFAULT_PRESET == "balanced" and PRESETS[DEFAULT_PRESET].iterations == (80, 40, 40)
    args, _ = cli.parse(["a.png", "b.png", *extra])
    assert _cli_levels(args, 384) == want


@pytest.mark.parametrize("extra,needle", [
    (["--scales", "4", "--size", "96"], "4 scales halving from 96 px make a 12 px level"),  # names no --min-size
    (["--iterations", "5", "--scale-iterations", "1", "2", "3"], "not both"),
    (["--scale-iterations", "1", "2"], "2 per-level step counts (--scale-iterations) given for 3 levels"),
    (["--style-weight", "3", "--scale-style-weights", "1", "2", "4"], "--style-weight or --scale-style-weights"),
    (["--scales", "2", "--min-size", "500"], "--min-size must be between 32 and the output size 384"),
])
def test_level_choices_refused_with_their_own_names(extra, needle):
    args, _ = cli.parse(["a.png", "b.png", *extra])
    with pytest.raises(NSTError, match=re.escape(needle)):
        _cli_levels(args, args.size if "--size" in extra else 384)


def test_preset_levels_halve_from_the_output():
    for preset in PRESETS.values():
        for size in (64, 100, 128, 384, 512, 1000, 4096):
            levels = preset.levels(size)
            assert levels[-1].size == size and all(b.size == round(size / 2 ** (len(levels) - 1 - k))
                                                   for k, b in enumerate(levels))
            assert all(level.size >= MIN_LEVEL_SIZE for level in levels[:-1])
            n = len(preset.iterations)
            per_level = [(s, w) for s, w in zip(preset.style_layer_weights or [None] * n,
                                                  preset.content_term_weights or [None] * n, strict=True)]
            assert [tuple(level[1:]) for level in levels] == [
                (i, b, *w) for i, b, w in zip(preset.iterations, preset.style_weights, per_level,
                                              strict=True)][n - len(levels):]


def test_the_command_lines_levels_are_the_librarys_at_every_size():
    """For every --size from 32 to 8192 the command line runs the levels nst_jax.preset_levels gives, and
    both are the presets' rule computed here independently: sides halving from the size, rounded half to
    even, those under 64 px dropped (the output's kept), steps and beta from the end of the preset's lists."""
    args, _ = cli.parse(["a.png", "b.png"])
    preset = PRESETS[DEFAULT_PRESET]
    for size in range(32, 8193):
        sides = [int(np.round(size / 4)), int(np.round(size / 2)), size]
        keep = [k for k in range(3) if sides[k] >= 64 or k == 2]
        want = [(sides[k], preset.iterations[k], preset.style_weights[k], preset.tv_weight) for k in keep]
        library = preset_levels(size)
        assert _cli_levels(args, size) == want, size
        assert [(s, n, float(w.style), float(w.tv)) for s, n, w in zip(
            library["sizes"], library["iterations"], library["weights"], strict=True)] == want, size
    with pytest.raises(NSTError, match="relative"):
        preset_levels(384, StylizeConfig(mode="content"))


BAD_TERM_WEIGHTS = {  # --content-term-weights VALUES: what the one line says
    ("edges=1",): "unknown content term 'edges' (choose from feature, structure)",
    ("structure",): "'structure' is not NAME=WEIGHT",
    ("structure=much",): "'structure=much': the weight is not a number",
    ("structure=-1",): "content term weight must be a finite number >= 0, got -1.0",
    ("structure=nan",): "content term weight must be a finite number >= 0, got nan",
    ("structure=1", "structure=2"): "structure is given twice",
}


def test_content_term_weights_refused_in_one_line_before_anything_is_compiled_or_written(tmp_path, capsys):
    for values, needle in BAD_TERM_WEIGHTS.items():
        with compiled_programs() as programs:
            code, out, err = nst_in_process(capsys, CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64,
                                            "--content-term-weights", *values)
        assert code == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err, (values, err)
        assert programs == [] and list(tmp_path.iterdir()) == [], (values, programs)


@pytest.mark.parametrize("preset", ["balanced", "portrait"])
def test_content_term_weights_set_every_levels_terms_as_make_weights_does(capsys, tmp_path, preset):
    """--content-term-weights structure=3 changes each level's weights as make_weights(content_term_weights=...)
    does, over the preset's own (portrait's structure 3 too, here the given values), and nothing else; the
    feature term keeps its default 1, and --dry-run shows the weights."""
    argv = [CONTENT, STYLE, "-o", tmp_path / "o.png", "--size", 256, "--preset", preset]
    code, plain = _dry_run(capsys, *argv)
    assert code == 0, plain
    for given, mapping in ((["structure=3"], {"structure": 3.0}), (["structure=0.5", "feature=2"],
                                                                   {"feature": 2.0, "structure": 0.5})):
        code, chosen = _dry_run(capsys, *argv, "--content-term-weights", *given)
        assert code == 0, chosen
        want = make_weights(StylizeConfig(), content_term_weights=mapping).content_terms.tolist()
        assert want == [mapping.get("feature", 1.0), mapping["structure"]]
        assert len(plain["spec"]["levels"]) == len(chosen["spec"]["levels"]) == 3
        for before, after in zip(plain["spec"]["levels"], chosen["spec"]["levels"], strict=True):
            assert after["weights"]["content_terms"] == want
            assert {**after, "weights": {**after["weights"], "content_terms": None}} == {
                **before, "weights": {**before["weights"], "content_terms": None}}
        assert {k: v for k, v in chosen.items() if k != "spec"} == {k: v for k, v in plain.items() if k != "spec"}


def test_content_term_weights_run_as_the_library_and_rerun_bit_for_bit(tmp_path, capsys, vgg):
    """A run with --content-term-weights is the library's run with make_weights(content_term_weights=...), up
    to the file's 8-bit rounding, and --rerun of its image makes it again bit for bit."""
    from nst_jax._src.record import read_record

    out = tmp_path / "out.png"
    small = ["--size", 48, "--content-layer", "relu2_2", "--style-layers", "relu1_1", "--iterations", 3]
    code, _, err = nst_in_process(capsys, CONTENT, STYLE, "-o", out, *small,
                                  "--content-term-weights", "feature=0.5", "structure=2")
    assert code == 0, err
    assert read_record(out)["spec"]["levels"][-1]["weights"]["content_terms"] == [0.5, 2.0]
    code, _, err = nst_in_process(capsys, "--rerun", out)
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out_rerun.png")), np.asarray(Image.open(out)))

    config = StylizeConfig(iterations=3, content_layers=("relu2_2",), style_layers=("relu1_1",))
    (level,) = preset_levels(48, config)["weights"]  # one level at 48 px: the preset's output level
    weights = make_weights(config, style_weight=level.style, tv_weight=level.tv,
                           content_term_weights={"feature": 0.5, "structure": 2.0})
    want = stylize(vgg, content=load_image(CONTENT, 48), style=load_image(STYLE, 48), config=config,
                   weights=weights).image
    got = np.asarray(Image.open(out), np.float32) / 255
    assert np.abs(got - want).max() <= 1.5 / 255, np.abs(got - want).max()
    default = stylize(vgg, content=load_image(CONTENT, 48), style=load_image(STYLE, 48), config=config,
                      weights=level).image
    assert np.abs(got - default).max() > 2.5 / 255  # the weights changed the image beyond the tolerance above
