#!/bin/sh
# The whole GPU report in one command, from a plain copy of the repository (no pip install):
#   sh scripts/device_report.sh [--out DIR] [--dry-run] ...   (see scripts/device_report.py)
cd "$(dirname "$0")/.." || exit 1
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 exec "${PYTHON:-python3}" scripts/device_report.py "$@"
