"""Kernel candidates restricted to per-probe identity shortlists (the indexed and hybrid strategies)."""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import Candidates, band_tolerance, kth_best, prune_band
from hybridface.search.rerank import gathered_chunks
from hybridface.search.threads import run_in_threads


def _score_gathered(probes, vectors, offsets, pairs, ids, c, scores) -> int:
    """Best float32 similarity of (probe = pair // c, identity) pairs by gathering their rows."""
    starts = offsets[ids]
    counts = offsets[ids + 1] - starts
    max_rows = max(1, tuning.RERANK_BYTES // (8 * probes.shape[1]))
    for a, cnt, nz, seg, rows in gathered_chunks(starts, counts, max_rows):
        chunk = pairs[a:a + len(cnt)]
        dots = np.einsum("ij,ij->i", vectors[rows], probes[np.repeat(chunk // c, cnt)])
        scores[chunk[nz]] = np.maximum.reduceat(dots, seg[nz])
    return int(counts.sum())


def shortlist_candidates(
    probes: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    shortlist: np.ndarray,
    k: int,
    *,
    workers: int = 1,
) -> Candidates:
    """Kernel candidates restricted to per-probe shortlists ``(n, c)`` of identities (``-1`` = none).

    Pairs are grouped by identity, so each shortlisted identity costs one BLAS product of its
    contiguous rows with the probes that shortlisted it. The distinct identities are split over
    ``workers`` threads (row-balanced). Returns the band around each probe's k-th best, as
    :func:`kernel_candidates` does.
    """
    n, c = shortlist.shape
    flat = shortlist.ravel()
    valid = np.flatnonzero(flat >= 0)
    order = valid[np.argsort(flat[valid], kind="stable")]
    ids_sorted = flat[order]
    cut = np.flatnonzero(np.diff(ids_sorted)) + 1
    g_start = np.concatenate([[0], cut]).astype(np.int64)
    g_end = np.concatenate([cut, [len(order)]]).astype(np.int64)
    scores = np.full(n * c, -np.inf, np.float32)

    def score(g_lo: int, g_hi: int) -> int:
        evals = 0
        for a, b in zip(g_start[g_lo:g_hi], g_end[g_lo:g_hi]):
            u = ids_sorted[a]
            rows = vectors[offsets[u] : offsets[u + 1]]
            if len(rows):
                pairs = order[a:b]
                scores[pairs] = (rows @ probes[pairs // c].T).max(axis=0)
                evals += len(rows) * len(pairs)
        return evals

    n_groups = len(g_start)
    counts = np.diff(offsets)
    total_rows = int(counts[ids_sorted].sum()) if len(ids_sorted) else 0
    if total_rows * probes.shape[1] < n_groups * tuning.GATHER_RATIO:
        # many small identities: one gathered, vectorised pass beats a BLAS call per identity
        parts = [p for p in np.array_split(np.arange(len(order)), max(1, min(workers, len(order)))) if len(p)]
        evals = sum(
            run_in_threads(
                lambda idx: _score_gathered(probes, vectors, offsets, order[idx], ids_sorted[idx], c, scores),
                [(p,) for p in parts],
                workers,
            )
        )
        jobs = []
    elif workers > 1 and n_groups > 1:
        sizes = np.diff(offsets)[ids_sorted[g_start]] * (g_end - g_start)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        cuts = np.searchsorted(bounds, bounds[-1] * np.arange(1, workers) / workers)
        edges = np.unique(np.concatenate([[0], np.clip(cuts, 0, n_groups), [n_groups]]))
        jobs = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    else:
        jobs = [(0, n_groups)]
    if jobs:
        evals = sum(run_in_threads(score, jobs, workers))
    keep = np.flatnonzero(scores > -np.inf)
    tol = band_tolerance(probes.shape[1])
    pr, ident, sc = keep // c, flat[keep], scores[keep]
    pr, ident, sc = prune_band(pr, ident, sc, kth_best(pr, sc, k, n), tol)
    return Candidates(pr, ident, sc, evals)
