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

Threads: see :mod:`hybridface.search.threads`; selection helpers: :mod:`hybridface.search.topk`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybridface.search.threads import run_in_threads
from hybridface.search.topk import segment_max


#: Bytes of float32 similarities one kernel call holds at a time.
DEFAULT_BLOCK_BYTES = 8 << 20
#: Probes per block (GEMM efficiency vs. the similarity block's height).
PROBE_BLOCK = 1024
#: Smallest template chunk (rows) the kernel uses, whatever the budget.
MIN_CHUNK_ROWS = 256
#: Batches of at most this many probes use the template-major (GEMV-like) k = 1 path.
FEW_PROBES = 4
#: Similarity block of that path (fits the L2 cache: the gallery is streamed once).
FEW_BLOCK_BYTES = 256 << 10
#: Bytes of gathered float64 template rows per re-ranking chunk.
RERANK_BYTES = 16 << 20



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


def _prune(pr, key, sc, theta, tol):
    keep = sc >= theta[pr] - tol
    return pr[keep], key[keep], sc[keep]


def _hot_entries(block: np.ndarray, hot: np.ndarray, limit: np.ndarray, axis_probe: int):
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


def _band_top1(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float):
    """k = 1: rows within ``tol`` of the best row (the best row's identity is the best identity).

    Per chunk: one ``argmax`` and one ``max`` over the block with the argmax masked out (both
    vectorised row reductions over an in-cache block); only the rare probes whose second-best row
    is also in the band are compared element-wise. No full compare pass over the block.
    """
    nb = p.shape[0]
    theta = np.full(nb, -np.inf, np.float32)
    buf = np.empty((nb, min(rc, vectors.shape[0])), np.float32)
    every = np.arange(nb)
    prs, rows, scs = [], [], []
    held = 0
    for s in range(0, vectors.shape[0], rc):
        vc = vectors[s : s + rc]
        sims = buf[:, : vc.shape[0]]
        np.matmul(p, vc.T, out=sims)
        arg = sims.argmax(axis=1)
        top = sims[every, arg]
        np.maximum(theta, top, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(top >= limit)  # only these probes can contribute rows
        if len(hot) == 0:
            continue
        prs.append(hot)
        rows.append(arg[hot] + s)
        scs.append(top[hot])
        held += len(hot)
        if vc.shape[0] > 1:
            sims[every, arg] = -np.inf  # the argmax entries are recorded; look for a second one
            crowded = hot[sims[hot].max(axis=1) >= limit[hot]] if 8 * len(hot) < nb else \
                hot[(sims.max(axis=1) >= limit)[hot]]
            if len(crowded):
                pr, r = _hot_entries(sims, crowded, limit, 0)
                prs.append(pr)
                rows.append(r + s)
                scs.append(sims[pr, r])
                held += len(pr)
        if held > 4 * nb:
            pr, r, sc = _prune(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)
            prs, rows, scs, held = [pr], [r], [sc], len(pr)
    return _prune(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)


def _band_top1_few(p: np.ndarray, vectors: np.ndarray, tol: float):
    """k = 1 for a handful of probes: template-major products (a GEMV for one probe) streamed
    through an L2-sized ``(rows, nb)`` block, so a single probe reads the gallery once at memory
    speed; same argmax / masked-second-max band logic as :func:`_band_top1`."""
    nb = p.shape[0]
    rc = max(MIN_CHUNK_ROWS, FEW_BLOCK_BYTES // (4 * nb))
    theta = np.full(nb, -np.inf, np.float32)
    buf = np.empty((min(rc, vectors.shape[0]), nb), np.float32)
    every = np.arange(nb)
    pt = p[0] if nb == 1 else p.T
    prs, rows, scs = [], [], []
    for s in range(0, vectors.shape[0], rc):
        vc = vectors[s : s + rc]
        sims = buf[: vc.shape[0]]
        np.matmul(vc, pt, out=sims[:, 0] if nb == 1 else sims)
        arg = sims.argmax(axis=0)
        top = sims[arg, every]
        np.maximum(theta, top, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(top >= limit)
        if len(hot) == 0:
            continue
        prs.append(hot)
        rows.append(arg[hot] + s)
        scs.append(top[hot])
        if vc.shape[0] > 1:
            sims[arg, every] = -np.inf
            crowded = hot[(sims.max(axis=0) >= limit)[hot]]
            if len(crowded):
                pr, r = _hot_entries(sims, crowded, limit, 1)
                prs.append(pr)
                rows.append(r + s)
                scs.append(sims[r, pr])
    return _prune(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)


def _band_topk(p: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, k: int, rc: int, tol: float):
    """k > 1: per-identity maxima (contiguous rows, :func:`segment_max`) within ``tol`` of the k-th best.

    A dense ``(nb, k)`` array of the k best scores so far gives the threshold; entries that reach
    it are collected sparsely (few after the first chunks) and pruned against the final threshold.
    """
    nb = p.shape[0]
    best = np.full((nb, k), -np.inf, np.float32)  # k best identity scores so far (unordered)
    theta = np.full(nb, -np.inf, np.float32)
    prs, ids, scs = [], [], []
    held = 0
    carry: np.ndarray | None = None
    buf = np.empty((min(rc, vectors.shape[0]), nb), np.float32)
    pt = p.T
    s, n_rows = 0, vectors.shape[0]
    while s < n_rows:
        e = min(s + rc, n_rows)
        snapped = int(offsets[np.searchsorted(offsets, e, side="right") - 1])
        if s < snapped < e:
            e = snapped  # end on an identity boundary when one is in reach
        sims = buf[: e - s]
        np.matmul(vectors[s:e], pt, out=sims)
        first = int(np.searchsorted(offsets, s, side="right")) - 1
        last = int(np.searchsorted(offsets, e, side="left"))  # identities first..last-1 touched
        starts = np.maximum(offsets[first:last], s)
        ends = np.minimum(offsets[first + 1 : last + 1], e)
        per_id = segment_max(sims, starts - s, ends - starts)  # (m_c, nb); -inf if no rows
        if carry is not None:
            np.maximum(per_id[0], carry, out=per_id[0])
            carry = None
        if e < offsets[last]:  # the last identity continues in the next chunk
            carry = per_id[-1].copy()
            per_id = per_id[:-1]
        if per_id.shape[0]:
            hot = np.flatnonzero(per_id.max(axis=0) >= theta - tol)
            if len(hot):
                merged = np.concatenate([best[hot], per_id[:, hot].T], axis=1)
                best[hot] = np.partition(merged, merged.shape[1] - k, axis=1)[:, -k:]
                theta[hot] = best[hot].min(axis=1)
                pr, i = _hot_entries(per_id, hot, theta - tol, 1)
                keep = per_id[i, pr] > -np.inf
                pr, i = pr[keep], i[keep]
                prs.append(pr)
                ids.append(i + first)
                scs.append(per_id[i, pr])
                held += len(pr)
                if held > 4 * k * nb:
                    pr, i, sc = _prune(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)
                    prs, ids, scs, held = [pr], [i], [sc], len(pr)
        s = e
    if not prs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return _prune(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)


def _rows_per_chunk(n_probes: int, n_rows: int, block_bytes: int) -> int:
    return int(min(max(n_rows, 1), max(MIN_CHUNK_ROWS, block_bytes // (4 * max(n_probes, 1)))))


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
    nb = min(n, PROBE_BLOCK)
    rc = _rows_per_chunk(nb, n_rows, block_bytes)
    prs, ids, scs = [], [], []
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for ps in range(0, n, nb):
        p = probes[ps : ps + nb]
        if k == 1:
            if p.shape[0] <= FEW_PROBES:
                pr, r, sc = _band_top1_few(p, vectors, tol)
            else:
                pr, r, sc = _band_top1(p, vectors, rc, tol)
            bands.append((pr + ps, r, sc))
            ident = np.searchsorted(offsets, r, side="right") - 1  # row -> identity (few rows)
            # one entry per (probe, identity): its best row
            order = np.lexsort((-sc, ident, pr))
            pr, ident, sc = pr[order], ident[order], sc[order]
            first = np.ones(len(pr), bool)
            first[1:] = (pr[1:] != pr[:-1]) | (ident[1:] != ident[:-1])
            pr, ident, sc = pr[first], ident[first], sc[first]
        else:
            pr, ident, sc = _band_topk(p, vectors, offsets, k, rc, tol)
        prs.append(pr + ps)
        ids.append(ident)
        scs.append(sc)
    band = tuple(np.concatenate(a) for a in zip(*bands)) if bands else None
    return Candidates(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), n * n_rows,
                      band)  # type: ignore[arg-type]


def candidate_matrix(parts: Sequence[Candidates], n: int, k: int, dim: int) -> np.ndarray:
    """Merge candidate sets (global identity ids, disjoint identities) into an ``(n, w)`` matrix.

    Keeps the band around the merged k-th best; rows sorted by identity, padded with ``-1``.
    """
    pr = np.concatenate([c.probe for c in parts]) if parts else np.zeros(0, np.int64)
    ident = np.concatenate([c.identity for c in parts]) if parts else np.zeros(0, np.int64)
    sc = np.concatenate([c.score for c in parts]) if parts else np.zeros(0, np.float32)
    pr, ident, sc = _prune(pr, ident, sc, kth_best(pr, sc, k, n), band_tolerance(dim))
    order = np.lexsort((ident, pr))
    pr, ident = pr[order], ident[order]
    cnt = np.bincount(pr, minlength=n)
    out = np.full((n, int(cnt.max()) if len(pr) else 0), -1, np.int64)
    out[pr, np.arange(len(pr)) - (np.cumsum(cnt) - cnt)[pr]] = ident
    return out


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
    pr, rows, sc = _prune(*band, kth_best(band[0], band[2], 1, n), band_tolerance(probes.shape[1]))
    dots = np.einsum("ij,ij->i", vectors[rows], probes[pr], dtype=np.float64)
    order = np.lexsort((rows, -dots, pr))
    pr, rows, dots = pr[order], rows[order], dots[order]
    first = np.ones(len(pr), bool)
    first[1:] = pr[1:] != pr[:-1]
    if int(first.sum()) != n:
        return None
    best_rows = rows[first]
    ids = (np.searchsorted(offsets, best_rows, side="right") - 1).astype(np.int64)
    dist = (1.0 - dots[first]).astype(np.float32)
    return ids[:, None], dist[:, None], template_ids[best_rows].astype(np.int64)[:, None], len(rows)


# ---------------------------------------------------------------------------- shortlists
#: Gathered scoring is used when rows x dim < identities x GATHER_RATIO (a BLAS call per
#: identity costs about as much as gathering and scoring this many row elements).
GATHER_RATIO = 10_000


def _score_gathered(probes, vectors, offsets, pairs, ids, c, scores) -> int:
    """Best float32 similarity of (probe = pair // c, identity) pairs by gathering their rows."""
    starts = offsets[ids]
    counts = offsets[ids + 1] - starts
    cum = np.cumsum(counts)
    max_rows = max(1, RERANK_BYTES // (8 * probes.shape[1]))
    a = 0
    while a < len(pairs):
        base = int(cum[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(cum, base + max_rows, side="right")))
        cnt = counts[a:b]
        nz = np.flatnonzero(cnt > 0)
        if len(nz):
            seg = np.cumsum(cnt) - cnt
            tot = int(cnt.sum())
            rows = np.repeat(starts[a:b] - seg, cnt) + np.arange(tot)
            dots = np.einsum("ij,ij->i", vectors[rows], probes[np.repeat(pairs[a:b] // c, cnt)])
            scores[pairs[a:b][nz]] = np.maximum.reduceat(dots, seg[nz])
        a = b
    return int(cum[-1]) if len(cum) else 0


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
    if total_rows * probes.shape[1] < n_groups * GATHER_RATIO:
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
    pr, ident, sc = _prune(pr, ident, sc, kth_best(pr, sc, k, n), tol)
    return Candidates(pr, ident, sc, evals)


# ---------------------------------------------------------------------------- exact re-ranking
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
    cum = np.cumsum(counts)
    rerank_rows = max(1, RERANK_BYTES // (8 * max(vectors.shape[1], 1)))
    total_evals = int(cum[-1]) if len(cum) else 0
    a = 0
    while a < len(flat):
        # pairs a..b-1 hold at most `rerank_rows` rows (at least one pair)
        base = int(cum[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(cum, base + rerank_rows, side="right")))
        cnt = counts[a:b]
        nz = np.flatnonzero(cnt > 0)
        if len(nz):
            seg = np.cumsum(cnt) - cnt
            tot = int(cnt.sum())
            rows = np.repeat(starts[a:b] - seg, cnt) + np.arange(tot)
            # float64 products and sums of the float32 inputs, cast in einsum's buffers (no float64
            # copies of the gathered rows; ~10x faster). Each dot depends only on its own row
            # (tested: position-independent), so every strategy gets bit-identical scores.
            dots = np.einsum("ij,ij->i", vectors[rows], probes[np.repeat(pair_probe[a:b], cnt)], dtype=np.float64)
            best = np.maximum.reduceat(dots, seg[nz])
            pos = np.where(dots == np.repeat(best, cnt[nz]), np.arange(tot), tot)
            first = np.minimum.reduceat(pos, seg[nz])
            out_sims[a + nz] = best
            out_rows[a + nz] = rows[first]
        a = b
    return out_sims.reshape(n, c), out_rows.reshape(n, c), total_evals


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


