"""The command-line tools: ``nst-jax`` (:mod:`nst_jax.cli._stylize`) and ``nst-jax-sweep``
(:mod:`nst_jax.cli._sweep`). What they share lives once in :mod:`nst_jax.cli._common` (argument groups
with the library's defaults, input loading, progress bar, signals, exit codes); saved arguments read
back from checkpoints and run records are checked by :mod:`nst_jax.cli.saved`; :mod:`nst_jax.cli._args`
re-exports common names for ``scripts/``."""
