"""Exact float64 re-ranking every strategy finishes with: canonical (distance, identity) order.

Candidates are re-scored in float64 over all their templates (which also yields the best-matching
template), so every strategy returns bit-identical answers whenever its candidates contain the
exact top-k: equal to a float64 brute force, ties going to the lower identity index.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import band_tolerance, kth_best, prune_band
from hybridface.search.base import SearchResult


def exact_top1(
    probes: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray,
    band: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """k = 1 from the band *rows* alone: float64 re-scoring of just those rows.

    Every row whose float64 similarity equals a probe's exact best lies within the band (its
    float32 score is at least the float32 maximum minus the tolerance), so the best band row —
    ties to the lowest row, hence the lowest identity — is exactly what :func:`exact_scores` +
    :func:`finalize` return over whole candidate identities, with the same per-pair float64 dot.
    Returns ``(identities, distances, template_ids, rows re-scored)`` as ``(n, 1)`` arrays, or
    ``None`` if some probe has no band row (the caller falls back to the general path).
    """
    n = probes.shape[0]
    theta = np.full(n, -np.inf, np.float32)
    np.maximum.at(theta, band[0], band[2])  # per-probe best band score (= kth_best(..., 1, n))
    pr, rows, sc = prune_band(*band, theta, band_tolerance(probes.shape[1]))
    dots = np.einsum("ij,ij->i", vectors[rows], probes[pr], dtype=np.float64)
    if len(pr) == n and (np.bincount(pr, minlength=n) == 1).all():  # one band row per probe
        best_rows = np.empty(n, np.int64)
        best_rows[pr] = rows
        top = np.empty(n, np.float64)
        top[pr] = dots
    else:
        have, best_rows, top = best_per_probe(pr, rows, dots)
        if len(have) != n:
            return None
    ids = (np.searchsorted(offsets, best_rows, side="right") - 1).astype(np.int64)
    dist = (1.0 - top).astype(np.float32)
    return ids[:, None], dist[:, None], template_ids[best_rows].astype(np.int64)[:, None], len(rows)


def best_per_probe(pr: np.ndarray, rows: np.ndarray, dots: np.ndarray):
    """Per probe that has entries (ascending): its best row — highest float64 ``dots``, ties to the
    lowest row, hence the lowest identity. Returns ``(probes, best rows, best dots)``."""
    order = np.lexsort((rows, -dots, pr))
    first = np.ones(len(order), bool)
    first[1:] = pr[order[1:]] != pr[order[:-1]]
    sel = order[first]
    return pr[sel], rows[sel], dots[sel]


def top1_result(best_rows: np.ndarray, top: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray,
                evaluations: int) -> SearchResult:
    """A k = 1 `SearchResult` from each probe's best row and its float64 similarity."""
    ids = (np.searchsorted(offsets, best_rows, side="right") - 1).astype(np.int64)
    return SearchResult(
        identities=ids[:, None],
        distances=(1.0 - top).astype(np.float32)[:, None],
        template_ids=template_ids[best_rows].astype(np.int64)[:, None],
        distance_evaluations=int(evaluations),
    )


def gathered_chunks(starts: np.ndarray, counts: np.ndarray, max_rows: int):
    """Walk pairs (each ``counts[i]`` contiguous rows from ``starts[i]``) in consecutive ranges of at
    most ``max_rows`` gathered rows (at least one pair per range).

    Yields ``(a, cnt, nz, seg, rows)`` for each range ``a..a+len(cnt)-1`` that has rows: ``cnt``
    its row counts, ``nz`` the positions with rows, ``seg`` each pair's first position in ``rows``
    (the gathered row indices, pair after pair).
    """
    cum = np.cumsum(counts)
    a = 0
    while a < len(counts):
        base = int(cum[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(cum, base + max_rows, side="right")))
        cnt = counts[a:b]
        nz = np.flatnonzero(cnt > 0)
        if len(nz):
            seg = np.cumsum(cnt) - cnt
            rows = np.repeat(starts[a:b] - seg, cnt) + np.arange(int(cnt.sum()))
            yield a, cnt, nz, seg, rows
        a = b


def exact_scores(
    probes: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Float64 best similarity and best row of every (probe, candidate identity) pair.

    ``candidates`` is ``(n, c)`` global identity indices (``-1`` = none). Returns ``(sims, rows,
    evaluations)`` with ``-inf`` / ``-1`` for missing candidates or identities without templates.
    Within an identity, equal similarities keep the lower row.
    """
    n, c = candidates.shape
    flat = candidates.ravel()
    valid = flat >= 0
    safe = np.where(valid, flat, 0)
    starts = offsets[safe]
    counts = np.where(valid, offsets[safe + 1] - starts, 0)
    pair_probe = np.repeat(np.arange(n, dtype=np.int64), c)
    out_sims = np.full(n * c, -np.inf, np.float64)
    out_rows = np.full(n * c, -1, np.int64)
    rerank_rows = max(1, tuning.RERANK_BYTES // (8 * max(vectors.shape[1], 1)))
    for a, cnt, nz, seg, rows in gathered_chunks(starts, counts, rerank_rows):
        tot = len(rows)
        # float64 products and sums of the float32 inputs, cast in einsum's buffers (no float64
        # copies of the gathered rows; ~10x faster). Each dot depends only on its own row
        # (tested: position-independent), so every strategy gets bit-identical scores.
        dots = np.einsum("ij,ij->i", vectors[rows], probes[np.repeat(pair_probe[a:a + len(cnt)], cnt)],
                         dtype=np.float64)
        best = np.maximum.reduceat(dots, seg[nz])
        pos = np.where(dots == np.repeat(best, cnt[nz]), np.arange(tot), tot)
        first = np.minimum.reduceat(pos, seg[nz])
        out_sims[a + nz] = best
        out_rows[a + nz] = rows[first]
    return out_sims.reshape(n, c), out_rows.reshape(n, c), int(counts.sum())


def finalize(
    candidates: np.ndarray,
    sims: np.ndarray,
    rows: np.ndarray,
    k: int,
    template_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order exact-scored candidates by (distance, identity), keep ``k``, pad with ``-1``/``inf``.

    Returns ``(identities, distances, template_ids)`` as ``(n, k)`` int64 / float32 / int64.
    """
    n = candidates.shape[0]
    order = np.lexsort((np.where(candidates < 0, np.iinfo(np.int64).max, candidates), -sims), axis=1)[:, :k]
    ids = np.take_along_axis(np.where(np.isfinite(sims), candidates, -1), order, axis=1)
    best = np.take_along_axis(sims, order, axis=1)
    best_rows = np.take_along_axis(rows, order, axis=1)
    out_ids = np.full((n, k), -1, np.int64)
    out_d = np.full((n, k), np.inf, np.float32)
    out_t = np.full((n, k), -1, np.int64)
    w = ids.shape[1]
    ok = ids >= 0
    out_ids[:, :w] = ids
    out_d[:, :w] = np.where(ok, 1.0 - best, np.inf)
    out_t[:, :w] = np.where(ok, template_ids[np.where(ok, best_rows, 0)], -1)
    return out_ids, out_d, out_t


