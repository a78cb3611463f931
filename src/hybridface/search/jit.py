"""Numba-compiled search kernels, built once per process: one loader for every kernel module.

``compiled(fn)`` wraps ``fn`` with ``numba.njit(nogil=True, cache=True, ...)`` the first time it is
asked for (thread-safe) and returns the same dispatcher afterwards; without Numba it returns
``None`` and the caller picks its fallback (a NumPy path, or a `ConfigError`). Compiled code is
cached on disk by Numba, so only the first process of an installation compiles.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

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

