#!/usr/bin/env bash
# Regenerate requirements.lock: the exact runtime dependency set of the function image.
# The image installs it (Dockerfile) and `make venv` installs the tests against it, so a
# rebuild of the image can never change the library versions a champion was trained with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet .
{
  echo "# Runtime dependencies of the custseg function image, pinned. Regenerate: make lock"
  "$tmp/venv/bin/python" -m pip freeze --exclude custseg --exclude pip --exclude setuptools --exclude wheel
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
