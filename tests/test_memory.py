"""The memory estimate and the refusal of runs that do not fit."""

import pytest

from nst_jax import StylizeConfig
from nst_jax.errors import NSTError
from nst_jax.memory import ENV_LIMIT, check_memory, estimate_bytes


def test_estimate_grows_with_size_and_optimizer_state():
    config = StylizeConfig()
    small = estimate_bytes(config, (64, 64, 3), (64, 64, 3))
    big = estimate_bytes(config, (256, 256, 3), (256, 256, 3))
    assert 10 < big["activations"] / small["activations"] < 20  # ~16x the pixels
    adam = estimate_bytes(StylizeConfig(optimizer="adam"), (256, 256, 3))
    assert adam["optimizer"] < big["optimizer"]  # L-BFGS keeps 2 * memory images
    assert big["optimizer"] >= 2 * config.lbfgs_memory * 256 * 256 * 3 * 4


def test_refusal_names_estimate_limit_and_a_size_that_fits(monkeypatch):
    config = StylizeConfig()
    monkeypatch.setenv(ENV_LIMIT, "300e6")
    assert check_memory(config, (128, 96, 3), (128, 96, 3))["total"] <= 300e6
    with pytest.raises(NSTError, match=r"needs about .* more than the 286 MiB of NST_JAX_MEMORY_LIMIT_BYTES; "
                                        r"try --size (\d+)") as info:
        check_memory(config, (1024, 768, 3), (1024, 768, 3))
    fit = int(str(info.value).rsplit(" ", 3)[-3])
    assert 32 <= fit < 1024
    h, w = fit, fit * 3 // 4
    assert estimate_bytes(config, (h, w, 3), (h, w, 3))["total"] <= 300e6
    monkeypatch.setenv(ENV_LIMIT, "lots")
    with pytest.raises(NSTError, match="number of bytes"):
        check_memory(config, (64, 64, 3))


def test_tiling_bounds_the_activations_and_lets_large_runs_through(monkeypatch):
    tiled = StylizeConfig(tile_size=512)
    small, large = (estimate_bytes(tiled, (s, s, 3), (s, s, 3)) for s in (1024, 4096))
    untiled = estimate_bytes(StylizeConfig(), (4096, 4096, 3), (4096, 4096, 3))
    assert large["activations"] < 1.2 * small["activations"]  # one tile's maps, whatever the image size
    assert large["total"] < untiled["total"] / 10
    monkeypatch.setenv(ENV_LIMIT, str(20 * 2**30))
    check_memory(tiled, (4096, 4096, 3), (4096, 4096, 3))
    with pytest.raises(NSTError, match=r"try --tile-size 1024 \(same result, more compute\), or --size \d+ or less"):
        check_memory(StylizeConfig(), (4096, 4096, 3), (4096, 4096, 3))


def test_sweep_members_add_their_optimiser_states():
    """K members on a device add K - 1 optimiser states (L-BFGS: 2 * memory + 6 images, as its module counts them) and
    nothing else: their evaluations run one at a time."""
    config = StylizeConfig(lbfgs_memory=5)
    one = estimate_bytes(config, (64, 48, 3))
    four = estimate_bytes(config, (64, 48, 3), members=4)
    image = 64 * 48 * 3 * 4
    assert four["optimizer"] == 4 * one["optimizer"] == 4 * (2 * 5 + 6) * image
    assert four["total"] - one["total"] == 3 * (2 * 5 + 6) * image
    assert {k: v for k, v in four.items() if k not in ("optimizer", "total")} == {
        k: v for k, v in one.items() if k not in ("optimizer", "total")}
