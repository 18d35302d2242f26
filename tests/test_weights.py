"""The weights file: conversion, checks, and agreement with an independent PyTorch computation."""

import hashlib
import importlib.util
import io
import json
import pathlib
import shutil
import sys
import time

import jax
import numpy as np
import pytest

from nst_jax._src.vgg import CONV_LAYERS, extract_features
from nst_jax._src.vgg_io import DEFAULT_VGG_FILE, load_vgg19, save_vgg19
from nst_jax.errors import NSTError

from .conftest import smooth_image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
import convert_weights  # noqa: E402
import make_torch_reference  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
TORCH_REFERENCE = pathlib.Path(__file__).resolve().parent / "data" / "torch_reference.npz"
TORCH_REFERENCE_RTOL = 1e-3  # max |nst_jax - torch| over a layer's samples, relative to the layer's max |value|


def test_shipped_weights_shapes_and_convention(vgg):
    assert vgg.convention == "caffe"
    for name, c_in, c_out in CONV_LAYERS:
        assert vgg.params["params"][name]["kernel"].shape == (3, 3, c_in, c_out)
        assert vgg.params["params"][name]["bias"].shape == (c_out,)
    # 256-level quantisation: each kernel takes at most 256 distinct values.
    assert len(np.unique(vgg.params["params"]["conv3_1"]["kernel"])) <= 256


def _copy(tmp_path):
    dst = tmp_path / "w.npz"
    shutil.copy(DEFAULT_VGG_FILE, dst)
    shutil.copy(str(DEFAULT_VGG_FILE) + ".sha256", str(dst) + ".sha256")
    return dst


def test_truncated_file_refused(tmp_path):
    dst = _copy(tmp_path)
    dst.write_bytes(dst.read_bytes()[:1000])
    with pytest.raises(NSTError, match="sha256.*convert_weights"):
        load_vgg19(dst)


def test_missing_file_and_sidecar_refused(tmp_path):
    with pytest.raises(NSTError, match="not found"):
        load_vgg19(tmp_path / "nope.npz")
    dst = _copy(tmp_path)
    pathlib.Path(str(dst) + ".sha256").unlink()
    with pytest.raises(NSTError, match="checksum file"):
        load_vgg19(dst)


def _rewrite(tmp_path, mutate):
    with np.load(DEFAULT_VGG_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "meta"}
        meta = json.loads(str(npz["meta"]))
    mutate(arrays)
    path = tmp_path / "bad.npz"
    arrays_ok = dict(arrays)
    # Write bypassing save_vgg19's checks so the loader sees the fault.
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays_ok)
    from nst_jax._src.vgg_io import sha256_of
    pathlib.Path(str(path) + ".sha256").write_text(sha256_of(path) + "\n")
    return path


def test_wrong_shape_refused(tmp_path):
    path = _rewrite(tmp_path, lambda a: a.__setitem__("conv2_1/bias", np.zeros(7, np.float32)))
    with pytest.raises(NSTError, match=r"conv2_1/bias has shape \(7,\)"):
        load_vgg19(path)


def test_nan_refused(tmp_path):
    def poison(a):
        a["conv4_1/table"] = a["conv4_1/table"].copy()
        a["conv4_1/table"][3] = np.nan
    with pytest.raises(NSTError, match="conv4_1 holds NaN"):
        load_vgg19(_rewrite(tmp_path, poison))


def test_save_roundtrip_full_precision(tmp_path, vgg, monkeypatch):
    arrays = {}
    for name, _, _ in CONV_LAYERS:
        arrays[f"{name}/kernel"] = vgg.params["params"][name]["kernel"]
        arrays[f"{name}/bias"] = vgg.params["params"][name]["bias"]
    meta = {"convention": "torch", "source": "test"}
    monkeypatch.setattr(time, "time", lambda: 1.7e9)  # the zip entries' timestamps, equal in both files
    save_vgg19(tmp_path / "f.npz", arrays, meta)
    # The file np.savez writes of the sorted arrays and the metadata, its sidecar, and no temporary file left.
    want = io.BytesIO()
    np.savez(want, **{k: arrays[k] for k in sorted(arrays)}, meta=np.array(json.dumps(meta, sort_keys=True)))
    assert (tmp_path / "f.npz").read_bytes() == want.getvalue()
    assert (tmp_path / "f.npz.sha256").read_text() == f"{hashlib.sha256(want.getvalue()).hexdigest()}  f.npz\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "f.npz.sha256"]
    back = load_vgg19(tmp_path / "f.npz")
    assert back.convention == "torch"
    np.testing.assert_array_equal(back.params["params"]["conv5_4"]["kernel"], arrays["conv5_4/kernel"])


def test_keras_h5_conversion(tmp_path, vgg):
    """A Keras-layout .h5 (HWIO kernels) converts to the same kernels."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "vgg19_notop.h5"
    with h5py.File(path, "w") as f:
        for name, _, _ in CONV_LAYERS:
            g = f.create_group(convert_weights.keras_name(name))
            g[f"{convert_weights.keras_name(name)}_W_1:0"] = vgg.params["params"][name]["kernel"]
            g[f"{convert_weights.keras_name(name)}_b_1:0"] = vgg.params["params"][name]["bias"]
    assert convert_weights.main(["--keras-h5", str(path), "--output", str(tmp_path / "k.npz")]) == 0
    back = load_vgg19(tmp_path / "k.npz")
    np.testing.assert_array_equal(back.params["params"]["conv3_2"]["kernel"], vgg.params["params"]["conv3_2"]["kernel"])


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (the convert extra)")
def test_legacy_pickle_reader_matches_torch_load(tmp_path):
    import torch

    state = {
        "a_W_q": torch.arange(24, dtype=torch.uint8).reshape(2, 3, 2, 2),
        "a_W_table": torch.linspace(-1, 1, 256),
        "b": torch.randn(4, 5).t(),  # non-contiguous strides
    }
    path = tmp_path / "legacy.bin"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    got = convert_weights.read_legacy_torch_pickle(path.read_bytes())
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)


def _torch_reference():
    with np.load(TORCH_REFERENCE) as npz:
        return {k: npz[k] for k in npz.files} | {"meta": json.loads(str(npz["meta"]))}


def _reference_errors(ref, feats):
    """Per layer: max |sampled nst_jax - torch| / torch max |value|, the same for the map's max |value| and mean."""
    errors = {}
    for i, name in enumerate(ref["meta"]["layers"]):
        got = np.asarray(feats[name], np.float64)
        assert list(got.shape) == ref["meta"]["shapes"][name], name
        scale = ref["max_abs"][i]
        errors[name] = (np.abs(got.reshape(-1)[ref["index"][i]] - ref["value"][i]).max() / scale,
                        abs(np.abs(got).max() - scale) / scale, abs(got.mean() - ref["mean"][i]) / scale)
    return errors


def test_features_match_committed_torch_reference(vgg):
    """nst_jax's features agree with values a float64 PyTorch forward pass computed once (no torch needed).

    tests/data/torch_reference.npz comes from `python scripts/make_torch_reference.py` (the
    crosscheck extra); rerun it when the shipped weights change.
    """
    ref = _torch_reference()
    meta = ref["meta"]
    assert meta["weights_sha256"] == vgg.sha256, (
        f"{TORCH_REFERENCE.name} was made for weights {meta['weights_sha256'][:12]}..., the shipped ones are "
        f"{vgg.sha256[:12]}...: rerun `{meta['command']}` (pip install -e '.[crosscheck]')")
    image = meta["image"]
    rgb = smooth_image(image["h"], image["w"], seed=image["seed"])
    assert make_torch_reference.image_sha256(rgb) == image["sha256"], "tests/conftest.py smooth_image changed"
    assert tuple(meta["layers"]) == make_torch_reference.LAYERS
    feats = jax.jit(lambda v, im: extract_features(v, im, layers=tuple(meta["layers"])))(vgg, rgb)
    for name, (samples, max_abs, mean) in _reference_errors(ref, feats).items():
        assert samples < TORCH_REFERENCE_RTOL, (name, samples)
        assert max_abs < TORCH_REFERENCE_RTOL and mean < TORCH_REFERENCE_RTOL, (name, max_abs, mean)


def test_torch_reference_script_needs_torch(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") -> None, as when it is not installed
    assert make_torch_reference.main(["--output", str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crosscheck" in err[0], err
    assert not (tmp_path / "r.npz").exists()


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (the crosscheck extra)")
def test_torch_reference_is_reproducible(vgg):
    """The committed fixture is what scripts/make_torch_reference.py computes with this torch."""
    ref = _torch_reference()
    feats = make_torch_reference.torch_features(vgg, smooth_image(48, 40, seed=5))
    for i, name in enumerate(ref["meta"]["layers"]):
        np.testing.assert_allclose(feats[name].reshape(-1)[ref["index"][i]], ref["value"][i], rtol=1e-6,
                                   atol=1e-6 * ref["max_abs"][i], err_msg=name)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (the crosscheck extra)")
def test_relu4_2_matches_pytorch(vgg):
    """Features from an independent PyTorch forward pass of the same weights (NCHW, OIHW)."""
    import torch
    import torch.nn.functional as F

    rgb = smooth_image(48, 40, seed=5)
    x = torch.from_numpy(rgb[..., ::-1].copy() * 255.0 - np.array([103.939, 116.779, 123.68], np.float32))
    x = x.permute(2, 0, 1)[None].double()
    for name, _, _ in CONV_LAYERS[:10]:  # up to conv4_2
        if name.endswith("_1") and name != "conv1_1":
            x = F.max_pool2d(x, 2)
        k = torch.from_numpy(np.asarray(vgg.params["params"][name]["kernel"])).permute(3, 2, 0, 1).double()
        b = torch.from_numpy(np.asarray(vgg.params["params"][name]["bias"])).double()
        x = F.relu(F.conv2d(x, k, b, padding=1))
    ref = x[0].permute(1, 2, 0).numpy()
    got = jax.jit(lambda v, im: extract_features(v, im, layers=("relu4_2",)))(vgg, rgb)
    got = np.asarray(got["relu4_2"], np.float64)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    assert rel < 1e-3, rel
