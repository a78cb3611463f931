"""Feature extractors: the compressed VGGFace network, preprocessing, model cards and every `Encoder`.

Training and ONNX export live in :mod:`hybridface.training`.

Names are resolved lazily (``hybridface.models.CompressedVGGFace`` imports torch only when used).
"""

from __future__ import annotations

from hybridface.lazy import lazy_exports

_EXPORTS = {
    "CompressedVGGFace": "hybridface.models.compressed",
    "load_paper_weights": "hybridface.models.baselines.paper_weights",
    "PreprocessSpec": "hybridface.models.preprocess",
    "preprocess": "hybridface.models.preprocess",
    "OnnxEncoder": "hybridface.models.encoders",
    "TorchEncoder": "hybridface.models.encoders",
    "load_model": "hybridface.models.encoders",
    "ModelCard": "hybridface.models.card",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
