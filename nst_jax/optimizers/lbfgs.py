"""L-BFGS over the pixels: optax's two-loop direction with the strong-Wolfe line search of
:mod:`nst_jax.linesearch` (vmap-friendly: no ``lax.cond`` around evaluations).

``init`` evaluates the loss and gradient at the start image once and stores them in the line
search's state; every step reuses the value and gradient its previous line search computed at
the accepted point, so a step makes exactly the line search's evaluations and no branch on the
step counter is needed (under ``vmap`` such a branch would become a select that evaluates both
sides for every member).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from nst_jax import linesearch
from nst_jax.optimizers.base import Optimizer


def _transform(config, weights):
    del weights
    return optax.chain(optax.scale_by_lbfgs(memory_size=config.lbfgs_memory), optax.scale(-1.0),
                       linesearch.scale_by_wolfe_linesearch())


def _init(transform, image, value_and_grad):
    value, grad = value_and_grad(image)
    return optax.tree_utils.tree_set(transform.init(image), value=value.astype(jnp.float32), grad=grad)


def _update(transform, image, opt_state, value_and_grad, value_fn):
    del value_and_grad
    value = optax.tree_utils.tree_get(opt_state, "value")
    grad = optax.tree_utils.tree_get(opt_state, "grad")
    updates, opt_state = transform.update(grad, opt_state, image, value=value, grad=grad, value_fn=value_fn)
    return updates, opt_state, value, optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")


OPTIMIZER = Optimizer(
    name="lbfgs", help="L-BFGS with a strong-Wolfe line search",
    transform=_transform, init=_init, update=_update, start_evaluations=1,
    # curvature pairs, then image, gradient, update and the line search's points
    state_images=lambda config: 2 * config.lbfgs_memory + 6)
