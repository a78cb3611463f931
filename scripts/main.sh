#!/usr/bin/env bash
# The README's main job, the two tiers of the product on the VidTIMIT protocol:
#   1. enrol the gallery side (first 60 % of each person's frames) with the default, accurate
#      encoder (dlib; both cores, one worker process each), keeping the face crops;
#   2. `hybridface fit`: train the paper's 25K-parameter network on that gallery (dlib as teacher);
#   3. identify the probe side (last 40 %) against both galleries, hybrid strategy;
# and print one table: model, parameters, file size, Rank-1, encode ms/face, search ms/probe.
#   bash scripts/main.sh DATASETS_DIR [extra `hybridface two-tier` options, e.g. --epochs 20]
# The galleries go to $HYBRIDFACE_MAIN_DIR (default: a fresh temporary folder); files from an
# earlier run there are replaced. Without dlib installed the enrolment falls back (with a warning)
# to the compressed model, which is not what this job is meant to show.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/main.sh DATASETS_DIR [two-tier options]" >&2
    exit 2
fi
DATA="$1"; shift
DIR="${HYBRIDFACE_MAIN_DIR:-$(mktemp -d)}"
exec python -m hybridface -q two-tier vidtimit --data "$DATA" --workdir "$DIR" --strategy hybrid "$@"
