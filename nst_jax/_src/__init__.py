"""The implementation of nst_jax (optax's layout): nothing here is public API.

The public names are re-exported by :mod:`nst_jax` and its public modules; a module here may change
or move in any release. ``pyright --verifytypes nst_jax`` counts only the public modules' names.
"""
