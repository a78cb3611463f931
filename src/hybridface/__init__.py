"""hybridface: 1:N face identification with a compressed CNN, LBG indexing and parallel search.

Importing the package has no side effects: no model is loaded and no file is written. The
public API is re-exported lazily from the sub-modules that own it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # errors
    "HybridFaceError": "hybridface.errors",
    # interfaces
    "Encoder": "hybridface.models.base",
    "Searcher": "hybridface.search.base",
    "SearchResult": "hybridface.search.base",
    "TemplateMatrix": "hybridface.gallery.matrix",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridface' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["__version__", *_EXPORTS]
