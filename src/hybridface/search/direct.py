"""Direct k = 1 path for a few probes over a small gallery: one BLAS call, no chunking.

When the whole ``(rows, probes)`` similarity block is small (a single probe against up to a few
hundred thousand templates), the chunked kernel's bookkeeping costs more than the product itself.
This path makes one product, takes each probe's float32 maximum, keeps the band rows (within
:func:`~hybridface.search.band.band_tolerance` of it) and re-scores just those rows in float64 with
the same per-row dot as :func:`~hybridface.search.rerank.exact_top1`. The exact best row (ties to
the lowest row, hence the lowest identity) is always in the band, so the answer is bit-identical
to the general path's.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import band_tolerance
from hybridface.search.base import SearchResult
from hybridface.search.rerank import best_per_probe, top1_result
from hybridface.search.threads import scratch


def fits_direct(n_probes: int, n_rows: int, k: int) -> bool:
    """Whether :func:`direct_top1` applies: ``k == 1``, a few probes, a small similarity block."""
    return k == 1 and 0 < n_probes <= tuning.FEW_PROBES and 0 < n_probes * n_rows * 4 <= tuning.DIRECT_BYTES


def direct_top1(
    probes: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray
) -> SearchResult:
    """Exact k = 1 over every template for ``(n, d)`` unit probes (see the module docstring)."""
    n, n_rows = probes.shape[0], vectors.shape[0]
    tol = band_tolerance(probes.shape[1])
    if n == 1:
        sims = np.matmul(vectors, probes[0], out=scratch(n_rows, "direct"))
        rows = np.flatnonzero(sims >= sims.max() - tol)
        pr = np.zeros(len(rows), np.int64)
    else:
        sims = vectors @ probes.T  # (rows, n)
        rows, pr = np.nonzero(sims >= sims.max(axis=0) - tol)
    dots = np.einsum("ij,ij->i", vectors[rows], probes[pr], dtype=np.float64)
    if n == 1:
        best = np.array([rows[int(np.argmax(dots))]])  # first maximum = lowest row
        top = dots.max(keepdims=True)
    else:
        _, best, top = best_per_probe(pr, rows, dots)
    return top1_result(best, top, offsets, template_ids, n * n_rows + len(rows))
