"""The analytic FLOP count (nst_jax._src.flops) against hand-computed values."""

import pytest

from nst_jax import LossConfig, StylizeConfig
from nst_jax._src.flops import analytic_flops, flop_breakdown


def test_tiny_config_by_hand():
    # conv1_1 only (3 -> 64 channels) on a 4x6 image; relu1_1 is both the content and the style layer.
    config = LossConfig(content_layers=("relu1_1",), style_layers=("relu1_1",))
    m, n = 4 * 6, 64
    conv = 2 * 9 * 3 * 64 * m
    gram = 2 * n * n * m
    elementwise = 5 * n * n + 5 * m * n + 10 * m * 3
    parts = flop_breakdown(config, (4, 6, 3))
    assert parts == {"conv_forward": conv, "conv_backward": conv, "gram_forward": gram, "gram_backward": 2 * gram,
                     "elementwise": elementwise}
    assert analytic_flops(config, (4, 6)) == 2 * conv + 3 * gram + elementwise


def test_pooled_levels_floor_and_stop_at_the_deepest_layer():
    # relu2_1: conv1_1, conv1_2 at 9x5, pool, conv2_1 at floor(9/2) x floor(5/2) = 4x2; style mode (no content term).
    config = LossConfig(mode="style", style_layers=("relu2_1",))
    conv = 2 * 9 * (3 * 64 * 45 + 64 * 64 * 45 + 64 * 128 * 8)
    gram = 2 * 128 * 128 * 8
    assert analytic_flops(config, (9, 5)) == 2 * conv + 3 * gram + 5 * 128 * 128 + 10 * 45 * 3


def test_default_transfer_at_512x384_is_near_xla_cpu_count():
    # XLA:CPU's cost analysis counted 300.7 GFLOP for this evaluation (README); VGG-19 to relu5_1 is 361,152
    # multiply-adds per pixel.
    flops = analytic_flops(StylizeConfig(), (384, 512))
    parts = flop_breakdown(StylizeConfig(), (384, 512))
    assert parts["conv_forward"] == 2 * 361_152 * 384 * 512
    assert flops / 1e9 == pytest.approx(304.6, abs=0.1)
