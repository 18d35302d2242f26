#!/usr/bin/env bash
# Builds the HTML API reference of nst_jax with pdoc (pip install -e .[docs]).
# Usage: scripts/build_docs.sh [OUTPUT_DIR]   (default: docs/api)
# The docstrings are Google style; nst_jax.__docformat__ = "google" tells pdoc, and --docformat says it again.
set -euo pipefail
out="${1:-docs/api}"
python="${PYTHON:-python}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
# The package (its __all__) and the submodules a library user reaches into; pdoc skips "_" names.
"$python" -m pdoc --docformat google --no-show-source -o "$out" \
  nst_jax nst_jax.vgg nst_jax.losses nst_jax.perceptual nst_jax.flax_nnx nst_jax.image nst_jax.config nst_jax.spec \
  nst_jax.statistics nst_jax.errors nst_jax.data
echo "API reference in $out/index.html"
