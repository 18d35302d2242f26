"""The objective (nst_jax._src.objective): targets, blended references, region masks, loss units, the chosen
style statistic, dense or tiled evaluation, and make_loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import nst_jax
from nst_jax import StylizeConfig, compute_targets, loss_terms, make_weights
from nst_jax._src import plan
from nst_jax._src.objective import evaluation
from nst_jax._src.statistics import STATISTICS
from nst_jax.errors import NSTError

from .conftest import PAINTING, PHOTO, np_stats, run, smooth_image, stripes

CONTENT = smooth_image(32, 40, seed=1)
STYLE = smooth_image(36, 36, seed=2)
SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


def style_terms(vgg, config, style, blend=None, image=PHOTO):
    weights = make_weights(config, style_weight=1.0, style_blend=blend)
    targets = compute_targets(vgg, content=PHOTO, style=style, config=config,
                              output_shape=image.shape)
    return float(loss_terms(vgg, image, targets, weights, config=config)["style"])


@pytest.mark.parametrize("style_loss", list(STATISTICS))
def test_several_styles_blend_their_statistics(vgg, style_loss):
    other = smooth_image(36, 36, seed=7)[..., ::-1].copy()
    one = StylizeConfig(style_layers=("relu1_1", "relu2_1"), style_loss=style_loss)
    two = StylizeConfig(style_layers=("relu1_1", "relu2_1"), style_loss=style_loss, num_styles=2)
    a, b = style_terms(vgg, one, PAINTING), style_terms(vgg, one, other)
    np.testing.assert_allclose(style_terms(vgg, two, [PAINTING, other], [1.0, 0.0]), a, rtol=1e-4)
    np.testing.assert_allclose(style_terms(vgg, two, [PAINTING, other], [0.0, 3.0]), b, rtol=1e-4)
    mixed = style_terms(vgg, two, [PAINTING, other], [0.5, 0.5])
    assert abs(mixed - a) > 1e-3 * a and abs(mixed - b) > 1e-3 * b


def test_blended_gram_is_the_weighted_sum(vgg):
    from nst_jax._src.objective import style_reference

    other = smooth_image(36, 36, seed=7)
    config = StylizeConfig(style_layers=("relu1_1",), num_styles=2)
    targets = compute_targets(vgg, content=PHOTO, style=[PAINTING, other], config=config,
                              output_shape=PHOTO.shape)
    ref = style_reference(targets, make_weights(config, style_blend=[0.7, 0.3]), config=config)
    grams = np.asarray(targets.style["relu1_1"]["gram"])
    np.testing.assert_allclose(ref["relu1_1"]["gram"], 0.7 * grams[0] + 0.3 * grams[1], rtol=1e-5)


def test_masks_give_each_region_its_styles_statistics(vgg):
    red = np.clip(stripes(40, 6) * np.array([1.0, 0.2, 0.2], np.float32) + [0.0, 0.0, 0.0], 0, 1)
    blue = np.clip(stripes(40, 10)[..., ::-1] * np.array([0.2, 0.3, 1.0], np.float32), 0, 1)
    masks = np.zeros((2, 40, 40), np.float32)
    masks[0, :, :20], masks[1, :, 20:] = 1.0, 1.0
    config = StylizeConfig(mode="style", style_layers=("relu1_1", "relu2_1"), iterations=40, chunk_size=40,
                           num_styles=2)
    guided = run(vgg, config, style=[red, blue], masks=masks, seed=2).image
    swapped = run(vgg, config, style=[red, blue], masks=masks[::-1], seed=2).image
    redness = lambda im: float(np.mean(im[..., 0] - im[..., 2]))  # noqa: E731
    left, right = guided[:, 4:16], guided[:, 24:36]
    assert redness(left) > redness(red) / 2 and redness(right) < redness(blue) / 2, (redness(left), redness(right))
    # Swapping the masks swaps the sides (same seed, so ignoring the masks would change nothing).
    assert redness(swapped[:, 4:16]) < redness(blue) / 2 < redness(red) / 2 < redness(swapped[:, 24:36])


def texture(h, w, seed, blur):
    """A stationary random texture ``[h, w, 3]``: white noise blurred over ``blur`` pixels. Its statistics
    per pixel do not depend on the size, so nor do its VGG statistics, unlike a photo's."""
    from scipy.ndimage import gaussian_filter

    x = np.random.default_rng(seed).normal(size=(h, w, 3))
    x = np.stack([gaussian_filter(x[..., c], blur) for c in range(3)], -1)
    return np.clip(0.5 + 0.2 * x / x.std(), 0, 1).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("units", ["relative", "paper"])
def test_balance_of_style_and_content_does_not_depend_on_the_size(vgg, units):
    """The style-to-content ratio at the start and after 15 L-BFGS steps at 128 and 256 px (4x the pixels).

    Relative units (the default): within 10% at both sizes (measured: 1.005 at the start, 1.016 after 15
    steps). The paper's units, whose content term sums over positions, shift the balance with the pixel
    count (measured 3.7x from 128 to 256 px, 20x from 64 to 256 px); so does multi-scale and tiled
    optimisation in them, which run the same objective at several sizes. A size dependence as weak as the
    0.07th power of the pixel count would exceed 10% over 4x the pixels, so a third, larger size (512 px,
    with 3.2x the pixels of both together, which this test ran before) would add little. Below 128 px the
    deepest layers' maps are too small to be stationary: after 15 steps a 64 px run's ratio is 1.28x a
    128 px run's.
    """
    # From noise: from the photo the content term starts at 0 and the ratio is undefined.
    config = StylizeConfig(iterations=15, chunk_size=15, loss_units=units, init="noise")
    ratios = []
    for size in (128, 256):
        h, w = size * 3 // 4, size
        content, style = texture(h, w, 1, 2.0), texture(h, w, 2, 4.0)
        if units == "paper":  # refuted at the start already: the terms of a noise image, no optimisation
            targets = compute_targets(vgg, content=content, style=style, config=config, output_shape=(h, w, 3))
            noise = np.random.default_rng(size).uniform(size=(h, w, 3)).astype(np.float32)
            terms = loss_terms(vgg, noise, targets, make_weights(config), config=config)
            ratios.append([float(terms["style"] / terms["content"])])
            continue
        # 15 steps: the spread measured 1.016 after 15 steps and 1.09 after 10 (the balance holds as the
        # optimisation moves on; more steps only cost time).
        result = run(vgg, config, content=content, style=style)
        ratios.append(result.history["style"][[0, -1]] / result.history["content"][[0, -1]])
    ratios = np.array(ratios)  # [size, (start, after 15 steps)] (paper units: [size, (start,)])
    spread = ratios.max(axis=0) / ratios.min(axis=0)
    if units == "relative":
        assert (spread < 1.1).all(), ratios
    else:
        assert spread[0] > 3, ratios


def test_content_layer_blend_is_a_dynamic_weight(vgg):
    """relu4_2 + relu5_2 content layers blended by Weights.content_layers (vmappable, so sweeps vary it)."""
    import jax

    two = StylizeConfig(mode="content", content_layers=("relu4_2", "relu5_2"))
    targets = compute_targets(vgg, content=PHOTO, style=None, config=two,
                              output_shape=PHOTO.shape)
    image = smooth_image(32, 32, seed=5)

    def content(blend):
        weights = make_weights(two)._replace(content_layers=blend)
        return loss_terms(vgg, image, targets, weights, config=two)["content"]

    single = {}
    for layer in two.content_layers:
        one = StylizeConfig(mode="content", content_layers=(layer,))
        t = compute_targets(vgg, content=PHOTO, style=None, config=one,
                            output_shape=PHOTO.shape)
        single[layer] = float(loss_terms(vgg, image, t, make_weights(one), config=one)["content"])
    blends = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], np.float32)
    got = np.asarray(jax.vmap(content)(blends))
    np.testing.assert_allclose(got[:2], [single["relu4_2"], single["relu5_2"]], rtol=1e-4)
    np.testing.assert_allclose(got[2], 0.3 * single["relu4_2"] + 0.7 * single["relu5_2"], rtol=1e-4)


@pytest.mark.parametrize("style_loss", ["meancov", "w2"])
def test_loss_terms_use_the_chosen_statistics(vgg, style_loss):
    """The style term of the pipeline equals the chosen layer loss on the VGG features (and not the Gram loss)."""
    content, style, image = smooth_image(32, 32, 1), smooth_image(36, 40, 2), smooth_image(32, 32, 3)
    terms = {}
    for kind in ("gram", style_loss):
        config = StylizeConfig(style_layers=("relu1_1",), style_loss=kind, loss_units="paper")
        weights = make_weights(config, style_weight=1.0)
        targets = compute_targets(vgg, content=content, style=style, config=config,
                                  output_shape=image.shape)
        terms[kind] = float(loss_terms(vgg, image, targets, weights, config=config)["style"])
    from nst_jax._src.vgg import extract_features

    f = np.asarray(extract_features(vgg, image, layers=["relu1_1"])["relu1_1"])
    s = np.asarray(extract_features(vgg, style, layers=["relu1_1"])["relu1_1"])
    mu_s, c_s = np_stats(s)
    mu, c = np_stats(f)
    n = f.shape[-1]
    if style_loss == "meancov":
        expected = (np.sum((c - c_s) ** 2) + np.sum((np.outer(mu, mu) - np.outer(mu_s, mu_s)) ** 2)) / (4 * n**2)
    else:
        root = scipy.linalg.sqrtm(c_s).real
        expected = (np.sum((mu - mu_s) ** 2) + np.trace(c) + np.trace(c_s)
                    - 2 * np.trace(scipy.linalg.sqrtm(root @ c @ root).real)) / n
    # W2 on real VGG features: float32 eigh of a ~1e11-conditioned matrix (see w2_layer_loss).
    np.testing.assert_allclose(terms[style_loss], expected, rtol=2e-3 if style_loss == "meancov" else 3e-2)
    assert not np.isclose(terms[style_loss], terms["gram"], rtol=0.1)


@pytest.mark.parametrize("mode", ["transfer", "content", "style"])
def test_targets_are_made_for_the_output_shape_rules_shape(vgg, mode):
    config = StylizeConfig(mode=mode, **SMALL)
    content, style = smooth_image(24, 40, seed=1), smooth_image(32, 16, seed=2)
    shape = plan.output_shape(config, content=content, style=style)
    assert shape == ((24, 40, 3) if config.uses_content else (32, 16, 3))
    got = compute_targets(vgg, content=content, style=style, config=config)
    want = compute_targets(vgg, content=content, style=style, config=config, output_shape=shape)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
    if config.uses_content:
        assert got.content["relu2_1"].shape == (12, 20, 128)


def test_masks_with_a_tile_size_are_refused_at_every_entry(vgg):
    """One rule, read from the settings: also where the image is small enough for one pass."""
    config = StylizeConfig(tile_size=64, **SMALL)
    assert evaluation(config, CONTENT.shape) == "dense"  # 32 x 40 fits one 64 px tile
    masks = np.ones((1, *CONTENT.shape[:2]), np.float32)
    refused = "masks are not supported with tiled evaluation"
    with pytest.raises(NSTError, match=refused):
        plan.make_plan(config, content=CONTENT, style=STYLE, masks=masks)
    with pytest.raises(NSTError, match=refused):
        compute_targets(vgg, content=CONTENT, style=STYLE, config=config, masks=masks)
    targets = compute_targets(vgg, content=CONTENT, style=STYLE, config=dataclasses.replace(config, tile_size=0),
                              masks=masks)
    with pytest.raises(NSTError, match=refused):
        loss_terms(vgg, CONTENT, targets, make_weights(config), config=config)


def test_one_tile_images_are_not_tiled():
    config = StylizeConfig(tile_size=32)
    assert evaluation(config, (32, 24, 3)) == "dense" and evaluation(config, (24, 33, 3)) == "tiled"
    assert evaluation(StylizeConfig(), (4096, 4096, 3)) == "dense"


def test_make_loss_is_a_pure_perceptual_loss(vgg):
    config = nst_jax.LossConfig(**SMALL)
    loss = nst_jax.make_loss(config)
    weights = nst_jax.make_weights(config)
    targets = nst_jax.compute_targets(vgg, content=CONTENT, style=STYLE, config=config)
    (total, terms), grad = jax.jit(jax.value_and_grad(loss, argnums=1, has_aux=True))(vgg, CONTENT, targets, weights)
    # At the content photo the content term is 0 and the style term is the photo's distance to the painting.
    assert abs(float(terms["content"])) < 1e-6 and float(terms["style"]) > 0
    np.testing.assert_allclose(total, terms["content"] + terms["style"] + terms["tv"], rtol=1e-6)
    assert grad.shape == CONTENT.shape and float(jnp.abs(grad).max()) > 0
    # vmap over a batch of images, targets broadcast.
    batch = jnp.stack([CONTENT, smooth_image(32, 40, seed=7)])
    totals, batch_terms = jax.vmap(loss, in_axes=(None, 0, None, None))(vgg, batch, targets, weights)
    np.testing.assert_allclose(totals[0], total, rtol=1e-5)
    assert float(batch_terms["content"][1]) > 1e-3 > abs(float(batch_terms["content"][0]))
    # A StylizeConfig is accepted too (its optimiser fields are ignored) and gives the same loss.
    other = nst_jax.make_loss(nst_jax.StylizeConfig(optimizer="adam", iterations=7, **SMALL))
    np.testing.assert_allclose(other(vgg, CONTENT, targets, weights)[0], total, rtol=1e-6)
