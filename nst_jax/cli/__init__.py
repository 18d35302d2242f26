"""The command-line tools: ``nst-jax`` (:mod:`nst_jax.cli.stylize`) and ``nst-jax-sweep``
(:mod:`nst_jax.cli.sweep`). Argument parsing with the library's defaults lives in
:mod:`nst_jax.cli.args`; the application logic (resume, rerun, overwrite policy, signals,
multi-scale dispatch) in the tools' modules, so ``scripts/`` holds only thin wrappers."""
