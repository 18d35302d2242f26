"""Analytic FLOP count of one loss value-and-gradient evaluation, from the VGG-19 layer table.

XLA's cost analysis is no denominator on every backend: on a GPU the convolutions become cuDNN
custom calls, which it does not count (a 300 GFLOP evaluation read as 5.7 GFLOP on an H200).
This count depends only on the configuration and the image shape:

- each 3x3 convolution up to the deepest layer the loss uses: ``2 * 9 * C_in * C_out * H_l * W_l``
  forward, and the same again backward for the gradient with respect to its input (the weights
  are frozen: no weight gradient), where ``H_l x W_l = floor(H / 2^k) x floor(W / 2^k)`` after
  ``k`` poolings;
- each style layer's Gram matrix ``F^T F`` (``F``: ``M = H_l W_l`` positions by ``N`` channels):
  ``2 N^2 M`` forward and twice that backward (autodiff's two products ``F dG`` and ``F dG^T``);
  the mean-and-covariance and W2 style losses are counted as the same Gram (their eigh and means
  are small at ``N <= 512``);
- elementwise terms, negligible but counted: each content layer ``5 M N`` (difference, square and
  sum forward, two products backward), each style layer's Gram difference ``5 N^2``, the TV term
  ``10`` per image value (two directions).

ReLUs and poolings are comparisons and are not counted. Tiled evaluation (``tile_size``) does
more work (the halos) than this count of the useful work; bf16 does the same useful work.
For the default transfer loss at 512x384 this gives 304.6 GFLOP (XLA:CPU's cost analysis: 300.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nst_jax._src.vgg import CONV_LAYERS, LAYERS, layer_channels, layer_level

if TYPE_CHECKING:  # config imports nothing from here; kept lazy all the same
    from nst_jax.config import StylizeConfig


def flop_breakdown(config: StylizeConfig, shape: Sequence[int]) -> dict[str, float]:
    """FLOPs of one value-and-gradient evaluation by part.

    Args:
        config: A ``LossConfig`` or ``StylizeConfig`` (mode, content and style layers).
        shape: The image's ``(H, W)`` or ``(H, W, 3)``.

    Returns:
        ``{"conv_forward", "conv_backward", "gram_forward", "gram_backward", "elementwise"}``.
    """
    h, w = int(shape[0]), int(shape[1])
    layers = config.feature_layers
    deepest = max(LAYERS.index(name) for name in layers)
    out = dict.fromkeys(("conv_forward", "conv_backward", "gram_forward", "gram_backward", "elementwise"), 0.0)
    for name, c_in, c_out in CONV_LAYERS:
        if LAYERS.index(name) > deepest:
            break
        k = layer_level(name)
        positions = (h >> k) * (w >> k)
        out["conv_forward"] += 2.0 * 9 * c_in * c_out * positions
    out["conv_backward"] = out["conv_forward"]

    def size(name):
        k = layer_level(name)
        return (h >> k) * (w >> k), layer_channels(name)

    if config.uses_style:
        for name in config.style_layers:
            m, n = size(name)
            out["gram_forward"] += 2.0 * n * n * m
            out["elementwise"] += 5.0 * n * n
        out["gram_backward"] = 2 * out["gram_forward"]
    if config.uses_content:
        for name in config.content_layers:
            m, n = size(name)
            out["elementwise"] += 5.0 * m * n
    out["elementwise"] += 10.0 * h * w * 3
    return out


def analytic_flops(config: StylizeConfig, shape: Sequence[int]) -> float:
    """FLOPs of one loss value-and-gradient evaluation (the module docstring says what is counted)."""
    return float(sum(flop_breakdown(config, shape).values()))
