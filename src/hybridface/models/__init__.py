"""Feature extractors: the compressed VGGFace network, its training/export, and every `Encoder`.

Names are resolved lazily (``hybridface.models.CompressedVGGFace`` imports torch only when used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CompressedVGGFace": "hybridface.models.compressed",
    "load_paper_weights": "hybridface.models.paper_weights",
    "PreprocessSpec": "hybridface.models.preprocess",
    "preprocess": "hybridface.models.preprocess",
    "OnnxEncoder": "hybridface.models.encoders",
    "TorchEncoder": "hybridface.models.encoders",
    "load_model": "hybridface.models.encoders",
    "train_model": "hybridface.models.train",
    "ModelCard": "hybridface.models.card",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridface.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_EXPORTS)
