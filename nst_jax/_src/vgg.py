"""VGG-19 feature extractor (Flax) and the input convention of its weights.

Two implementations of the network's two non-elementwise operations, with the same values,
both differentiable in every mode (``jax.grad``, ``jax.jvp``, ``jax.linearize``, ``jax.hessian``)
at the default ``precision="fp32"``:

* ``"fast"`` (the default): the 3x3 convolution and the 2x2 max pooling carry custom JVPs with
  linear tangents, laid out so that JAX's transpose of them (reverse mode) is what XLA:CPU runs
  3x and 8x faster inside an optimisation loop than autodiff of the plain ops. With
  ``precision="bf16"`` the convolution keeps a custom VJP instead (reverse mode only; see
  :func:`conv3x3`): forward mode through bf16 convolutions needs ``"stock"``.
* ``"stock"``: plain ``lax`` convolution and a reduction over the pooling windows, JAX's own
  derivatives (a reference; slower in reverse mode).

Choose per call (``extract_features(..., autodiff="stock")``, ``VGG19(..., autodiff="stock")``)
or for a block of code (``with nst_jax._src.vgg.autodiff_mode("stock"): ...``). The choice is read
when a function is traced: a function ``jax.jit`` compiled already keeps the implementation it
was traced with, so put the ``with`` around the first call (or pass the argument).

Layer names follow the Gatys et al. paper: ``conv<b>_<i>`` is a convolution's
output before its ReLU, ``relu<b>_<i>`` after it, ``pool<b>`` the pooling at
the end of block ``b``. The paper's "conv4_2" etc. were Caffe blobs whose ReLU
ran in place, so they correspond to ``relu4_2`` here, which is what the
defaults use (:data:`DEFAULT_CONTENT_LAYERS`, :data:`DEFAULT_STYLE_LAYERS`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from nst_jax._src import checks
from nst_jax.errors import NSTError

# (name, C_in, C_out) of every conv layer, in network order.
CONV_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
)

# Input conventions a parameter file can declare. Callers always hand the network RGB in [0, 1];
# `preprocess` applies the convention.
#   caffe: BGR, 0-255, minus the ImageNet mean pixel (Keras/Caffe VGG-19).
#   torch: RGB, 0-1, minus mean and divided by std (torchvision VGG-19).
Convention = Literal["caffe", "torch"]
ModuleConvention = Literal["caffe", "torch", "preprocessed"]
CONVENTIONS: tuple[Convention, ...] = ("caffe", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

_CHANNELS = {name: c_out for name, _, c_out in CONV_LAYERS}


def _layer_names() -> tuple[str, ...]:
    names = []
    for block in range(1, 6):
        convs = sorted(n for n in _CHANNELS if n.startswith(f"conv{block}_"))
        for conv in convs:
            names += [conv, "relu" + conv[len("conv"):]]
        names.append(f"pool{block}")
    return tuple(names)


# Every layer the network can return, in order.
LAYERS: tuple[str, ...] = _layer_names()
POOLINGS = ("max", "avg")

# The paper's layers, the library's defaults everywhere (LossConfig, perceptual_loss, the metrics' VGG-19
# ratios): content at conv4_2 and style at conv1_1 ... conv5_1, after their ReLUs.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

Autodiff = Literal["fast", "stock"]
AUTODIFF_MODES: tuple[str, ...] = ("fast", "stock")
_AUTODIFF: contextvars.ContextVar[str] = contextvars.ContextVar("nst_jax_autodiff", default="fast")


def _check_autodiff(mode: str) -> str:
    if mode not in AUTODIFF_MODES:
        raise NSTError(f"unknown autodiff mode {mode!r} (choose from {', '.join(AUTODIFF_MODES)})")
    return mode


def current_autodiff() -> str:
    """The autodiff mode in effect: ``"fast"`` unless inside :func:`autodiff_mode`.

    Returns:
        ``"fast"`` or ``"stock"``.
    """
    return _AUTODIFF.get()


def resolve_autodiff(mode: str | None) -> str:
    """``mode``, or the one in effect (:func:`current_autodiff`) for None.

    Args:
        mode: ``"fast"``, ``"stock"`` or None.

    Returns:
        ``"fast"`` or ``"stock"``.

    Raises:
        NSTError: For another name.
    """
    return _check_autodiff(current_autodiff() if mode is None else mode)


@contextlib.contextmanager
def autodiff_mode(mode: Autodiff) -> Iterator[None]:
    """Within the block, VGG features use ``mode``'s implementation (where no call names one).

    ``"stock"`` uses plain ``lax`` ops and JAX's own derivatives; ``"fast"`` (the default outside
    any block) custom JVPs whose reverse mode is faster. Both work in every mode of autodiff. Read at
    trace time: see the module's docstring. Thread- and task-local
    (a :class:`contextvars.ContextVar`).

    Args:
        mode: ``"fast"`` or ``"stock"``.

    Returns:
        A context manager.

    Raises:
        NSTError: For another name.
    """
    token = _AUTODIFF.set(_check_autodiff(mode))
    try:
        yield
    finally:
        _AUTODIFF.reset(token)


def layer_level(name: str) -> int:
    """Number of 2x2 poolings before layer ``name``: its map is ``floor(H / 2^k) x floor(W / 2^k)``."""
    return sum(1 for n in LAYERS[: LAYERS.index(name) + 1] if n.startswith("pool"))


def layer_channels(name: str) -> int:
    """Channels of layer ``name``'s map: those of the last convolution at or before it."""
    return _CHANNELS[[n for n in LAYERS[: LAYERS.index(name) + 1] if n.startswith("conv")][-1]]


def receptive_radius(layers: Sequence[str]) -> int:
    """One-sided receptive-field radius, in input pixels, of the deepest of ``layers``.

    Each 3x3 convolution widens the field by one position of its level (``jump`` input pixels)
    on each side; each 2x2 stride-2 pooling by at most one position, then doubles ``jump``.
    For ``conv5_1`` (or ``relu5_1``) this is 85.
    """
    deepest = max(LAYERS.index(name) for name in layers)
    radius, jump = 0, 1
    for name in LAYERS[: deepest + 1]:
        if name.startswith("conv"):
            radius += jump
        elif name.startswith("pool"):
            radius += jump
            jump *= 2
    return radius


def validity_masks(start: Sequence[ArrayLike], size: Sequence[int], extent: Sequence[ArrayLike],
                   levels: int) -> list[jax.Array]:
    """The ``level_masks`` of :class:`VGG19` for a window onto a larger image: the one rule for tiles
    (:mod:`nst_jax._src.tiled`) and for an output on a larger canvas (a shape bucket).

    The window's ``size = (h, w)`` pixels begin at pixel ``start = (y, x)`` of an image whose
    ``extent = (H, W)`` pixels are valid (``y``, ``x`` may be negative: a tile's halo above or left
    of the image). After ``k`` poolings the window holds ``h >> k`` rows from row ``y >> k`` (exact
    when ``y`` is a multiple of ``2^k``, as tiles and halos are), and the image's map
    ``H >> k`` rows, floored like VGG's pooling; the same for columns.

    Args:
        start: ``(y, x)``, Python or traced ints.
        size: ``(h, w)``, static ints.
        extent: ``(H, W)``, Python or traced ints (dynamic: one program serves every extent).
        levels: The deepest level ``k`` needed.

    Returns:
        ``levels + 1`` float32 masks ``[h >> k, w >> k]``, 1 where the position lies inside the
        image's map at level ``k``, 0 elsewhere.
    """
    masks = []
    for k in range(levels + 1):
        valid = []
        for axis in range(2):
            positions = jnp.right_shift(start[axis], k) + jnp.arange(int(size[axis]) >> k)
            valid.append((positions >= 0) & (positions < jnp.right_shift(extent[axis], k)))
        masks.append((valid[0][:, None] & valid[1][None, :]).astype(jnp.float32))
    return masks


def check_layers(layers: Sequence[str], what: str = "layers") -> tuple[str, ...]:
    """``layers`` as a tuple of known layer names.

    Raises:
        NSTError: For a bare string instead of a sequence, or naming the first unknown layer.
    """
    names = checks.layer_tuple(layers, what)
    for name in names:
        if name not in LAYERS:
            raise NSTError(f"unknown VGG-19 layer {name!r} (known: conv1_1..conv5_4, relu1_1..relu5_4, pool1..pool5)")
    return names


def check_fits(shape: Sequence[int], layers: Sequence[str], what: str = "image") -> None:
    """Refuses an ``(H, W, ...)`` image too small to leave one position at the deepest of ``layers``.

    After ``k`` 2x2 poolings a map is ``floor(H / 2^k) x floor(W / 2^k)``; a map with no
    position has no features, and a Gram matrix over it no meaning.
    """
    k = max((layer_level(name) for name in layers), default=0)
    h, w = int(shape[0]), int(shape[1])
    if min(h, w) >> k < 1:
        deepest = max(layers, key=LAYERS.index)
        raise NSTError(f"{what} of {w}x{h} px is too small for layer {deepest}: "
                       f"its {k} poolings need at least {2**k} px on each side")


def preprocess(rgb: ArrayLike, convention: str) -> jax.Array:
    """Maps an RGB image in [0, 1] to the network's input convention.

    :func:`extract_features` and :class:`VGG19` apply it themselves; call it only to feed
    ``VGG19(..., convention="preprocessed")``.

    Args:
        rgb: ``[..., 3]`` float RGB in [0, 1] (any leading axes).
        convention: ``"caffe"``: BGR, 0-255, the ImageNet mean pixel
            ``CAFFE_MEAN_BGR`` subtracted (Keras/Caffe VGG-19). ``"torch"``: RGB
            in [0, 1], ``(x - TORCH_MEAN_RGB) / TORCH_STD_RGB`` (torchvision). A
            :class:`VGGParams`' ``convention`` names its own.

    Returns:
        ``[..., 3]`` network input, of ``rgb``'s float dtype.

    Raises:
        NSTError: For an unknown convention.
    """
    checks.check_float(rgb, "preprocess's image")
    rgb = jnp.asarray(rgb)
    if convention == "caffe":
        return rgb[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, rgb.dtype)
    if convention == "torch":
        return (rgb - jnp.asarray(TORCH_MEAN_RGB, rgb.dtype)) / jnp.asarray(TORCH_STD_RGB, rgb.dtype)
    raise NSTError(f"unknown input convention {convention!r}")


PRECISIONS = ("fp32", "bf16")
# On the backends below, bf16 layers with at least this many input channels use the shifted-matmul form
# (measured on an AMX CPU: 1.4x at 64x64x256 and 4.7x at 32x32x512 over XLA's convolution; slower than
# XLA's convolution for fewer channels, where the shift-add dominates). Elsewhere (a GPU: cuDNN's bf16
# convolutions with float32 accumulation; a TPU) every bf16 layer is XLA's own convolution.
SHIFT_MATMUL_MIN_CHANNELS = 256
SHIFT_MATMUL_BACKENDS = ("cpu",)


def bf16_conv_form(channels: int, backend: str | None = None) -> str:
    """How a bf16 3x3 convolution with ``channels`` input channels is computed on ``backend``
    (JAX's default backend if None): ``"shifted_matmul"`` or ``"xla"``. Decided here only."""
    backend = jax.default_backend() if backend is None else backend
    shifted = backend in SHIFT_MATMUL_BACKENDS and channels >= SHIFT_MATMUL_MIN_CHANNELS
    return "shifted_matmul" if shifted else "xla"


def _shifted_matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 'same' convolution as one bf16 matmul against all nine taps, then nine shifted adds.

    ``y = pad(x) @ K`` with ``K: [C_in, 9 * C_out]`` gives every tap's response at every
    padded position; the output at ``(h, w)`` sums tap ``(dy, dx)`` read at ``(h + dy, w + dx)``.
    The matmul runs on bf16 inputs with float32 accumulation (AMX / tensor cores).
    """
    b, h, w, c = x.shape
    c_out = kernel.shape[-1]
    xp = jnp.pad(x.astype(jnp.bfloat16), ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = kernel.astype(jnp.bfloat16).transpose(2, 0, 1, 3).reshape(c, 9 * c_out)
    y = jnp.matmul(xp.reshape(-1, c), taps, preferred_element_type=jnp.float32).reshape(b, h + 2, w + 2, 9, c_out)
    return sum(y[:, dy:dy + h, dx:dx + w, 3 * dy + dx, :] for dy in range(3) for dx in range(3))


def _conv3x3(x: jax.Array, kernel: jax.Array, precision: str = "fp32") -> jax.Array:
    dims = ("NHWC", "HWIO", "NHWC")
    if precision == "fp32":
        return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)
    if bf16_conv_form(x.shape[-1]) == "shifted_matmul":
        return _shifted_matmul_conv(x, kernel)
    return lax.conv_general_dilated(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=dims, preferred_element_type=jnp.float32)


def conv3x3(x: jax.Array, kernel: jax.Array, precision: str = "fp32") -> jax.Array:
    """'Same' 3x3 stride-1 cross-correlation: ``[B, H, W, C_in] x [3, 3, C_in, C_out] -> [B, H, W, C_out]``.

    ``precision="fp32"``: a custom JVP whose tangent is linear, so every mode of autodiff works
    (``jax.jvp``, ``jax.linearize``, ``jax.hessian``) and reverse mode is JAX's transpose of that
    tangent. The image tangent is the same convolution with the kernel laid out HWOI
    (``kernel.swapaxes(2, 3)`` read as ``[H, W, O, I]``): its transpose is then the convolution
    with the flipped kernel in HWIO order. Autodiff of the plain HWIO convolution transposes to a
    reversed kernel in OI order, which XLA:CPU lowers to a slow convolution inside the
    optimisation's while loop (measured 3x slower per step). The compiled gradient program is the
    one the former hand-written VJP gave, instruction for instruction
    (``scripts/autodiff_speed.py`` prints its fingerprint). The kernel's tangent term is traced
    only when the kernel is differentiated.

    ``precision="bf16"`` multiplies in bf16 with float32 accumulation and output, and keeps a
    custom VJP (reverse mode only): JAX's transpose of a bf16 convolution with float32 output
    converts the weights to float32 (measured 1.6-2.2x slower per gradient step on the CPU), so a
    linear tangent cannot give its backward pass. Forward mode there needs ``autodiff="stock"``.
    """
    return _conv3x3_fp32(x, kernel) if precision == "fp32" else _conv3x3_bf16(x, kernel)


@jax.custom_jvp
def _conv3x3_fp32(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv3x3(x, kernel, "fp32")


@functools.partial(_conv3x3_fp32.defjvp, symbolic_zeros=True)
def _conv3x3_jvp(primals, tangents):
    x, kernel = primals
    tx, tk = tangents
    y = _conv3x3(x, kernel, "fp32")
    parts = []
    if not isinstance(tx, SymbolicZero):
        parts.append(_image_tangent(tx, kernel))
    if not isinstance(tk, SymbolicZero):
        parts.append(_conv3x3(x, tk, "fp32"))
    return y, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(y)


def _image_tangent(tx: jax.Array, kernel: jax.Array) -> jax.Array:
    """``conv3x3(tx, kernel)``, written so that its transpose is the HWIO convolution with the flipped
    kernel (see :func:`conv3x3`)."""
    return lax.conv_general_dilated(tx, kernel.swapaxes(2, 3), (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWOI", "NHWC"))


@jax.custom_vjp
def _conv3x3_bf16(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv3x3(x, kernel, "bf16")


def _conv3x3_bf16_fwd(x, kernel):
    return _conv3x3(x, kernel, "bf16"), (x, kernel)


def _conv3x3_bf16_bwd(residuals, g):
    """The input gradient is the convolution with the explicitly flipped and transposed kernel, laid out
    HWIO, in bf16 with float32 accumulation; the kernel's in float32."""
    x, kernel = residuals
    dx = _conv3x3(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), "bf16")
    return dx.astype(x.dtype), _kernel_grad(x, g).astype(kernel.dtype)


def _kernel_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """``dK[ky, kx, i, o] = Σ_{b,h,w} pad(x)[b, h+ky, w+kx, i] · g[b, h, w, o]``, ``[3, 3, C_in, C_out]``,
    as one convolution contracting over the batch (float32).

    Dead code, removed by XLA, when only the image is optimised; written out rather than
    ``jax.vjp`` of the forward because tracing that vjp in every layer's backward was about
    40% of the optimisation chunk's tracing time.
    """
    x, g = x.reshape(-1, *x.shape[-3:]), g.reshape(-1, *g.shape[-3:])
    dk = lax.conv_general_dilated(x.astype(jnp.float32), g.astype(jnp.float32), (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("CHWN", "IHWO", "NHWC"))
    return dk.transpose(1, 2, 0, 3)


_conv3x3_bf16.defvjp(_conv3x3_bf16_fwd, _conv3x3_bf16_bwd)


def _windows(x: jax.Array) -> jax.Array:
    """``[..., H, W, C] -> [..., H/2, 2, W/2, 2, C]``, the 2x2 stride-2 windows (odd last rows/columns
    dropped, as VALID pooling floors)."""
    h, w, c = x.shape[-3:]
    x = x[..., : h // 2 * 2, : w // 2 * 2, :]
    return x.reshape(*x.shape[:-3], h // 2, 2, w // 2, 2, c)


def avg_pool2x2(x: jax.Array) -> jax.Array:
    """2x2 stride-2 average pooling of ``[..., H, W, C]`` (VALID)."""
    return _windows(x).mean(axis=(-4, -2))


@jax.custom_jvp
def max_pool2x2(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max pooling of ``[..., H, W, C]`` (VALID).

    A custom JVP with a linear tangent (every mode of autodiff works): the tangent of each window
    is that of its first maximum in row-major order, as XLA's select-and-scatter takes it. Its
    transpose, reverse mode, is elementwise compares and selects that XLA fuses: autodiff of
    ``reduce_window`` costs 8x more on CPU (measured on a 384x512x64 map).
    """
    return _windows(x).max(axis=(-4, -2))


@max_pool2x2.defjvp
def _max_pool_jvp(primals, tangents):
    (x,), (tx,) = primals, tangents
    windows = _windows(x)
    y = windows.max(axis=(-4, -2))
    hit = windows == y[..., :, None, :, None, :]
    taken = jnp.zeros_like(hit[..., :, 0, :, 0, :])
    first = []
    for dy in range(2):
        row = []
        for dx in range(2):
            here = hit[..., :, dy, :, dx, :] & ~taken
            taken = taken | here
            row.append(here)
        first.append(jnp.stack(row, axis=-2))
    first = jnp.stack(first, axis=-4)
    return y, jnp.where(first, _windows(tx), 0).sum(axis=(-4, -2))


def stock_conv3x3(x: jax.Array, kernel: jax.Array, precision: str = "fp32") -> jax.Array:
    """:func:`conv3x3` without its custom JVP: stock ``lax`` ops and JAX's own derivatives; the same
    values.

    Args:
        x: ``[B, H, W, C_in]``.
        kernel: ``[3, 3, C_in, C_out]`` HWIO.
        precision: ``"fp32"`` or ``"bf16"``.

    Returns:
        ``[B, H, W, C_out]``.
    """
    return _conv3x3(x, kernel, precision)


def stock_max_pool2x2(x: jax.Array) -> jax.Array:
    """:func:`max_pool2x2` without its custom JVP (a plain reduction over the windows); the same
    values. Where a window holds several equal maxima the gradient
    is shared among them (JAX's rule for ``max``) rather than given to the first; below a ReLU
    such ties are zeros, whose gradient the ReLU stops either way.

    Args:
        x: ``[..., H, W, C]``.

    Returns:
        ``[..., H // 2, W // 2, C]``.
    """
    return _windows(x).max(axis=(-4, -2))


def _flax_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None, *, compute="fp32", fast=True, **_):
    """`lax.conv_general_dilated`'s signature for `nn.Conv`, for the only case VGG-19 uses."""
    assert tuple(window_strides) == (1, 1) and feature_group_count == 1 and rhs.shape[:2] == (3, 3)
    return conv3x3(lhs, rhs, compute) if fast else stock_conv3x3(lhs, rhs, compute)


class VGG19(nn.Module):
    """VGG-19 convolutional trunk returning named feature maps, of RGB images in [0, 1].

    The module applies its weights' input convention itself (:func:`preprocess`), so
    ``VGG19(outputs=..., convention=vgg.convention).apply(vgg.params, rgb)`` equals
    :func:`extract_features` (which checks its arguments first). The default convention is the
    shipped weights' (``"caffe"``); for input already in the network's convention, pass
    ``convention="preprocessed"``.

    Runs only up to the deepest requested layer, so params of deeper layers
    may be present but are unused.

    Attributes:
        outputs: Names from :data:`LAYERS` to return.
        pooling: ``"max"`` or ``"avg"`` (2x2, stride 2).
        precision: ``"fp32"``, or ``"bf16"``: convolutions multiply in bf16 and
            accumulate in float32; everything else stays float32.
        convention: What the input is: ``"caffe"`` or ``"torch"`` (RGB in [0, 1], mapped to that
            convention here; use :attr:`VGGParams.convention`), or ``"preprocessed"``
            (already the network's input).
        autodiff: ``"fast"`` (custom JVPs, the faster reverse mode), ``"stock"`` (plain ops) or
            None (the mode in effect, :func:`autodiff_mode`); see the module's docstring.
    """

    outputs: tuple[str, ...]
    pooling: Literal["max", "avg"] = "max"
    precision: Literal["fp32", "bf16"] = "fp32"
    convention: ModuleConvention = "caffe"
    autodiff: Autodiff | None = None

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Flax's ``apply``; ``variables`` may also be a :class:`VGGParams`, whose input convention is
        then checked against the module's (``"preprocessed"`` takes any).

        Raises:
            NSTError: If the conventions differ.
        """
        if isinstance(variables, VGGParams):
            if self.convention not in ("preprocessed", variables.convention):
                raise NSTError(f"VGG19(convention={self.convention!r}) applied to weights of the "
                               f"{variables.convention!r} convention; use convention=vgg.convention")
            variables = variables.params
        return super().apply(variables, *args, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array, level_masks: Sequence[jax.Array] | None = None) -> dict[str, jax.Array]:
        """Feature maps of an image.

        Args:
            x: ``[H, W, 3]`` RGB in [0, 1] (network input with ``convention="preprocessed"``), or
                batched ``[B, H, W, 3]``.
            level_masks: Optional, for evaluating a crop of a larger image exactly: ``level_masks[k]``
                ``[H / 2^k, W / 2^k]`` multiplies the input of every convolution after ``k``
                poolings (1 where the position lies inside the larger image's map at that level,
                0 outside), so the crop's zero padding is the larger image's (:func:`validity_masks`).

        Returns:
            ``{name: [H_l, W_l, C_l]}`` for every name in ``outputs``.

        Raises:
            NSTError: For an unknown layer, pooling, precision, convention or autodiff mode.
        """
        check_layers(self.outputs, "outputs")
        if self.convention != "preprocessed":
            if self.convention not in CONVENTIONS:
                raise NSTError(f"unknown input convention {self.convention!r} "
                               f"(choose from {', '.join(CONVENTIONS)}, preprocessed)")
            x = preprocess(x, self.convention)
        fast = resolve_autodiff(self.autodiff) == "fast"
        if self.pooling not in POOLINGS:
            raise NSTError(f"unknown pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.precision not in PRECISIONS:
            raise NSTError(f"unknown precision {self.precision!r} (choose from {', '.join(PRECISIONS)})")
        pool = (max_pool2x2 if fast else stock_max_pool2x2) if self.pooling == "max" else avg_pool2x2
        conv = functools.partial(_flax_conv, compute=self.precision, fast=fast)
        wanted = set(self.outputs)
        last = max(LAYERS.index(name) for name in self.outputs)
        features = {}
        level = 0
        for name in LAYERS[: last + 1]:
            if name.startswith("conv"):
                if level_masks is not None:
                    x = x * level_masks[level][..., None].astype(x.dtype)
                x = nn.Conv(_CHANNELS[name], (3, 3), padding="SAME", name=name, conv_general_dilated=conv)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = pool(x)
                level += 1
            if name in wanted:
                features[name] = x
        return features


@functools.partial(jax.tree_util.register_dataclass, data_fields=["params"],
                   meta_fields=["convention", "sha256", "meta_json"])
@dataclasses.dataclass(frozen=True)
class VGGParams:
    """VGG-19 parameters and their input convention, as one pytree.

    ``params`` is the pytree's only leaf-bearing field (pass the object to ``jax.jit``,
    ``jax.device_put`` or a sharding like any params tree); the convention and provenance are
    static, so code traced for one set of parameters is reused for another of the same kind.

    Attributes:
        params: Flax params ``{"params": {"conv1_1": {"kernel", "bias"}, ...}}``, float32 HWIO
            kernels.
        convention: One of :data:`CONVENTIONS`: what :func:`preprocess` does to an RGB image.
        sha256: Hex digest of the file the parameters came from ("" if none).
        meta_json: The file's metadata as a JSON string (see :attr:`meta`).
    """

    params: dict[str, Any]
    convention: Convention = "caffe"
    sha256: str = ""
    meta_json: str = "{}"

    def __post_init__(self) -> None:
        if not isinstance(self.convention, str) or self.convention not in CONVENTIONS:
            raise NSTError(f"unknown input convention {self.convention!r} (choose from {', '.join(CONVENTIONS)})")

    @property
    def meta(self) -> dict[str, Any]:
        """The parameter file's metadata dictionary."""
        return json.loads(self.meta_json)


def check_vgg(vgg: Any, what: str = "vgg") -> VGGParams:
    """``vgg`` if it is a :class:`VGGParams`; anything else is refused with one line (a params dict
    with the hint to pass the VGGParams itself).

    Raises:
        NSTError: For anything but a VGGParams.
    """
    if isinstance(vgg, VGGParams):
        return vgg
    if isinstance(vgg, Mapping) and "params" in vgg:
        raise NSTError(f"{what} must be the VGGParams of nst_jax.load_vgg19(), not its params dict "
                       "(pass vgg, not vgg.params; VGGParams(params, convention=...) wraps a dict)")
    raise NSTError(f"{what} must be the VGGParams of nst_jax.load_vgg19(), got {type(vgg).__name__}")


_warned_x64 = False


def _compute_dtype(image: ArrayLike, precision: str) -> Any:
    """float64 for a float64 image with ``jax_enable_x64`` on and fp32 convolutions, else float32
    (warning once when a float64 image is computed in float32 with x64 on)."""
    global _warned_x64
    if checks._dtype(image) != np.float64 or not jax.config.jax_enable_x64:
        return jnp.float32
    if precision == "fp32":
        return jnp.float64
    if not _warned_x64:
        _warned_x64 = True
        warnings.warn("nst_jax: a float64 image with precision='bf16' is computed in bf16/float32; "
                      "use precision='fp32' for float64 features", stacklevel=3)
    return jnp.float32


InputRange = Literal["0-1", "-1-1", "0-255"]
RangeCheck = Literal["concrete", "checkify", "off"]


def to_unit_range(image: jax.Array, input_range: str) -> jax.Array:
    """``image`` mapped from ``input_range`` (a key of :data:`nst_jax._src.checks.INPUT_RANGES`) to [0, 1]."""
    low, high = checks.check_input_range(input_range)
    return image if (low, high) == (0.0, 1.0) else (image - low) / (high - low)


def extract_features(
    vgg: VGGParams, image: ArrayLike, *, layers: Sequence[str], pooling: Literal["max", "avg"] = "max",
    precision: Literal["fp32", "bf16"] = "fp32", autodiff: Autodiff | None = None,
    input_range: InputRange = "0-1", range_check: RangeCheck = "concrete",
) -> dict[str, jax.Array]:
    """Feature maps of one RGB image.

    Any real floating dtype is accepted. The network computes in float32 (float64 for a float64
    image with ``jax_enable_x64`` on and ``precision="fp32"``); bfloat16 and float16 images get
    their features back in their own dtype (computed in float32, rounded once at the end), so a
    half-precision model stays in half precision at no cost in the network's accuracy.

    Args:
        vgg: The network's parameters and input convention (:func:`nst_jax.load_vgg19`).
        image: ``[H, W, 3]`` float RGB in ``input_range`` (one image: ``jax.vmap`` for a batch).
        layers: Layer names to return, e.g. ``("relu1_1", "relu4_2")``.
        pooling: ``"max"`` or ``"avg"``.
        precision: ``"fp32"`` or ``"bf16"`` convolutions (see :class:`VGG19`).
        autodiff: ``"fast"`` (custom JVPs with a faster reverse mode, the default) or ``"stock"``
            (plain ops; same values), or None (the mode in effect, :func:`autodiff_mode`). Both
            work with ``jax.grad``, ``jax.jvp``, ``jax.linearize`` and ``jax.hessian``.
        input_range: The image's value range: ``"0-1"`` (default), ``"-1-1"`` (a tanh output) or
            ``"0-255"``; mapped to [0, 1] before the weights' convention is applied.
        range_check: ``"concrete"`` (default): a concrete image clearly outside ``input_range`` is
            refused, with its likely cause (0-255 pixels, a [-1, 1] output, preprocessed input);
            traced images are not checked. ``"checkify"``: traced images too, through
            :func:`jax.experimental.checkify.check` (wrap the jitted function in
            ``checkify.checkify(f, errors=checkify.user_checks)``). ``"off"``: no check.

    Returns:
        ``{name: [H_l, W_l, C_l]}``, ``H_l = floor(H / 2^k)`` after ``k`` poolings: float32;
        bfloat16 or float16 for such an image; float64 for a float64 image with
        ``jax_enable_x64`` on and ``precision="fp32"`` (with ``"bf16"`` a one-time warning says
        it is float32).

    Raises:
        NSTError: On a batch, a shape other than ``[H, W, 3]``, an integer dtype, a bare string
            or unknown name in ``layers``, an image too small for the deepest layer, an image
            out of its range, a params dict instead of the VGGParams, or an unknown autodiff
            mode or input range.
    """
    features = features_in_compute_dtype(vgg, image, layers=layers, pooling=pooling, precision=precision,
                                         autodiff=autodiff, input_range=input_range, range_check=range_check)
    dtype = checks._dtype(image)
    if dtype in checks.HALF_DTYPES:
        return {name: f.astype(dtype) for name, f in features.items()}
    return features


def features_in_compute_dtype(
    vgg: VGGParams, image: ArrayLike, *, layers: Sequence[str], pooling: str = "max", precision: str = "fp32",
    autodiff: Autodiff | None = None, input_range: str = "0-1", range_check: str = "concrete",
    what: str = "image",
) -> dict[str, jax.Array]:
    """:func:`extract_features` with its checks, returning float32 (float64) features for every image
    dtype: what a loss built on the features uses. ``what`` names the image in errors."""
    check_vgg(vgg)
    layers = check_layers(layers)
    shape = checks.check_image(image, what)
    check_fits(shape, layers, what)
    checks.check_range(image, input_range, what, range_check)
    x = to_unit_range(jnp.asarray(image).astype(_compute_dtype(image, precision)), input_range)
    return unchecked_features(vgg, x, layers=layers, pooling=pooling, precision=precision, autodiff=autodiff)


def unchecked_features(
    vgg: VGGParams, image: jax.Array, *, layers: Sequence[str], pooling: str = "max", precision: str = "fp32",
    level_masks: Sequence[jax.Array] | None = None, autodiff: Autodiff | None = None,
) -> dict[str, jax.Array]:
    """:func:`extract_features` without the argument checks, for callers that made them once.

    Args:
        vgg: As in :func:`extract_features`.
        image: ``[H, W, 3]`` float RGB in [0, 1], checked already.
        layers: As in :func:`extract_features`.
        pooling: As in :func:`extract_features`.
        precision: As in :func:`extract_features`.
        level_masks: Optional per-level validity masks of a crop (see :class:`VGG19`).
        autodiff: As in :func:`extract_features`.

    Returns:
        ``{name: [H_l, W_l, C_l]}``.
    """
    check_vgg(vgg)
    try:
        return VGG19(outputs=tuple(layers), pooling=pooling, precision=precision,  # type: ignore[arg-type]
                     convention=vgg.convention, autodiff=autodiff).apply(  # type: ignore[arg-type]
            vgg.params, image, level_masks)
    except TypeError as err:
        if "custom_vjp" in str(err) and "forward-mode" in str(err):
            raise NSTError("forward-mode autodiff (jax.jvp, jax.linearize, jax.hessian) through precision='bf16' "
                           "convolutions needs autodiff='stock' (or precision='fp32')") from err
        raise
