"""General k > 1 path of the exhaustive kernel: per-identity maxima within the band of the k-th best."""

from __future__ import annotations

import numpy as np

from hybridface.search.band import hot_entries, prune_band
from hybridface.search.topk import segment_max


def band_topk(p: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, k: int, rc: int, tol: float):
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
                pr, i = hot_entries(per_id, hot, theta - tol, 1)
                keep = per_id[i, pr] > -np.inf
                pr, i = pr[keep], i[keep]
                prs.append(pr)
                ids.append(i + first)
                scs.append(per_id[i, pr])
                held += len(pr)
                if held > 4 * k * nb:
                    pr, i, sc = prune_band(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)
                    prs, ids, scs, held = [pr], [i], [sc], len(pr)
        s = e
    if not prs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return prune_band(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)
