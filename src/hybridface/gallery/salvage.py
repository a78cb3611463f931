"""Gallery repair tools: the full check, salvage and online backup (``hybridface check|backup``).

* `full_check` is ``PRAGMA integrity_check`` (every page, index and constraint) plus every stored
  vector's norm.
* `salvage` copies every identity whose rows can still be read into a new gallery file.
* `backup` uses SQLite's online backup API: a consistent copy, safe while a server writes.

The damaged file is only ever read through SQLite (never Python ``open()``: closing such a
descriptor would drop this process's POSIX locks on it, see `hybridface.gallery.sqlite_file`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, CorruptGalleryError, GalleryError
from hybridface.gallery.integrity import NORM_TOLERANCE, corrupt_error, problems

log = logging.getLogger(__name__)


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
        found = problems(con, full=True)
    finally:
        con.close()
    return CheckReport(p, not found, tuple(found))


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
                                  codewords=_codewords(codewords))
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


def _codewords(stored) -> int | str | None:
    """An ``identities.codewords`` value as ``add_templates`` takes it (``None``: unreadable)."""
    from hybridface.gallery.store import AUTO_CODEWORDS
    from hybridface.index.lbg import check_codewords

    try:
        k = int(stored)
        return "auto" if k == AUTO_CODEWORDS else check_codewords(k)
    except (TypeError, ValueError, ConfigError):
        return None
