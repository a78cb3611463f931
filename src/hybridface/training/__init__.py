"""Training the paper's network: paper training, general distillation, ``fit`` on a gallery, export.

Names are resolved lazily (torch is imported only when a trainer is used).
"""

from __future__ import annotations

from hybridface.lazy import lazy_exports

_EXPORTS = {
    "train_model": "hybridface.training.train",
    "train_sources": "hybridface.training.train",
    "train_general": "hybridface.training.distill",
    "fit_gallery": "hybridface.training.fit",
    "export_onnx": "hybridface.training.export",
    "export_int8": "hybridface.training.export",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
