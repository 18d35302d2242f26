"""Style statistics, one module each, and their registry.

Each module defines ``STATISTIC``, a :class:`~nst_jax._src.statistics.base.Statistic`: the summary
of a layer, the style target, the blend of several styles, the per-layer loss and the memory of
a target. :data:`STATISTICS` maps ``StylizeConfig.style_loss`` names to them; the objective, the
config's check, the memory estimate and ``--style-loss`` all read it. A new statistic is a new
module beside these and its name in :data:`MODULES`.
"""

from __future__ import annotations

import importlib

from nst_jax._src.statistics.base import UNITS, Statistic

# The registry: one module name per statistic.
MODULES = ("gram", "meancov", "w2", "sliced")

STATISTICS: dict[str, Statistic] = {
    s.name: s for s in (importlib.import_module(f"{__name__}.{m}").STATISTIC for m in MODULES)}

__all__ = ["MODULES", "STATISTICS", "UNITS", "Statistic"]
