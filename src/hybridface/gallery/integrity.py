"""Gallery integrity checks: the quick check on open and the stored-vector check.

* `quick_check_on_open` runs SQLite's ``PRAGMA quick_check`` the first time this process opens a
  given state of a file (keyed by device, inode, size and mtime), so a damaged file is refused
  before anything reads or writes it; server threads that open the same file again pay nothing.
* `check_vectors` refuses a loaded matrix whose templates are not unit vectors: SQLite has no
  checksums, so a flipped byte inside a template blob is only visible this way.
* `problems` lists what SQLite's check and the vector-norm check find (`hybridface.gallery.salvage`
  runs it in full for ``hybridface check``).

The damaged file is only ever read through SQLite (never Python ``open()``: closing such a
descriptor would drop this process's POSIX locks on it, see `hybridface.gallery.sqlite_file`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np

from hybridface.errors import CorruptGalleryError

log = logging.getLogger(__name__)

#: Files larger than this are not quick-checked on open (``hybridface check`` still does it).
QUICK_CHECK_MAX_BYTES = 4 << 30
#: Files up to this size get the full ``integrity_check`` on open (about 0.1 s per 100 MB).
FULL_CHECK_ON_OPEN_MAX_BYTES = 64 << 20
#: Largest allowed deviation of a stored template's norm from 1.
NORM_TOLERANCE = 1e-3

_checked: set[tuple[int, int, int, int]] = set()
_checked_lock = threading.Lock()


def corrupt_error(path: Path, problem: str) -> CorruptGalleryError:
    """The one message (one line) a damaged gallery gives: what is wrong and what to do."""
    problem = " ".join(problem.replace("*** in database main ***", "").split())
    return CorruptGalleryError(
        f"gallery {path} is damaged ({problem}); restore a backup, or copy every readable identity "
        f"into a new file with: hybridface check --db {path} --salvage NEW.db"
    )


def _state(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def quick_check_on_open(conn: sqlite3.Connection, path: Path) -> None:
    """Check a file once per process and file state; `CorruptGalleryError` when it is damaged.

    Files up to `FULL_CHECK_ON_OPEN_MAX_BYTES` get the full check (``PRAGMA integrity_check``,
    which also compares every index with its table, and every stored vector's norm); larger ones
    ``PRAGMA quick_check`` (pages and b-trees; the packed blocks' norms are checked by every load).
    """
    key = _state(path)
    if key is None or key in _checked:
        return
    if key[2] > QUICK_CHECK_MAX_BYTES:
        log.info("gallery %s is larger than %d bytes: skipped the check on open "
                 "(run hybridface check --db %s)", path, QUICK_CHECK_MAX_BYTES, path)
        return
    found = problems(conn, full=key[2] <= FULL_CHECK_ON_OPEN_MAX_BYTES)
    if found:
        raise corrupt_error(path, "; ".join(found[:3]))
    with _checked_lock:
        _checked.add(key)


def _norm_problems(conn: sqlite3.Connection, sql: str, d: int, what: str) -> list[str]:
    """Count stored vectors (one blob per row, one or more vectors each) that are not unit vectors."""
    blobs = [b for (b,) in conn.execute(sql)]
    good = [b for b in blobs if isinstance(b, bytes) and b and len(b) % (4 * d) == 0]
    bad = len(blobs) - len(good)
    if good:
        v = np.frombuffer(b"".join(good), dtype="<f4").reshape(-1, d)
        norms = np.einsum("ij,ij->i", v, v, dtype=np.float64)
        bad += int((~(np.abs(norms - 1.0) <= 2 * NORM_TOLERANCE)).sum())
    return [f"{bad} stored {what} are not unit vectors of the gallery's dimension"] if bad else []


def problems(conn: sqlite3.Connection, *, full: bool) -> list[str]:
    """SQLite's integrity (or quick) check, then the stored vectors' norms; ``[]`` when sound."""
    pragma = "integrity_check(20)" if full else "quick_check(20)"
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
        if rows != ["ok"]:
            return rows
        if conn.execute("PRAGMA application_id").fetchone()[0] == 0:
            return ["not a hybridface gallery (application id 0)"]
        dim = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        if not dim or not dim[0]:
            return []
        if not full:  # the packed blocks' norms are checked whenever a search loads them
            return []
        d = int(dim[0])
        return (_norm_problems(conn, "SELECT vectors FROM blocks", d, "template blocks' rows")
                + _norm_problems(conn, "SELECT vector FROM templates", d, "templates"))
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    except ValueError as exc:  # a meta value that is not a number
        return [f"unreadable metadata ({exc})"]


def check_vectors(path: Path, vectors: np.ndarray, *, what: str = "templates") -> None:
    """Refuse stored vectors that are not finite unit vectors (a damaged blob); cheap, O(n d)."""
    if len(vectors) == 0:
        return
    norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    bad = ~(np.abs(norms - 1.0) <= 2 * NORM_TOLERANCE)  # NaN counts as bad
    if bad.any():
        raise corrupt_error(path, f"{int(bad.sum())} stored {what} are not unit vectors")
