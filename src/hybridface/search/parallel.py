"""`Parallel`: identities partitioned over W threads, per-probe top-k merged (paper Fig. 4).

Workers are Python threads running the shared BLAS kernel with BLAS limited to one thread each
(BLAS releases the GIL, so the W partitions really run at the same time on W cores).
"""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search.base import SearchResult
from hybridface.search.common import check_positive, kernel_result, prepare, range_candidates
from hybridface.search.direct import direct_top1, fits_direct
from hybridface.search.threads import run_in_threads, single_threaded_blas, split_identities
from hybridface.search.tuning import DEFAULT_BLOCK_BYTES


class Parallel:
    """Exhaustive search with the identities split into ``workers`` contiguous, row-balanced parts.

    Returns exactly what `Exhaustive` returns (same kernel per part, ties to the lower identity).
    """

    name = "parallel"

    def __init__(self, matrix: TemplateMatrix, *, workers: int = 4, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.matrix = matrix
        self.workers = check_positive("workers", workers)
        self.block_bytes = check_positive("block_bytes", block_bytes)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        if fits_direct(p.shape[0], self.matrix.num_templates, k):  # too small to split over threads
            with single_threaded_blas():
                return direct_top1(p, self.matrix.vectors, self.matrix.offsets, self.matrix.template_ids)
        parts = run_in_threads(
            lambda lo, hi: range_candidates(p, self.matrix, lo, hi, k, self.block_bytes),
            split_identities(self.matrix.offsets, self.workers),
            self.workers,
        )
        return kernel_result(self.matrix, p, parts, k)
