"""Search runtime: tuning knobs, threads with single-threaded BLAS, and the one Numba loader.

Tuning knobs (memory budgets, block sizes, path switches) are read as ``runtime.NAME`` at call
time by the kernel modules, so a test may monkeypatch them here. BLAS releases the GIL, so W
Python threads each running a BLAS product with BLAS limited to one thread really use W cores;
letting OpenBLAS start its own threads on top oversubscribes the cores. ``compiled(fn)`` wraps
``fn`` with ``numba.njit(nogil=True, cache=True, ...)`` once per process (thread-safe); without
Numba it returns ``None`` and the caller picks its fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from hybridface.blas import single_threaded_blas


# ---- Tuning knobs of the search kernel (memory budgets, block sizes, path switches).
#: Bytes of float32 similarities one kernel call holds at a time.
DEFAULT_BLOCK_BYTES = 8 << 20
#: Probes per block (GEMM efficiency vs. the similarity block's height).
PROBE_BLOCK = 1024
#: Similarity block of the batched k = 1 scan (at most; kept L2/L3-friendly).
TOP1_BLOCK_BYTES = 4 << 20
#: Batched k = 1 scans use the compiled one-pass kernel (:mod:`~hybridface.search.scan`) when
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
#: make one BLAS call (no chunking, see :mod:`~hybridface.search.scan`).
DIRECT_BYTES = 1 << 20
#: Bytes of gathered float64 template rows per re-ranking chunk.
RERANK_BYTES = 16 << 20
#: Gathered scoring is used when rows x dim < identities x GATHER_RATIO (a BLAS call per
#: identity costs about as much as gathering and scoring this many row elements).
GATHER_RATIO = 10_000


log = logging.getLogger(__name__)

# ---- Threads for the search strategies: single-threaded BLAS per worker, reusable pools,
# partitions.
T = TypeVar("T")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_LOCAL = threading.local()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hybridface-search")
        return _POOLS[workers]


def run_in_threads(fn: Callable[..., T], jobs: Sequence[tuple], workers: int) -> list[T]:
    """Run ``fn(*job)`` for every job on up to ``workers`` threads, BLAS single-threaded each.

    The thread pools are created once per worker count and reused (no per-call thread start-up).
    """
    with single_threaded_blas():
        if len(jobs) <= 1 or workers <= 1 or getattr(_LOCAL, "in_pool", False):
            # nested call from a pool thread: run inline (waiting on the same pool could deadlock)
            return [fn(*job) for job in jobs]
        return list(_pool(min(workers, len(jobs))).map(lambda job: _in_pool(fn, job), jobs))


def _in_pool(fn: Callable[..., T], job: tuple) -> T:
    _LOCAL.in_pool = True
    try:
        return fn(*job)
    finally:
        _LOCAL.in_pool = False


def scratch(size: int, slot: str = "block") -> np.ndarray:
    """A float32 buffer of ``size`` elements, reused by the calling thread across searches.

    A fresh multi-MiB ``np.empty`` per call is mapped anew by the allocator and page-faults on
    first touch (~1,000 faults for a 4 MiB block, measured); reusing one per thread and ``slot``
    avoids that. Never return (a view of) it to callers. Memory kept: the largest size asked.
    """
    bufs = getattr(_LOCAL, "scratch", None)
    if bufs is None:
        bufs = _LOCAL.scratch = {}
    buf = bufs.get(slot)
    if buf is None or buf.size < size:
        buf = bufs[slot] = np.empty(max(int(size), 1), np.float32)
    return buf[:size]


def split_identities(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split identities ``0..m`` into up to ``parts`` contiguous ranges with balanced row counts."""
    m = len(offsets) - 1
    if m == 0:
        return []
    total = int(offsets[-1])
    cuts = [0]
    for j in range(1, parts):
        cut = int(np.searchsorted(offsets, total * j / parts, side="left"))
        cut = min(max(cut, cuts[-1]), m)
        cuts.append(cut)
    cuts.append(m)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


# ---- Numba-compiled search kernels, built once per process: one loader for every kernel module.
_KERNELS: dict[Callable, Any] = {}
_LOCK = threading.Lock()


def compiled(fn: Callable, **options) -> Any | None:
    """``fn`` compiled with ``numba.njit(nogil=True, cache=True, **options)``, or ``None`` without Numba."""
    if fn not in _KERNELS:
        with _LOCK:
            if fn not in _KERNELS:
                try:
                    import numba
                except ImportError:
                    log.info("numba is not installed: %s is not compiled", fn.__qualname__)
                    _KERNELS[fn] = None
                else:
                    _KERNELS[fn] = numba.njit(nogil=True, cache=True, **options)(fn)
    return _KERNELS[fn]
