"""The paper's speed-up, properly: time per probe of the four scenarios as the gallery grows.

A protocol's gallery (its real templates) is replicated to each target size: copy ``r`` of
identity ``A`` becomes a new identity ``A~r`` whose templates are ``A``'s plus Gaussian noise of
standard deviation ``noise`` per dimension (then L2-normalised), so the gallery keeps the
protocol's templates-per-identity and cluster shape while growing in templates and identities.
Each strategy searches the protocol's real probes one per call (k = 1, the paper's scenario).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError
from hybridface.evaluation.metrics import timing_from

log = logging.getLogger(__name__)

__all__ = ["ScalingPoint", "replicate", "run_scaling", "overtakes"]


@dataclass(frozen=True)
class ScalingPoint:
    """One gallery size: mean ms per probe and index build seconds per strategy."""

    templates: int
    identities: int
    probes_timed: int
    ms_per_probe: dict[str, float]
    index_build_s: dict[str, float]

    def speedup(self, strategy: str) -> float | None:
        base, t = self.ms_per_probe.get("exhaustive"), self.ms_per_probe.get(strategy)
        return base / t if base and t else None


def replicate(vectors: np.ndarray, identities: list[str], size: int, *, noise: float,
              seed: int) -> tuple[np.ndarray, list[str]]:
    """``(size, d)`` float32 templates and their identity names: the gallery, then noisy copies
    of it under new identity names (``name~r``), cut at ``size`` rows (evenly spaced real
    templates when ``size`` is below the gallery's)."""
    n = len(vectors)
    if n == 0:
        raise ConfigError("scaling needs a non-empty gallery")
    if size < 1:
        raise ConfigError(f"scaling size {size} must be >= 1")
    if noise < 0:
        raise ConfigError(f"scaling noise={noise!r} must be >= 0")
    if size <= n:  # a smaller size: evenly spaced real templates
        keep = np.linspace(0, n - 1, size).round().astype(int)
        return np.ascontiguousarray(vectors[keep], np.float32), [identities[i] for i in keep]
    rng = np.random.default_rng(seed)
    copies = -(-size // n)
    out = np.empty((copies * n, vectors.shape[1]), np.float32)
    names: list[str] = []
    for r in range(copies):
        block = vectors if r == 0 else vectors + rng.standard_normal(vectors.shape).astype(np.float32) * noise
        out[r * n:(r + 1) * n] = block
        names.extend(identities if r == 0 else [f"{i}~{r}" for i in identities])
    return out[:size], names[:size]


def run_scaling(vectors: np.ndarray, identities: list[str], probes: np.ndarray, *, sizes, strategies, search,
                codewords: int, noise: float = 0.01, probes_timed: int = 200, seed: int = 0,
                model_id: str = "") -> tuple[ScalingPoint, ...]:
    """Time ``strategies`` (one probe per call, k = 1) on the gallery replicated to each size."""
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.index.lbg import build_codebooks
    from hybridface.search import searcher_for

    n_t = min(int(probes_timed), len(probes))
    pick = probes[np.linspace(0, len(probes) - 1, n_t).round().astype(int)] if n_t else probes[:0]
    points = []
    for size in sorted(int(s) for s in sizes):
        vecs, names = replicate(vectors, identities, size, noise=noise, seed=seed)
        matrix = TemplateMatrix.from_arrays(vecs, names, model_id=model_id)
        del vecs
        ms: dict[str, float] = {}
        build: dict[str, float] = {}
        indexed = None
        for strategy in strategies:
            m = matrix
            if strategy in ("indexed", "hybrid"):
                if indexed is None:
                    t0 = time.perf_counter()
                    indexed = build_codebooks(matrix, codewords=codewords)
                    build["codebooks"] = time.perf_counter() - t0
                m = indexed
            searcher = searcher_for(m, search.replace(strategy=strategy))
            try:
                searcher.search(pick[:1], 1)  # warm-up
                secs = np.empty(n_t)
                for j in range(n_t):
                    t = time.perf_counter()
                    searcher.search(pick[j:j + 1], 1)
                    secs[j] = time.perf_counter() - t
            finally:
                close = getattr(searcher, "close", None)
                if callable(close):
                    close()
            ms[strategy] = timing_from(secs).mean_ms
        log.info("scaling %d templates: %s", size, ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()))
        points.append(ScalingPoint(templates=size, identities=matrix.num_identities, probes_timed=n_t,
                                   ms_per_probe=ms, index_build_s=build))
    return tuple(points)


#: a strategy "overtakes" exhaustive when at least this much faster (5 %: below that is timing noise)
OVERTAKE_SPEEDUP = 1.05


def overtakes(points, strategy: str, *, margin: float = OVERTAKE_SPEEDUP) -> int | None:
    """Smallest measured gallery size from which ``strategy`` stays at least ``margin`` times
    faster than exhaustive."""
    first = None
    for p in sorted(points, key=lambda p: p.templates):
        s = p.speedup(strategy)
        if s is not None and s >= margin:
            first = p.templates if first is None else first
        else:
            first = None
    return first
