"""Multi-scale optimisation (nst_jax.multiscale): the pyramid, the warm start, and resuming at any level."""

import dataclasses

import numpy as np
import pytest

from nst_jax import StylizeConfig

from .conftest import PAINTING, compiled_programs, run, smooth_image


def test_multiscale_pyramid_and_warm_start(vgg):
    from nst_jax.multiscale import pyramid_sizes, stylize_multiscale


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


def test_multiscale_resume_at_any_level_is_bitwise_equal(vgg, tmp_path):
    from nst_jax.checkpoint import load_checkpoint, save_checkpoint
    from nst_jax.errors import NSTError
    from nst_jax.multiscale import stylize_multiscale

    content = smooth_image(48, 40, seed=3)
    config = StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), iterations=4, chunk_size=2)
    kw = dict(sizes=[32, 48], iterations=[4, 3], content=content, style=PAINTING, config=config, seed=1)
    seen = []
    whole = stylize_multiscale(vgg, **kw, callback=lambda level, p: seen.append((level, p.step, p.run)))
    assert [(level, step) for level, step, _ in seen] == [(0, 2), (0, 4), (1, 2), (1, 3)]
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
