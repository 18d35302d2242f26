"""The frozen VGG-19 on a Flax NNX module, out of the trainable state.

Two ways, both tested (``tests/test_nnx.py``):

1. **Pass it as an argument** (nothing stored): the model holds only its own layers, and the
   train step takes ``vgg`` (a :class:`~nst_jax.VGGParams` pytree) next to the batch::

       @nnx.jit
       def train_step(model, optimizer, vgg, x, y):
           loss, grads = nnx.value_and_grad(lambda m: nst_jax.perceptual_loss(vgg, m(x), y))(model)
           optimizer.update(model, grads)
           return loss

   Checkpoints of ``nnx.state(model)`` then carry no VGG weights at all.

2. **Hold it on the module** as a :class:`FrozenVGG` attribute. Its weights live in
   :class:`FrozenWeights` variables, an ``nnx.Variable`` type that is not ``nnx.Param``: so
   ``nnx.grad``/``nnx.value_and_grad`` (which differentiate ``nnx.Param`` by default) give it no
   gradient, ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` does not update it or keep optimiser
   moments for it, and ``nnx.state(model, nnx.Param)`` (what to checkpoint) leaves its 20 M
   floats out. ``nnx.state(model, FrozenWeights)`` selects them, should they be wanted.
   The forward pass stops their gradient as well, whatever the caller differentiates::

       class Painter(nnx.Module):
           def __init__(self, vgg, rngs):
               self.conv = nnx.Conv(3, 3, (3, 3), rngs=rngs)
               self.vgg = FrozenVGG(vgg)          # frozen, out of nnx.Param

           def loss(self, x, y):
               return self.vgg.perceptual_loss(x + self.conv(x), y)

(Storing a ``VGGParams`` as a plain attribute fails in NNX, "data assigned to static attribute";
``nnx.data(vgg)`` works but makes the weights ordinary state, inside checkpoints.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import jax
from flax import nnx
from jax.typing import ArrayLike

from nst_jax._src.vgg import Autodiff, InputRange, RangeCheck, VGGParams, extract_features
from nst_jax.perceptual import perceptual_loss

__all__ = ["FrozenVGG", "FrozenWeights"]


class FrozenWeights(nnx.Variable):
    """An ``nnx.Variable`` for weights that are never trained (not an ``nnx.Param``)."""


def _value(variable: nnx.Variable) -> jax.Array:
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


class FrozenVGG(nnx.Module):
    """VGG-19 held on an NNX module, its weights frozen (:class:`FrozenWeights`, not ``nnx.Param``).

    Attributes:
        weights: The parameters, ``{"conv1_1": {"kernel", "bias"}, ...}``, each a
            :class:`FrozenWeights`.
        convention: The input convention of the parameters (static).
        sha256: The parameter file's digest (static; "" if none).
    """

    def __init__(self, vgg: VGGParams):
        """Wraps loaded parameters.

        Args:
            vgg: From :func:`nst_jax.load_vgg19`.
        """
        self.weights: dict[str, dict[str, FrozenWeights]] = nnx.data(
            {name: {k: FrozenWeights(v) for k, v in layer.items()} for name, layer in vgg.params["params"].items()})
        self.convention: str = vgg.convention
        self.sha256: str | None = vgg.sha256

    def params(self) -> VGGParams:
        """The weights as a :class:`~nst_jax.VGGParams`, their gradient stopped.

        Returns:
            A pytree for every nst_jax function that takes ``vgg``.
        """
        params: dict[str, Any] = {name: {k: jax.lax.stop_gradient(_value(v)) for k, v in layer.items()}
                                  for name, layer in self.weights.items()}
        return VGGParams({"params": params}, convention=self.convention, sha256=self.sha256)

    def __call__(self, image: ArrayLike, *, layers: Sequence[str], pooling: Literal["max", "avg"] = "max",
                 precision: Literal["fp32", "bf16"] = "fp32", autodiff: Autodiff | None = None,
                 input_range: InputRange = "0-1", range_check: RangeCheck = "concrete") -> dict[str, jax.Array]:
        """Feature maps of one RGB image, as :func:`nst_jax.extract_features`.

        Args:
            image: ``[H, W, 3]`` float RGB in [0, 1].
            layers: Layer names to return.
            pooling: ``"max"`` or ``"avg"``.
            precision: ``"fp32"`` or ``"bf16"``.
            autodiff: ``"fast"``, ``"stock"`` or None.
            input_range: ``"0-1"``, ``"-1-1"`` or ``"0-255"``.
            range_check: ``"concrete"``, ``"checkify"`` or ``"off"``.

        Returns:
            ``{name: [H_l, W_l, C_l]}``.
        """
        return extract_features(self.params(), image, layers=layers, pooling=pooling, precision=precision,
                                autodiff=autodiff, input_range=input_range, range_check=range_check)

    def perceptual_loss(self, x: ArrayLike, y: ArrayLike, **options: Any) -> jax.Array:
        """:func:`nst_jax.perceptual_loss` with these weights.

        Args:
            x: ``[H, W, 3]`` float RGB in [0, 1].
            y: ``[H', W', 3]`` float RGB in [0, 1].
            **options: Keyword arguments of :func:`nst_jax.perceptual_loss`.

        Returns:
            Scalar loss.
        """
        return perceptual_loss(self.params(), x, y, **options)
