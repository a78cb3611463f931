"""Identification metrics: ranks, CMC, Rank-k, open-set DIR@FAR and timing helpers.

Conventions: identities are integer indices; a ranking is ``(n, k)`` (best first, ``-1`` = no
answer, as in `SearchResult.identities`); distances are cosine distances ``1 - cos`` (smaller is
better); a rank is 1-based, ``0`` meaning "not in the returned list".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError
from hybridface.gallery.calibration import threshold_at_far


def ranks_of_truth(ranking: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based position of ``truth[i]`` in ``ranking[i]``; 0 where it is absent. Shape ``(n,)``."""
    ranking = np.asarray(ranking)
    truth = np.asarray(truth).reshape(-1)
    if ranking.ndim != 2 or ranking.shape[0] != truth.shape[0]:
        raise ConfigError(f"ranking {ranking.shape} and truth {truth.shape} disagree on the number of probes")
    hits = ranking == truth[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)


def cmc(ranks: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic: ``out[r - 1]`` = fraction of probes with rank in ``1..r``."""
    ranks = np.asarray(ranks).reshape(-1)
    if max_rank < 1:
        raise ConfigError(f"max_rank must be >= 1, got {max_rank}")
    if ranks.size == 0:
        return np.full(max_rank, np.nan)
    r = np.where(ranks > 0, ranks, max_rank + 1)
    return np.array([(r <= k).mean() for k in range(1, max_rank + 1)], dtype=np.float64)


def rank_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of probes whose true identity is among the first ``k`` answers."""
    return float(cmc(ranks, k)[k - 1])


@dataclass(frozen=True)
class OpenSetPoint:
    """DIR at one operating point: target FAR, threshold, achieved FAR, DIR."""

    far_target: float
    threshold: float
    far: float
    dir: float
    num_impostors: int
    num_genuine: int


def dir_at_far(
    genuine_top1: np.ndarray,
    genuine_correct: np.ndarray,
    impostor_top1: np.ndarray,
    far: float,
) -> OpenSetPoint:
    """Detection-and-identification rate at the threshold that keeps impostor FAR ≤ ``far``.

    Args:
        genuine_top1: best distance of each probe whose identity is enrolled.
        genuine_correct: whether that probe's top-1 identity is right.
        impostor_top1: best distance of each probe of an identity not enrolled.
    """
    t = threshold_at_far(impostor_top1, far)
    g = np.asarray(genuine_top1, dtype=np.float64)
    ok = np.asarray(genuine_correct, dtype=bool)
    imp = np.asarray(impostor_top1, dtype=np.float64)
    return OpenSetPoint(
        far_target=float(far),
        threshold=t,
        far=float((imp <= t).mean()),
        dir=float((ok & (g <= t)).mean()) if g.size else float("nan"),
        num_impostors=int(imp.size),
        num_genuine=int(g.size),
    )


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of repeated calls, in milliseconds."""

    mean_ms: float
    median_ms: float
    p95_ms: float
    calls: int

    def to_dict(self) -> dict[str, float]:
        return {"mean_ms": self.mean_ms, "median_ms": self.median_ms, "p95_ms": self.p95_ms, "calls": self.calls}


def timing_from(seconds: list[float] | np.ndarray) -> Timing:
    """Summarise per-call durations (seconds) as a `Timing` in ms."""
    s = np.asarray(seconds, dtype=np.float64) * 1000.0
    if s.size == 0:
        return Timing(float("nan"), float("nan"), float("nan"), 0)
    return Timing(float(s.mean()), float(np.median(s)), float(np.percentile(s, 95)), int(s.size))


def time_calls(fn: Callable[[int], object], n: int, *, warmup: int = 1) -> tuple[Timing, list[object]]:
    """Call ``fn(i)`` for ``i in range(n)`` (after ``warmup`` untimed calls of ``fn(0)``); return
    the timing and the results."""
    for _ in range(min(warmup, n)):
        fn(0)
    out: list[object] = []
    secs: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        out.append(fn(i))
        secs.append(time.perf_counter() - t0)
    return timing_from(secs), out
