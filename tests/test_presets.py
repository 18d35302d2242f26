"""The presets' per-level style layer weights on the run's layers (config.preset_layer_weights)."""

import pytest

from nst_jax.config import DEFAULT_STYLE_LAYERS, PRESETS, Level, preset_layer_weights


def test_a_level_weighs_its_own_layers_as_written_and_fewer_rescaled_to_the_same_sum():
    coarse, middle, output = (Level(96 * 2**k, 40, 100.0, style_layer_weights=w)
                              for k, w in enumerate(PRESETS["balanced"].style_layer_weights or ()))
    written = coarse.style_layer_weights
    assert preset_layer_weights(coarse, DEFAULT_STYLE_LAYERS) == [written[n] for n in DEFAULT_STYLE_LAYERS]
    # relu1_1 and relu4_1 at the coarsest level: 0.3 and 0.15 rescaled to sum 1 (the level's sum).
    assert preset_layer_weights(coarse, ("relu1_1", "relu4_1")) == pytest.approx([0.3 / 0.45, 0.15 / 0.45])
    assert preset_layer_weights(output, ("relu1_1",)) == pytest.approx([1.0])  # the library's 1/L for one layer
    assert preset_layer_weights(coarse, ("relu5_1",)) is None  # weight 0 there: nothing to rescale
    assert preset_layer_weights(coarse, ("relu1_1", "relu4_2")) is None  # a layer the preset does not name
    for level in (coarse, middle, output):  # like 1/L, each level's weights sum to 1
        assert sum(level.style_layer_weights.values()) == pytest.approx(1.0)
