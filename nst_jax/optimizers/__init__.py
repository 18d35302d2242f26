"""Pixel optimisers, one module each, and their registry.

Each module defines ``OPTIMIZER``, an :class:`~nst_jax.optimizers.base.Optimizer`: its optax
transformation, how it starts, one step, the evaluations it reports and its memory.
:data:`OPTIMIZERS` maps ``StylizeConfig.optimizer`` names to them; the stylizer, the driver, the
config's check, the memory estimate and ``--optimizer`` all read it. A new optimiser is a new
module beside these and its name in :data:`MODULES`.
"""

from __future__ import annotations

import importlib

from nst_jax.optimizers.base import Optimizer

# The registry: one module name per optimiser.
MODULES = ("lbfgs", "adam")

OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o for o in (importlib.import_module(f"{__name__}.{m}").OPTIMIZER for m in MODULES)}

__all__ = ["MODULES", "OPTIMIZERS", "Optimizer"]
