"""`Exhaustive`: every template of every identity, via the chunked BLAS kernel."""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.options import SearchOptions
from hybridface.search import tuning
from hybridface.search.base import SearchResult
from hybridface.search.common import check_positive, kernel_result, prepare, range_candidates
from hybridface.search.direct import direct_top1, fits_direct
from hybridface.search.threads import run_in_threads, single_threaded_blas, split_identities
from hybridface.search.tuning import DEFAULT_BLOCK_BYTES




class Exhaustive:
    """Compare each probe with all N templates; the reference every other strategy must match.

    Args:
        matrix: the gallery view.
        threads: how many threads search: ``1`` runs in the caller's thread with single-threaded
            BLAS (the paper's sequential baseline); ``> 1`` splits the probe batch (or, for fewer
            probes than ``2 * threads``, the identities) over that many threads, BLAS
            single-threaded in each. Results do not depend on ``threads``.
        block_bytes: memory budget of one similarity block.
        storage: ``"float32"`` (default) or ``"int8"``: also keep per-dimension int8 codes of the
            templates (``int8_``, +27 % memory at 60-D) and answer few-probe (at most
            ``tuning.FEW_PROBES``) k = 1 searches from them, streaming 64 instead of 240 bytes per
            template, with an exact float64 re-scoring of the certified band (see
            :mod:`~hybridface.search.quantized`): results are bit-identical to ``"float32"``.
            Batches and k > 1 (compute-bound) use the float32 path. Needs Numba.
    """

    name = "exhaustive"

    def __init__(
        self, matrix: TemplateMatrix, *, threads: int = 1, block_bytes: int = DEFAULT_BLOCK_BYTES,
        storage: str = "float32",
    ):
        self.matrix = matrix
        self.threads = check_positive("threads", threads)
        self.block_bytes = check_positive("block_bytes", block_bytes)
        self.storage = SearchOptions(storage=storage).storage
        self.int8_ = None
        if storage == "int8":
            from hybridface.search.quantized import load_int8_kernel, quantize_int8

            load_int8_kernel()  # ConfigError without Numba; loads (or compiles) the kernel now
            self.int8_ = quantize_int8(matrix.vectors)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        m, n = self.matrix.num_identities, p.shape[0]
        if self.int8_ is not None and k == 1 and 0 < n <= tuning.FEW_PROBES:
            from hybridface.search.quantized import int8_top1

            mat = self.matrix
            return int8_top1(p, self.int8_, mat.vectors, mat.offsets, mat.template_ids)
        if fits_direct(n, self.matrix.num_templates, k):  # one small product: threads cost more
            with single_threaded_blas():
                return direct_top1(p, self.matrix.vectors, self.matrix.offsets, self.matrix.template_ids)
        if self.threads == 1:
            parts = run_in_threads(
                lambda: range_candidates(p, self.matrix, 0, m, k, self.block_bytes), [()], 1
            )
        elif n >= 2 * self.threads:
            chunks = [c for c in np.array_split(np.arange(n), self.threads) if len(c)]
            parts = run_in_threads(
                lambda a, b: range_candidates(p[a:b], self.matrix, 0, m, k, self.block_bytes, probe_base=a),
                [(int(c[0]), int(c[-1]) + 1) for c in chunks],
                self.threads,
            )
        else:
            parts = run_in_threads(
                lambda lo, hi: range_candidates(p, self.matrix, lo, hi, k, self.block_bytes),
                split_identities(self.matrix.offsets, self.threads),
                self.threads,
            )
        return kernel_result(self.matrix, p, parts, k)
