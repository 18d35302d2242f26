"""Static settings (nst_jax.config): choices read from the registries, refusals, make_weights' checks."""

import inspect
import re

import numpy as np
import pytest

from nst_jax import LossConfig, StylizeConfig, VGGParams, config, make_weights, perceptual, stylize
from nst_jax._src import metrics, terms
from nst_jax._src.optimizers import OPTIMIZERS
from nst_jax._src.statistics import STATISTICS
from nst_jax.errors import NSTError

from .conftest import smooth_image


def test_bad_settings_refused():
    with pytest.raises(NSTError, match="unknown optimizer"):
        StylizeConfig(optimizer="sgd")
    with pytest.raises(NSTError, match="relu4_9"):
        StylizeConfig(content_layers=("relu4_9",))
    with pytest.raises(NSTError, match="2 style layer weights given for 5 style layers"):
        make_weights(StylizeConfig(), style_layer_weights=[1, 2])
    with pytest.raises(NSTError, match="style weight must be"):
        make_weights(StylizeConfig(), style_weight=float("nan"))


def test_unsupported_combinations_refused():
    for kwargs, message in [
            (dict(style_loss="meancov"), "adds up over tiles \\(gram\\), not 'meancov'"),
            (dict(style_loss="w2"), "adds up over tiles \\(gram\\), not 'w2'"),
            (dict(tile_size=24), "multiple of 16"),
            (dict(tile_size=-16), "multiple of 16"),
            (dict(style_layers=("relu1_1", "pool5"), tile_size=48), "multiple of 32")]:
        with pytest.raises(NSTError, match=message):
            StylizeConfig(**{"tile_size": 64, **kwargs})
    StylizeConfig(mode="content", style_loss="w2", tile_size=64)  # no style loss in content mode
    config = StylizeConfig(mode="style", style_layers=("relu1_1",), tile_size=16, num_styles=2)
    style = smooth_image(32, 32)
    with pytest.raises(NSTError, match="masks are not supported"):
        stylize(VGGParams({}), style=[style, style], config=config, masks=np.ones((2, 32, 32)))


def test_choices_come_from_the_registries():
    statistics, optimizers = ", ".join(STATISTICS), ", ".join(OPTIMIZERS)
    assert statistics == "gram, meancov, w2, sliced" and optimizers == "lbfgs, adam"
    with pytest.raises(NSTError, match=re.escape(f"unknown style loss 'nope' (choose from {statistics})")):
        StylizeConfig(style_loss="nope")
    message = f"unknown optimizer 'nope' (choose from {optimizers}, or pass an optax"
    with pytest.raises(NSTError, match=re.escape(message)):
        StylizeConfig(optimizer="nope")
    for name in STATISTICS:
        assert StylizeConfig(style_loss=name).style_loss == name
    for name in OPTIMIZERS:
        assert StylizeConfig(optimizer=name).optimizer == name


def test_tiling_needs_an_additive_statistic():
    additive = [name for name, statistic in STATISTICS.items() if statistic.additive]
    assert additive == ["gram"]
    for name, statistic in STATISTICS.items():
        if statistic.additive:
            assert StylizeConfig(style_loss=name, tile_size=64).tile_size == 64
        else:
            with pytest.raises(NSTError, match=re.escape(f"adds up over tiles (gram), not '{name}'")):
                StylizeConfig(style_loss=name, tile_size=64)
            assert StylizeConfig(mode="content", style_loss=name, tile_size=64).tile_size == 64


def test_the_term_names_have_one_owner():
    assert config.TERMS is terms.TERMS  # a re-export, not a second definition
    weights = make_weights(StylizeConfig())
    # Content: per term (feature, structure at its default weight 0), per content layer.
    got = terms.weighted_terms(weights, content=[[np.float32(2.0)], [np.float32(7.0)]], style=[np.float32(3.0)] * 5,
                               tv=np.float32(4.0))
    assert tuple(got) == terms.TERMS
    np.testing.assert_allclose(got["content"], 2.0)
    np.testing.assert_allclose(got["total"], got["content"] + got["style"] + got["tv"], rtol=1e-6)


def test_the_default_layers_have_one_definition():
    content, style = ("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Gatys et al.'s
    assert (LossConfig().content_layers, LossConfig().style_layers) == (content, style)
    assert (perceptual.DEFAULT_CONTENT_LAYERS, perceptual.DEFAULT_STYLE_LAYERS) == (content, style)
    defaults = inspect.signature(perceptual.perceptual_terms).parameters
    assert (defaults["content_layers"].default, defaults["style_layers"].default) == (content, style)
    assert inspect.signature(metrics.gram_error).parameters["layers"].default == style
    assert metrics.CONTENT_LAYER == content[0]
