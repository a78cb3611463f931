"""Opening a gallery file: magic checks, permissions, WAL set-up and the schema (used by `store`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from hybridface.errors import GalleryError
from hybridface.gallery.integrity import quick_check_on_open
from hybridface.gallery.migrate import SCHEMA_VERSION, check_and_upgrade, create_statements

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of a hybridface gallery ("HYBF").
APPLICATION_ID = 0x48594246
#: What SQLite says when a file's header is not its own.
_NOT_SQLITE = "file is not a database"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    codewords INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    image_hash TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (identity_id, image_hash)
);
CREATE TABLE IF NOT EXISTS blocks (
    identity_id INTEGER PRIMARY KEY REFERENCES identities(id) ON DELETE CASCADE,
    template_ids BLOB NOT NULL,
    vectors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS codebooks (
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (identity_id, idx)
);
"""


def writable(path: Path) -> bool:
    """Writable by us *and* marked writable (root ignores permission bits; we honour them)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def open_connection(path: Path, *, create: bool, readonly: bool, timeout: float) -> sqlite3.Connection:
    """Open (and with ``create`` initialise) a gallery file; `GalleryError` for anything unusable.

    The file is only ever read through SQLite: opening and closing any other descriptor of it
    (e.g. Python ``open()`` to check the header) would drop every POSIX lock this process holds
    on it, and another process could then delete the live ``-wal``/``-shm`` files (issue 15).
    SQLite itself reports a foreign header as "file is not a database".
    """
    p = Path(path)
    if p.is_dir():
        raise GalleryError(f"{p} is a directory, not a hybridface gallery file")
    exists = p.exists() and p.stat().st_size > 0
    if not exists and (readonly or not create):
        raise GalleryError(f"no gallery at {p}; create one first (e.g. hybridface enroll DATA_DIR --db {p})")
    if not readonly:
        folder = p.parent
        if not folder.is_dir():
            raise GalleryError(f"cannot create gallery {p}: folder {folder} does not exist")
        if exists and not writable(p):
            raise GalleryError(
                f"gallery {p} is read-only; open it read-only to search, or fix its permissions to enrol"
            )
        if not writable(folder):
            raise GalleryError(
                f"gallery {p} is in the read-only folder {folder} (SQLite needs to write its journal there); "
                "open it read-only to search, or move it"
            )
    conn: sqlite3.Connection | None = None
    try:
        if readonly:
            conn = _connect_readonly(p, timeout)
        else:
            conn = sqlite3.connect(str(p), timeout=timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        # WAL + NORMAL: a killed process loses nothing committed (only power loss could).
        conn.execute("PRAGMA synchronous = NORMAL")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if n_tables or not create or readonly:
                raise GalleryError(
                    f"{p} is not a hybridface gallery (SQLite application id {app_id:#x}); "
                    "choose another --db path"
                )
            _init_schema(conn, p, timeout)
        else:
            check_and_upgrade(conn, p, readonly=readonly)  # schema versions: gallery/migrate.py
            quick_check_on_open(conn, p)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if not isinstance(exc, sqlite3.DatabaseError):
            raise
        if _NOT_SQLITE in str(exc):
            raise GalleryError(f"{p} is not a hybridface gallery (not an SQLite file)") from exc
        raise db_error(p, exc, "open", timeout) from exc
    return conn

def _connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # A WAL file in a read-only folder cannot get its -shm file: read it as immutable.
        log.debug("opening %s as immutable (read-only folder)", path)
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None)

def _init_schema(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    _switch_to_wal(conn, timeout)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have initialised it while we waited for the lock.
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            for stmt in create_statements():  # added by later schema versions (gallery/migrate.py)
                conn.execute(stmt)
            now = repr(time.time())
            conn.executemany(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("created", now), ("revision", "0"), ("blocks", "1")],
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    log.info("created gallery %s", path)

def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried for up to ``timeout`` seconds. The switch needs an
    exclusive lock after reading the file, and SQLite answers "database is locked" at once, without
    its busy handler, while another process creating the same gallery holds the write lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def db_error(path: Path, exc: sqlite3.DatabaseError, what: str, timeout: float) -> GalleryError:
    """Translate an SQLite error into a `GalleryError` a user can act on."""
    msg = str(exc)
    if "locked" in msg or "busy" in msg:
        return GalleryError(
            f"gallery {path} is locked by another process (waited {timeout:g} s to {what}); retry later"
        )
    if "readonly" in msg or "read-only" in msg:
        return GalleryError(f"gallery {path} is read-only; cannot {what} ({msg})")
    if "not a database" in msg or "malformed" in msg:
        from hybridface.gallery.integrity import corrupt_error

        return corrupt_error(path, msg)
    return GalleryError(f"gallery {path}: cannot {what}: {msg}")
