"""The ``nst-jax-sweep`` tool end to end (in this process; test_cli_sweep_bad_range and the distributed tests run
scripts/sweep.py in real ones)."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from nst_jax import StylizeConfig, compute_targets, loss_terms, make_weights, preset_levels, stack_weights, sweep
from nst_jax._src.image import load_image

from .conftest import EXAMPLES, run_script


@pytest.mark.slow
def test_sweep_cli(tmp_path, vgg):
    from nst_jax.cli import _sweep as sweep_cli

    argv = ["--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--output-dir", tmp_path / "sw",
            "--size", 48, "--iterations", 3, "--optimizer", "adam", "--style-weights", "1e1:1e3:2", "--seeds", 0, 1,
            "--style-layers", "relu1_1", "relu2_1", "--content-layer", "relu2_1"]
    assert sweep_cli.main([str(a) for a in argv]) == 0
    report = json.loads((tmp_path / "sw" / "losses.json").read_text())
    members = report["members"]
    assert [(m["style_weight"], m["seed"]) for m in members] == [(10.0, 0), (10.0, 1), (1000.0, 0), (1000.0, 1)]
    for m in members:
        assert (tmp_path / "sw" / m["file"]).is_file() and np.isfinite(m["final"]["total"])
        assert set(m["ratios"]) == {"style_ratio", "content_ratio", "speckle_ratio"}, m  # 48 px: too small to judge
        assert all(np.isfinite(v) and v >= 0 for v in m["ratios"].values()), m
    assert report["judged_by"].startswith("VGG-19")
    assert members[2]["final"]["style"] > members[0]["final"]["style"]  # beta scales the weighted style term
    assert Image.open(tmp_path / "sw" / "contact_sheet.png").size[0] > 80
    # The images themselves: the library's sweep for the same settings, up to the files' 8-bit rounding, each
    # moved from the photo towards the painting's style statistics (the library's own loss on the files).
    config = StylizeConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), optimizer="adam",
                           iterations=3)
    content, style = load_image(EXAMPLES / "chelsea.png", 48), load_image(EXAMPLES / "swirls.png", 48)
    targets = compute_targets(vgg, content=content, style=style, config=config)
    weights = make_weights(config)
    style_term = lambda image: float(loss_terms(vgg, image, targets, weights, config=config)["style"])  # noqa: E731
    images = [np.asarray(Image.open(tmp_path / "sw" / m["file"]).convert("RGB"), np.float32) / 255 for m in members]
    photo = style_term(content)
    terms = [style_term(image) for image in images]
    assert all(term < photo for term in terms), (photo, terms)
    (level,) = preset_levels(48, config)["weights"]  # the default preset's one level at 48 px: its content terms
    members_weights = stack_weights([make_weights(config, style_weight=m["style_weight"],
                                                  content_term_weights=level.content_terms) for m in members])
    want = sweep(vgg, weights=members_weights, seeds=[m["seed"] for m in members], content=content, style=style,
                 config=config).images
    for image, expected in zip(images, want, strict=True):
        assert np.abs(image - expected).max() <= 1.5 / 255, np.abs(image - expected).max()
    assert all(np.abs(image - content).mean() > 1e-2 for image in images)


def test_sweep_cli_bad_range(tmp_path):
    proc = run_script("sweep.py", "--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png",
                      "--output-dir", tmp_path / "sw", "--style-weights", "1e3:1e1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()


def test_sweep_of_paintings_and_factors_members_are_runs(tmp_path, capsys):
    """2 paintings x 2 style-weight factors over the preset's two levels at 128 px: 4 members, each carrying
    a run record that ``nst-jax --rerun`` replays into the same image, bit for bit; the factor-1 member is
    the plain ``nst-jax PHOTO PAINTING`` run; the factor scales every level's style weight."""
    from nst_jax._src.record import read_record
    from nst_jax.cli import _stylize as stylize
    from nst_jax.cli import _sweep as sweep_cli

    other = tmp_path / "other.png"
    Image.open(EXAMPLES / "swirls.png").transpose(Image.ROTATE_90).save(other)
    small = ["--size", 128, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "relu2_1",
             "--scale-iterations", 3, 2]
    argv = [EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", other, "--output-dir", tmp_path / "sw",
            "--style-weight-factors", 1, 2, *small]
    assert sweep_cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert "4 members on 1 device of 1 process (2 paintings, 2 levels)" in capsys.readouterr().out
    report = json.loads((tmp_path / "sw" / "losses.json").read_text())
    members = report["members"]
    assert [(pathlib.Path(m["painting"]).name, m["factor"]) for m in members] == [
        ("swirls.png", 1.0), ("swirls.png", 2.0), ("other.png", 1.0), ("other.png", 2.0)]
    # The preset's style weights at 64 and 128 px (the balanced preset's last two levels), times the factor.
    assert [[level["style_weight"] for level in m["levels"]] for m in members] == [
        [100.0, 10.0], [200.0, 20.0], [100.0, 10.0], [200.0, 20.0]]
    pixels = lambda path: np.asarray(Image.open(path))  # noqa: E731
    for i in (3,):  # the other painting at twice the style weight; member 0 is the plain run, below
        source = tmp_path / "sw" / f"member_{i:02d}.png"
        assert read_record(source)["sources"]["style"] == [str(pathlib.Path(members[i]["painting"]))]
        assert stylize.main(["--rerun", str(source), "-o", str(tmp_path / f"again{i}.png")]) == 0
        np.testing.assert_array_equal(pixels(tmp_path / f"again{i}.png"), pixels(source))
    plain = [EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "-o", tmp_path / "plain.png", *small]
    assert stylize.main([str(a) for a in plain]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(pixels(tmp_path / "plain.png"), pixels(tmp_path / "sw" / "member_00.png"))
    assert not np.array_equal(pixels(tmp_path / "sw" / "member_00.png"), pixels(tmp_path / "sw" / "member_01.png"))
    # Again into the same directory: refused without --overwrite, nothing replaced.
    before = (tmp_path / "sw" / "losses.json").read_bytes()
    assert sweep_cli.main([str(a) for a in argv]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "sw" / "losses.json").read_bytes() == before


def test_sweep_of_presets_runs_each_level_structure_as_its_own_group(tmp_path, capsys):
    """--preset balanced painterly faithful: the two three-level presets (two levels at 128 px) share their
    levels and run together, faithful's one level on its own; each member has its preset's weights."""
    from nst_jax.cli import _sweep as sweep_cli

    argv = [EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "--output-dir", tmp_path / "sw", "--size", 128,
            "--content-layer", "relu1_1", "--style-layers", "relu1_1", "--iterations", 2, "--no-metrics",
            "--preset", "balanced", "painterly", "faithful"]
    assert sweep_cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    members = json.loads((tmp_path / "sw" / "losses.json").read_text())["members"]
    assert [(m["preset"], [level["style_weight"] for level in m["levels"]]) for m in members] == [
        ("balanced", [100.0, 10.0]), ("painterly", [60.0, 60.0]), ("faithful", [20.0])]
    shapes = [[level["shape"] for level in m["levels"]] for m in members]
    assert shapes[0] == shapes[1] and len(shapes[0]) == 2 and shapes[2] == shapes[0][-1:]
    images = [np.asarray(Image.open(tmp_path / "sw" / m["file"])) for m in members]
    assert images[0].shape == images[2].shape and len({image.tobytes() for image in images}) == 3


def test_sweep_of_per_level_style_weight_lists(tmp_path, capsys):
    """--scale-style-weights repeated: each list is one member's per-level style weights, and that member is
    the plain ``nst-jax ... --scale-style-weights`` run with the same list, bit for bit."""
    from nst_jax.cli import _stylize as stylize
    from nst_jax.cli import _sweep as sweep_cli

    small = ["--size", 128, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "--iterations", 2]
    argv = [EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "--output-dir", tmp_path / "sw", "--no-metrics",
            "--scale-style-weights", 100, 10, "--scale-style-weights", 30, 3, *small]
    assert sweep_cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    members = json.loads((tmp_path / "sw" / "losses.json").read_text())["members"]
    assert [m["scale_style_weights"] for m in members] == [[100.0, 10.0], [30.0, 3.0]]
    assert [[level["style_weight"] for level in m["levels"]] for m in members] == [[100.0, 10.0], [30.0, 3.0]]
    plain = [EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png", "-o", tmp_path / "plain.png",
             "--scale-style-weights", 30, 3, *small]
    assert stylize.main([str(a) for a in plain]) == 0, capsys.readouterr().err
    pixels = lambda path: np.asarray(Image.open(path))  # noqa: E731
    np.testing.assert_array_equal(pixels(tmp_path / "plain.png"), pixels(tmp_path / "sw" / "member_01.png"))
    assert not np.array_equal(pixels(tmp_path / "sw" / "member_00.png"), pixels(tmp_path / "sw" / "member_01.png"))


def test_sweep_of_content_term_weights(tmp_path, capsys):
    """--content-term-weights repeated: each mapping is one member's content term weights at every level, that
    member is the plain ``nst-jax ... --content-term-weights`` run bit for bit, and a bad name is refused in one
    line before anything is written."""
    from nst_jax.cli import _stylize as stylize
    from nst_jax.cli import _sweep as sweep_cli

    small = ["--size", 48, "--content-layer", "relu1_1", "--style-layers", "relu1_1", "--iterations", 2]
    photo, painting = EXAMPLES / "chelsea.png", EXAMPLES / "swirls.png"
    bad = [photo, painting, "--output-dir", tmp_path / "bad", *small, "--content-term-weights", "edges=1"]
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit, with its one line
        sweep_cli.main([str(a) for a in bad])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown content term 'edges' (choose from feature, structure)" in err, err
    assert not (tmp_path / "bad").exists()

    argv = [photo, painting, "--output-dir", tmp_path / "sw", "--no-metrics", *small,
            "--content-term-weights", "structure=0", "--content-term-weights", "feature=0.5", "structure=2"]
    assert sweep_cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    members = json.loads((tmp_path / "sw" / "losses.json").read_text())["members"]
    assert [m["content_term_weights"] for m in members] == [{"feature": 1.0, "structure": 0.0},
                                                            {"feature": 0.5, "structure": 2.0}]
    plain = [photo, painting, "-o", tmp_path / "plain.png", *small, "--content-term-weights", "feature=0.5",
             "structure=2"]
    assert stylize.main([str(a) for a in plain]) == 0, capsys.readouterr().err
    pixels = lambda path: np.asarray(Image.open(path))  # noqa: E731
    np.testing.assert_array_equal(pixels(tmp_path / "plain.png"), pixels(tmp_path / "sw" / "member_01.png"))
    assert not np.array_equal(pixels(tmp_path / "sw" / "member_00.png"), pixels(tmp_path / "sw" / "member_01.png"))
