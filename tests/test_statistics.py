"""The style statistics (nst_jax._src.statistics): every registered statistic's summary, target, blend and loss
against NumPy/SciPy, Gram summaries adding up over tiles, and the stable matrix square root."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from nst_jax._src.statistics import STATISTICS, meancov, sliced
from nst_jax._src.statistics import w2 as wasserstein

from .conftest import np_stats


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    # ReLU-like non-negative features, fewer positions than filters in the second (rank deficient).
    return (np.maximum(rng.normal(size=(6, 5, 4)), 0).astype(np.float32),
            np.maximum(rng.normal(size=(7, 4, 4)) + 0.5, 0).astype(np.float32))



def test_feature_stats_against_numpy(feats):
    f, _ = feats
    mask = np.random.default_rng(1).uniform(size=f.shape[:2]).astype(np.float32)
    for m in (None, mask):
        mu, c = jax.jit(meancov.feature_stats)(f, m)
        mu_np, c_np = np_stats(f, m)
        np.testing.assert_allclose(mu, mu_np, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, c_np, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np_stats(f)[1], np.cov(f.reshape(-1, 4), rowvar=False, bias=True), atol=1e-12)


def test_meancov_loss_against_numpy(feats):
    f, s = feats
    mu_s, c_s = np_stats(s)
    mu, c = np_stats(f)
    n = 4
    error = np.sum((c - c_s) ** 2) + np.sum((np.outer(mu, mu) - np.outer(mu_s, mu_s)) ** 2)
    paper = jax.jit(functools.partial(meancov.meancov_layer_loss, units="paper"))
    np.testing.assert_allclose(paper(f, jnp.float32(mu_s), jnp.float32(c_s)), error / (4 * n**2), rtol=1e-4)
    relative = jax.jit(meancov.meancov_layer_loss)(f, jnp.float32(mu_s), jnp.float32(c_s))
    np.testing.assert_allclose(relative, error / (np.sum(c_s**2) + np.sum(np.outer(mu_s, mu_s) ** 2)), rtol=1e-4)
    assert float(meancov.meancov_layer_loss(s, *map(jnp.float32, np_stats(s)))) < 1e-10


def test_sqrtm_against_scipy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 6))
    spd = a @ a.T + 0.1 * np.eye(6)
    np.testing.assert_allclose(jax.jit(wasserstein.sqrtm_psd)(spd.astype(np.float32)), scipy.linalg.sqrtm(spd).real,
                               rtol=1e-3, atol=1e-4)


def test_w2_loss_against_scipy(feats):
    f, s = feats
    mu_s, c_s = np_stats(s)
    mu, c = np_stats(f)
    root = scipy.linalg.sqrtm(c_s).real
    cross = scipy.linalg.sqrtm(root @ c @ root).real
    w2 = np.sum((mu - mu_s) ** 2) + np.trace(c) + np.trace(c_s) - 2 * np.trace(cross)
    args = [jnp.float32(x) for x in (mu_s, c_s, root)]
    got = jax.jit(functools.partial(wasserstein.w2_layer_loss, units="paper"))(f, *args)
    np.testing.assert_allclose(got, w2 / 4, rtol=1e-3, atol=1e-4)
    got = jax.jit(wasserstein.w2_layer_loss)(f, *args)
    np.testing.assert_allclose(got, w2 / (np.sum(mu_s**2) + np.trace(c_s)), rtol=1e-3, atol=1e-4)
    # W2 of a Gaussian with itself is 0 (up to float32 round-off of the square roots).
    self_args = [jnp.float32(x) for x in (mu, c, scipy.linalg.sqrtm(c).real)]
    assert abs(float(wasserstein.w2_layer_loss(f, *self_args, units="paper"))) < 1e-3 * np.trace(c)


def test_trace_sqrtm_gradient_is_stable_and_correct():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 5))
    spd = a @ a.T + 0.5 * np.eye(5)
    np.testing.assert_allclose(jax.jit(wasserstein.trace_sqrtm_psd)(jnp.float32(spd)),
                               np.trace(scipy.linalg.sqrtm(spd).real), rtol=1e-5)
    grad = jax.grad(wasserstein.trace_sqrtm_psd)(jnp.float32(spd))
    np.testing.assert_allclose(grad, 0.5 * np.linalg.inv(scipy.linalg.sqrtm(spd).real), rtol=1e-3, atol=1e-4)
    # Rank one, repeated zero eigenvalues: autodiff through eigh gives NaN, this does not.
    low = np.outer(a[0], a[0])
    assert np.isfinite(np.asarray(jax.grad(wasserstein.trace_sqrtm_psd)(jnp.float32(low)))).all()


def np_directions(n):
    """The sliced statistic's documented directions: PCG64 seeded with ``n``, Gaussian, unit columns."""
    d = np.random.default_rng(n).standard_normal((n, n))
    return d / np.linalg.norm(d, axis=0)


def np_sorted(f, mask=None):
    """Projections on the directions sorted per column, their weights and cumulative-weight midpoint levels."""
    x = f.reshape(-1, f.shape[-1]).astype(np.float64) @ np_directions(f.shape[-1])
    w = np.ones(len(x)) if mask is None else mask.reshape(-1).astype(np.float64)
    order = np.argsort(x, axis=0, kind="stable")
    xs, ws = np.take_along_axis(x, order, 0), w[order]
    return xs, ws, (np.cumsum(ws, 0) - ws / 2) / w.sum()


def np_quantiles(f, mask=None):
    """``[P, Q]``: each direction's (weighted) quantile function at levels ``(j + ½) / Q``."""
    xs, _, levels = np_sorted(f, mask)
    u = (np.arange(sliced.QUANTILES) + 0.5) / sliced.QUANTILES
    return np.stack([np.interp(u, levels[:, p], xs[:, p]) for p in range(xs.shape[1])])


def np_sliced_loss(f, quantiles, units, mask=None):
    xs, ws, levels = np_sorted(f, mask)
    u = (np.arange(sliced.QUANTILES) + 0.5) / sliced.QUANTILES
    t = np.stack([np.interp(levels[:, p], u, quantiles[p]) for p in range(xs.shape[1])], axis=1)
    w2 = np.mean(np.sum(ws * (xs - t) ** 2, axis=0)) / ws[:, 0].sum()
    return w2 / np.mean(quantiles**2) if units == "relative" else w2


def np_summary(name, f, mask=None):
    """Each registered statistic's summary of features ``[H, W, N]``, in float64 NumPy."""
    if name == "sliced":
        return {"quantiles": np_quantiles(f, mask)}
    if name == "gram":
        g = f.reshape(-1, f.shape[-1]).astype(np.float64)
        if mask is not None:
            g = g * mask.reshape(-1, 1)
        return {"gram": g.T @ g, "positions": f.shape[0] * f.shape[1] if mask is None else mask.sum()}
    mu, c = np_stats(f, mask)
    return {"mean": mu, "cov": c}


def np_loss(name, f, summaries, b, units):
    """The layer loss against the blend (weights ``b``) of the styles' targets, in float64 NumPy."""
    n, m = f.shape[-1], f.shape[0] * f.shape[1]
    if name == "sliced":  # the styles' barycentre along each direction
        return np_sliced_loss(f, sum(w * s["quantiles"] for w, s in zip(b, summaries, strict=True)), units)
    if name == "gram":
        a = sum(w * s["gram"] * m / s["positions"] for w, s in zip(b, summaries, strict=True))
        error = np.sum((np_summary("gram", f)["gram"] - a) ** 2)
        return error / np.sum(a**2) if units == "relative" else error / (4 * n**2 * m**2)
    mean = sum(w * s["mean"] for w, s in zip(b, summaries, strict=True))
    cov = sum(w * (s["cov"] + np.outer(s["mean"], s["mean"])) for w, s in zip(b, summaries, strict=True))
    cov = cov - np.outer(mean, mean)
    mu, c = np_stats(f)
    if name == "meancov":
        error = np.sum((c - cov) ** 2) + np.sum((np.outer(mu, mu) - np.outer(mean, mean)) ** 2)
        scale = np.sum(cov**2) + np.sum(np.outer(mean, mean) ** 2)
        return error / scale if units == "relative" else error / (4 * n**2)
    root = scipy.linalg.sqrtm(cov).real
    cross = np.trace(scipy.linalg.sqrtm(root @ c @ root).real)
    w2 = np.sum((mu - mean) ** 2) + np.trace(c) + np.trace(cov) - 2 * cross
    return w2 / (np.sum(mean**2) + np.trace(cov)) if units == "relative" else w2 / n


@pytest.mark.parametrize("name", list(STATISTICS))
def test_each_registered_statistic_against_numpy(feats, name):
    statistic = STATISTICS[name]
    f, s = feats
    styles = [s, np.maximum(s[::-1, ::-1] * 1.5 - 0.2, 0)]
    mask = np.random.default_rng(4).uniform(size=f.shape[:2]).astype(np.float32)
    for m in (None, mask):
        got = jax.jit(statistic.summary)(f, m)
        for key, want in np_summary(name, f, m).items():
            np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}")
    summaries = [np_summary(name, x) for x in styles]
    mass = jnp.float32(f.shape[0] * f.shape[1])
    targets = [jax.jit(statistic.target)({k: jnp.float32(v) for k, v in x.items()}, mass) for x in summaries]
    if name == "gram":
        np.testing.assert_allclose(targets[0]["gram"], summaries[0]["gram"] * 30 / 28, rtol=1e-5)  # 6x5 vs 7x4
    elif name == "sliced":
        np.testing.assert_allclose(targets[0]["quantiles"], summaries[0]["quantiles"], rtol=1e-5)
    else:
        np.testing.assert_allclose(targets[0]["cov"], summaries[0]["cov"], rtol=1e-5)
    b = np.array([0.3, 0.7], np.float32)
    stacked = {k: jnp.stack([t[k] for t in targets]) for k in targets[0]}
    reference = statistic.finish(jax.jit(statistic.blend)(stacked, jnp.asarray(b)))
    for units in ("relative", "paper"):
        got = jax.jit(statistic.loss, static_argnums=3)(f, reference, None, units)
        np.testing.assert_allclose(got, np_loss(name, f, summaries, b, units), rtol=2e-3, err_msg=f"{name} {units}")
    assert float(statistic.loss(s, statistic.finish(jax.jit(statistic.summary)(s, None)), None, "relative")) < 1e-3
    assert statistic.target_bytes(64) >= 4 * 64 * 64


def test_gram_summaries_add_up_over_two_halves(feats):
    gram = STATISTICS["gram"]
    f = np.concatenate(feats[0:1] * 2, axis=0)[:10]  # [10, 5, 4]
    mask = np.random.default_rng(5).uniform(size=f.shape[:2]).astype(np.float32)
    for m in (None, mask):
        whole = gram.summary(f, m)
        halves = [gram.summary(f[:4], None if m is None else m[:4]), gram.summary(f[4:], None if m is None else m[4:])]
        for key in whole:
            np.testing.assert_allclose(halves[0][key] + halves[1][key], whole[key], rtol=1e-5)
    # And the loss from the summed summary is the loss of the whole map.
    reference = {"gram": gram.summary(feats[1], None)["gram"] * 50 / 28}
    for units in ("relative", "paper"):
        np.testing.assert_allclose(gram.summed_loss(gram.summary(f, None), reference, units),
                                   gram.loss(f, reference, None, units), rtol=1e-5)
    assert gram.additive and not STATISTICS["meancov"].additive and not STATISTICS["w2"].additive


def test_sliced_directions_are_fixed_unit_vectors():
    d = np.asarray(sliced.directions(6))
    assert d.shape == (6, 6) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d, np.asarray(sliced.directions(6)))
    np.testing.assert_allclose(d, np_directions(6), rtol=1e-6)


def test_sliced_loss_is_zero_for_identical_features_and_ignores_the_order_of_positions():
    rng = np.random.default_rng(6)
    f = np.maximum(rng.normal(size=(32, 32, 5)), 0).astype(np.float32)  # 1024 positions: the quantile levels
    statistic = STATISTICS["sliced"]
    reference = statistic.finish(statistic.target(statistic.summary(f, None), jnp.float32(1024)))
    for units in ("relative", "paper"):
        assert float(statistic.loss(f, reference, None, units)) == 0.0
    g = np.maximum(rng.normal(size=(8, 12, 5)), 0).astype(np.float32)
    shuffled = g.reshape(-1, 5)[rng.permutation(96)].reshape(8, 12, 5)
    loss = jax.jit(statistic.loss, static_argnums=3)
    assert float(loss(g, reference, None, "paper")) > 0
    np.testing.assert_allclose(loss(shuffled, reference, None, "paper"), loss(g, reference, None, "paper"), rtol=1e-6)
    np.testing.assert_allclose(loss(g, reference, None, "paper"), np_sliced_loss(g, np_quantiles(f), "paper"),
                               rtol=1e-4)
    # Other numbers of positions than the quantile levels: 0 up to the quantile function's resolution.
    small = statistic.finish(statistic.summary(g, None))
    assert float(loss(g, small, None, "relative")) < 1e-4
    grad = jax.grad(lambda x: statistic.loss(x, reference, None, "relative"))(g)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0


@pytest.mark.slow
def test_a_sliced_stylization_lowers_its_loss(vgg):
    """64 px, 10 L-BFGS steps from the photo with ``style_loss="sliced"``: the style term falls."""
    from nst_jax import StylizeConfig, stylize
    from nst_jax._src.image import load_image

    from .conftest import EXAMPLES

    content, style = load_image(EXAMPLES / "chelsea.png", 64), load_image(EXAMPLES / "swirls.png", 64)
    config = StylizeConfig(style_loss="sliced", iterations=10, chunk_size=10, init="content",
                           style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))
    history = stylize(vgg, content=content, style=style, config=config).history
    assert np.isfinite(history["total"]).all()
    assert history["style"][-1] < 0.5 * history["style"][0] and history["total"][-1] < history["total"][0]


def test_sliced_with_region_masks_scores_each_region_against_its_style(vgg):
    """With masks the reference keeps one style per region (directions included): the style term is the sum
    of each region's weighted sliced loss against its own style."""
    from nst_jax import StylizeConfig, compute_targets, loss_terms, make_weights
    from nst_jax._src.vgg import extract_features

    from .conftest import smooth_image

    image, styles = smooth_image(32, 32, 3), [smooth_image(36, 40, 4), smooth_image(40, 36, 5)]
    masks = np.zeros((2, 32, 32), np.float32)
    masks[0, :, :16], masks[1, :, 16:] = 1.0, 1.0
    config = StylizeConfig(mode="style", style_layers=("relu1_1",), style_loss="sliced", loss_units="paper",
                           num_styles=2)
    targets = compute_targets(vgg, style=styles, config=config, output_shape=image.shape, masks=masks)
    got = float(loss_terms(vgg, image, targets, make_weights(config, style_weight=1.0), config=config)["style"])
    f = np.asarray(extract_features(vgg, image, layers=["relu1_1"])["relu1_1"])
    want = sum(np_sliced_loss(f, np_quantiles(np.asarray(extract_features(vgg, s, layers=["relu1_1"])["relu1_1"])),
                              "paper", masks[k]) for k, s in enumerate(styles))
    np.testing.assert_allclose(got, want, rtol=1e-3)
