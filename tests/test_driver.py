"""The host loop (nst_jax.driver): chunks compiled once, chunking that does not change the result, the
member layout."""

import numpy as np

from nst_jax import StylizeConfig

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
