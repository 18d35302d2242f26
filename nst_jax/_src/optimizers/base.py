"""What a pixel optimiser is: the interface every entry of :data:`nst_jax._src.optimizers.OPTIMIZERS` fills.

The stylizer (:func:`nst_jax.make_stylizer`) calls only these functions, so a new optimiser is
one new module here plus its line in the registry. ``value_and_grad(x)`` is the objective's value
and gradient at an image ``x``; ``value_fn(x)`` its value alone (a line search may call it, and
differentiate it, any number of times).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import optax


class Transformation(Protocol):
    """What ``StylizeConfig.optimizer`` takes besides a registry name, as a type: any optax
    transformation (``optax.adam(0.01)``, ``optax.chain(...)``), described by its two functions.

    optax ships no type information, so the library's signatures name this structural type
    instead of ``optax.GradientTransformation``; at run time the config checks for the optax class.
    """

    @property
    def init(self) -> Callable[..., Any]:
        """``init(params) -> state``."""
        ...

    @property
    def update(self) -> Callable[..., Any]:
        """``update(updates, state, params, **extra) -> (updates, state)``."""
        ...


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One pixel optimiser.

    Attributes:
        name: The registry key (``StylizeConfig.optimizer``, ``--optimizer``).
        help: One line for ``--help``.
        transform: ``transform(config, weights) -> optax.GradientTransformationExtraArgs`` (may read
            dynamic numbers such as the learning rate from ``weights``).
        init: ``init(transform, image) -> opt_state``, before any evaluation.
        update: ``update(transform, image, opt_state, value_and_grad, value_fn, start) -> (updates,
            opt_state, value, evaluations)``: ``value`` the objective at ``image`` (the step's
            start) and ``evaluations`` the loss-and-gradient evaluations the step made (int32).
            With ``start`` true (a bool, may be traced; only for an optimiser with
            ``start_evaluations > 0``), the optimiser's start instead: its evaluations at
            ``image``, zero updates, and a state ready for the first step.
        start_evaluations: Evaluations the start makes (reported with the first step); 0 if the
            optimiser needs no start.
        state_images: ``state_images(config) -> int``, how many image-sized float32 arrays the
            optimiser holds at its peak (state, gradient, update, trial points), for the
            memory estimate.
    """

    name: str
    help: str
    transform: Callable[[Any, Any], optax.GradientTransformationExtraArgs]
    init: Callable[[optax.GradientTransformationExtraArgs, jax.Array], optax.OptState]
    update: Callable[..., tuple[Any, optax.OptState, jax.Array, jax.Array]]
    start_evaluations: int
    state_images: Callable[[Any], int]
