"""The one on-disk cache helper behind the crop, teacher-descriptor and template caches.

An entry is one ``.npz`` file of named arrays at ``<directory>/<key[:2]>/<key>.npz``. Writes are
atomic: a temporary file in the target folder, then ``os.replace``; the temporary file is removed
on any failure, so a crash or a full disk never leaves a torn entry or a stray temporary file.
An entry that cannot be read (or that a caller's check rejects) is logged, removed and reported as
a miss, so the caller recomputes it. Bottom layer: NumPy and the standard library only.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["NpzCache", "atomic_savez", "atomic_write", "default_cache_dir", "is_verified", "replace_dir", "write_verified"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$HYBRIDFACE_CACHE`` or ``~/.cache/hybridface``."""
    env = os.environ.get("HYBRIDFACE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hybridface"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_verified(path: Path) -> bool:
    """True when ``path`` and its ``.sha256`` side file exist and agree; a mismatch is logged (the
    caller rebuilds the file, never uses it)."""
    from hybridface.hashing import file_sha256

    sidecar = path.with_suffix(".sha256")
    if not (path.is_file() and sidecar.is_file()):
        return False
    if file_sha256(path) == sidecar.read_text().strip():
        return True
    log.warning("cached %s fails its hash check; rebuilding it", path)
    return False


def write_verified(path: Path, data: bytes) -> None:
    """Write ``data`` and its ``.sha256`` side file atomically (the file first, then its hash)."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    atomic_write(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode() + b"\n")


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` (in ``out``'s parent) at ``out``: renamed into place, an
    existing ``out`` first moved aside and removed, so ``out`` is never half-written."""
    import shutil

    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to ``path`` (``.npz``) atomically; the parent folder is created. Raises
    ``OSError`` on failure, after removing the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class NpzCache:
    """A folder of ``.npz`` entries sharded by the first two characters of their key."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        #: entries found corrupt (and removed) by this instance
        self.corrupt = 0

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def load(self, key: str, *, check: Callable[[dict[str, np.ndarray]], str | None] | None = None,
             what: str = "cache entry") -> dict[str, np.ndarray] | None:
        """The entry's arrays, or ``None`` on a miss. An unreadable entry, or one for which
        ``check(arrays)`` returns a reason, is logged (``what`` names it), removed and a miss."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {name: np.array(z[name]) for name in z.files}
            why = check(arrays) if check is not None else None
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            return arrays
        log.warning("corrupt %s %s (%s); recomputing", what, p, why)
        self.corrupt += 1
        p.unlink(missing_ok=True)
        return None

    def save(self, key: str, **arrays: np.ndarray) -> Path:
        """Store ``arrays`` under ``key`` atomically (raises ``OSError`` on failure)."""
        return atomic_savez(self.path(key), **arrays)
