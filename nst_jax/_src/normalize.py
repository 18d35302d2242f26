"""Normalised VGG-19 (Gatys et al. 2016, section 2): every filter's mean activation is 1.

Each conv layer's filters are rescaled so the mean of every ReLU output channel, over a set of
calibration images and all positions, is 1; the next layer's input weights are scaled back so
the network computes the same function up to those per-channel scales. Because ReLU, max and
average pooling commute with positive per-channel scaling, all the means can be measured in
one pass of the original network: with ``m_l[c]`` the mean of ``relu_l`` channel ``c``
(``m_0 = 1`` for the input),

    kernel'_l[:, :, i, o] = kernel_l[:, :, i, o] · m_{l-1}[i] / m_l[o],   bias'_l[o] = bias_l[o] / m_l[o],

so ``relu'_l = relu_l / m_l`` channel by channel (and ``conv'_l = conv_l / m_l``). Channels that
never fire on the calibration set (``m = 0``) keep the scale 1.

Only the per-channel means are stored (``weights/vgg19_normalization.npz``, ~22 KB with its
``.sha256`` sidecar) and applied at load time: a second full weights file would add 20 MB for
5504 numbers. ``scripts/normalize_weights.py`` regenerates it from a folder of images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np

from nst_jax._src.vgg import CONV_LAYERS, VGGParams, check_vgg, extract_features
from nst_jax._src.vgg_io import save_npz_with_digest, sha256_of, shipped_file
from nst_jax.errors import NSTError

DEFAULT_SCALES = shipped_file("vgg19_normalization.npz")
RELUS = tuple("relu" + name[len("conv"):] for name, _, _ in CONV_LAYERS)


def channel_means(vgg: VGGParams, images: Iterable[np.ndarray], pooling: str = "max") -> dict[str, np.ndarray]:
    """Mean of every ReLU channel of every conv layer over images and positions.

    Each image counts in proportion to its number of positions at each layer (the mean is over
    all positions of all images together).

    Args:
        vgg: The original weights.
        images: ``[H, W, 3]`` RGB in [0, 1] each.
        pooling: The pooling the means are measured with.

    Returns:
        ``{"conv1_1": [64], ...}`` float64 means of ``relu1_1`` etc.
    """
    sums = {name: 0.0 for name, _, _ in CONV_LAYERS}
    counts = {name: 0 for name, _, _ in CONV_LAYERS}
    for image in images:
        feats = extract_features(vgg, jnp.asarray(image, jnp.float32), layers=RELUS, pooling=pooling)
        for (name, _, _), relu in zip(CONV_LAYERS, RELUS, strict=True):
            f = np.asarray(feats[relu], np.float64)
            sums[name] = sums[name] + f.sum(axis=(0, 1))
            counts[name] += f.shape[0] * f.shape[1]
    if not counts["conv1_1"]:
        raise NSTError("no calibration images given")
    return {name: sums[name] / counts[name] for name in sums}


def normalized_params(params: dict[str, Any], means: dict[str, np.ndarray]) -> dict[str, Any]:
    """The params of the normalised network (see the module docstring); ``params`` is not modified."""
    out, previous = {}, np.ones(3)
    for name, _, _ in CONV_LAYERS:
        m = np.asarray(means[name], np.float64)
        scale = np.where(m > 0, m, 1.0)
        kernel = np.asarray(params["params"][name]["kernel"], np.float64)
        bias = np.asarray(params["params"][name]["bias"], np.float64)
        out[name] = {"kernel": (kernel * previous[:, None] / scale).astype(np.float32),
                     "bias": (bias / scale).astype(np.float32)}
        previous = scale
    return {"params": out}


def save_scales(path: str | os.PathLike[str], means: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """Writes the per-channel means (float32) and ``meta`` (JSON) plus a ``.sha256`` sidecar; returns the digest."""
    payload = {name: np.asarray(means[name], np.float32) for name, _, _ in CONV_LAYERS}
    payload["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return save_npz_with_digest(path, payload)


def load_scales(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Reads a means file (checked against its sidecar and the layer shapes): ``(means, meta, sha256)``.

    Raises:
        NSTError: If missing, corrupt or misshapen.
    """
    path = pathlib.Path(path) if path is not None else DEFAULT_SCALES
    hint = "regenerate it with scripts/normalize_weights.py"
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        raise NSTError(f"normalisation file {path} or its .sha256 not found; {hint}")
    digest = sha256_of(path)
    if sidecar.read_text().split()[:1] != [digest]:
        raise NSTError(f"normalisation file {path} does not match its sha256 (corrupt?); {hint}")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    for name, _, c_out in CONV_LAYERS:
        if arrays.get(name) is None or arrays[name].shape != (c_out,) or not np.isfinite(arrays[name]).all():
            raise NSTError(f"normalisation file {path}: {name} missing or not [{c_out}] finite values; {hint}")
    return {name: arrays[name] for name, _, _ in CONV_LAYERS}, meta, digest


def normalize_vgg19(vgg: VGGParams, path: str | os.PathLike[str] | None = None) -> VGGParams:
    """The VGG-19 rescaled so that every ReLU channel has mean 1 over the calibration images (Gatys et
    al.'s normalised network): the same features up to a positive scale per channel.

    Args:
        vgg: Parameters from :func:`nst_jax.load_vgg19` (not modified).
        path: The stored per-channel means; the shipped ones if None.

    Returns:
        The rescaled parameters; their ``sha256`` combines both files' digests, so run records
        tell the two networks apart.

    Raises:
        NSTError: If ``vgg`` is not a VGGParams, or the means file or its sidecar is missing, corrupt
            or misshapen.
    """
    vgg = check_vgg(vgg)
    means, meta, digest = load_scales(path)
    combined = hashlib.sha256(f"{vgg.sha256}+{digest}".encode()).hexdigest()
    return dataclasses.replace(vgg, params=normalized_params(vgg.params, means), sha256=combined,
                               meta_json=json.dumps({**vgg.meta, "normalization": meta}, sort_keys=True))
