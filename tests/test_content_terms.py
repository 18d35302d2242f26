"""Content terms: the structure term against NumPy, what it leaves free, tiled == dense, the registry."""

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import StylizeConfig, compute_targets, extract_features, loss_terms, make_weights, stylize
from nst_jax._src.content_terms import CONTENT_TERMS, MODULES
from nst_jax._src.content_terms.structure import _loss as structure_loss
from nst_jax._src.content_terms.structure import grid_shape
from nst_jax.errors import NSTError

from .conftest import ROOT, smooth_image


def numpy_structure(features, units="relative", target=None):
    """The structure term written out in NumPy: cells by ⌊y G_h / H⌋, ⌊x G_w / W⌋, summed features,
    cosines, relative squared error (``target`` features, or the self-similarity of ``features`` alone)."""
    def similarity(f):
        h, w, n = f.shape
        gh, gw = grid_shape((h, w))
        sums = np.zeros((gh, gw, n))
        for y in range(h):
            for x in range(w):
                sums[y * gh // h, x * gw // w] += f[y, x]
        v = sums.reshape(-1, n)
        unit = v / np.sqrt((v**2).sum(-1, keepdims=True) + 1e-12)
        return unit @ unit.T

    s = similarity(np.asarray(features, np.float64))
    if target is None:
        return s
    t = similarity(np.asarray(target, np.float64))
    error = ((s - t) ** 2).sum()
    return error / (t**2).sum() if units == "relative" else error / t.size


@pytest.mark.parametrize("shape", [(13, 17, 5), (40, 9, 3), (2, 3, 4)])
@pytest.mark.parametrize("units", ["relative", "paper"])
def test_structure_term_against_numpy(shape, units):
    rng = np.random.default_rng(0)
    f, t = (np.maximum(rng.normal(size=shape), 0).astype(np.float32) for _ in range(2))
    got = jax.jit(structure_loss, static_argnums=(3,))(f, t, None, units)
    np.testing.assert_allclose(got, numpy_structure(f, units, t), rtol=2e-5)
    assert float(got) > 0.01


def test_grid_on_every_small_map_has_no_empty_cell():
    """Every map up to 64 x 64: at most 24 cells along the longest side, none empty, aspect kept."""
    for h in range(1, 65):
        for w in range(1, 65):
            gh, gw = grid_shape((h, w))
            assert 1 <= gh <= h and 1 <= gw <= w and max(gh, gw) == min(24, max(h, w))
            assert set(y * gh // h for y in range(h)) == set(range(gh))
            assert set(x * gw // w for x in range(w)) == set(range(gw))


def test_structure_is_blind_to_each_cells_scale_but_not_to_layout():
    """Cosines of the cells' sums do not change when each cell's features are scaled by a positive
    number (e.g. a brighter region under a bias-free ReLU network): the term is exactly 0. Moving the
    layout (a flip) is measured; the paper's feature distance sees the scaling too."""
    rng = np.random.default_rng(1)
    f = np.maximum(rng.normal(size=(24, 24, 8)), 0).astype(np.float32)  # 24 x 24 cells of one position
    scale = rng.uniform(0.2, 5.0, size=(24, 24, 1)).astype(np.float32)
    assert float(structure_loss(f * scale, f, None, "relative")) < 1e-10
    assert float(structure_loss(f[::-1], f, None, "relative")) > 0.05
    assert float(CONTENT_TERMS["feature"].loss(f * scale, f, None, "relative")) > 0.5


def test_a_recoloured_photo_keeps_its_structure_on_vgg(vgg):
    """Through the real VGG-19 at relu4_2, a per-channel affine recolouring of a photo (red and blue
    swapped, contrast halved, a tint) moves the structure term far less than the feature distance, and
    far less than moving the same photo's layout (a flip), which moves both."""
    photo = jnp.asarray(smooth_image(64, 64, seed=3))
    recoloured = jnp.clip(0.5 * photo[..., ::-1] + jnp.asarray([0.3, 0.1, 0.2]), 0, 1)
    feats = {k: extract_features(vgg, x, layers=("relu4_2",))["relu4_2"]
             for k, x in (("photo", photo), ("recoloured", recoloured), ("flipped", photo[::-1]))}
    structure = {k: float(structure_loss(feats[k], feats["photo"], None, "relative")) for k in feats}
    feature = {k: float(CONTENT_TERMS["feature"].loss(feats[k], feats["photo"], None, "relative")) for k in feats}
    assert structure["recoloured"] < 0.25 * feature["recoloured"]
    assert structure["recoloured"] < 0.25 * structure["flipped"]


def _value_and_grad(vgg, config, weights, image, targets):
    def total(x, vgg, targets):
        terms = loss_terms(vgg, x, targets, weights, config=config)
        return terms["total"], terms

    return jax.jit(jax.value_and_grad(total, has_aux=True))(image, vgg, targets)


def test_tiled_structure_equals_dense(vgg):
    """The cell sums add up over tiles: value, gradient and terms as one VGG pass, with a grid whose cells
    straddle the tiles (a 40 x 56 image, 2 x 2 tiles of 32, relu2_2's 20 x 28 map in 17 x 24 cells)."""
    shape = (40, 56, 3)
    dense = StylizeConfig(mode="content", content_layers=("relu2_2",))
    tiled = dataclasses.replace(dense, tile_size=32)
    targets = compute_targets(vgg, content=jnp.asarray(smooth_image(*shape[:2], seed=1)), config=dense)
    weights = make_weights(dense, content_term_weights={"feature": 0.5, "structure": 3.0})
    image = jnp.asarray(np.random.default_rng(0).uniform(size=shape).astype(np.float32))
    (v0, t0), g0 = _value_and_grad(vgg, dense, weights, image, targets)
    (v1, t1), g1 = _value_and_grad(vgg, tiled, weights, image, targets)
    structure_only = make_weights(dense, content_term_weights=[0.0, 1.0])
    (vs, _), _ = _value_and_grad(vgg, dense, structure_only, image, targets)
    assert float(vs) > 0.05 * float(v0)  # the structure term is a real part of the value compared
    np.testing.assert_allclose(v1, v0, rtol=1e-4)
    np.testing.assert_allclose(t1["content"], t0["content"], rtol=1e-4)
    assert float(jnp.max(jnp.abs(g1 - g0)) / jnp.max(jnp.abs(g0))) < 1e-4


def test_content_term_weights_are_checked():
    config = StylizeConfig()
    assert config.content_terms == tuple(CONTENT_TERMS) and make_weights(config).content_terms.tolist() == [1.0, 0.0]
    for bad, message in (([1.0], "1 content term weights given for 2"), ({"edges": 1.0}, "'edges', not one of"),
                         ([1.0, -1.0], "content term weight must be")):
        with pytest.raises(NSTError, match=message):
            make_weights(config, content_term_weights=bad)
    with pytest.raises(NSTError, match="unknown content term 'edges'"):
        StylizeConfig(content_terms=("feature", "edges"))


NEW_TERM = '''"""A test's term: the distance of the mean features."""
import jax.numpy as jnp
from nst_jax._src.content_terms.base import ContentTerm

def _loss(features, target, extent, units):
    return jnp.sum(jnp.square(features.mean((0, 1)) - target.mean((0, 1))))

TERM = ContentTerm(name="mean", help="mean features", default_weight=0.0, loss=_loss)
'''

CHILD = '''
import jax.numpy as jnp, numpy as np
from nst_jax import StylizeConfig, compute_targets, extract_features, loss_terms, make_weights, load_vgg19
from nst_jax._src.content_terms import CONTENT_TERMS
config = StylizeConfig(mode="content", content_layers=("relu1_1",), content_terms=("mean",))
weights = make_weights(config, content_weight=2.0, content_term_weights=[3.0])
photo = jnp.linspace(0, 1, 32 * 32 * 3).reshape(32, 32, 3)
vgg = load_vgg19()
targets = compute_targets(vgg, content=photo, config=config)
image = photo[::-1]
got = loss_terms(vgg, image, targets, weights, config=config)["content"]
from nst_jax import extract_features
want = 6.0 * CONTENT_TERMS["mean"].loss(extract_features(vgg, image, layers=("relu1_1",))["relu1_1"],
                                        targets.content["relu1_1"], None, "relative")
print(float(got), float(want), make_weights(config).content_terms.tolist())
try:
    StylizeConfig(content_terms=("mean",), tile_size=32)
except Exception as err:
    print("refused:", err)
'''


@pytest.mark.slow  # a child process: JAX's import, the weights and a compile (about 20 s)
def test_a_new_content_term_is_one_file_and_one_registry_line(tmp_path, vgg):
    """A copy of the package with one new module and its name added to MODULES: the config accepts the
    term, make_weights gives its default, the objective weighs it, and tiles are refused in one line."""
    del vgg  # the child process loads its own
    package = tmp_path / "nst_jax"
    shutil.copytree(ROOT / "nst_jax", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "_src" / "content_terms" / "mean.py").write_text(NEW_TERM)
    registry = package / "_src" / "content_terms" / "__init__.py"
    line = "MODULES = (" + ", ".join(f'"{m}"' for m in MODULES) + ")"
    assert registry.read_text().count(line) == 1
    registry.write_text(registry.read_text().replace(line, line[:-1] + ', "mean")'))
    weights_dir = ROOT / "weights"
    if weights_dir.is_dir():
        os.symlink(weights_dir, tmp_path / "weights")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    got, want, default = lines[0].split(" ", 2)
    assert float(want) > 0 and abs(float(got) - float(want)) <= 1e-5 * float(want)
    assert default == "[0.0]"
    assert lines[1] == "refused: tiled evaluation cannot sum the content term 'mean' over tiles"
    assert pathlib.Path(tmp_path / "nst_jax" / "_src" / "content_terms" / "mean.py").is_file()


def test_a_presets_per_level_weights_reach_the_spec_and_the_objective(vgg, monkeypatch):
    """A preset's per-level style layer and content term weights: each level of the run spec carries its
    own (the output level's dropping what its layers do not name), explicit choices win, and the style
    and content terms the objective computes with a level's weights are Σ_l w_l E_l and Σ_t u_t L_t
    with the preset's numbers, computed here from the unweighted per-layer terms."""
    from nst_jax import config as config_module
    from nst_jax.spec import Choices, make_spec

    layers = ("relu1_1", "relu2_1")
    preset = config_module.Preset(
        "test", iterations=(3, 2), style_weights=(50.0, 5.0), tv_weight=0.0,
        style_layer_weights=({"relu1_1": 0.9, "relu2_1": 0.1}, {"relu1_1": 0.3, "relu3_1": 0.7}),
        content_term_weights=({"structure": 2.0}, {"feature": 0.5}))
    monkeypatch.setitem(config_module.PRESETS, "test", preset)
    config = StylizeConfig(style_layers=layers, content_layers=("relu2_2",))
    photo, painting = smooth_image(128, 96, seed=1), smooth_image(64, 64, seed=2)
    spec = make_spec(config, content=photo, style=painting, choices=Choices(preset="test"))
    coarse, fine = (level.weights for level in spec.levels)
    assert [level.shape for level in spec.levels] == [(64, 48), (128, 96)]
    np.testing.assert_array_equal(coarse.style_layers, np.float32([0.9, 0.1]))
    np.testing.assert_array_equal(fine.style_layers, np.float32([0.5, 0.5]))  # relu2_1 unnamed: 1 / L
    np.testing.assert_array_equal(coarse.content_terms, np.float32([1.0, 2.0]))
    np.testing.assert_array_equal(fine.content_terms, np.float32([0.5, 0.0]))
    assert (float(coarse.style), float(fine.style)) == (50.0, 5.0)
    chosen = make_spec(config, content=photo, style=painting,
                       choices=Choices(preset="test", style_layer_weights=(0.2, 0.8), content_term_weights=(1.0, 1.0)))
    for level in chosen.levels:
        np.testing.assert_array_equal(level.weights.style_layers, np.float32([0.2, 0.8]))
        np.testing.assert_array_equal(level.weights.content_terms, np.float32([1.0, 1.0]))

    # The coarse level's weights in the objective, against its per-layer terms weighted here.
    shape = (64, 48, 3)
    content = jax.image.resize(jnp.asarray(photo), shape, "linear")
    targets = compute_targets(vgg, content=content, style=jnp.asarray(painting), config=config, output_shape=shape)
    image = jnp.asarray(np.random.default_rng(0).uniform(size=shape).astype(np.float32))
    got = jax.jit(lambda x, w, t: loss_terms(vgg, x, t, w, config=config))(image, coarse, targets)
    unit = {}
    for name in ("style_layers", "content_terms"):
        for k in range(2):
            one_hot = np.zeros(2, np.float32)
            one_hot[k] = 1.0
            weights = coarse._replace(style=np.float32(1.0), content=np.float32(1.0), **{name: one_hot})
            unit[name, k] = loss_terms(vgg, image, targets, weights, config=config)
    np.testing.assert_allclose(got["style"], 50.0 * (0.9 * unit["style_layers", 0]["style"]
                                                     + 0.1 * unit["style_layers", 1]["style"]), rtol=1e-5)
    np.testing.assert_allclose(got["content"], 1.0 * unit["content_terms", 0]["content"]
                               + 2.0 * unit["content_terms", 1]["content"], rtol=1e-5)
    assert float(unit["content_terms", 1]["content"]) > 0.01 * float(unit["content_terms", 0]["content"])


def test_records_store_the_content_terms_and_older_ones_read_back_with_the_defaults():
    """A spec's JSON holds the config's content terms and each level's term weights; a record written
    before them (neither field) reads back as the objective it ran: both terms, the structure at 0."""
    from nst_jax.spec import Choices, make_spec, spec_from_json

    photo, painting = smooth_image(64, 48, seed=1), smooth_image(40, 36, seed=2)
    spec = make_spec(content=photo, style=painting, choices=Choices(preset="faithful",
                                                                     content_term_weights={"structure": 4.0}))
    data = spec.to_json()
    assert data["config"]["content_terms"] == ["feature", "structure"]
    assert [level["weights"]["content_terms"] for level in data["levels"]] == [[1.0, 4.0]]
    del data["config"]["content_terms"]
    for level in data["levels"]:
        del level["weights"]["content_terms"]
    old = spec_from_json(data, "an old record", inputs={"content": photo, "style": painting})
    assert old.config.content_terms == ("feature", "structure")
    np.testing.assert_array_equal(old.levels[0].weights.content_terms, np.float32([1.0, 0.0]))


def test_the_programs_are_built_for_the_terms_with_a_weight():
    """driver.program_settings, the one decision: a term whose weight is 0 in every member is left out of the
    config and the weights, in the config's order; a sweep keeps a term any member (or any run sharing the
    programs) weighs; every term weighed: the same objects; style mode and all-zero weights keep a term."""
    from nst_jax import stack_weights
    from nst_jax._src.driver import program_settings

    def settings(config, weights, shared=None):
        c, w = program_settings(config, weights, shared)
        assert all(a is b for a, b in zip(w[:-1], weights[:-1], strict=True))  # only content_terms changes
        return c.content_terms, np.asarray(w.content_terms).tolist()

    config = StylizeConfig()
    default, structure = make_weights(config), make_weights(config, content_term_weights={"structure": 3.0})
    assert settings(config, default) == (("feature",), [1.0])
    assert settings(config, make_weights(config, content_term_weights=[0.0, 2.0])) == (("structure",), [2.0])
    assert settings(config, make_weights(config, content_term_weights=[0.0, 0.0])) == (("feature",), [0.0])
    assert program_settings(config, structure) == (config, structure)
    assert program_settings(config, structure)[0] is config
    members = stack_weights([default, structure])
    assert program_settings(config, members)[0] is config
    assert settings(config, stack_weights([default, default])) == (("feature",), [[1.0], [1.0]])
    assert settings(config, default, shared=members) == (("feature", "structure"), [1.0, 0.0])
    swapped = StylizeConfig(content_terms=("structure", "feature"))
    assert settings(swapped, make_weights(swapped)) == (("feature",), [1.0])
    style = StylizeConfig(mode="style")
    assert program_settings(style, make_weights(style))[0] is style


SMALL = StylizeConfig(iterations=3, content_layers=("relu2_2",), style_layers=("relu1_1",))


def _built_terms(monkeypatch):
    """The content terms of every chunk program the driver builds from here on."""
    from nst_jax._src import driver

    built, real = [], driver.chunk_program
    monkeypatch.setattr(driver, "chunk_program", lambda config, layout: built.append(config.content_terms)
                        or real(config, layout))
    return built


def test_a_run_without_its_zero_weight_term_is_the_run_with_it(vgg, monkeypatch):
    """The default weights (structure 0) build programs of the feature term alone, and the run equals the one
    that computes the structure term at weight 0 (the programs before) within float32 rounding: here bit for
    bit, but XLA may sum the gradient in another order without the term (2e-7 on a 64 px default run)."""
    from nst_jax import sweep_specs
    from nst_jax._src import driver
    from nst_jax.spec import make_spec

    photo, painting = smooth_image(48, 36, seed=1), smooth_image(40, 36, seed=2)
    built = _built_terms(monkeypatch)
    now = stylize(vgg, content=photo, style=painting, config=SMALL)
    monkeypatch.setattr(driver, "program_settings", lambda config, weights, shared=None: (config, weights))
    before = stylize(vgg, content=photo, style=painting, config=SMALL)
    assert built == [("feature",), ("feature", "structure")]
    np.testing.assert_allclose(now.image, before.image, rtol=0, atol=1e-5)
    assert np.abs(now.image - photo).max() > 0.05  # the steps moved the image
    for name in ("content", "style", "tv", "total", "total_per_step"):
        np.testing.assert_allclose(now.history[name], before.history[name], rtol=1e-5, err_msg=name)

    # A sweep's members with other paintings share one program: it holds the terms any member weighs (the
    # program of the run before, compiled already).
    monkeypatch.undo()
    built = _built_terms(monkeypatch)
    structure = make_weights(SMALL, content_term_weights={"structure": 2.0})
    members = [make_spec(SMALL, content=photo, style=p, levels=[(48, 2, w)])
               for p, w in ((painting, make_weights(SMALL)), (smooth_image(36, 40, seed=3), structure))]
    sweep_specs(vgg, members, compile_ahead=False)
    assert built == [("feature", "structure")] * 2



@pytest.mark.slow  # four programs compiled (about 20 s on 2 busy cores)
def test_each_level_computes_the_terms_it_weighs(vgg, monkeypatch):
    """A level's programs hold the terms its own weights use: the structure term at the coarse level only."""
    from nst_jax import run_spec
    from nst_jax.spec import make_spec

    photo, painting = smooth_image(48, 36, seed=1), smooth_image(40, 36, seed=2)
    structure = make_weights(SMALL, content_term_weights={"structure": 2.0})
    built = _built_terms(monkeypatch)
    spec = make_spec(SMALL, content=photo, style=painting, levels=[(32, 2, structure), (48, 2, make_weights(SMALL))])
    run_spec(vgg, spec, compile_ahead=False)
    assert built == [("feature", "structure"), ("feature",)]
