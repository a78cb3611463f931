"""Template-vector helpers every layer shares (bottom layer: NumPy only)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["l2_normalize"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12, *, check_finite: bool = False) -> np.ndarray:
    """Row-wise L2 normalisation into a fresh C-contiguous float32 array (zero rows stay zero).

    ``check_finite``: raise ``ValueError`` if ``x`` holds NaN or infinite values (checked on the
    row norms first, so finite input costs one pass less).
    """
    x = np.asarray(x, dtype=np.float32)
    sq = np.add.reduce(x * x, axis=1, keepdims=True)  # np.linalg.norm(x, axis=1) squared, less overhead
    if check_finite and not (math.isfinite(sq[0, 0]) if sq.shape == (1, 1) else np.isfinite(sq).all()) \
            and not np.isfinite(x).all():  # one row: a scalar test, what a request sends
        raise ValueError("NaN or infinite values")
    norms = np.sqrt(sq)
    if x.shape[0] == 1 and x.flags.c_contiguous and norms[0, 0] >= eps:  # one probe: what a request sends
        return x / norms  # = the general line below, with fewer steps
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)
