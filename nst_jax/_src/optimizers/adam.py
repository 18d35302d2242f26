"""Adam over the pixels (Kingma & Ba), with its step size read from the dynamic weights.

One evaluation per step, none to start; its state is two moments per pixel.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from nst_jax._src.optimizers.base import Optimizer


def _update(transform, image, opt_state, value_and_grad, value_fn, start):
    del value_fn, start  # no start evaluation (start_evaluations = 0), so never called with start true
    value, grad = value_and_grad(image)
    updates, opt_state = transform.update(grad, opt_state, image)
    return updates, opt_state, value, jnp.ones((), jnp.int32)


OPTIMIZER = Optimizer(
    name="adam", help="Adam with the learning rate from the weights",
    transform=lambda config, weights: optax.adam(weights.learning_rate),
    init=lambda transform, image: transform.init(image),
    update=_update, start_evaluations=0,
    state_images=lambda config: 2 + 3)  # moments, then image, gradient and update
