"""The names scripts import from the command line's shared module (:mod:`nst_jax.cli._common`), where
they are defined once."""

from nst_jax.cli._common import (  # noqa: F401 - re-exported for scripts/
    EXIT_CONFLICT,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NUMERICAL,
    EXIT_OK,
    EXIT_USAGE,
    VGG_CHOICES,
    OneLineParser,
    add_cache_argument,
    add_run_arguments,
    add_weight_arguments,
    expand_values,
    guarded_main,
    load_run_inputs,
    load_vgg,
    run_config,
)
