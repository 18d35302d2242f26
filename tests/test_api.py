"""The public API: the front door, the pure stylizer under jit/vmap/fori_loop, the loss constructor,
the guards at the boundary, x64, and the loss history of a run against a NumPy evaluation."""

import inspect
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nst_jax
from nst_jax import NSTError, StylizeConfig
from nst_jax._src.image import load_image

from .conftest import EXAMPLES, PAINTING, run, smooth_image

CONTENT = smooth_image(32, 40, seed=1)
STYLE = smooth_image(36, 36, seed=2)
SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


def test_front_door_is_documented_and_complete():
    required = {"load_vgg19", "VGG19", "extract_features", "gram_matrix", "content_loss", "style_loss", "tv_loss",
                "StylizeConfig", "make_weights", "compute_targets", "make_stylizer", "stylize", "sweep",
                "stylize_multiscale", "NSTError"}
    assert required <= set(nst_jax.__all__)
    assert isinstance(nst_jax.__version__, str) and nst_jax.__version__[0].isdigit()
    for name in nst_jax.__all__:
        if name.startswith("__") or name == "LAYERS":
            continue
        obj = getattr(nst_jax, name)
        assert inspect.getdoc(obj), f"nst_jax.{name} has no docstring"
    assert os.path.isfile(os.path.join(os.path.dirname(nst_jax.__file__), "py.typed"))


def test_import_changes_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import nst_jax; "
            "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_vgg_params_are_one_pytree_with_a_static_convention(vgg):
    leaves, treedef = jax.tree_util.tree_flatten(vgg)
    assert len(leaves) == 32 and all(isinstance(x, (np.ndarray, jax.Array)) for x in leaves)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert again.convention == "caffe" and again.sha256 == vgg.sha256
    placed = jax.device_put(vgg)
    assert isinstance(placed, nst_jax.VGGParams) and placed.convention == vgg.convention
    with pytest.raises(NSTError, match="unknown input convention"):
        nst_jax.VGGParams({}, "bgr")


@pytest.mark.parametrize("call,needle", [
    (lambda v: nst_jax.extract_features(v, CONTENT[None], layers=("relu1_1",)), "jax.vmap"),
    (lambda v: nst_jax.extract_features(v, CONTENT[..., :2], layers=("relu1_1",)), r"\[H, W, 3\]"),
    (lambda v: nst_jax.extract_features(v, (CONTENT * 255).astype(np.uint8), layers=("relu1_1",)), "/ 255"),
    (lambda v: nst_jax.extract_features(v, CONTENT, layers="relu1_1"), "not the string 'relu1_1'"),
    (lambda v: nst_jax.extract_features(v, CONTENT, layers=("relu9_1",)), "unknown VGG-19 layer 'relu9_1'"),
    (lambda v: nst_jax.extract_features(v, CONTENT[:8, :8], layers=("relu5_1",)), "too small for layer relu5_1"),
    (lambda v: nst_jax.stylize(v, content=CONTENT[:16, :16], style=STYLE), "smaller than the 32 px"),
    (lambda v: nst_jax.stylize(v, content=(CONTENT * 255).astype(np.uint8), style=STYLE), "float array"),
    (lambda v: nst_jax.stylize(v, content=CONTENT, style=STYLE, config=nst_jax.LossConfig()), "StylizeConfig"),
    (lambda v: nst_jax.stylize(v.params, content=CONTENT, style=STYLE), "VGGParams"),
    (lambda v: nst_jax.stylize(v, content=CONTENT, style=STYLE, weights=nst_jax.stack_weights(
        [nst_jax.make_weights(nst_jax.StylizeConfig())] * 2)), "unbatched"),
    (lambda v: nst_jax.make_weights(nst_jax.StylizeConfig(), style_layer_weights=[1, 2, 3]),
     "3 style layer weights given for 5 style layers"),
    (lambda v: nst_jax.StylizeConfig(style_layers="relu1_1"), "not the string"),
    (lambda v: nst_jax.loss_terms(v, CONTENT[:, :32], nst_jax.compute_targets(
        v, content=CONTENT, style=STYLE, config=nst_jax.LossConfig()), nst_jax.make_weights(nst_jax.LossConfig()),
        config=nst_jax.LossConfig()), "compute the targets at output_shape"),
    (lambda v: nst_jax.content_loss(jnp.ones((4, 4, 8)), jnp.ones((4, 4, 9))), "differ"),
    (lambda v: nst_jax.gram_matrix(jnp.ones((2, 4, 4, 8))), "jax.vmap"),
])
def test_guards_at_the_public_boundary(vgg, call, needle):
    with pytest.raises(NSTError, match=needle) as info:
        call(vgg)
    assert "\n" not in str(info.value)


X64_SCRIPT = """
import jax, numpy as np, nst_jax
assert jax.config.jax_enable_x64
from tests.conftest import smooth_image
vgg = nst_jax.load_vgg19()
content, style = smooth_image(32, 40, seed=1).astype(np.float64), smooth_image(36, 36, seed=2).astype(np.float64)
for optimizer in ("lbfgs", "adam"):
    config = nst_jax.StylizeConfig(optimizer=optimizer, iterations=3, content_layers=("relu2_1",),
                                   style_layers=("relu1_1", "relu2_1"))
    result = nst_jax.stylize(vgg, content=content, style=style, config=config)
    assert result.image.dtype == np.float32 and np.isfinite(result.image).all()
    weights = nst_jax.stack_weights([nst_jax.make_weights(config), nst_jax.make_weights(config, style_weight=1.0)])
    swept = nst_jax.sweep(vgg, weights=weights, content=content, style=style, config=config)
    np.testing.assert_allclose(swept.images[0], result.image, atol=1e-5)
    print(optimizer, "ok", result.history["total"][-1])
"""


@pytest.mark.slow
def test_x64_enabled():
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", X64_SCRIPT], capture_output=True, text=True, env=env, cwd=root,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lbfgs ok" in proc.stdout and "adam ok" in proc.stdout


def test_default_start_and_steps_follow_the_mode():
    """Transfer starts from the photo, with few steps (the calibrated defaults); the
    reconstructions from noise, with many; given values are kept."""
    from nst_jax.config import RECONSTRUCTION_ITERATIONS, TRANSFER_ITERATIONS

    assert TRANSFER_ITERATIONS < RECONSTRUCTION_ITERATIONS
    assert nst_jax.StylizeConfig().iterations == TRANSFER_ITERATIONS
    assert nst_jax.StylizeConfig(mode="content").iterations == RECONSTRUCTION_ITERATIONS
    assert nst_jax.StylizeConfig(mode="style", iterations=7).iterations == 7
    assert nst_jax.StylizeConfig().init == "content"
    assert nst_jax.StylizeConfig(mode="content").init == "noise"
    assert nst_jax.StylizeConfig(mode="style").init == "noise"
    assert nst_jax.StylizeConfig(init="noise").init == "noise"
    with pytest.raises(nst_jax.NSTError, match="no content image"):
        nst_jax.StylizeConfig(mode="style", init="content")


def numpy_terms(vgg, image, *, config, weights, content=None, style=None):
    """The weighted loss terms of ``image``, computed in NumPy (float64) from the paper's formulas and
    :class:`~nst_jax.config.LossConfig`'s units, on the float32 features of ``nst_jax.extract_features``:
    content ``α Σ c_l ‖F − P‖² / ‖P‖²`` (paper: ``½ Σ (F − P)²``), style ``β Σ w_l ‖G − A‖² / ‖A‖²`` (paper:
    ``Σ (G − A)² / (4 N² M²)``) with ``G = F Fᵀ`` and ``A`` the painting's Gram scaled to the image's ``M``
    positions, TV the sum of squared neighbour differences (relative: divided by ``H W C``)."""
    paper = config.loss_units == "paper"
    layers = tuple(dict.fromkeys(config.content_layers + config.style_layers))  # one program per image shape

    def features(x):
        found = nst_jax.extract_features(vgg, np.asarray(x, np.float32), layers=layers)
        return {k: np.asarray(v, np.float64).reshape(-1, v.shape[-1]) for k, v in found.items()}

    f = features(image)
    content_term = style_term = 0.0
    if content is not None:
        p = features(content)
        for c, name in zip(weights.content_layers, config.content_layers, strict=True):
            error = np.sum((f[name] - p[name]) ** 2)
            content_term += c * (0.5 * error if paper else error / np.sum(p[name] ** 2))
    s = features(style)
    for w, name in zip(weights.style_layers, config.style_layers, strict=True):
        m, n = f[name].shape
        g, a = f[name].T @ f[name], s[name].T @ s[name] * m / len(s[name])
        error = np.sum((g - a) ** 2)
        style_term += w * (error / (4 * n**2 * m**2) if paper else error / np.sum(a**2))
    x = np.asarray(image, np.float64)
    tv = np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2)
    terms = {"content": float(weights.content) * content_term, "style": float(weights.style) * style_term,
             "tv": float(weights.tv) * (tv if paper else tv / x.size)}
    return {**terms, "total": sum(terms.values())}


def assert_history_is_numpy(history, images, *, content_atol=0.0, **kw):
    """Each history entry (step 0, each chunk's end) equals :func:`numpy_terms` of that step's unclipped
    image (measured: at most 2e-7 relative), the content term within ``content_atol``."""
    expected = [numpy_terms(image=image, **kw) for image in images]
    for name in ("content", "style", "tv", "total"):
        np.testing.assert_allclose(history[name], [e[name] for e in expected], rtol=2e-5,
                                   atol=content_atol if name == "content" else 0.0, err_msg=name)


def test_style_mode_synthesises_texture(vgg):
    config = StylizeConfig(mode="style", style_layers=("relu1_1", "relu2_1"), iterations=30, chunk_size=15)
    ends = []
    result = run(vgg, config, style=PAINTING, seed=3, callback=lambda p: ends.append(np.asarray(p.image)))
    h = result.history
    assert result.image.shape == PAINTING.shape
    assert list(h["step"]) == [0, 15, 30] and (h["content"] == 0.0).all()
    # The terms at the noise start (0.5 + noise_scale N(0, 1) from the seed) and at each chunk's end equal a
    # NumPy evaluation; the image returned is the last one, clipped.
    start = 0.5 + config.noise_scale * np.asarray(jax.random.normal(jax.random.key(3), PAINTING.shape))
    assert_history_is_numpy(h, [start, *ends], vgg=vgg, config=config, weights=nst_jax.make_weights(config),
                            style=PAINTING)
    np.testing.assert_array_equal(result.image, np.clip(ends[-1], 0, 1))
    assert h["style"][0] / h["style"][-1] > 20


# Transfer mode starts from the photo: the content term starts at 0 and rises while the style term falls
# towards their trade-off, so the total falls less than the style term (measured here: total 5.2x, style
# 11.9x in relative units; 34x and 49x in paper units). That the history is the loss of the images the run
# went through is test_history_is_the_loss_of_each_reported_image's (NumPy, both unit systems).
@pytest.mark.parametrize("units,total_factor,style_factor", [("relative", 5, 10), ("paper", 10, 10)])
def test_real_images_transfer_cuts_loss(vgg, shared_images, units, total_factor, style_factor):
    content = load_image(shared_images / "tubingen.jpg", 64)
    style = load_image(shared_images / "starry_night.jpg", 64)
    config = StylizeConfig(iterations=40, chunk_size=20, loss_units=units)
    h = run(vgg, config, content=content, style=style).history
    assert h["total"][0] / h["total"][-1] > total_factor, (h["total"][0], h["total"][-1])
    assert h["style"][0] / h["style"][-1] > style_factor, (h["style"][0], h["style"][-1])


# A transfer on the example photo and painting: the history the run reports is the loss, term by term, of the
# images it went through (its start, the photo, and each chunk's end), as NumPy evaluates it in both unit
# systems; the image returned is the last of them, clipped. Measured relative deviation: at most 2e-7.
@pytest.mark.parametrize("units", ["relative", "paper"])
def test_history_is_the_loss_of_each_reported_image(vgg, units):
    content = load_image(EXAMPLES / "chelsea.png", 48)
    style = load_image(EXAMPLES / "swirls.png", 48)
    config = StylizeConfig(iterations=6, chunk_size=3, loss_units=units, **SMALL)
    weights = nst_jax.make_weights(config)
    ends = []
    result = nst_jax.stylize(vgg, content=content, style=style, config=config, weights=weights,
                             callback=lambda p: ends.append(np.asarray(p.image)))
    h = result.history
    assert list(h["step"]) == [0, 3, 6] and len(ends) == 2
    # At the start, the photo, the content term is 0 up to the float32 rounding of its features (the target's
    # and the image's come from two programs): 3e-14 of its value at zero features here.
    at_zero = numpy_terms(vgg, np.zeros_like(content), config=config, weights=weights, content=content,
                          style=style)["content"]
    assert_history_is_numpy(h, [content, *ends], content_atol=1e-9 * at_zero, vgg=vgg, config=config,
                            weights=weights, content=content, style=style)
    np.testing.assert_array_equal(result.image, np.clip(ends[-1], 0, 1))
    assert h["total_per_step"][0] == h["total"][0] and h["total"][-1] < 0.7 * h["total"][0]
