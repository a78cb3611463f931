"""BLAS threads: one per call while a latency- or contention-sensitive section runs.

OpenBLAS starts its own threads for every product; on a busy machine (or under our own worker
threads, each running a product) the idle ones spin and small products and LAPACK calls run up
to 10x slower. `single_threaded_blas` limits BLAS to one thread for the duration of a section,
process-wide, and restores it when the last section leaves. Needs ``threadpoolctl`` (the dev
extra); without it the section is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import threading

log = logging.getLogger(__name__)

_CONTROLLER: list = []  # lazily built threadpoolctl controller (building one costs ~1 ms)


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
def single_threaded_blas(*, refresh: bool = False):
    """Limit BLAS to one thread per call while any such section runs (process-wide).

    Re-entrant and safe across concurrent sections (searches, LBG fits): the first section to enter sets the limit, the
    last to leave restores the original thread counts. Libraries already at one thread are left
    alone (a few microseconds per section instead of a full ``threadpool_limits``). No-op without
    ``threadpoolctl``. The libraries are found once per process; ``refresh=True`` (for sections
    that cost far more than the ~1 ms scan, e.g. an LBG fit) looks again first, so a BLAS loaded
    since (torch's, SciPy's) is limited too.
    """
    with _BLAS_LOCK:
        if _BLAS_USERS[0] == 0:
            if refresh:
                _CONTROLLER.clear()
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
