"""Multi-scale optimisation (nst_jax._src.multiscale): the pyramid, the warm start, and resuming at any level."""

import dataclasses

import numpy as np
import pytest

from nst_jax import StylizeConfig

from .conftest import PAINTING, compiled_programs, run, smooth_image


def test_multiscale_pyramid_and_warm_start(vgg):
    from nst_jax import stylize_multiscale
    from nst_jax.spec import pyramid_sizes


    assert pyramid_sizes(512, 3, 128) == [128, 256, 512] and pyramid_sizes(300, 1) == [300]
    content = smooth_image(48, 64, seed=1)
    config = StylizeConfig(style_layers=("relu1_1", "relu2_1"), iterations=15, chunk_size=15)
    with compiled_programs() as names:
        multi = stylize_multiscale(vgg, sizes=[43, 64], iterations=[15, 5],
                                   content=content, style=PAINTING, config=config)
    assert names.count("local_chunk") == 2, names  # one compilation per size
    assert multi.image.shape == (48, 64, 3) and [r.image.shape[:2] for r in multi.levels] == [(32, 43), (48, 64)]
    single = run(vgg, dataclasses.replace(config, iterations=5), content=content, style=PAINTING)
    # The fine level starts from the upsampled coarse result, below the single run's start (the photo, the
    # transfer mode's default), and ends lower.
    assert multi.levels[1].history["total"][0] < 0.8 * single.history["total"][0]
    assert multi.levels[1].history["total"][-1] < single.history["total"][-1]


class Stop(Exception):
    pass


CONTENT = smooth_image(48, 40, seed=3)
# Adam compiles faster than L-BFGS; resuming restores any optimiser's state alike (test_checkpoint has both).
SMALL = StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), optimizer="adam")


def test_multiscale_resume_at_any_level_is_bitwise_equal(vgg, tmp_path):
    from nst_jax._src.checkpoint import load_checkpoint, save_checkpoint
    from nst_jax._src.multiscale import stylize_multiscale
    from nst_jax.errors import NSTError

    # The settings and shapes of the CLI test below, so the two share their compiled programs.
    kw = dict(sizes=[32, 48], iterations=[4, 3], content=CONTENT, style=PAINTING, config=SMALL, seed=1,
              sync_every=(2,))
    seen = []
    whole = stylize_multiscale(vgg, **kw, callback=lambda level, p: seen.append((level, p.step, p.run)))
    assert [(level, step) for level, step, _ in seen] == [(0, 2), (0, 4), (1, 2), (1, 3)]
    assert all(level.history["total"][-1] < level.history["total"][0] for level in whole.levels)  # it optimises
    # A level's record is the whole run's, its inputs plus the level.
    runs = {level: run for level, _, run in seen}
    assert runs[0]["inputs"]["level"] == {"index": 0, "sizes": [32, 48], "iterations": [4, 3]}
    assert runs[1]["inputs"]["level"]["index"] == 1 and runs[1]["config"]["init"] == "image"
    assert {k: v for k, v in runs[0]["inputs"].items() if k != "level"} == {
        k: v for k, v in runs[1]["inputs"].items() if k != "level"}

    for at in [(0, 2), (1, 2)]:
        path = tmp_path / f"level{at[0]}.ckpt.npz"

        def stop(level, progress, at=at, path=path):
            if (level, progress.step) == at:
                save_checkpoint(path, progress.checkpoint())
                raise Stop

        with pytest.raises(Stop):
            stylize_multiscale(vgg, **kw, callback=stop)
        saved = load_checkpoint(path)
        resumed = stylize_multiscale(vgg, **kw, resume=saved)
        np.testing.assert_array_equal(resumed.image, whole.image)
        assert resumed.levels[:at[0]] == [None] * at[0]
        for mine, theirs in zip(resumed.levels[at[0]:], whole.levels[at[0]:], strict=True):
            for key in theirs.history:
                np.testing.assert_array_equal(mine.history[key], theirs.history[key], err_msg=key)
    # Another pyramid, or another step count at a level, is another run.
    with pytest.raises(NSTError, match=r"inputs\.level\.iterations"):
        stylize_multiscale(vgg, **{**kw, "iterations": [4, 5]}, resume=saved)
    with pytest.raises(NSTError, match="not one of the 1 levels"):
        stylize_multiscale(vgg, **{**kw, "sizes": [48], "iterations": [3]}, resume=saved)


def test_cli_scales_save_checkpoint_interrupt_resume_and_rerun(capsys, tmp_path, monkeypatch):
    """``--scales 3`` with ``--save-every``/``--checkpoint-every``: SIGINT during the middle level checkpoints
    and exits 3; ``--resume`` finishes bitwise equal to the uninterrupted run; ``--rerun`` remakes the
    output and intermediate saves of the coarse and middle levels, bitwise; divergence saves the last
    finite image. In-process, 32 -> 45 -> 64 px, 4 + 3 + 2 steps."""
    import os
    import signal

    from PIL import Image

    import nst_jax.files
    from nst_jax.files import load_checkpoint, read_record, save_image

    from .conftest import nst_in_process

    save_image(tmp_path / "content.png", CONTENT)
    save_image(tmp_path / "style.png", PAINTING)
    common = [tmp_path / "content.png", tmp_path / "style.png", "--size", 64, "--content-layer", "relu1_1",
              "--style-layers", "relu1_1", "--optimizer", "adam", "--scales", 3, "--min-size", 32,
              "--scale-iterations", 4, 3, 2, "--save-every", 2, "--checkpoint-every", 2]
    code, out, err = nst_in_process(capsys, *common, "-o", tmp_path / "ref.png", "--preview", tmp_path / "live.png")
    assert code == 0, err
    assert "3 scales, longest sides 32, 45, 64 px, 4, 3, 2 iterations" in out
    pixels = lambda name: np.asarray(Image.open(tmp_path / name))  # noqa: E731
    # Saves every 2 steps of each level, named by the run's step: 2 and 4 (the coarse level's end) at 32 px,
    # 6 (the middle level's step 2) at 45 px; step 9 (the fine level's step 2) is the output.
    saved = sorted(p.name for p in tmp_path.glob("ref_0*.png"))
    assert saved == ["ref_00002.png", "ref_00004.png", "ref_00006.png"], saved
    assert [pixels(n).shape[:2] for n in saved] == [(32, 26), (32, 26), (45, 37)]  # the 64 x 53 output halved
    assert read_record(tmp_path / "ref_00006.png")["step"] == 6
    np.testing.assert_array_equal(pixels("live.png"), pixels("ref.png"))  # the preview ends as the output
    assert load_checkpoint(tmp_path / "ref.ckpt.npz").run["inputs"]["level"]["index"] == 2

    original = nst_jax.files.save_image

    def interrupt_at_6(path, image, **kw):  # SIGINT while the middle level runs
        original(path, image, **kw)
        if path.name == "cut_00006.png":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(nst_jax.files, "save_image", interrupt_at_6)
    code, _, err = nst_in_process(capsys, *common, "-o", tmp_path / "cut.png")
    monkeypatch.setattr(nst_jax.files, "save_image", original)
    assert code == 3 and "interrupted at step 6 of 9" in err and "--resume" in err, err
    assert not (tmp_path / "cut.png").exists()
    code, out, err = nst_in_process(capsys, "--resume", tmp_path / "cut.ckpt.npz")
    assert code == 0 and "at step 6 of 9" in out, err
    np.testing.assert_array_equal(pixels("cut.png"), pixels("ref.png"))
    assert read_record(tmp_path / "cut.png")["spec"] == read_record(tmp_path / "ref.png")["spec"]

    for source, made in (("ref.png", "again.png"), ("ref_00004.png", "coarse.png"), ("ref_00006.png", "mid.png")):
        code, _, err = nst_in_process(capsys, "--rerun", tmp_path / source, "-o", tmp_path / made)
        assert code == 0, err
        np.testing.assert_array_equal(pixels(made), pixels(source))
    # Divergence stops a multi-scale run as a single-scale one: exit 4, the last finite image saved.
    code, _, err = nst_in_process(capsys, *common, "--learning-rate", "1e30", "-o", tmp_path / "nan.png")
    assert code == 4 and "last finite image (step " in err, err
    assert (tmp_path / "nan_last_good.png").is_file() and not (tmp_path / "nan.png").exists()


def test_multiscale_weights_per_level(vgg):
    """One Weights per level: each level runs with its own (the presets' coarse levels weigh the style more)."""
    from nst_jax import make_weights
    from nst_jax._src.multiscale import stylize_multiscale
    from nst_jax.errors import NSTError

    kw = dict(sizes=[32, 48], iterations=[3, 2], content=CONTENT, style=PAINTING, config=SMALL)
    low, high = make_weights(SMALL, style_weight=1.0), make_weights(SMALL, style_weight=100.0)
    mixed = stylize_multiscale(vgg, **kw, weights=[high, low])
    # Level 0 is the run with `high` throughout; level 1, started from it, is not that run's (it uses `low`).
    all_high = stylize_multiscale(vgg, **kw, weights=high)
    np.testing.assert_array_equal(mixed.levels[0].image, all_high.levels[0].image)
    assert not np.array_equal(mixed.image, all_high.image)
    # Level 1's weighted style term carries its own weight, 1 against 100.
    assert mixed.levels[1].history["style"][0] < 0.1 * all_high.levels[1].history["style"][0]
    with pytest.raises(NSTError, match="one per level"):
        stylize_multiscale(vgg, **kw, weights=[low])
