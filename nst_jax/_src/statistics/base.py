"""What a style statistic is: the interface every entry of :data:`nst_jax._src.statistics.STATISTICS` fills.

A statistic describes a layer's features ``[H, W, N]`` by a few arrays (its *summary*: a Gram
matrix, a mean and a covariance, ...), turns a style image's summary into the *target* the
output is compared with, blends several styles' targets into one *reference*, and scores the
output's features against that reference (the per-layer style loss ``E_l``). The objective
(:mod:`nst_jax._src.objective`) calls only these functions, so a new statistic is one new module
here plus its line in the registry.

Units (``units``): ``"relative"`` divides each loss by its value at all-zero features, so it is
1 for a blank map and 0 at the target; ``"paper"`` uses the paper's normalisation (eq. 4 for
the Gram matrix) or the statistic's own closest analogue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from nst_jax.errors import NSTError

UNITS = ("relative", "paper")
# Smallest normaliser of a relative term (an all-zero target would otherwise divide by zero).
TINY = 1e-30

Arrays = Mapping[str, jax.Array]


def check_units(units: str) -> None:
    """Refuses units other than :data:`UNITS`."""
    if units not in UNITS:
        raise NSTError(f"unknown loss units {units!r} (choose from {', '.join(UNITS)})")


def relative(error: jax.Array, scale: jax.Array) -> jax.Array:
    """``error / scale``, with ``scale`` floored at :data:`TINY`."""
    return error / jnp.maximum(scale, TINY)


def _identity(reference: Arrays) -> dict[str, jax.Array]:
    return dict(reference)


@dataclasses.dataclass(frozen=True)
class Statistic:
    """One style statistic: its summary, target, blend, loss and memory.

    Attributes:
        name: The registry key (``StylizeConfig.style_loss``, ``--style-loss``).
        help: One line for ``--help``.
        summary: ``summary(features [H, W, N], mask [H, W] | None) -> {name: array}`` of one
            image's layer (``mask`` weights positions: a region of the output).
        target: ``target(summary, mass) -> {name: array}``, what a style image's summary is
            compared with, for an output layer whose positions (or squared region mask) sum to
            ``mass``.
        blend: ``blend({name: [S, ...]}, b [S]) -> {name: array}``, the targets of ``S`` styles
            mixed with weights ``b`` (summing to 1) into one reference.
        loss: ``loss(features [H, W, N], reference, mask [H, W] | None, units) -> scalar``, the
            layer's style loss ``E_l`` of the output.
        target_bytes: ``target_bytes(N) -> int``, the float32 bytes of one target of a layer
            with ``N`` filters (for the memory estimate).
        finish: ``finish(reference) -> reference``, constants derived once per run from a
            reference (e.g. a matrix square root); identity by default.
        summed_loss: For statistics whose summaries add up over disjoint sets of positions
            (and so can be summed tile by tile, :mod:`nst_jax._src.tiled`):
            ``summed_loss(summary, reference, units) -> scalar``, the loss from the output's
            whole summary; None where summaries do not add up.
    """

    name: str
    help: str
    summary: Callable[[jax.Array, jax.Array | None], dict[str, jax.Array]]
    target: Callable[[Arrays, jax.Array], dict[str, jax.Array]]
    blend: Callable[[Arrays, jax.Array], dict[str, jax.Array]]
    loss: Callable[[jax.Array, Arrays, jax.Array | None, str], jax.Array]
    target_bytes: Callable[[int], int]
    finish: Callable[[Arrays], dict[str, jax.Array]] = _identity
    summed_loss: Callable[[Arrays, Arrays, str], jax.Array] | None = None

    @property
    def additive(self) -> bool:
        """Whether summaries add up over tiles (tiled evaluation supports the statistic)."""
        return self.summed_loss is not None
