"""`Hybrid`: the LBG shortlist, then the shortlisted identities re-ranked in parallel (paper Fig. 5)."""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search.base import SearchResult
from hybridface.search.common import check_positive, prepare
from hybridface.search.indexed import Indexed
from hybridface.search.threads import run_in_threads, single_threaded_blas
from hybridface.search.tuning import DEFAULT_BLOCK_BYTES


#: Below this many template rows to re-rank, the re-ranking runs inline (threads cost more).
PARALLEL_MIN_ROWS = 20_000


class Hybrid(Indexed):
    """`Indexed` with both stages spread over ``workers`` threads (BLAS single-threaded in each).

    The codeword shortlist runs on probe blocks in parallel; then the shortlisted identities are
    split over the workers (row-balanced; each worker compares the templates of its identities with
    the probes that shortlisted them), and the per-identity results are merged and ordered exactly
    as in `Indexed`, so the answers are equal. Work too small to pay for threads (fewer than
    ``2 * workers`` probes for the shortlist, fewer than ``PARALLEL_MIN_ROWS`` template rows for
    the re-ranking) runs inline.
    """

    name = "hybrid"

    def __init__(
        self,
        matrix: TemplateMatrix,
        *,
        top_n: int = 5,
        workers: int = 4,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        cells: int | None = None,
        probe_cells: int = 16,
    ):
        super().__init__(matrix, top_n=top_n, block_bytes=block_bytes, cells=cells, probe_cells=probe_cells)
        self.workers = check_positive("workers", workers)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        n, size = p.shape[0], max(self.top_n, k)
        with single_threaded_blas():
            if n >= 2 * self.workers and size < self.matrix.num_identities:
                blocks = [b for b in np.array_split(np.arange(n), self.workers) if len(b)]
                parts = run_in_threads(
                    lambda a, b: self.shortlist(p[a:b], size),
                    [(int(b[0]), int(b[-1]) + 1) for b in blocks],
                    self.workers,
                )
                candidates = np.concatenate([c for c, _ in parts])
                ev = sum(e for _, e in parts)
            else:
                candidates, ev = self.shortlist(p, size)
            return self._rerank(p, np.ascontiguousarray(candidates), k, ev)

    def _rerank_workers(self, shortlist: np.ndarray) -> int:
        valid = shortlist[shortlist >= 0]
        rows = int(np.diff(self.matrix.offsets)[valid].sum()) if valid.size else 0
        return self.workers if rows >= PARALLEL_MIN_ROWS else 1
