"""The typed public surface: Literal choice fields, mypy over the library guide's code, and no
process-wide side effects of the image functions (Pillow's MAX_IMAGE_PIXELS)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import typing
import zlib

import numpy as np
import pytest
from PIL import Image

import nst_jax
from nst_jax import config as config_mod
from nst_jax.errors import NSTError

from .doc_blocks import typed_source

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAS_MYPY = importlib.util.find_spec("mypy") is not None
PYRIGHT = shutil.which("pyright") or shutil.which("basedpyright")


# Each snippet mypy checks, as a module of its own (no snippet imports another, so each file's errors are its
# own). The misspelt choice is on line 11 of MISSPELT_CHOICE, the misspelt input range on line 18 of RESEARCH_SCRIPT.
MISSPELT_CHOICE = '''
import numpy as np
import nst_jax

vgg = nst_jax.load_vgg19()
photo = nst_jax.load_image("photo.png", 64)
feats = nst_jax.extract_features(vgg, photo, layers=("relu1_1",))
grams = nst_jax.gram_matrix(np.zeros((4, 4, 8), np.float32), normalize=True)
value = nst_jax.perceptual_loss(vgg, photo, photo)
ok = nst_jax.StylizeConfig(pooling="avg", precision="bf16", init="noise", preserve_colour="luminance")
bad = nst_jax.StylizeConfig(pooling="maxx")
'''

# A research script: JAX arrays where images go, the weights' convention into the module, an optax optimiser,
# traced weights, half-precision images, input ranges; its line 18 passes a misspelt input range.
RESEARCH_SCRIPT = '''
import jax
import jax.numpy as jnp
import numpy as np
import optax
import nst_jax
from nst_jax.flax_linen import init_with_vgg
vgg = nst_jax.load_vgg19()
photo = nst_jax.load_image("photo.png", 64)
model = nst_jax.VGG19(outputs=("relu1_1",), convention=vgg.convention)
result = nst_jax.stylize_multiscale(vgg, content=jnp.asarray(photo), style=photo, sizes=[32, 64])
config = nst_jax.StylizeConfig(optimizer=optax.adam(0.01))
weights = jax.vmap(lambda b: nst_jax.make_weights(config, style_weight=b))(jnp.ones(3))
w2 = nst_jax.make_weights(config, style_weight=np.float32(2.0), content_layer_weights=jnp.ones(1))
feats = nst_jax.extract_features(vgg, photo.astype(jnp.bfloat16), layers=("relu1_1",), input_range="0-255")
loss = nst_jax.perceptual_loss(vgg, photo, photo, input_range="-1-1", range_check="checkify")
variables = init_with_vgg(model, jax.random.key(0), photo, vgg=vgg)
bad = nst_jax.extract_features(vgg, photo, layers=("relu1_1",), input_range="0-2")
'''


def run_mypy(sources: dict[str, str], tmp_path: pathlib.Path) -> dict[str, list[str]]:
    """One mypy run over ``sources`` (file name -> code), each written to a file of its own: the error lines of
    each file. One run, not one per snippet: mypy spends its time reading jax's, numpy's and nst_jax's types
    (--no-incremental), which the snippets share; a snippet's errors are reported against its own file."""
    for name, source in sources.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    # Modest: nst_jax's own annotations are followed (follow-imports=silent reports errors in the snippets
    # only); numpy/jax/flax are read from their stubs and inline types, without --strict.
    cmd = [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
           "--cache-dir", str(tmp_path / ".mypy_cache"), "--python-version", "3.10", *sources]
    env = {"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    output = result.stdout + result.stderr
    # mypy exits 1 when it found errors and 2 when it could not check (a crash, a bad option): only the former
    # may stand, and its summary must say it checked every file.
    assert result.returncode in (0, 1), output
    assert re.search(rf"\b(checked|in) {len(sources)} source files?\b", output), output
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    by_file = {name: [e for e in errors if e.startswith(f"{name}:")] for name in sources}
    assert sum(map(len, by_file.values())) == len(errors), output  # no error outside the snippets
    return by_file


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory) -> dict[str, list[str]]:
    """The error lines of each of this module's snippets, from one mypy run."""
    if not HAS_MYPY:
        pytest.skip("mypy not installed (pip install -e .[test])")
    return run_mypy({"guide_blocks.py": typed_source(), "misspelt_choice.py": MISSPELT_CHOICE,
                     "research_script.py": RESEARCH_SCRIPT}, tmp_path_factory.mktemp("mypy"))


def test_library_guide_blocks_type_check(mypy_errors):
    """The Python blocks of docs/guide/library.md and docs/guide/sweeps.md (tests/doc_blocks.py)."""
    assert mypy_errors["guide_blocks.py"] == []


def test_mypy_catches_a_misspelt_choice_and_takes_numpy_images(mypy_errors):
    errors = mypy_errors["misspelt_choice.py"]
    assert len(errors) == 1 and "misspelt_choice.py:11:" in errors[0] and "pooling" in errors[0], errors


def test_mypy_accepts_a_research_script_and_catches_a_wrong_range(mypy_errors):
    """JAX arrays where images go, the weights' convention into the module, an optax optimiser, traced
    weights, half-precision images, input ranges: no error from the library's annotations."""
    errors = mypy_errors["research_script.py"]
    assert len(errors) == 1 and "research_script.py:18:" in errors[0] and "input_range" in errors[0], errors


def test_choice_fields_are_literals_of_the_checked_choices():
    cases = {
        config_mod.LossConfig: {"mode": config_mod.MODES, "pooling": nst_jax._src.vgg.POOLINGS,
                                "precision": nst_jax._src.vgg.PRECISIONS, "loss_units": config_mod.LOSS_UNITS},
        config_mod.StylizeConfig: {"init": config_mod.INITS, "preserve_colour": config_mod.COLOURS},
    }
    for cls, fields in cases.items():
        hints = typing.get_type_hints(cls)
        for name, choices in fields.items():
            args = [a for a in typing.get_args(hints[name]) if a is not type(None)]
            if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal:  # Optional[Literal[...]]
                args = list(typing.get_args(args[0]))
            assert tuple(args) == tuple(choices), (cls.__name__, name, args)
        # Registry names stay str: checked at run time against the registries.
        assert hints["style_loss"] is str
    # A registry name or any optax transformation (nst_jax._src.optimizers.resolve), typed structurally
    # because optax ships no type information; that optax's transformations type-check against it is
    # the research script's mypy test (StylizeConfig(optimizer=optax.adam(...))).
    assert typing.get_type_hints(config_mod.StylizeConfig)["optimizer"] == str | config_mod.Transformation


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (the pixel data is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_load_image_leaves_pillows_pixel_limit_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(np.full((40, 48, 3), 100, np.uint8)).save(tmp_path / "ok.png")
    assert nst_jax.load_image(tmp_path / "ok.png").shape == (40, 48, 3)
    assert Image.MAX_IMAGE_PIXELS == before
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20000, 20000))  # 400 M pixels, over both limits
    with pytest.raises(NSTError, match="too large"):
        nst_jax.load_image(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == before


def test_our_cap_holds_even_when_pillows_limit_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    (tmp_path / "big.png").write_bytes(_png_header_only(15000, 15000))  # 225 M > MAX_INPUT_PIXELS
    with pytest.raises(NSTError, match="too large"):
        nst_jax.load_image(tmp_path / "big.png")
    assert Image.MAX_IMAGE_PIXELS is None


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def linear_rgb_profile() -> bytes:
    """An ICC v2 RGB profile with sRGB's primaries and a linear (gamma 1) tone curve, written by hand."""
    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + _s15f16(x) + _s15f16(y) + _s15f16(z)
    text = b"linear RGB (sRGB primaries)\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", 0x0100) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + _s15f16(0.9642) + _s15f16(1.0) + _s15f16(0.8249)
              + b"\0" * 48)
    assert len(header) == 128
    return header + table + data


def test_icc_profile_converted_to_srgb_and_outputs_tagged(tmp_path):
    from PIL import ImageCms

    pixels = np.full((40, 40, 3), 128, np.uint8)
    Image.fromarray(pixels).save(tmp_path / "linear.png", icc_profile=linear_rgb_profile())
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    # Linear 0.502 is sRGB-encoded 0.735: the profile was applied.
    np.testing.assert_allclose(nst_jax.load_image(tmp_path / "linear.png"), 0.735, atol=0.01)
    np.testing.assert_allclose(nst_jax.load_image(tmp_path / "plain.png"), 128 / 255, atol=1e-6)
    nst_jax.save_image(tmp_path / "out.png", np.full((40, 40, 3), 0.5, np.float32))
    with Image.open(tmp_path / "out.png") as im:
        profile = ImageCms.ImageCmsProfile(__import__("io").BytesIO(im.info["icc_profile"]))
    assert "srgb" in profile.profile.profile_description.lower()
    # An sRGB-tagged file reads back unchanged.
    np.testing.assert_allclose(nst_jax.load_image(tmp_path / "out.png"), 128 / 255, atol=1e-6)


@pytest.mark.skipif(shutil.which("basedpyright") is None and not (pathlib.Path(sys.executable).parent / "basedpyright")
                    .exists(), reason="basedpyright not installed (pip install basedpyright)")
def test_type_completeness_score():
    """``pyright --verifytypes nst_jax`` (basedpyright's, which bundles Node.js): at least 95 %."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "type_completeness.py")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    score = float(re.search(r"type completeness score: ([\d.]+)%", result.stdout).group(1))
    assert score >= 95.0, result.stdout


@pytest.mark.slow
@pytest.mark.skipif(PYRIGHT is None, reason="pyright not installed (pip install 'pyright[nodejs]' or basedpyright)")
def test_pyright_accepts_a_research_script_and_catches_a_wrong_range(tmp_path):
    """The mypy test's script under pyright's default (basic) checking, with this checkout's nst_jax first on
    its path: one error, the misspelt input range, and none caused by the library's annotations."""
    (tmp_path / "snippet.py").write_text(RESEARCH_SCRIPT, encoding="utf-8")
    (tmp_path / "pyrightconfig.json").write_text(json.dumps({"extraPaths": [str(ROOT)], "pythonVersion": "3.10"}))
    result = subprocess.run([PYRIGHT, "--pythonpath", sys.executable, "--outputjson", "snippet.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    errors = [d for d in json.loads(result.stdout)["generalDiagnostics"] if d["severity"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["range"]["start"]["line"] + 1 == 18 and "input_range" in errors[0]["message"], errors
