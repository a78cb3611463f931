"""Compiled inner loops of the alignment ports: the shape predictor's cascade and the chip sampler.

Each kernel does, per pixel or per tree, exactly the float32/float64 operations of the NumPy code
it replaces (`hybridface.models.landmarks`, `hybridface.models.chip`), in the same order and
without fastmath, so its output is bit-identical; only the Python/NumPy overhead (temporary
arrays, the whole-image grey conversion, the tree-by-tree fancy indexing) goes. The small float
products that go through BLAS/LAPACK in NumPy (the Umeyama similarity, the feature-point matmul)
stay in NumPy, so the kernels never depend on whether a BLAS kernel fuses multiply-adds.

The kernels are plain Python functions, compiled on first use by
`hybridface.search.runtime.compiled` (Numba, ``cache=True``); `kernel` returns ``None`` without
Numba and the callers keep their NumPy code.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def cascade_step(images: np.ndarray, div: int, ox: np.ndarray, oy: np.ndarray, sx: np.ndarray,
                 sy: np.ndarray, prod: np.ndarray, anchor: np.ndarray, shapes: np.ndarray,
                 split_idx: np.ndarray, split_thresh: np.ndarray, leaves: np.ndarray,
                 feats: np.ndarray) -> None:
    """One cascade of dlib's shape predictor for ``n`` faces, updating ``shapes`` in place.

    ``images`` ``(n, H, W, C)`` uint8 (grey = channel sum ``// div``); face ``i`` has box origin
    ``(ox[i], oy[i])``, size ``(sx[i], sy[i])``, flat float32 shape ``shapes[i]`` and
    ``prod[i]`` ``(F, 2)`` float32 = ``deltas @ A_i.T``: its feature point ``f`` is
    ``prod[i, f] + shape[anchor[f]]`` (normalised), in pixels ``floor(origin + p * size + 0.5)``.
    ``feats`` ``(F,)`` float32 is scratch.
    """
    _, h, w, nc = images.shape
    n_splits = split_idx.shape[1]
    dim = shapes.shape[1]
    for i in range(images.shape[0]):
        for f in range(prod.shape[1]):
            a = anchor[f]
            px = prod[i, f, 0] + shapes[i, 2 * a]
            py = prod[i, f, 1] + shapes[i, 2 * a + 1]
            x = np.floor(ox[i] + np.float64(px) * sx[i] + 0.5)  # float: NaN/huge compare False
            y = np.floor(oy[i] + np.float64(py) * sy[i] + 0.5)
            v = np.float32(0.0)
            if x >= 0 and x < w and y >= 0 and y < h:
                xi, yi = int(x), int(y)
                s = np.int32(0)
                for k in range(nc):
                    s += np.int32(images[i, yi, xi, k])
                v = np.float32(s // div)
            feats[f] = v
        for t in range(split_idx.shape[0]):
            node = 0
            while node < n_splits:
                d = feats[split_idx[t, node, 0]] - feats[split_idx[t, node, 1]]
                node = 2 * node + 1 if d > split_thresh[t, node] else 2 * node + 2
            leaf = node - n_splits
            for k in range(dim):
                shapes[i, k] += leaves[t, leaf, k]


def chip_sample(image: np.ndarray, cx: float, cy: float, c: float, s: float, u: np.ndarray,
                out: np.ndarray) -> None:
    """Bilinear samples of ``image`` ``(H, W, 3)`` uint8 at the chip grid, into ``out`` ``(n, n, 3)``.

    Chip pixel ``(i, j)`` maps to ``x = cx + c*u[j] - s*u[i]``, ``y = cy + s*u[j] + c*u[i]``; 0 where
    the 2x2 neighbourhood leaves the image, values clipped to [0, 255] and truncated (dlib).
    """
    h, w = image.shape[0], image.shape[1]
    n = u.shape[0]
    for i in range(n):
        uy = u[i]
        for j in range(n):
            ux = u[j]
            x = cx + c * ux - s * uy
            y = cy + s * ux + c * uy
            left = np.floor(x)  # float, compared before any int conversion (NaN: outside)
            top = np.floor(y)
            if not (left >= 0 and top >= 0 and left + 1 < w and top + 1 < h):
                for k in range(3):
                    out[i, j, k] = 0
                continue
            li, ti = int(left), int(top)
            fx = x - left
            fy = y - top
            for k in range(3):
                tl = np.float64(image[ti, li, k])
                tr = np.float64(image[ti, li + 1, k])
                bl = np.float64(image[ti + 1, li, k])
                br = np.float64(image[ti + 1, li + 1, k])
                v = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
                v = min(max(v, 0.0), 255.0)
                out[i, j, k] = np.uint8(v)


def kernel(name: str) -> Any | None:
    """The compiled kernel ``name`` (``cascade_step`` or ``chip_sample``), or ``None`` without Numba."""
    from hybridface.search.runtime import compiled

    return compiled({"cascade_step": cascade_step, "chip_sample": chip_sample}[name])
