"""Threads for the search strategies: single-threaded BLAS per worker, reusable pools, partitions.

BLAS releases the GIL, so W Python threads each running a BLAS product with BLAS limited to one
thread really use W cores; letting OpenBLAS start its own threads on top oversubscribes the cores,
and its idle threads spin and slow the NumPy steps between products.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")

_CONTROLLER: list = []  # lazily built threadpoolctl controller (building one costs ~1 ms)
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_LOCAL = threading.local()


def _controller():
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is in the dev extra
            log.debug("threadpoolctl not installed: BLAS thread count left unchanged")
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


_BLAS_LOCK = threading.Lock()
_BLAS_USERS: list = [0, []]  # active single-threaded sections, the (library, threads) to restore


def _blas_libraries() -> list:
    ctl = _controller()
    return [] if ctl is None else [lib for lib in ctl.lib_controllers if lib.user_api == "blas"]


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread per call while any search is running (process-wide).

    Re-entrant and safe across concurrent searches: the first section to enter sets the limit, the
    last to leave restores the original thread counts. Libraries already at one thread are left
    alone (a few microseconds per search instead of a full ``threadpool_limits``). No-op without
    ``threadpoolctl``.
    """
    with _BLAS_LOCK:
        if _BLAS_USERS[0] == 0:
            saved = []
            for lib in _blas_libraries():
                threads = lib.get_num_threads()
                if threads is not None and threads != 1:
                    lib.set_num_threads(1)
                    saved.append((lib, threads))
            _BLAS_USERS[1] = saved
        _BLAS_USERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS[0] -= 1
            if _BLAS_USERS[0] == 0:
                for lib, threads in _BLAS_USERS[1]:
                    lib.set_num_threads(threads)
                _BLAS_USERS[1] = []


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
