"""Fused k = 1 scan: one compiled pass over each BLAS similarity block, no second product.

The NumPy scan (:func:`~hybridface.search.scan_top1.band_top1`) needs a reduction pass, a
compare pass and a second, smaller product to find the band rows, and holds the GIL between its
many small NumPy calls, so two search threads wait on each other. Here a Numba kernel reads each
``(rows, probes)`` block once and keeps, per probe, the largest similarity, its row and the second
largest (:func:`_top2`), with the GIL released. A probe whose second largest is also within the
band of the running best ("crowded": near-duplicate templates, exact ties) has its column of the
block scanned in NumPy, so the band is complete:

* a band row that is its chunk's maximum is kept directly;
* any other band row has a value at most the chunk's second largest, so its probe is crowded in
  that chunk and the column scan finds it.

The band is therefore the same set of rows (same float32 products) as the NumPy scan's, and the
float64 re-ranking after it returns bit-identical answers. Without Numba, or with
``tuning.FUSED_TOP1`` off, :func:`top2_kernel` returns ``None`` and the NumPy scan is used.
Compiled code is cached on disk by Numba (``cache=True``): the first use per installation
compiles for about a second, later processes load it.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import hot_entries, prune_band
from hybridface.search.jit import compiled
from hybridface.search.threads import scratch

def _top2(block, best, second, arg):  # pragma: no cover - runs compiled (coverage cannot see it)
    """Per column of a ``(rows, cols)`` block: largest value, its first row, second largest.

    An exact tie with the largest counts as the second largest, so tied columns are crowded.
    Written as a row-major double loop with branch-free updates so LLVM vectorises it across the
    contiguous columns.
    """
    r, c = block.shape
    for j in range(c):
        best[j] = -np.inf
        second[j] = -np.inf
        arg[j] = 0
    for i in range(r):
        for j in range(c):
            v = block[i, j]
            b = best[j]
            second[j] = max(second[j], min(v, b))
            if v > b:
                best[j] = v
                arg[j] = i


def top2_kernel():
    """The compiled :func:`_top2`, or ``None`` (Numba missing or ``tuning.FUSED_TOP1`` false)."""
    return compiled(_top2) if tuning.FUSED_TOP1 else None


def band_top1_fused(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float, top2):
    """k = 1 band rows ``(probe, row, float32 score)`` of ``(nb, d)`` probes over ``vectors``.

    Same contract as :func:`~hybridface.search.scan_top1.band_top1`: every row whose float32
    similarity is within ``tol`` of its probe's best is returned (see the module docstring);
    ``rc`` rows per ``(rc, nb)`` block.
    """
    nb, n_rows = p.shape[0], vectors.shape[0]
    rc = max(1, min(rc, n_rows))
    buf = scratch(rc * nb).reshape(rc, nb)  # reused: no page faults
    theta = np.full(nb, -np.inf, np.float32)
    best = np.empty(nb, np.float32)
    second = np.empty(nb, np.float32)
    arg = np.empty(nb, np.int32)  # row within the block
    pt = p.T
    prs, rows, scs = [], [], []
    held = 0
    for s in range(0, n_rows, rc):
        vc = vectors[s : s + rc]
        sims = buf[: vc.shape[0]]
        np.matmul(vc, pt, out=sims)
        top2(sims, best, second, arg)
        np.maximum(theta, best, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(best >= limit)
        if len(hot) == 0:
            continue
        crowded = second[hot] >= limit[hot]
        single = hot[~crowded]
        prs.append(single)
        rows.append(arg[single] + s)
        scs.append(best[single])
        held += len(single)
        if crowded.any():
            pr, r = hot_entries(sims, hot[crowded], limit, 1)
            prs.append(pr)
            rows.append(r + s)
            scs.append(sims[r, pr])
            held += len(pr)
        if held > 4 * nb:
            pr, r, sc = prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)
            prs, rows, scs, held = [pr], [r], [sc], len(pr)
    if not prs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)
