"""Content terms, one module each, and their registry.

Each module defines ``TERM``, a :class:`~nst_jax._src.content_terms.base.ContentTerm`: how a layer's
features of the output are compared with the content photo's. :data:`CONTENT_TERMS` maps
``LossConfig.content_terms`` names to them; the objective, the config's check and
``make_weights`` read it. A new term is a new module beside these and its name in :data:`MODULES`.
"""

from __future__ import annotations

import importlib

from nst_jax._src.content_terms.base import ContentTerm, TileContext

# The registry: one module name per content term.
MODULES = ("feature", "structure")

CONTENT_TERMS: dict[str, ContentTerm] = {
    t.name: t for t in (importlib.import_module(f"{__name__}.{m}").TERM for m in MODULES)}

__all__ = ["CONTENT_TERMS", "MODULES", "ContentTerm", "TileContext"]
