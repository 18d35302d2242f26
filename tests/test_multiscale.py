"""Multi-scale optimisation (nst_jax.multiscale): the pyramid and the warm start."""

import dataclasses

from nst_jax import StylizeConfig

from .conftest import PAINTING, compiled_programs, run, smooth_image


def test_multiscale_pyramid_and_warm_start(vgg):
    from nst_jax.multiscale import pyramid_sizes, stylize_multiscale


    assert pyramid_sizes(512, 3, 128) == [128, 256, 512] and pyramid_sizes(300, 1) == [300]
    content = smooth_image(48, 64, seed=1)
    config = StylizeConfig(style_layers=("relu1_1", "relu2_1"), iterations=15, chunk_size=15)
    with compiled_programs() as names:
        multi = stylize_multiscale(vgg, sizes=[43, 64], iterations=[15, 5],
                                   content=content, style=PAINTING, config=config)
    assert names.count("local_chunk") == 2, names  # one compilation per size
    assert multi.image.shape == (48, 64, 3) and [r.image.shape[:2] for r in multi.levels] == [(32, 43), (48, 64)]
    single = run(vgg, dataclasses.replace(config, iterations=5), content=content, style=PAINTING)
    # The fine level starts from the upsampled coarse result, below the single run's start (the photo, the
    # transfer mode's default), and ends lower.
    assert multi.levels[1].history["total"][0] < 0.8 * single.history["total"][0]
    assert multi.levels[1].history["total"][-1] < single.history["total"][-1]
