"""nst_jax: neural style transfer (Gatys, Ecker & Bethge) in JAX.

The data path, one stage per name::

    image [H, W, 3] in [0, 1]
      -> extract_features(vgg, image, layers=...)            VGG-19 feature maps
      -> gram_matrix / content_loss / style_loss / tv_loss     the paper's loss terms
      -> compute_targets + loss_terms / make_loss              the objective of one image
      -> make_stylizer(config) -> (init, step)                 one pure optimiser step
      -> stylize / sweep / stylize_multiscale                  the host loop over steps

Every function takes one image (``[H, W, 3]``) or feature map (``[H, W, N]``); batches and
sweeps are ``jax.vmap`` at the call site (4-D input is refused with that hint). Static
settings are frozen dataclasses (:class:`LossConfig`, :class:`StylizeConfig`), numbers a sweep
may vary a pytree (:class:`Weights`), and the VGG parameters travel with their input
convention as one pytree (:class:`VGGParams`). Problems a user can fix raise :class:`NSTError`
with one line. Importing the package changes no environment variable and no JAX setting.

The public API is this package's ``__all__`` (the functional core above, its result and settings
types, VGG-19 loading) and eight public modules, each with its own ``__all__``:
:mod:`nst_jax.config` (settings, their choices and defaults), :mod:`nst_jax.spec` (a run resolved
once: its levels, steps and weights, stored in records), :mod:`nst_jax.files` (images, run records,
checkpoints, figures), :mod:`nst_jax.errors`, :mod:`nst_jax.compilation` (compile statistics, the
persistent compilation cache), :mod:`nst_jax.host` (the host side of a run: input plans, memory
checks, resuming, the sweep mesh, progress), :mod:`nst_jax.evaluation` (the independent judge) and
:mod:`nst_jax.data` (two small sample images); beside them the Flax helpers
:mod:`nst_jax.flax_nnx`, :mod:`nst_jax.flax_linen` and :mod:`nst_jax.perceptual`. The
implementation lives in ``nst_jax._src`` (private, as in optax); the command-line tools
(:mod:`nst_jax.cli`) use only the public API, as any other program would.
"""

__version__ = "0.3.0"
__docformat__ = "google"

# First, before anything slow is imported: a command-line tool interrupted while it starts exits 3.
from nst_jax import (
    _startup,  # noqa: F401 - sets the tools' start-up signal handlers (nothing for a library)
    data,
)
from nst_jax._src.api import StylizeResult, SweepResult, stylize, sweep
from nst_jax._src.image import load_image, save_image
from nst_jax._src.losses import content_loss, gram_matrix, style_layer_loss, style_loss, tv_loss
from nst_jax._src.multiscale import MultiScaleResult, preset_levels, run_spec, stylize_multiscale, sweep_specs
from nst_jax._src.normalize import normalize_vgg19
from nst_jax._src.objective import Targets, compute_targets, loss_terms, make_loss
from nst_jax._src.step import RunState, StepInfo, Stylizer, make_stylizer
from nst_jax._src.vgg import LAYERS, VGG19, VGGParams, autodiff_mode, extract_features, preprocess
from nst_jax._src.vgg_io import load_vgg19
from nst_jax.config import LossConfig, StylizeConfig, Weights, make_weights, stack_weights
from nst_jax.errors import NSTError, NumericalError
from nst_jax.perceptual import perceptual_loss, perceptual_terms
from nst_jax.spec import LevelSpec, RunSpec, make_spec

__all__ = [
    "LAYERS",
    "VGG19",
    "LevelSpec",
    "LossConfig",
    "MultiScaleResult",
    "NSTError",
    "NumericalError",
    "RunSpec",
    "RunState",
    "StepInfo",
    "StylizeConfig",
    "StylizeResult",
    "Stylizer",
    "SweepResult",
    "Targets",
    "VGGParams",
    "Weights",
    "__version__",
    "autodiff_mode",
    "compute_targets",
    "content_loss",
    "data",
    "extract_features",
    "gram_matrix",
    "load_image",
    "load_vgg19",
    "loss_terms",
    "make_loss",
    "make_spec",
    "make_stylizer",
    "make_weights",
    "normalize_vgg19",
    "perceptual_loss",
    "perceptual_terms",
    "preprocess",
    "preset_levels",
    "run_spec",
    "save_image",
    "stack_weights",
    "style_layer_loss",
    "style_loss",
    "stylize",
    "stylize_multiscale",
    "sweep",
    "sweep_specs",
    "tv_loss",
]
