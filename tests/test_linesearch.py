"""The strong-Wolfe line search: conditions checked in NumPy, L-BFGS convergence, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nst_jax._src.linesearch import scale_by_wolfe_linesearch

C1, C2 = 1e-4, 0.9


def quadratic(scale):
    a = np.linspace(1.0, 10.0, 6) * scale
    b = np.arange(6, dtype=np.float64) - 2.0

    def f(x):
        return 0.5 * jnp.sum(a * x * x) - jnp.sum(b * x)

    def f_np(x):
        return 0.5 * np.sum(a * x * x) - np.sum(b * x), a * x - b

    return f, f_np


def search(f, x, direction, **kwargs):
    ls = scale_by_wolfe_linesearch(**kwargs)
    value, grad = jax.value_and_grad(f)(x)
    updates, state = ls.update(direction, ls.init(x), x, value=value, grad=grad, value_fn=f)
    return updates, state


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_step_meets_strong_wolfe_in_numpy(scale):
    # scale 1e-3: t = 1 is far too short (bracketing must grow it); 1e4: far too long (zoom must shrink it).
    f, f_np = quadratic(scale)
    x = np.full(6, 0.5, np.float32)
    f0, g0 = f_np(x.astype(np.float64))
    d = -g0.astype(np.float32)
    updates, state = search(f, jnp.asarray(x), jnp.asarray(d))
    t = float(state.learning_rate)
    np.testing.assert_allclose(np.asarray(updates), t * d, rtol=1e-6)
    ft, gt = f_np(x + t * d.astype(np.float64))
    slope0, slope_t = g0 @ d, gt @ d
    assert ft <= f0 + C1 * t * slope0 + 1e-6 * abs(f0)
    assert abs(slope_t) <= C2 * abs(slope0) * (1 + 1e-4)
    assert not bool(state.failed)
    # The state carries the value and gradient at the accepted point for the next step.
    np.testing.assert_allclose(float(state.value), ft, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.grad), gt, rtol=1e-4, atol=1e-5 * np.abs(gt).max())


def test_exact_minimiser_on_quadratic_along_line():
    # On a 1-D quadratic the cubic through two points is exact: the search lands on the minimiser.
    f = lambda x: 3.0 * jnp.sum((x - 2.0) ** 2)  # noqa: E731
    _, state = search(f, jnp.zeros(1), jnp.ones(1), curv_rtol=1e-3)
    np.testing.assert_allclose(float(state.learning_rate), 2.0, rtol=1e-3)


def test_out_of_evaluations_takes_lowest_trial_and_reports_failure():
    f, _ = quadratic(1e4)
    x = jnp.full(6, 0.5)
    d = -jax.grad(f)(x)
    _, state = search(f, x, d, max_steps=1, first_step_from_value=False)
    assert bool(state.failed) and int(state.num_linesearch_steps) == 1
    assert float(state.learning_rate) == 1.0


def test_non_finite_trial_is_rejected():
    # f is +inf at t = 1 and NaN beyond; its minimiser along d is t = 2/3.
    f = lambda x: -jnp.sum(jnp.log1p(-x)) - 3.0 * jnp.sum(x)  # noqa: E731
    x = jnp.zeros(3)
    _, state = search(f, x, jnp.ones(3))
    assert not bool(state.failed) and np.isfinite(float(state.value)) and float(state.value) < float(f(x))
    t = float(state.learning_rate)
    assert 0 < t < 1
    assert abs(1 / (1 - t) - 3) <= C2 * 2  # curvature condition, by hand


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def lbfgs():
    return optax.chain(optax.scale_by_lbfgs(memory_size=5), optax.scale(-1.0), scale_by_wolfe_linesearch())


def run_lbfgs(f, x, steps):
    opt = lbfgs()

    def step(carry, _):
        x, state = carry
        value, grad = jax.value_and_grad(f)(x)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return (optax.apply_updates(x, updates), state), value

    (x, _), values = jax.lax.scan(step, (x, opt.init(x)), None, length=steps)
    return x, values


def test_lbfgs_with_the_search_solves_rosenbrock():
    x, values = jax.jit(run_lbfgs, static_argnums=(0, 2))(rosenbrock, jnp.array([-1.2, 1.0, -0.5, 0.8]), 200)
    np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-3)
    assert np.all(np.diff(np.asarray(values)) <= 1e-6)  # never goes uphill


def test_vmapped_search_equals_members_and_has_no_cond():
    # Under vmap a lax.cond on a per-member predicate would evaluate both branches with
    # every operand batched; the search must be selects only.
    scales = jnp.array([1e-3, 1.0, 1e4])

    def one(scale):
        f = lambda x: 0.5 * jnp.sum(scale * jnp.arange(1.0, 5.0) * x * x) - jnp.sum(x)  # noqa: E731
        x = jnp.full(4, 0.5)
        updates, state = search(f, x, -jax.grad(f)(x))
        return updates, state.learning_rate

    jaxpr = str(jax.make_jaxpr(jax.vmap(one))(scales))
    assert "cond[" not in jaxpr and "while[" in jaxpr
    batched = jax.jit(jax.vmap(one))(scales)
    for k, scale in enumerate(scales):
        alone = jax.jit(one)(scale)
        for b, a in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(alone), strict=True):
            np.testing.assert_allclose(np.asarray(b)[k], np.asarray(a), rtol=1e-5)


def test_first_search_starts_from_the_linear_model():
    # Far from its minimum along a unit-norm direction, t = 1 needs many doublings; the first
    # search starts at f / |slope| instead (the step to zero on the linear model).
    f = lambda x: 0.5 * jnp.sum(x * x)  # noqa: E731
    x = jnp.full(4, 100.0)
    g = jax.grad(f)(x)
    d = -g / jnp.linalg.norm(g)
    _, fast = search(f, x, d)
    _, slow = search(f, x, d, first_step_from_value=False)
    # Minimiser at t = 200; f / |slope| = 100 meets the Wolfe conditions at once.
    assert int(fast.num_linesearch_steps) == 1 and float(fast.learning_rate) == 100.0
    assert int(slow.num_linesearch_steps) >= 6 and float(slow.value) > float(fast.value)


def test_start_mode_evaluates_at_x_and_moves_nothing():
    """``start=True``: one evaluation at x itself (value and gradient against NumPy), a zero update whatever the
    direction (NaN included), and the step size and search count of the state kept."""
    f, f_np = quadratic(1.0)
    x = np.full(6, 0.5, np.float32)
    ls = scale_by_wolfe_linesearch()
    state = ls.init(x)._replace(learning_rate=jnp.float32(0.25))
    direction = np.full(6, np.nan, np.float32)
    updates, new = jax.jit(lambda d, s: ls.update(d, s, x, value=jnp.nan, grad=d, value_fn=f, start=True))(
        direction, state)
    f0, g0 = f_np(x.astype(np.float64))
    np.testing.assert_array_equal(updates, np.zeros(6))
    np.testing.assert_allclose(new.value, f0, rtol=1e-6)
    np.testing.assert_allclose(new.grad, g0, rtol=1e-6)
    assert int(new.num_linesearch_steps) == 1 and not bool(new.failed)
    assert float(new.learning_rate) == 0.25 and int(new.num_searches) == 0
    # The first search after the start is the first search: the same step as from a fresh state given the
    # value and gradient directly (which starts from the linear model, not from the kept step size 0.25).
    step, after = ls.update(-new.grad, new, x, value=new.value, grad=new.grad, value_fn=f)
    fresh_step, fresh = search(f, x, -new.grad)
    np.testing.assert_array_equal(step, fresh_step)
    assert float(after.learning_rate) == float(fresh.learning_rate) != 0.25
    assert int(after.num_searches) == 1 and not bool(after.failed)
