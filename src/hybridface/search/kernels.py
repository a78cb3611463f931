"""The one exhaustive search kernel and the exact re-ranking every strategy finishes with.

Two steps, shared by all four strategies:

1. :func:`kernel_candidates` — candidate generation: chunked float32 BLAS products of probe blocks
   with template blocks (never more than ``block_bytes`` of similarities at once), per-identity
   maximum over the identity's contiguous rows (:func:`segment_max`; for ``k == 1`` the best
   template's identity *is* the best identity, so rows are used directly), and a running k-th best
   threshold per probe. Kept are all identities within :func:`band_tolerance` (the float32
   rounding bound) of the k-th best, so the exact top-k is guaranteed to be among them.
2. :func:`exact_scores` + :func:`finalize` — the candidates are re-scored in float64 over all their
   templates (which also yields the best-matching template) and ordered by (distance, identity
   index). This step is canonical, so every strategy returns bit-identical identities, distances
   and template ids whenever its candidates contain the exact top-k — equal to a float64 brute
   force with ties going to the lower identity index.

Modules: the band and `Candidates` in :mod:`~hybridface.search.band`, the k = 1 scan in
:mod:`~hybridface.search.scan_top1`, the k > 1 scan in :mod:`~hybridface.search.scan_topk`,
shortlist scoring in :mod:`~hybridface.search.shortlist`, the float64 step in
:mod:`~hybridface.search.rerank`, knobs in :mod:`~hybridface.search.tuning`. Threads: see
:mod:`hybridface.search.threads`; selection helpers: :mod:`hybridface.search.topk`.
The names other modules import from here are re-exported.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import Candidates, band_tolerance, candidate_matrix, kth_best
from hybridface.search.rerank import exact_scores, exact_top1, finalize
from hybridface.search.scan_top1 import band_top1, band_top1_few
from hybridface.search.scan_topk import band_topk
from hybridface.search.shortlist import shortlist_candidates
from hybridface.search.tuning import DEFAULT_BLOCK_BYTES


def _rows_per_chunk(n_probes: int, n_rows: int, block_bytes: int) -> int:
    return int(min(max(n_rows, 1), max(tuning.MIN_CHUNK_ROWS, block_bytes // (4 * max(n_probes, 1)))))


def kernel_candidates(
    probes: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    k: int,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Candidates:
    """Candidate identities of a contiguous row range (the exhaustive kernel).

    Args:
        probes: ``(n, d)`` float32 unit rows.
        vectors: ``(R, d)`` float32 unit rows grouped by identity.
        offsets: ``(m + 1,)`` row boundaries *relative to* ``vectors`` (``offsets[0] == 0``).
        k: identities wanted per probe.
        block_bytes: memory budget of one float32 similarity block.

    Returns:
        `Candidates` with *local* identity indices (add the range's first identity), certified to
        contain each probe's exact top-k; ``evaluations`` = probe-template products computed.
    """
    offsets = np.asarray(offsets, np.int64)
    n, n_rows = probes.shape[0], vectors.shape[0]
    empty = Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n == 0 or n_rows == 0:
        return empty
    tol = band_tolerance(probes.shape[1])
    nb = min(n, tuning.PROBE_BLOCK)
    rc = _rows_per_chunk(nb, n_rows, block_bytes)
    prs, ids, scs = [], [], []
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for ps in range(0, n, nb):
        p = probes[ps : ps + nb]
        if k == 1:
            if p.shape[0] <= tuning.FEW_PROBES:
                pr, r, sc = band_top1_few(p, vectors, tol)
            else:
                pr, r, sc = band_top1(p, vectors, _rows_per_chunk(nb, n_rows, min(block_bytes, tuning.TOP1_BLOCK_BYTES)), tol)
            bands.append((pr + ps, r, sc))
            ident = np.searchsorted(offsets, r, side="right") - 1  # row -> identity (few rows)
            # one entry per (probe, identity): its best row (already so with one band row per probe)
            if not (len(pr) == p.shape[0] and (np.bincount(pr, minlength=p.shape[0]) == 1).all()):
                order = np.lexsort((-sc, ident, pr))
                pr, ident, sc = pr[order], ident[order], sc[order]
                first = np.ones(len(pr), bool)
                first[1:] = (pr[1:] != pr[:-1]) | (ident[1:] != ident[:-1])
                pr, ident, sc = pr[first], ident[first], sc[first]
        else:
            pr, ident, sc = band_topk(p, vectors, offsets, k, rc, tol)
        prs.append(pr + ps)
        ids.append(ident)
        scs.append(sc)
    band = tuple(np.concatenate(a) for a in zip(*bands)) if bands else None
    return Candidates(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), n * n_rows,
                      band)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "Candidates",
    "band_tolerance",
    "candidate_matrix",
    "exact_scores",
    "exact_top1",
    "finalize",
    "kernel_candidates",
    "kth_best",
    "shortlist_candidates",
]
