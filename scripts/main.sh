#!/usr/bin/env bash
# The README's main job: enrol the gallery side of the VidTIMIT protocol into a fresh SQLite
# gallery with the shipped model, identify the probe side with the hybrid strategy, and print
# Rank-1 and time per probe.
#   bash scripts/main.sh DATASETS_DIR [extra `hybridface run-protocol` options, e.g. --top-n 5]
# The gallery file goes to $HYBRIDFACE_MAIN_DB (default: a fresh temporary folder); an existing
# gallery there is replaced (anything that is not a hybridface gallery is refused).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/main.sh DATASETS_DIR [run-protocol options]" >&2
    exit 2
fi
DATA="$1"; shift
DB="${HYBRIDFACE_MAIN_DB:-$(mktemp -d)/vidtimit.db}"
exec python -m hybridface run-protocol vidtimit --data "$DATA" --db "$DB" --strategy hybrid --overwrite "$@"
