#!/usr/bin/env bash
# Builds the documentation site (mkdocs.yml: README.md as the front page, the guides in docs/guide/, the API
# reference of the public modules by mkdocstrings) with MkDocs (pip install -e '.[docs]').
# Usage: scripts/build_docs.sh [OUTPUT_DIR]   (default: site)
# --strict: a warning (a broken link, image or anchor, a docstring mkdocstrings cannot read) fails the build,
# as it does in tests/test_docs.py.
set -euo pipefail
out="${1:-site}"
python="${PYTHON:-python}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The reference is read from this checkout's nst_jax (mkdocs.yml's paths), whatever is installed.
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
# Material's notice about MkDocs 2 goes to the terminal on every build; it says nothing about this site.
export NO_MKDOCS_2_WARNING=1
"$python" -m mkdocs build --strict --config-file "${root}/mkdocs.yml" --site-dir "$(realpath -m "$out")"
echo "site in $out/index.html"
