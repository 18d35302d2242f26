"""The memory estimate and the refusal of runs that do not fit."""

import numpy as np
import pytest

from nst_jax import StylizeConfig
from nst_jax._src.memory import ENV_LIMIT, MEMBER_COPIES, check_memory, estimate_bytes
from nst_jax.errors import NSTError


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


def test_sweep_members_add_their_run_states():
    """K members on a device add K - 1 run states, MEMBER_COPIES times each (L-BFGS: 2 * memory + 6 images,
    the moving average, and the style Gram matrices: C^2 floats per layer), and nothing else: their
    evaluations run one at a time."""
    config = StylizeConfig(lbfgs_memory=5, style_layers=("relu1_1", "relu2_1"))
    one = estimate_bytes(config, (64, 48, 3))
    four = estimate_bytes(config, (64, 48, 3), members=4)
    image = 64 * 48 * 3 * 4
    state = (2 * 5 + 6) * image + image + 4 * (64**2 + 128**2)
    assert one["optimizer"] == four["optimizer"] == (2 * 5 + 6) * image and one["members"] == 0
    assert four["members"] == four["total"] - one["total"] == MEMBER_COPIES * 3 * state
    assert {k: v for k, v in four.items() if k not in ("members", "total")} == {
        k: v for k, v in one.items() if k not in ("members", "total")}


def test_sweep_members_estimate_holds_xlas_own_accounting(vgg):
    """What further members add by the estimate is at least what XLA's memory analysis of the compiled
    level programs (arguments + outputs + temporaries - aliased) adds from 1 to 3 members."""
    import jax

    from nst_jax import make_spec
    from nst_jax._src import driver, multiscale

    config = StylizeConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    rng = np.random.default_rng(0)
    photo, painting = (rng.random((40, 48, 3), dtype=np.float32) for _ in range(2))

    def device_bytes(k):
        specs = [make_spec(config, content=photo, style=[painting], seed=0) for _ in range(k)]
        plans, inputs, starts, weights = multiscale._group_inputs(specs, list(range(k)), 0, [None] * k)
        layout = driver.member_layout(k, driver.member_mesh(), 1)
        targets_args = multiscale._targets_args(plans[0], inputs[0])
        start = driver.start_program(plans[0].config, layout, tuple(targets_args["output_shape"]))
        args = driver._place(layout, vgg, targets_args, weights, starts, put=driver._abstract)
        v, targets_in, w, images = args
        compiled = start.lower(v, targets_in, images, w).compile()
        state, targets = compiled.out_info
        scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype)  # noqa: E731
        chunk = driver.chunk_program(plans[0].config, layout).lower(
            state, v, targets, w, scalar(np.int32), scalar(np.bool_)).compile()
        m = chunk.memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes

    xla = device_bytes(3) - device_bytes(1)
    estimate = estimate_bytes(config, (40, 48, 3), members=3)["members"]
    assert xla > 0 and estimate >= xla, (estimate, xla)
