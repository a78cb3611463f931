"""Gallery schema versions and upgrades (called by `hybridface.gallery.sqlite_file` on open).

| version | what changed |
|---|---|
| 1 | identities, templates, blocks, codebooks, meta |
| 2 | ``faces``: kept face crops per template (:mod:`hybridface.gallery.faces`) |

A writable open of a version-1 gallery upgrades it in one transaction (adds the empty ``faces``
table; nothing else changes). A read-only open leaves it as it is: it searches as before and has
no kept faces. A gallery written by a newer hybridface is refused with a clear message.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from hybridface.errors import GalleryError
from hybridface.gallery.faces import FACES_DDL

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "check_and_upgrade", "create_statements", "schema_version"]

SCHEMA_VERSION = 2


def create_statements() -> list[str]:
    """DDL added since version 1 (part of every new gallery's schema)."""
    out, buf = [], []
    for line in FACES_DDL.strip().splitlines():  # the trigger body has inner ';'
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            out.append(text)
            buf = []
    return out


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else -1


def _upgrade_1_to_2(conn: sqlite3.Connection) -> None:
    for stmt in create_statements():
        conn.execute(stmt)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def check_and_upgrade(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> int:
    """Check a gallery's schema version; upgrade a writable old one. Returns the version now in the file."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return version
    if version > SCHEMA_VERSION:
        raise GalleryError(
            f"gallery {path} was written by a newer hybridface (schema version {version}; this one reads up "
            f"to {SCHEMA_VERSION}); upgrade hybridface to use it"
        )
    if version != 1:
        raise GalleryError(
            f"gallery {path} has schema version {version}, this hybridface reads 1-{SCHEMA_VERSION}; "
            "re-enrol into a new gallery"
        )
    if readonly:
        log.debug("gallery %s has schema 1 (opened read-only: not upgraded; no kept faces)", path)
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(conn) == 1:  # another process may have upgraded it while we waited
            _upgrade_1_to_2(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("gallery %s upgraded from schema 1 to 2 (kept faces)", path)
    return SCHEMA_VERSION
