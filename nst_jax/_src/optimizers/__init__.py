"""Pixel optimisers, one module each, and their registry.

Each module defines ``OPTIMIZER``, an :class:`~nst_jax._src.optimizers.base.Optimizer`: its optax
transformation, how it starts, one step, the evaluations it reports and its memory.
:data:`OPTIMIZERS` maps ``StylizeConfig.optimizer`` names to them; the stylizer, the driver, the
config's check, the memory estimate and ``--optimizer`` all read it. A new optimiser is a new
module beside these and its name in :data:`MODULES`.
"""

from __future__ import annotations

import importlib
from typing import Any

import optax

from nst_jax._src.optimizers import custom
from nst_jax._src.optimizers.base import Optimizer, Transformation
from nst_jax.errors import NSTError

# The registry: one module name per optimiser.
MODULES = ("lbfgs", "adam")

OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o for o in (importlib.import_module(f"{__name__}.{m}").OPTIMIZER for m in MODULES)}



def resolve(optimizer: str | Transformation) -> Optimizer:
    """The :class:`Optimizer` of a ``StylizeConfig.optimizer``: a registry name, or any optax
    transformation (:mod:`nst_jax._src.optimizers.custom`). The one place the two are told apart.

    Raises:
        NSTError: For an unknown name or another type.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return custom.wrap(optimizer)
    if isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer]
    raise NSTError(f"unknown optimizer {_short(optimizer)} (choose from {', '.join(OPTIMIZERS)}, "
                   "or pass an optax.GradientTransformation)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def label(optimizer: str | Transformation) -> str:
    """How an optimiser is named in records, checkpoints and messages: its registry name, or
    ``"optax"`` for a transformation (whose numbers are not recorded)."""
    return optimizer if isinstance(optimizer, str) else custom.NAME


__all__ = ["MODULES", "OPTIMIZERS", "Optimizer", "label", "resolve"]
