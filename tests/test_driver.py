"""The host loop (nst_jax._src.driver): chunks compiled once, chunking that does not change the result, the
member layout."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from nst_jax import StylizeConfig, make_weights
from nst_jax._src import objective
from nst_jax._src.driver import _chunk_program, _start_program, member_layout, member_mesh
from nst_jax.errors import NSTError

from .conftest import PHOTO, compiled_programs, run


def test_chunks_do_not_retrace(vgg):
    config = StylizeConfig(mode="content", content_layers=("relu1_2",), optimizer="adam", iterations=25, chunk_size=10)
    seen = []
    with compiled_programs() as names:
        result = run(vgg, config, content=PHOTO, callback=lambda p: seen.append(p.step))
    assert names.count("local_chunk") == 1, names
    assert seen == [10, 20, 25]
    np.testing.assert_array_equal(result.history["step"], [0, 10, 20, 25])
    assert result.history["total_per_step"].shape == (25,)
    assert np.isfinite(result.history["total_per_step"]).all()


def test_chunking_does_not_change_the_result(vgg):
    base = dict(mode="content", content_layers=("relu1_1",), optimizer="lbfgs", iterations=12)
    one = run(vgg, StylizeConfig(**base, chunk_size=12), content=PHOTO)
    many = run(vgg, StylizeConfig(**base, chunk_size=5), content=PHOTO)
    np.testing.assert_allclose(one.image, many.image, atol=1e-5)
    np.testing.assert_allclose(one.history["total_per_step"], many.history["total_per_step"], rtol=1e-5)


def test_member_layout_pads_to_whole_groups():
    mesh = member_mesh(jax.devices()[:1])
    for k, batch, want in [(5, 2, (6, 3, 2)), (5, None, (5, 5, 1)), (3, 8, (3, 1, 3)), (1, 1, (1, 1, 1)),
                           (7, 3, (9, 3, 3))]:
        layout = member_layout(k, mesh, batch)
        assert (layout.k, layout.padded, layout.groups, layout.batch) == (k, *want), (k, batch)
    assert member_layout(4, None, None).mesh.devices.size == 1
    with pytest.raises(NSTError, match="batch size must be at least 1"):
        member_layout(2, mesh, -1)
    with pytest.raises(NSTError, match="single axis 'members'"):
        member_layout(2, Mesh(np.asarray(jax.devices()[:1]), ("other",)), 1)


def test_a_run_compiles_its_start_and_chunk_programs_once(vgg):
    # Settings no other test uses, so nothing is cached in this process.
    config = StylizeConfig(mode="content", content_layers=("relu1_2",), optimizer="lbfgs", iterations=7, chunk_size=3)
    with compiled_programs() as names:
        result = run(vgg, config, content=PHOTO)
    assert names.count("local_start") == 1 and names.count("local_chunk") == 1, names
    np.testing.assert_array_equal(result.history["step"], [0, 3, 6, 7])


def test_runs_that_differ_only_in_their_steps_share_their_programs(vgg):
    """The step count is the host loop's: a second run of the same shapes with other steps compiles
    nothing, and still runs its own number of steps."""
    base = dict(mode="content", content_layers=("relu1_2",), optimizer="adam", chunk_size=4)
    with compiled_programs() as first:
        run(vgg, StylizeConfig(**base, iterations=5), content=PHOTO)
    with compiled_programs() as second:
        result = run(vgg, StylizeConfig(**base, iterations=9), content=PHOTO)
    assert "local_chunk" in first and "local_start" in first, first
    assert "local_chunk" not in second and "local_start" not in second, second
    np.testing.assert_array_equal(result.history["step"], [0, 4, 8, 9])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_chunk_differentiates_the_loss_once(vgg, monkeypatch, optimizer):
    """The chunk program traces the loss twice: the optimiser's evaluations (L-BFGS's start included, made by
    the same loop as its steps) and the terms reported at the new iterates. The start as a separate ``init``
    would be a third copy of the differentiated VGG in the program."""
    calls = []
    evaluate_terms = objective.evaluate_terms

    def counting(*args, **kwargs):
        calls.append(1)
        return evaluate_terms(*args, **kwargs)

    monkeypatch.setattr(objective, "evaluate_terms", counting)
    config = StylizeConfig(mode="content", content_layers=("relu1_1",), optimizer=optimizer, iterations=2,
                           chunk_size=2)
    layout = member_layout(1, None, None)
    weights = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], make_weights(config))
    start = _start_program.__wrapped__(config, layout, PHOTO.shape)  # fresh programs: nothing traced yet
    state, targets = jax.eval_shape(start, vgg, {"content": PHOTO}, PHOTO[None], weights)
    calls.clear()
    jax.eval_shape(_chunk_program.__wrapped__(config, layout), state, vgg, targets, weights, np.int32(2),
                   np.bool_(True))
    assert len(calls) == 2, len(calls)
