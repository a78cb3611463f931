"""Tuning knobs of the search kernel (memory budgets, block sizes, path switches).

Read as ``tuning.NAME`` at call time by the kernel modules, so a test may monkeypatch them here.
"""

from __future__ import annotations

#: Bytes of float32 similarities one kernel call holds at a time.
DEFAULT_BLOCK_BYTES = 8 << 20
#: Probes per block (GEMM efficiency vs. the similarity block's height).
PROBE_BLOCK = 1024
#: Similarity block of the batched k = 1 scan (at most; kept L2/L3-friendly).
TOP1_BLOCK_BYTES = 4 << 20
#: Batched k = 1 scans use the compiled one-pass kernel (:mod:`~hybridface.search.fused`) when
#: Numba is installed; False forces the NumPy scan (tests compare the two).
FUSED_TOP1 = True
#: ... for scans of at least this many probe-template products: loading the compiled kernel costs
#: about 0.3-0.5 s once per process, more than the NumPy scan of a small batch.
FUSED_MIN_PRODUCTS = 1 << 22
#: Row slice the batched k = 1 NumPy scan tracks maxima of and re-multiplies (pass 2).
REVISIT_ROWS = 128
#: Smallest template chunk (rows) the kernel uses, whatever the budget.
MIN_CHUNK_ROWS = 256
#: Batches of at most this many probes use the template-major (GEMV-like) k = 1 path.
FEW_PROBES = 4
#: Similarity block of that path (fits the L2 cache: the gallery is streamed once).
FEW_BLOCK_BYTES = 256 << 10
#: Few-probe k = 1 searches whose whole float32 similarity block is at most this many bytes
#: make one BLAS call (no chunking, see :mod:`~hybridface.search.direct`).
DIRECT_BYTES = 1 << 20
#: Bytes of gathered float64 template rows per re-ranking chunk.
RERANK_BYTES = 16 << 20
#: Gathered scoring is used when rows x dim < identities x GATHER_RATIO (a BLAS call per
#: identity costs about as much as gathering and scoring this many row elements).
GATHER_RATIO = 10_000
