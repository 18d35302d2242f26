"""VGG-19 parameter files: the on-disk format, loading, checking and decoding.

A weights file is an ``.npz`` archive with, for each of the 16 conv layers
``conv1_1`` ... ``conv5_4``:

* ``<layer>/bias``: float32 ``[C_out]``;
* either ``<layer>/kernel``: float32 ``[3, 3, C_in, C_out]`` (HWIO), or
  ``<layer>/codes``: uint8 ``[3, 3, C_in, C_out]`` with ``<layer>/table``:
  float32 ``[256]``, the kernel being ``table[codes]`` (a 256-level
  per-layer quantisation, stored losslessly with respect to its source);

and ``meta``: a JSON string with at least ``convention`` (see
:data:`CONVENTIONS`) and ``source``.

Every weights file has a sidecar ``<file>.sha256`` holding its hex digest;
:func:`load_vgg19` refuses a file whose digest or shapes do not match.
Kernels are cross-correlation kernels (as ``lax.conv_general_dilated`` and
Keras/TensorFlow use them), never flipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile
from typing import Any

import numpy as np

from nst_jax._src.atomic import atomic_open
from nst_jax._src.vgg import CONV_LAYERS, CONVENTIONS, VGGParams
from nst_jax.errors import NSTError


def shipped_file(name: str) -> pathlib.Path:
    """Where a file shipped in the repository's top-level ``weights/`` folder lies.

    An installed package carries them in ``nst_jax/_weights`` (the wheel maps ``weights/``
    there, see ``pyproject.toml``); a source checkout or an editable install reads them from
    ``weights/`` beside the package.
    """
    here = pathlib.Path(__file__).resolve().parents[1]  # nst_jax/, this file being nst_jax/_src/vgg_io.py
    for folder in (here / "_weights", here.parent / "weights"):
        if (folder / name).is_file():
            return folder / name
    return here / "_weights" / name


DEFAULT_VGG_FILE = shipped_file("vgg19.npz")

REGENERATE_HINT = "regenerate it with scripts/convert_weights.py (see weights/README.md)"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Returns the hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_vgg19(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """Writes a weights file and its ``.sha256`` sidecar atomically.

    Args:
        path: Destination ``.npz``.
        arrays: ``<layer>/bias`` plus ``<layer>/kernel`` or ``<layer>/codes`` and
            ``<layer>/table`` for every layer of :data:`CONV_LAYERS`.
        meta: Metadata; must contain ``convention`` and ``source``.

    Returns:
        The file's sha256 hex digest.
    """
    if meta.get("convention") not in CONVENTIONS:
        raise NSTError(f"weights convention must be one of {CONVENTIONS}, got {meta.get('convention')!r}")
    _check_arrays(arrays, str(path))
    payload = {k: arrays[k] for k in sorted(arrays)}
    payload["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return save_npz_with_digest(path, payload)


def save_npz_with_digest(path: str | os.PathLike[str], payload: dict[str, np.ndarray]) -> str:
    """Writes ``payload`` as an ``.npz`` and its ``.sha256`` sidecar (``"<digest>  <name>"``, what the
    loaders check), each atomically (:func:`nst_jax._src.atomic.atomic_open`); returns the sha256 hex digest."""
    path = pathlib.Path(path)
    with atomic_open(path) as f:
        np.savez(f, **payload)
    digest = sha256_of(path)
    with atomic_open(path.with_name(path.name + ".sha256")) as f:
        f.write(f"{digest}  {path.name}\n".encode())
    return digest


def load_vgg19(path: str | os.PathLike[str] | None = None) -> VGGParams:
    """Loads, checks and decodes a VGG-19 parameter file.

    Args:
        path: The ``.npz`` file; the shipped ImageNet VGG-19 (``weights/vgg19.npz``) if None.

    Returns:
        The parameters with their input convention and the file's sha256.

    Raises:
        NSTError: If the file or its sidecar is missing, the digest differs,
            the archive is unreadable, an array is missing or misshapen, or a
            value is not finite.
    """
    path = pathlib.Path(path) if path is not None else DEFAULT_VGG_FILE
    if not path.is_file():
        raise NSTError(f"weights file {path} not found; {REGENERATE_HINT}")
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        raise NSTError(f"weights checksum file {sidecar} not found; {REGENERATE_HINT}")
    expected = sidecar.read_text().split()[0].lower() if sidecar.read_text().split() else ""
    actual = sha256_of(path)
    if actual != expected:
        raise NSTError(
            f"weights file {path} has sha256 {actual[:12]}..., expected {expected[:12]}... "
            f"(corrupt or truncated); {REGENERATE_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise NSTError(f"weights file {path} is unreadable ({err}); {REGENERATE_HINT}") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise NSTError(f"weights file {path} has no valid 'meta' entry; {REGENERATE_HINT}") from None
    convention = meta.get("convention")
    if convention not in CONVENTIONS:
        raise NSTError(f"weights file {path} declares unknown convention {convention!r}; {REGENERATE_HINT}")
    _check_arrays(arrays, str(path))
    params = {}
    for name, _, _ in CONV_LAYERS:
        if f"{name}/kernel" in arrays:
            kernel = arrays[f"{name}/kernel"].astype(np.float32)
        else:
            kernel = arrays[f"{name}/table"].astype(np.float32)[arrays[f"{name}/codes"]]
        bias = arrays[f"{name}/bias"].astype(np.float32)
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise NSTError(f"weights file {path}: layer {name} holds NaN or Inf values; {REGENERATE_HINT}")
        params[name] = {"kernel": kernel, "bias": bias}
    return VGGParams({"params": params}, convention=convention, sha256=actual,
                     meta_json=json.dumps(meta, sort_keys=True))


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raises NSTError unless `arrays` holds every layer with the right shapes and dtypes."""
    for name, c_in, c_out in CONV_LAYERS:
        shape = (3, 3, c_in, c_out)
        if f"{name}/kernel" in arrays:
            _expect(arrays, f"{name}/kernel", shape, np.floating, where)
        elif f"{name}/codes" in arrays:
            _expect(arrays, f"{name}/codes", shape, np.uint8, where)
            _expect(arrays, f"{name}/table", (256,), np.floating, where)
        else:
            raise NSTError(f"weights file {where}: layer {name} has no kernel; {REGENERATE_HINT}")
        _expect(arrays, f"{name}/bias", (c_out,), np.floating, where)


def _expect(arrays, key, shape, dtype, where) -> None:
    if key not in arrays:
        raise NSTError(f"weights file {where}: missing {key}; {REGENERATE_HINT}")
    arr = arrays[key]
    if tuple(arr.shape) != shape or not np.issubdtype(arr.dtype, dtype):
        raise NSTError(
            f"weights file {where}: {key} has shape {tuple(arr.shape)} {arr.dtype}, "
            f"expected {shape}; {REGENERATE_HINT}")
