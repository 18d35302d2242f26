"""Checkpoints, bitwise resume, and numerical failure, in process (the CLI's are in test_cli_reliability)."""

import numpy as np
import pytest

from nst_jax import StylizeConfig, make_weights, stylize
from nst_jax._src.checkpoint import load_checkpoint, save_checkpoint
from nst_jax.errors import NSTError, NumericalError

from .conftest import smooth_image

CONTENT = smooth_image(32, 32, seed=1)
STYLE = smooth_image(36, 32, seed=2)


class Stop(Exception):
    pass


def run(vgg, config, **kw):
    return stylize(vgg, content=CONTENT, style=STYLE, config=config, **kw)


def assert_same(a, b, keys=None):
    np.testing.assert_array_equal(a.image, b.image)
    assert a.history.keys() == b.history.keys()
    for k in keys or a.history:
        np.testing.assert_array_equal(a.history[k], b.history[k], err_msg=k)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_resume_is_bitwise_equal(vgg, tmp_path, optimizer):
    config = StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), optimizer=optimizer,
                           iterations=23, chunk_size=5)
    whole = run(vgg, config, seed=4, sync_every=(7,))
    # Chunk ends moved by sync_every: same image and per-step losses, bit for bit.
    assert_same(whole, run(vgg, config, seed=4), keys=["total_per_step"])

    path = tmp_path / "run.ckpt.npz"

    def stop_at_14(progress):
        if progress.step == 14:
            save_checkpoint(path, progress.checkpoint(notes={"why": "test"}))
            raise Stop

    with pytest.raises(Stop):
        run(vgg, config, seed=4, sync_every=(7,), callback=stop_at_14)
    saved = load_checkpoint(path)
    assert saved.step == 14 and saved.notes == {"why": "test"}
    assert saved.run["config"]["optimizer"] == optimizer and saved.run["seed"] == 4
    assert_same(whole, run(vgg, config, seed=4, sync_every=(7,), resume=saved))


def test_resume_refuses_another_run(vgg, tmp_path):
    config = StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), iterations=4, chunk_size=2)
    path = tmp_path / "c.npz"
    run(vgg, config, callback=lambda p: p.step == 2 and save_checkpoint(path, p.checkpoint()))
    saved = load_checkpoint(path)
    with pytest.raises(NSTError, match=r"config.iterations \(4 in the checkpoint, 6 now\)"):
        run(vgg, StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), iterations=6, chunk_size=2),
            resume=saved)
    with pytest.raises(NSTError, match="seed"):
        run(vgg, config, resume=saved, seed=9)
    with pytest.raises(NSTError, match="weights.style"):
        run(vgg, config, resume=saved, weights=make_weights(config, style_weight=5.0))
    with pytest.raises(NSTError, match="inputs.content"):
        stylize(vgg, content=CONTENT[::-1], style=STYLE, config=config,
                resume=saved)


def test_unreadable_checkpoints_refused(tmp_path):
    with pytest.raises(NSTError, match="not found"):
        load_checkpoint(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(NSTError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(NSTError, match="not a readable|not an nst_jax"):
        load_checkpoint(tmp_path / "other.npz")


def test_divergence_stops_with_last_good_image(vgg):
    config = StylizeConfig(mode="content", content_layers=("relu1_1",), optimizer="adam", iterations=40,
                           chunk_size=4)
    seen = []
    with pytest.raises(NumericalError, match="diverged between steps") as info:
        stylize(vgg, content=CONTENT, config=config,
                weights=make_weights(config, learning_rate=1e30), callback=lambda p: seen.append(p.step))
    err = info.value
    assert err.step == (seen[-1] if seen else 0)
    assert err.image.shape == CONTENT.shape and np.isfinite(err.image).all()


def test_infinite_loss_at_start_refused(vgg):
    # In paper units the content term is about 1e10 here, so this weight overflows float32.
    config = StylizeConfig(mode="content", content_layers=("relu1_1",), iterations=3, loss_units="paper")
    with pytest.raises(NumericalError, match="not finite at the start") as info:
        stylize(vgg, content=CONTENT, config=config,
                weights=make_weights(config, content_weight=3e38))
    assert info.value.step == 0
