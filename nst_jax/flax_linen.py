"""A pretrained :class:`~nst_jax.VGG19` inside a Flax Linen model, without 20 M random parameters.

A Linen model that uses ``VGG19`` as a submodule (a perceptual loss inside the model, a feature
encoder) gets the network's parameters from ``model.init`` like any other: random, 80 MB of
them, to be replaced by hand. :func:`init_with_vgg` is ``model.init`` with every ``VGG19``
submodule's parameters taken from a :class:`~nst_jax.VGGParams` instead::

    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            feats = nst_jax.VGG19(outputs=("relu3_1",), convention=vgg.convention)(x)["relu3_1"]
            return nn.Dense(10)(feats.mean(axis=(0, 1)))

    variables = init_with_vgg(Encoder(), jax.random.key(0), photo, vgg=vgg)

The random VGG parameters are never computed: the model's ``init`` runs under ``jax.jit``, which
returns only the other parameters, so XLA drops the VGG initialisers as dead code; the pretrained
arrays are then put in place (the same buffers, no copy). Keep the VGG parameters out of the
optimiser (``optax.masked`` or ``optax.multi_transform``, or ``jax.lax.stop_gradient`` on the
features) if they are to stay frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from nst_jax._src.vgg import CONV_LAYERS, check_vgg
from nst_jax.errors import NSTError

__all__ = ["init_with_vgg"]

_CONV_NAMES = frozenset(name for name, _, _ in CONV_LAYERS)


def _is_vgg(tree: Any) -> bool:
    """A params subtree that a :class:`~nst_jax.VGG19` made: conv layers only, from ``conv1_1`` on."""
    return isinstance(tree, Mapping) and "conv1_1" in tree and set(tree) <= _CONV_NAMES


def _vgg_paths(tree: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if _is_vgg(tree):
        return [path]
    if isinstance(tree, Mapping):
        return [p for key, sub in tree.items() for p in _vgg_paths(sub, (*path, key))]
    return []


def _without(tree: Any, paths: list[tuple[str, ...]], path: tuple[str, ...] = ()) -> Any:
    if path in paths:
        return None
    if isinstance(tree, Mapping):
        return {key: _without(sub, paths, (*path, key)) for key, sub in tree.items()}
    return tree


def _with(tree: Any, paths: list[tuple[str, ...]], pretrained: Mapping[str, Any], path: tuple[str, ...] = ()) -> Any:
    if path in paths:
        return {name: pretrained[name] for name in tree}
    if isinstance(tree, Mapping):
        return {key: _with(sub, paths, pretrained, (*path, key)) for key, sub in tree.items()}
    return tree


def init_with_vgg(model: nn.Module, rngs: Any, *args: Any, vgg: Any, **kwargs: Any) -> dict[str, Any]:
    """``model.init(rngs, *args, **kwargs)`` with every ``VGG19`` submodule's parameters from ``vgg``.

    Args:
        model: A Linen module with one or more :class:`~nst_jax.VGG19` submodules (at any depth;
            found by their parameters: conv layers ``conv1_1`` ... only).
        rngs: As for ``model.init``.
        *args: As for ``model.init``.
        vgg: The pretrained :class:`~nst_jax.VGGParams` (:func:`nst_jax.load_vgg19`); give the
            submodules ``convention=vgg.convention``.
        **kwargs: As for ``model.init``.

    Returns:
        The model's variables, each ``VGG19``'s ``params`` the pretrained arrays of the layers it
        uses; everything else as ``model.init`` gives it.

    Raises:
        NSTError: If ``vgg`` is not a VGGParams, the model has no VGG19 submodule, or a layer's
            shape differs from the pretrained one.
    """
    vgg = check_vgg(vgg)
    shapes = jax.eval_shape(lambda: model.init(rngs, *args, **kwargs))
    paths = _vgg_paths(shapes)
    if not paths:
        raise NSTError(f"{type(model).__name__} has no VGG19 submodule whose parameters could be filled")
    pretrained = vgg.params["params"]
    for path in paths:
        for name, layer in _subtree(shapes, path).items():
            for leaf, spec in layer.items():
                have = tuple(pretrained[name][leaf].shape)
                if tuple(spec.shape) != have:
                    raise NSTError(f"{'/'.join(path)}/{name}/{leaf} has shape {tuple(spec.shape)}, "
                                   f"the pretrained one {have}")
    rest = jax.jit(lambda: _without(model.init(rngs, *args, **kwargs), paths))()
    return _with(_fill_structure(rest, shapes, paths), paths, pretrained)


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _fill_structure(rest: Any, shapes: Any, paths: list[tuple[str, ...]], path: tuple[str, ...] = ()) -> Any:
    """``rest`` with the dropped VGG subtrees back as their shape trees (for :func:`_with` to read
    the layer names from)."""
    if path in paths:
        return _subtree(shapes, path)
    if isinstance(rest, Mapping):
        return {key: _fill_structure(sub, shapes, paths, (*path, key)) for key, sub in rest.items()}
    return rest
