"""Exact, tie-aware top-k selection and per-segment maxima (the reductions the kernel needs)."""

from __future__ import annotations

import numpy as np


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


