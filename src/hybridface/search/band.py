"""The float32 candidate band: its tolerance, the `Candidates` it yields, and pruning/merging helpers.

An identity is a candidate when its float32 similarity is within :func:`band_tolerance` of the
probe's k-th best, so the exact (float64) top-k is guaranteed to be among the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
