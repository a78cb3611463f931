"""API keys for the REST service, kept in the gallery's SQLite file (table ``api_keys``).

A key is ``hfk_<key_id>_<secret>``: ``key_id`` (8 hex chars) finds the row, ``secret`` (32 random
bytes, url-safe base64) is checked against ``sha256(salt || secret)``. Only the salt and the hash
are stored, never the key; the comparison uses :func:`hmac.compare_digest` (constant time).
The table lives beside the gallery's own tables; this module touches no other table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hybridface.errors import ConfigError, GalleryError

#: Scopes in increasing order of power: a key satisfies every scope at or below its own.
SCOPES: tuple[str, ...] = ("read", "write", "admin")
_PREFIX = "hfk_"
_KEY_RE = re.compile(r"^hfk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._@ -]{1,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id   TEXT PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    scope    TEXT NOT NULL,
    salt     BLOB NOT NULL,
    hash     BLOB NOT NULL,
    created  TEXT NOT NULL,
    revoked  TEXT
)
"""


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public record (never the secret)."""

    key_id: str
    name: str
    scope: str
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def allows(self, scope: str) -> bool:
        """True when this key is active and its scope is at least ``scope``."""
        return self.active and SCOPES.index(self.scope) >= SCOPES.index(scope)


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class KeyStore:
    """Create, list, revoke and check API keys in the SQLite file ``db_path``.

    One short-lived connection per call, so a `KeyStore` can be shared between threads and
    several processes can use the same file (revocations take effect on the next request).
    """

    def __init__(self, db_path: str | Path, *, create: bool = False) -> None:
        from hybridface.gallery.store import GalleryStore

        self.db_path = Path(db_path)
        GalleryStore(self.db_path, create=create).close()  # validates (or creates) the gallery file
        with self._connect() as con:
            con.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection inside one transaction (committed on success), always closed."""
        try:
            con = sqlite3.connect(self.db_path, timeout=30.0)
        except sqlite3.Error as exc:
            raise GalleryError(f"cannot open gallery file {self.db_path}: {exc}") from exc
        try:
            with con:
                yield con
        except sqlite3.OperationalError as exc:
            raise GalleryError(f"gallery file {self.db_path}: API key table unavailable ({exc}); retry later") from exc
        finally:
            con.close()

    def create(self, name: str, *, scope: str = "read") -> tuple[ApiKey, str]:
        """Create a key named ``name``; return its record and the key itself (shown only once)."""
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"invalid key name {name!r}: use 1-64 letters, digits, spaces or . _ @ -"
            )
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKey(key_id=secrets.token_hex(4), name=name, scope=scope, created=_now())
        try:
            with self._connect() as con:
                con.execute(
                    "INSERT INTO api_keys (key_id, name, scope, salt, hash, created) VALUES (?,?,?,?,?,?)",
                    (record.key_id, name, scope, salt, _hash(salt, secret), record.created),
                )
        except sqlite3.IntegrityError as exc:
            raise ConfigError(f"a key named {name!r} already exists; pick another name") from exc
        return record, f"{_PREFIX}{record.key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        """All keys, revoked ones included, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT key_id, name, scope, created, revoked FROM api_keys ORDER BY created, rowid"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke the key with this name or key id (idempotent); return its record."""
        with self._connect() as con:
            row = con.execute(
                "SELECT key_id FROM api_keys WHERE name = ? OR key_id = ?", (name_or_id, name_or_id)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no API key named {name_or_id!r}; see `hybridface keys list`")
            con.execute(
                "UPDATE api_keys SET revoked = COALESCE(revoked, ?) WHERE key_id = ?", (_now(), row[0])
            )
            rec = con.execute(
                "SELECT key_id, name, scope, created, revoked FROM api_keys WHERE key_id = ?", (row[0],)
            ).fetchone()
        return ApiKey(*rec)

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key matching ``token``, or ``None`` (unknown, malformed or revoked)."""
        if not token:
            return None
        m = _KEY_RE.match(token.strip())
        if m is None:
            return None
        key_id, secret = m.groups()
        with self._connect() as con:
            row = con.execute(
                "SELECT key_id, name, scope, created, revoked, salt, hash FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            # Spend the same hashing work as a real check so timing does not reveal key ids.
            hmac.compare_digest(_hash(b"\0" * 16, secret), b"\0" * 32)
            return None
        record = ApiKey(*row[:5])
        if not hmac.compare_digest(_hash(bytes(row[5]), secret), bytes(row[6])):
            return None
        return record if record.active else None
