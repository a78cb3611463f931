#!/usr/bin/env bash
# Install hybridface with every extra into the active Python environment.
# torch==2.13.0 is named explicitly: it is the CPU wheel (a bare "torch" pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade "pip>=24"
python -m pip install -q -r requirements.lock
python -m pip install -q --no-deps -e ".[all]"
python -c "import hybridface, onnxruntime, cv2; print('hybridface', hybridface.__version__, 'installed')"
