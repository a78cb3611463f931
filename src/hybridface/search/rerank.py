"""Exact re-ranking: the certified float32 band, exact tie-aware top-k, float64 re-scoring.

An identity is a candidate when its float32 similarity is within :func:`band_tolerance` of the
probe's k-th best, so the exact (float64) top-k is guaranteed to be among the candidates.
Candidates are re-scored in float64 over all their templates (which also yields the best-matching
template), so every strategy returns bit-identical answers whenever its candidates contain the
exact top-k: equal to a float64 brute force, ties going to the lower identity index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybridface.search import runtime
from hybridface.search.base import SearchResult


# ---- The float32 candidate band: its tolerance, the `Candidates` it yields, and pruning/merging
# helpers.
def band_tolerance(dim: int) -> float:
    """Bound on the float32 rounding error of a unit-vector dot product in ``dim`` dimensions.

    A float32 sum of ``d`` products of unit vectors is off by at most about ``d * 2**-24``; twice
    that (both sides of a comparison) and a factor 2 of slack give the band kept for re-ranking.
    """
    return max(1e-6, 4.0 * dim * 2.0**-24)


@dataclass(frozen=True)
class Candidates:
    """Per-probe candidate identities from the float32 kernel.

    Holds every identity whose float32 similarity is at least the probe's k-th best minus the
    band tolerance, so the exact (float64) top-k is always among them. Flat arrays of equal length.
    """

    probe: np.ndarray
    identity: np.ndarray
    score: np.ndarray
    evaluations: int = 0
    #: k = 1 kernel only: every band *row* as (probe, row, float32 score); see `exact_top1`.
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def kth_best(probe: np.ndarray, score: np.ndarray, k: int, n: int) -> np.ndarray:
    """Per probe, the k-th largest ``score`` (``-inf`` with fewer than k); keys unique per probe."""
    theta = np.full(n, -np.inf, np.float32)
    if len(probe) == 0:
        return theta
    order = np.lexsort((-score, probe))
    cnt = np.bincount(probe, minlength=n)
    start = np.cumsum(cnt) - cnt
    has = np.flatnonzero(cnt >= k)
    theta[has] = score[order[start[has] + k - 1]]
    return theta


def prune_band(pr, key, sc, theta, tol):
    """Keep the entries whose score is within ``tol`` of their probe's threshold ``theta``."""
    keep = sc >= theta[pr] - tol
    return pr[keep], key[keep], sc[keep]


def hot_entries(block: np.ndarray, hot: np.ndarray, limit: np.ndarray, axis_probe: int):
    """Positions ``(probe, other)`` of ``block`` entries >= ``limit[probe]`` among the ``hot`` probes."""
    if axis_probe == 0:
        if 2 * len(hot) > block.shape[0]:  # most probes hot: compare in place, no copy
            f = np.flatnonzero(block >= limit[:, None])
            return f // block.shape[1], f % block.shape[1]
        sub = block[hot]  # (h, c)
        f = np.flatnonzero(sub >= limit[hot][:, None])
        return hot[f // sub.shape[1]], f % sub.shape[1]
    sub = block[:, hot]  # (c, h)
    f = np.flatnonzero(sub >= limit[hot][None, :])
    return hot[f % len(hot)], f // len(hot)


def candidate_matrix(parts: Sequence[Candidates], n: int, k: int, dim: int) -> np.ndarray:
    """Merge candidate sets (global identity ids, disjoint identities) into an ``(n, w)`` matrix.

    Keeps the band around the merged k-th best; rows sorted by identity, padded with ``-1``.
    """
    pr = np.concatenate([c.probe for c in parts]) if parts else np.zeros(0, np.int64)
    ident = np.concatenate([c.identity for c in parts]) if parts else np.zeros(0, np.int64)
    sc = np.concatenate([c.score for c in parts]) if parts else np.zeros(0, np.float32)
    pr, ident, sc = prune_band(pr, ident, sc, kth_best(pr, sc, k, n), band_tolerance(dim))
    order = np.lexsort((ident, pr))
    pr, ident = pr[order], ident[order]
    cnt = np.bincount(pr, minlength=n)
    out = np.full((n, int(cnt.max()) if len(pr) else 0), -1, np.int64)
    out[pr, np.arange(len(pr)) - (np.cumsum(cnt) - cnt)[pr]] = ident
    return out


# ---- Exact, tie-aware top-k selection and per-segment maxima (the reductions the kernel needs).
def select_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the ``k`` largest entries per row of ``scores`` ``(n, c)``.

    Sorted by score descending; equal scores keep the lower position first (exact, not arbitrary,
    also at the k-th boundary). Returns ``(n, min(k, c))`` int64.
    """
    n, c = scores.shape
    if c <= k:
        return np.argsort(-scores, axis=1, kind="stable")
    if c >= 16 * GROUP and 4 * k * GROUP <= c:
        return _select_topk_grouped(scores, k)
    return _select_topk_dense(scores, k)


#: Column group width of the two-level top-k selection.
GROUP = 64


def _select_topk_grouped(scores: np.ndarray, k: int) -> np.ndarray:
    """Two-level selection: group maxima (one fast pass) pick <= k groups that hold the top k.

    Exact: every entry >= the k-th largest lies in a group whose maximum is >= the k-th largest
    group maximum. Rows where more than k groups reach that value (ties) use the dense path.
    """
    n, c = scores.shape
    cg = c // GROUP * GROUP
    gmax = scores[:, :cg].reshape(n, cg // GROUP, GROUP).max(axis=2)
    if cg < c:
        gmax = np.concatenate([gmax, scores[:, cg:].max(axis=1, keepdims=True)], axis=1)
    ng = gmax.shape[1]
    gthr = np.partition(gmax, ng - k, axis=1)[:, ng - k : ng - k + 1]
    gsel = gmax >= gthr
    gcnt = np.count_nonzero(gsel, axis=1)
    pos = np.empty((n, k), np.int64)
    ok = np.flatnonzero(gcnt == k)
    if len(ok):
        groups = (np.flatnonzero(gsel[ok]) % ng).reshape(len(ok), k)  # ascending
        cols = (groups[:, :, None] * GROUP + np.arange(GROUP)).reshape(len(ok), k * GROUP)
        valid = cols < c
        sub = np.where(valid, np.take_along_axis(scores[ok], np.minimum(cols, c - 1), axis=1), -np.inf)
        local = _select_topk_dense(sub.astype(scores.dtype, copy=False), k)
        pos[ok] = np.take_along_axis(cols, local, axis=1)
    rest = np.flatnonzero(gcnt != k)
    if len(rest):
        pos[rest] = _select_topk_dense(scores[rest], k)
    return pos


def _select_topk_dense(scores: np.ndarray, k: int) -> np.ndarray:
    n, c = scores.shape
    if c <= k:
        return np.argsort(-scores, axis=1, kind="stable")
    thr = np.partition(scores, c - k, axis=1)[:, c - k : c - k + 1]
    ge = scores >= thr
    cnt = np.count_nonzero(ge, axis=1)
    pos = np.empty((n, k), np.int64)
    exact = np.flatnonzero(cnt == k)
    pos[exact] = (np.flatnonzero(ge[exact]) % c).reshape(len(exact), k)
    # rows with more than k entries >= the k-th value have a tie at the boundary: lowest positions
    tied = np.flatnonzero(cnt > k)
    if len(tied):
        sub = scores[tied]
        above = sub > thr[tied]
        equal = sub == thr[tied]
        need = k - above.sum(axis=1, keepdims=True)
        chosen = above | (equal & (np.cumsum(equal, axis=1) <= need))
        pos[tied] = (np.flatnonzero(chosen) % c).reshape(len(tied), k)
    vals = np.take_along_axis(scores, pos, axis=1)
    # order by score descending, then position ascending
    order = np.lexsort((pos, -vals), axis=1)
    return np.take_along_axis(pos, order, axis=1)


#: Identities with more rows than this in a chunk are reduced one by one (others in lock-step).
LONG_SEGMENT = 32


def segment_max(block: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-segment maximum over rows of ``block`` ``(R, nb)``: ``(len(starts), nb)``.

    ``np.maximum.reduceat`` is 20-150x slower than a plain reduction here, so segments are reduced
    in lock-step (row j of every segment at once) or, for long ones, with ``max(axis=0)``.
    Empty segments give ``-inf``.
    """
    m, nb = len(starts), block.shape[1]
    if m and counts[0] > 0 and (counts == counts[0]).all() and starts[0] + m * counts[0] == block.shape[0] and (
        m == 1 or (np.diff(starts) == counts[0]).all()
    ):
        t = int(counts[0])
        return block[starts[0] :].reshape(m, t, nb).max(axis=1)
    out = np.full((m, nb), -np.inf, np.float32)
    long_ = np.flatnonzero(counts > LONG_SEGMENT)
    for i in long_:
        out[i] = block[starts[i] : starts[i] + counts[i]].max(axis=0)
    short = np.flatnonzero((counts > 0) & (counts <= LONG_SEGMENT))
    if len(short):
        perm = short[np.argsort(-counts[short], kind="stable")]
        st, ct = starts[perm], counts[perm]
        acc = block[st]
        # active[j] = how many segments have more than j rows (ct is sorted descending)
        active = np.searchsorted(-ct, -np.arange(1, int(ct[0])), side="left")
        for j, a in enumerate(active, start=1):
            np.maximum(acc[:a], block[st[:a] + j], out=acc[:a])
        out[perm] = acc
    return out


# ---- Exact float64 re-ranking every strategy finishes with: canonical (distance, identity) order.
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
    rerank_rows = max(1, runtime.RERANK_BYTES // (8 * max(vectors.shape[1], 1)))
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
