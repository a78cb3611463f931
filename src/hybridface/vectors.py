"""Template-vector helpers every layer shares (bottom layer: NumPy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["l2_normalize"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation into a fresh C-contiguous float32 array (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True))  # = np.linalg.norm(x, axis=1), less overhead
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)
