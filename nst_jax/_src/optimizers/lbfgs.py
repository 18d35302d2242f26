"""L-BFGS over the pixels: optax's two-loop direction with the strong-Wolfe line search of
:mod:`nst_jax._src.linesearch` (vmap-friendly: no ``lax.cond`` around evaluations).

The start evaluates the loss and gradient at the start image once, through the line search's
own loop (its ``start`` mode), and stores them in the line search's state; every step reuses the
value and gradient its previous line search computed at the accepted point. So a step makes
exactly the line search's evaluations, no branch on the step counter is needed (under ``vmap``
such a branch would become a select that evaluates both sides for every member), and a program
holding the start and the steps (the driver's chunk) differentiates the loss in one place only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from nst_jax._src import linesearch
from nst_jax._src.optimizers.base import Optimizer


def _transform(config, weights):
    del weights
    return optax.chain(optax.scale_by_lbfgs(memory_size=config.lbfgs_memory), optax.scale(-1.0),
                       linesearch.scale_by_wolfe_linesearch())


def _update(transform, image, opt_state, value_and_grad, value_fn, start):
    del value_and_grad
    value = optax.tree_utils.tree_get(opt_state, "value")
    grad = optax.tree_utils.tree_get(opt_state, "grad")
    updates, new_state = transform.update(grad, opt_state, image, value=value, grad=grad, value_fn=value_fn,
                                          start=start)
    # The start moves nothing: the direction's state (curvature pairs) stays as it was; the line search's
    # state (the last of the chain) now holds the value and gradient at the image.
    kept = jax.tree_util.tree_map(lambda old, new: jnp.where(start, old, new), opt_state[:-1], new_state[:-1])
    new_state = (*kept, new_state[-1])
    return updates, new_state, value, optax.tree_utils.tree_get(new_state, "num_linesearch_steps")


OPTIMIZER = Optimizer(
    name="lbfgs", help="L-BFGS with a strong-Wolfe line search",
    transform=_transform, init=lambda transform, image: transform.init(image), update=_update,
    start_evaluations=1,
    # curvature pairs, then image, gradient, update and the line search's points
    state_images=lambda config: 2 * config.lbfgs_memory + 6)
