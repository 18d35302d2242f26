"""Writes tests/data/torch_reference.npz: VGG-19 features from an independent PyTorch forward pass.

  pip install -e '.[crosscheck]'
  python scripts/make_torch_reference.py

Needs PyTorch (the `crosscheck` extra); the tests that read the fixture do not. The shipped weights
run in float64 through torch.nn.functional (NCHW input, OIHW kernels, conv2d padding=1, relu,
max_pool2d(2)) on the test image smooth_image(48, 40, seed=5) of tests/conftest.py (re-implemented
here identically; the fixture records the image's sha256 so a drift shows). For each layer of
LAYERS the file keeps, as float32, the values at 96 fixed flat positions of the [H, W, C] map (64
drawn among the positive entries, 32 among all, with numpy default_rng(0); stored as int32), and,
in float64, the map's max |value| (the scale of the tests' relative tolerance) and its mean. The
metadata (a JSON string) records the torch version, the weights' sha256, the image and this command.
Rerun it whenever the shipped weights change: tests/test_weights.py fails on a sha256 mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "torch_reference.npz"
COMMAND = "python scripts/make_torch_reference.py"
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
IMAGE = {"function": "tests.conftest.smooth_image", "h": 48, "w": 40, "seed": 5}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
N_POSITIVE, N_ANY = 64, 32


def smooth_image(h, w, seed=0):
    """Identical to tests/conftest.py's smooth_image: a deterministic smooth RGB image in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform()))
                for _ in range(3)]
    return np.stack(channels, -1).astype(np.float32)


def image_sha256(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb, np.float32).tobytes()).hexdigest()


def pick_positions(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct flat positions: N_POSITIVE where ``ref > 0``, N_ANY others anywhere."""
    flat = ref.reshape(-1)
    positive = rng.choice(np.flatnonzero(flat > 0), N_POSITIVE, replace=False)
    rest = np.setdiff1d(np.arange(flat.size), positive)
    return np.sort(np.concatenate([positive, rng.choice(rest, N_ANY, replace=False)])).astype(np.int32)


def torch_features(vgg, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """``{layer: [H, W, C] float64}`` for LAYERS, computed with torch.nn.functional in float64."""
    import torch
    import torch.nn.functional as F

    from nst_jax._src.vgg import CONV_LAYERS

    bgr = rgb.astype(np.float64)[..., ::-1] * 255.0 - np.array(CAFFE_MEAN_BGR, np.float64)
    x = torch.from_numpy(bgr.copy()).permute(2, 0, 1)[None]  # NCHW
    out = {}
    for name, _, _ in CONV_LAYERS:
        if name.endswith("_1") and name != "conv1_1":
            x = F.max_pool2d(x, 2)
        kernel = np.asarray(vgg.params["params"][name]["kernel"], np.float64)  # HWIO
        bias = np.asarray(vgg.params["params"][name]["bias"], np.float64)
        x = F.relu(F.conv2d(x, torch.from_numpy(kernel).permute(3, 2, 0, 1), torch.from_numpy(bias), padding=1))
        relu = "relu" + name[len("conv"):]
        if relu in LAYERS:
            out[relu] = x[0].permute(1, 2, 0).numpy().copy()
        if len(out) == len(LAYERS):
            return out
    raise AssertionError(f"layers not reached: {sorted(set(LAYERS) - set(out))}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=str(FIXTURE), help="where to write the fixture")
    args = p.parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        print("make_torch_reference.py needs PyTorch: pip install -e '.[crosscheck]'", file=sys.stderr)
        return 2
    import torch

    from nst_jax._src.vgg_io import load_vgg19

    torch.set_num_threads(min(2, torch.get_num_threads()))
    vgg = load_vgg19()
    if vgg.convention != "caffe":
        print(f"make_torch_reference.py expects Caffe-convention weights, got {vgg.convention!r}", file=sys.stderr)
        return 2
    rgb = smooth_image(IMAGE["h"], IMAGE["w"], IMAGE["seed"])
    feats = torch_features(vgg, rgb)
    rng = np.random.default_rng(0)
    index = np.stack([pick_positions(feats[name], rng) for name in LAYERS])
    value = np.stack([feats[name].reshape(-1)[i] for name, i in zip(LAYERS, index, strict=True)]).astype(np.float32)
    max_abs = np.array([np.abs(feats[name]).max() for name in LAYERS], np.float64)
    mean = np.array([feats[name].mean() for name in LAYERS], np.float64)
    command = COMMAND if args.output == str(FIXTURE) else f"{COMMAND} --output {args.output}"
    meta = {
        "layers": list(LAYERS),
        "shapes": {name: list(feats[name].shape) for name in LAYERS},
        "image": dict(IMAGE, sha256=image_sha256(rgb)),
        "weights_sha256": vgg.sha256,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "forward": "float64 torch.nn.functional: NCHW, OIHW kernels, conv2d(padding=1), relu, max_pool2d(2); "
                   "input RGB[..., ::-1] * 255 - (103.939, 116.779, 123.68)",
        "sampling": f"per layer, sorted flat [H, W, C] positions: {N_POSITIVE} among entries > 0 then {N_ANY} "
                    "among the rest, numpy default_rng(0) shared across layers in order",
        "command": command,
    }
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta, sort_keys=True)), index=index, value=value,
                            max_abs=max_abs, mean=mean)
    print(f"wrote {out} ({out.stat().st_size} bytes): {', '.join(LAYERS)} with torch {torch.__version__}, "
          f"weights sha256 {vgg.sha256[:12]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
