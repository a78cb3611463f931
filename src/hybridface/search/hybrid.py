"""`Hybrid`: the LBG shortlist, then the shortlisted identities re-ranked in parallel (paper Fig. 5)."""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search.base import SearchResult
from hybridface.search.common import check_positive
from hybridface.search.indexed import Indexed
from hybridface.search.kernels import DEFAULT_BLOCK_BYTES, exact_scores, finalize, run_in_threads


class Hybrid(Indexed):
    """`Indexed` whose second stage splits each probe's shortlisted identities over ``workers`` threads.

    Worker ``w`` compares the probes with the templates of shortlist columns ``w, w + W, ...``; the
    per-identity results are merged and ordered exactly as in `Indexed`, so the answers are equal.
    """

    name = "hybrid"

    def __init__(
        self, matrix: TemplateMatrix, *, top_n: int = 5, workers: int = 4, block_bytes: int = DEFAULT_BLOCK_BYTES
    ):
        super().__init__(matrix, top_n=top_n, block_bytes=block_bytes)
        self.workers = check_positive("workers", workers)

    def _rerank(self, probes: np.ndarray, candidates: np.ndarray, k: int, evaluations: int) -> SearchResult:
        n, c = candidates.shape
        groups = [g for g in np.array_split(np.arange(c), min(self.workers, c)) if len(g)]
        out = run_in_threads(
            lambda cols: exact_scores(probes, self.matrix.vectors, self.matrix.offsets, np.ascontiguousarray(candidates[:, cols])),
            [(g,) for g in groups],
            self.workers,
        )
        sims = np.empty((n, c), np.float64)
        rows = np.empty((n, c), np.int64)
        for g, (s, r, _) in zip(groups, out):
            sims[:, g], rows[:, g] = s, r
        ids, dist, tids = finalize(candidates, sims, rows, k, self.matrix.template_ids)
        return SearchResult(ids, dist, tids, evaluations + sum(o[2] for o in out))
