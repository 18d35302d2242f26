"""Any first-order optax transformation as a pixel optimiser: ``StylizeConfig(optimizer=optax.adam(0.01))``.

The transformation runs in the library's loop as the built-ins do (compiled chunks, the NaN
guard, checkpoints and resume, sweeps): one loss-and-gradient evaluation per step, no start, the
image as ``params``. A :class:`optax.GradientTransformationExtraArgs` is also handed the value,
gradient and ``value_fn`` (so optax's own line searches work, counted as one evaluation). Its
numbers are its own: the sweep's dynamic ``Weights.learning_rate`` is not read.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from nst_jax._src.optimizers.base import Optimizer

# The name a custom transformation goes by in records, checkpoints and messages.
NAME = "optax"


def _update(transform, image, opt_state, value_and_grad, value_fn, start):
    del start  # no start evaluation (start_evaluations = 0), so never called with start true
    value, grad = value_and_grad(image)
    if isinstance(transform, optax.GradientTransformationExtraArgs):
        updates, opt_state = transform.update(grad, opt_state, image, value=value, grad=grad, value_fn=value_fn)
    else:
        updates, opt_state = transform.update(grad, opt_state, image)
    return updates, opt_state, value, jnp.ones((), jnp.int32)


def _state_images(transform: optax.GradientTransformation, config) -> int:
    """Image-sized arrays the transformation holds (its state's size over an image's, from
    ``jax.eval_shape`` at a 64 x 64 image: no allocation; scalars such as a step count round
    away), plus image, gradient and update."""
    image = jax.ShapeDtypeStruct((64, 64, 3), jnp.float32)
    state = jax.eval_shape(transform.init, image)
    values = sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(state))
    return round(values / (64 * 64 * 3 * 4)) + 3


@functools.lru_cache(maxsize=64)
def wrap(transform: optax.GradientTransformation) -> Optimizer:
    """The :class:`~nst_jax._src.optimizers.base.Optimizer` that runs ``transform`` (one object per
    transformation, so the programs compiled for it are found again)."""
    return Optimizer(
        name=NAME, help="an optax transformation given in StylizeConfig.optimizer",
        transform=lambda config, weights: transform,
        init=lambda transform, image: transform.init(image),
        update=_update, start_evaluations=0,
        state_images=functools.partial(_state_images, transform))
