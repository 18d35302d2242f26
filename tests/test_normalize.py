"""Normalised VGG-19: mean activations 1 on the calibration set, relu maps per-channel rescaled."""

import hashlib
import io
import json
import time

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax._src import normalize
from nst_jax._src.image import load_image
from nst_jax._src.vgg import CONV_LAYERS, VGGParams, extract_features

from .conftest import EXAMPLES, smooth_image

LAYERS = ("relu1_1", "relu2_2", "relu3_4", "relu4_2", "relu5_1", "relu5_4")


def relus(params, image, convention):
    feats = extract_features(VGGParams(params, convention), jnp.asarray(image, jnp.float32), layers=normalize.RELUS)
    return {name: np.asarray(f, np.float64) for name, f in feats.items()}


def test_normalised_means_are_one_and_maps_are_rescaled(vgg):
    calibration = [smooth_image(48, 48, seed=1), load_image(EXAMPLES / "chelsea.png", 48)]
    means = normalize.channel_means(vgg, calibration)
    params = normalize.normalized_params(vgg.params, means)
    totals = {name: 0.0 for name in normalize.RELUS}
    counts = dict.fromkeys(normalize.RELUS, 0)
    for image in calibration:
        for name, f in relus(params, image, vgg.convention).items():
            totals[name] = totals[name] + f.sum(axis=(0, 1))
            counts[name] += f.shape[0] * f.shape[1]
    for (conv, _, _), relu in zip(CONV_LAYERS, normalize.RELUS, strict=True):
        alive = means[conv] > 0
        assert alive.mean() > 0.3, relu  # at 48 px some deep channels never fire
        np.testing.assert_allclose((totals[relu] / counts[relu])[alive], 1.0, rtol=2e-3, err_msg=relu)
    # Another image: every relu map of the normalised net is the original's divided by the channel means.
    other = load_image(EXAMPLES / "swirls.png", 48)
    original, normalised = relus(vgg.params, other, vgg.convention), relus(params, other, vgg.convention)
    for (conv, _, _), relu in zip(CONV_LAYERS, normalize.RELUS, strict=True):
        if relu in LAYERS:
            scale = np.where(means[conv] > 0, means[conv], 1.0)
            np.testing.assert_allclose(normalised[relu], original[relu] / scale,
                                       rtol=2e-3, atol=2e-3 * np.abs(normalised[relu]).max(), err_msg=relu)
            assert not np.allclose(scale, 1.0)  # not a no-op


def test_saved_scales_are_np_savez_of_the_means_with_a_sidecar(tmp_path, monkeypatch):
    means, meta, _ = normalize.load_scales()
    monkeypatch.setattr(time, "time", lambda: 1.7e9)  # the zip entries' timestamps, equal in both files
    digest = normalize.save_scales(tmp_path / "s.npz", means, meta)
    want = io.BytesIO()
    np.savez(want, **{name: np.asarray(means[name], np.float32) for name, _, _ in CONV_LAYERS},
             meta=np.array(json.dumps(meta, sort_keys=True)))
    assert (tmp_path / "s.npz").read_bytes() == want.getvalue()
    assert digest == hashlib.sha256(want.getvalue()).hexdigest()
    assert (tmp_path / "s.npz.sha256").read_text() == f"{digest}  s.npz\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.npz.sha256"]  # no temporary file left
    back, back_meta, back_digest = normalize.load_scales(tmp_path / "s.npz")
    assert back_meta == meta and back_digest == digest
    for name, _, _ in CONV_LAYERS:
        np.testing.assert_array_equal(back[name], means[name])


@pytest.mark.slow
def test_shipped_normalisation_loads_and_is_reproducible(vgg, shared_images):
    means, meta, _ = normalize.load_scales()
    assert meta["size"] == 256 and len(meta["images"]) == 6
    paths = sorted(EXAMPLES.glob("*.png")) + sorted(p for p in shared_images.iterdir()
                                                    if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    assert sorted(p.name for p in paths) == sorted(meta["images"])
    if len(paths) != 6:
        pytest.skip("calibration images differ")
    again = normalize.channel_means(vgg, (load_image(p, meta["size"]) for p in paths))
    for name, _, _ in CONV_LAYERS:
        np.testing.assert_allclose(again[name], means[name], rtol=1e-4, atol=1e-6 * means[name].max(), err_msg=name)
    normed = normalize.normalize_vgg19(vgg)
    assert normed.sha256 != vgg.sha256 and "normalization" in normed.meta
