"""Gallery integrity: the quick check on open, the full check, salvage and online backup.

* `quick_check_on_open` runs SQLite's ``PRAGMA quick_check`` the first time this process opens a
  given state of a file (keyed by device, inode, size and mtime), so a damaged file is refused
  before anything reads or writes it; server threads that open the same file again pay nothing.
* `check_vectors` refuses a loaded matrix whose templates are not unit vectors: SQLite has no
  checksums, so a flipped byte inside a template blob is only visible this way.
* `full_check` is ``PRAGMA integrity_check`` (every page, index and constraint).
* `salvage` copies every identity whose rows can still be read into a new gallery file.
* `backup` uses SQLite's online backup API: a consistent copy, safe while a server writes.

The damaged file is only ever read through SQLite (never Python ``open()``: closing such a
descriptor would drop this process's POSIX locks on it, see `hybridface.gallery.sqlite_file`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, CorruptGalleryError, GalleryError

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
    problems = _problems(conn, full=key[2] <= FULL_CHECK_ON_OPEN_MAX_BYTES)
    if problems:
        raise corrupt_error(path, "; ".join(problems[:3]))
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


def _problems(conn: sqlite3.Connection, *, full: bool) -> list[str]:
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


@dataclass(frozen=True)
class CheckReport:
    """Outcome of `full_check`: ``ok`` and SQLite's problem lines (at most 20)."""

    path: Path
    ok: bool
    problems: tuple[str, ...]


def _connect_ro(path: Path) -> sqlite3.Connection:
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise GalleryError(f"no gallery at {p}")
    return sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, isolation_level=None)


def full_check(path: str | os.PathLike) -> CheckReport:
    """``PRAGMA integrity_check`` of the whole file plus every stored vector's norm."""
    p = Path(path)
    con = _connect_ro(p)
    try:
        problems = _problems(con, full=True)
    finally:
        con.close()
    return CheckReport(p, not problems, tuple(problems))


@dataclass(frozen=True)
class SalvageReport:
    """Outcome of `salvage`: what was copied and what could not be read."""

    source: Path
    target: Path
    identities: int
    templates: int
    lost: tuple[str, ...]
    keys: int


def _rows(con: sqlite3.Connection, sql: str, params: tuple = ()) -> list[tuple] | None:
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.DatabaseError:
        return None


def _identity_rows(con: sqlite3.Connection) -> list[tuple[int, str, int]]:
    """Every readable ``(id, name, codewords)``: a scan, else row by row up to the largest id seen."""
    rows = _rows(con, "SELECT id, name, codewords FROM identities ORDER BY id")
    if rows is not None:
        return rows
    top = _rows(con, "SELECT seq FROM sqlite_sequence WHERE name = 'identities'")
    hi = int(top[0][0]) if top else 100_000
    out = []
    for i in range(1, hi + 1):
        r = _rows(con, "SELECT id, name, codewords FROM identities WHERE id = ?", (i,))
        if r:
            out.append(r[0])
    return out


def _template_rows(con: sqlite3.Connection, ident: int) -> list[tuple] | None:
    for sql in ("SELECT vector, source, image_hash FROM templates WHERE identity_id = ? ORDER BY id",
                "SELECT vector, source, image_hash FROM templates NOT INDEXED WHERE identity_id = ? ORDER BY id"):
        rows = _rows(con, sql, (ident,))
        if rows is not None:
            return rows
    return None


def salvage(source: str | os.PathLike, target: str | os.PathLike) -> SalvageReport:
    """Copy every readable identity (templates whose vectors are intact unit vectors), the
    gallery's model id, threshold and API keys from ``source`` into the new file ``target``."""
    from hybridface.gallery.store import GalleryStore

    src, dst = Path(source), Path(target)
    if dst.exists():
        raise ConfigError(f"{dst} already exists; salvage writes a new file, pick another path")
    con = _connect_ro(src)
    try:
        meta = dict(_rows(con, "SELECT key, value FROM meta") or [])
        model_id, dim = meta.get("model_id"), meta.get("dim")
        if not model_id or not dim:
            raise CorruptGalleryError(f"gallery {src}: its model id and dimension cannot be read; nothing to salvage")
        d = int(dim)
        lost: list[str] = []
        n_ids = n_tmpl = 0
        with GalleryStore(dst, create=True) as out:
            for ident, name, codewords in _identity_rows(con):
                rows = _template_rows(con, int(ident))
                if not rows:
                    lost.append(str(name))
                    continue
                keep = [(np.frombuffer(v, dtype="<f4"), s, h) for v, s, h in rows
                        if isinstance(v, bytes) and len(v) == 4 * d]
                keep = [(v, s, h) for v, s, h in keep if abs(float(np.dot(v.astype(np.float64), v)) - 1.0)
                        <= 2 * NORM_TOLERANCE]
                if len(keep) < len(rows):
                    log.warning("salvage: %s: %d of %d templates unreadable", name, len(rows) - len(keep), len(rows))
                if not keep:
                    lost.append(str(name))
                    continue
                out.add_templates(str(name), np.stack([v for v, _, _ in keep]), [str(h) for _, _, h in keep],
                                  model_id=str(model_id), sources=[str(s) for _, s, _ in keep],
                                  codewords=int(codewords) if int(codewords) in (1, 2, 4, 8) else None)
                n_ids += 1
                n_tmpl += len(keep)
            if meta.get("threshold"):
                try:
                    out.set_threshold(float(meta["threshold"]))
                except (ValueError, ConfigError):
                    log.warning("salvage: threshold %r unreadable; not copied", meta["threshold"])
        n_keys = _copy_keys(con, dst)
    finally:
        con.close()
    return SalvageReport(src, dst, n_ids, n_tmpl, tuple(lost), n_keys)


def _copy_keys(con: sqlite3.Connection, dst: Path) -> int:
    rows = _rows(con, "SELECT key_id, name, scope, salt, hash, created, revoked FROM api_keys")
    if not rows:
        return 0
    from hybridface.gallery.keys import KeyStore

    KeyStore(dst)  # creates the table
    out = sqlite3.connect(dst, timeout=30.0)
    try:
        with out:
            out.executemany("INSERT OR IGNORE INTO api_keys (key_id, name, scope, salt, hash, created, revoked) "
                            "VALUES (?,?,?,?,?,?,?)", rows)
    finally:
        out.close()
    return len(rows)


def backup(source: str | os.PathLike, target: str | os.PathLike) -> CheckReport:
    """A consistent copy of ``source`` made with SQLite's online backup API (safe while other
    processes write: it is one read transaction), written to ``target`` atomically and checked."""
    from hybridface.gallery.store import GalleryStore

    src, dst = Path(source), Path(target)
    if dst.exists():
        raise ConfigError(f"{dst} already exists; choose a new backup path (nothing overwritten)")
    if not dst.parent.is_dir():
        raise ConfigError(f"cannot write backup {dst}: folder {dst.parent} does not exist")
    tmp = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    with GalleryStore(src, readonly=True) as store:  # validates (and quick-checks) the source
        out = sqlite3.connect(tmp, isolation_level=None)
        try:
            store.conn.backup(out)
            out.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            out.close()
            tmp.unlink(missing_ok=True)
            raise CorruptGalleryError(f"backup of {src} failed: {exc}; run hybridface check --db {src}") from exc
        out.close()
    os.replace(tmp, dst)
    report = full_check(dst)
    if not report.ok:
        raise corrupt_error(src, "; ".join(report.problems))
    return report
