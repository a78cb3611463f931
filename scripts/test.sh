#!/usr/bin/env bash
# The README's test command: the whole test suite (tests needing ../shared skip where it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -p no:cacheprovider "$@" tests
