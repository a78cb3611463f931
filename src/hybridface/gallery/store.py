"""`GalleryStore`: the SQLite gallery file — the only module that writes gallery SQL.

One file holds the metadata (schema version, model id, embedding dimension, calibrated
threshold), the identities, their templates (float32 blobs, source file, image content hash) and
their LBG codebooks. The file is in WAL mode with a busy timeout, so several processes may enrol
at once; every enrolment of an identity is one ``BEGIN IMMEDIATE`` transaction, so a crash never
leaves half an enrolment. No pickle: vectors are raw little-endian float32 bytes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, ConflictError, GalleryError, ModelMismatchError, UnknownIdentityError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.gallery.names import check_identity_name
from hybridface.gallery.snapshot import read_matrix
from hybridface.gallery.sqlite_file import APPLICATION_ID, SCHEMA_VERSION, db_error, open_connection
from hybridface.vectors import l2_normalize

log = logging.getLogger(__name__)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "AddResult", "GalleryStore", "Quantizer", "default_quantizer"]

#: ``identities.codewords`` value of ``codewords="auto"`` (the size follows the template count)
AUTO_CODEWORDS = 0


def stored_codewords(codewords: int | str | None) -> int | None:
    """The ``identities.codewords`` value of a ``codewords`` argument (``None``: keep / default 1)."""
    from hybridface.index.lbg import check_codewords

    return None if codewords is None else AUTO_CODEWORDS if check_codewords(codewords) == "auto" else int(codewords)


#: ``quantize(vectors (n, d) unit float32, n_codewords) -> (c, d)`` codewords.
Quantizer = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class AddResult:
    """Outcome of one `GalleryStore.add_templates` transaction."""

    identity: str
    template_ids: tuple[int, ...]
    duplicates: int


def default_quantizer(vectors: np.ndarray, n_codewords: int) -> np.ndarray:
    """LBG codebook of one identity (:func:`hybridface.index.lbg.quantize_identity`)."""
    from hybridface.index.lbg import quantize_identity

    return np.asarray(quantize_identity(vectors, codewords=int(n_codewords)), dtype=np.float32)


class GalleryStore:
    """A hybridface gallery file.

    Args:
        path: the SQLite file.
        create: create the file (and its schema) when it does not exist.
        readonly: open without write access (any write raises `GalleryError`).
        timeout: seconds to wait for another process's lock before `GalleryError`.
        quantizer: computes an identity's codebook; defaults to LBG.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        create: bool = False,
        readonly: bool = False,
        timeout: float = 30.0,
        quantizer: Quantizer | None = None,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = float(timeout)
        self.quantizer = quantizer or default_quantizer
        self._conn = open_connection(self.path, create=create, readonly=readonly, timeout=self.timeout)
        #: galleries created by this version keep per-identity packed blocks (fast loading)
        self._has_blocks = self._meta("blocks") == "1"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"gallery {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``) that also bumps the revision counter."""
        if self.readonly:
            raise GalleryError(f"gallery {self.path} was opened read-only; cannot {what}")
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise db_error(self.path, exc, what, self.timeout) from exc
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise db_error(self.path, exc, what, self.timeout) from exc
            raise

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise db_error(self.path, exc, "read", self.timeout) from exc

    def _meta(self, key: str) -> str | None:
        row = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0][0] if row else None

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _identity_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownIdentityError(f"gallery {self.path} has no identity {name!r} (see: hybridface list --db {self.path})")
        return int(row[0])

    def _refresh_identity(self, conn: sqlite3.Connection, identity_id: int) -> None:
        """Rewrite one identity's derived rows from its templates (inside the caller's transaction):
        its LBG codebook and its packed block (all its template ids and vectors in two blobs)."""
        conn.execute("DELETE FROM codebooks WHERE identity_id = ?", (identity_id,))
        if self._has_blocks:
            conn.execute("DELETE FROM blocks WHERE identity_id = ?", (identity_id,))
        k = conn.execute("SELECT codewords FROM identities WHERE id = ?", (identity_id,)).fetchone()[0]
        rows = conn.execute("SELECT id, vector FROM templates WHERE identity_id = ? ORDER BY id", (identity_id,)).fetchall()
        if not rows:
            return
        if int(k) == AUTO_CODEWORDS:
            from hybridface.index.lbg import auto_size

            k = auto_size(len(rows))
        ids = np.fromiter((r[0] for r in rows), dtype="<i8", count=len(rows))
        flat = b"".join(r[1] for r in rows)
        vecs = np.frombuffer(flat, dtype="<f4").reshape(len(rows), -1)
        codewords = l2_normalize(self.quantizer(vecs, int(k)))
        conn.executemany(
            "INSERT INTO codebooks(identity_id, idx, vector) VALUES (?, ?, ?)",
            [(identity_id, i, c.astype("<f4").tobytes()) for i, c in enumerate(codewords)],
        )
        if self._has_blocks:
            conn.execute("INSERT INTO blocks(identity_id, template_ids, vectors) VALUES (?, ?, ?)",
                         (identity_id, ids.tobytes(), flat))

    # ------------------------------------------------------------------ metadata
    @property
    def model_id(self) -> str | None:
        return self._meta("model_id")

    @property
    def dim(self) -> int | None:
        v = self._meta("dim")
        return int(v) if v else None

    @property
    def threshold(self) -> float | None:
        v = self._meta("threshold")
        return float(v) if v else None

    def set_threshold(self, threshold: float | None) -> None:
        """Store (or clear with ``None``) the calibrated open-set threshold."""
        if threshold is not None and not np.isfinite(threshold):
            raise ConfigError(f"threshold must be a finite number, got {threshold}")
        with self._write("store the threshold") as conn:
            self._set_meta(conn, "threshold", None if threshold is None else repr(float(threshold)))

    #: meta keys the store manages itself (not writable through `set_info`)
    _RESERVED = frozenset({"schema_version", "revision", "model_id", "dim", "threshold", "created", "blocks"})

    def info(self, key: str) -> str | None:
        """A free-form meta value (e.g. ``model_path`` of a fitted gallery), ``None`` when unset."""
        return self._meta(key)

    def set_info(self, key: str, value: str | None) -> None:
        """Store a free-form meta value (not one of the store's own keys)."""
        if key in self._RESERVED:
            raise ConfigError(f"meta key {key!r} is managed by the gallery itself")
        with self._write(f"store {key}") as conn:
            self._set_meta(conn, key, value)

    def revision(self) -> int:
        """Counter bumped by every committed write (from any process): the cache key of the matrix."""
        return int(self._meta("revision") or 0)

    def check_model(self, model_id: str, dim: int) -> None:
        """Raise `ModelMismatchError` unless the gallery is empty or was built with this model."""
        have_id, have_dim = self.model_id, self.dim
        if have_dim is not None and int(dim) != have_dim:
            raise ModelMismatchError(
                f"gallery {self.path} holds {have_dim}-D templates, got {dim}-D ones (model {model_id!r}); "
                "use the gallery's model or a new gallery"
            )
        if have_id is not None and model_id != have_id:
            raise ModelMismatchError(
                f"gallery {self.path} was built with model {have_id!r}, not {model_id!r}; "
                "use the same model (--model) or enrol into a new gallery"
            )

    # ------------------------------------------------------------------ writes
    def add_templates(
        self,
        identity: str,
        vectors: np.ndarray,
        hashes: Sequence[str],
        *,
        model_id: str,
        sources: Sequence[str] | None = None,
        codewords: int | str | None = None,
        faces: Sequence[bytes | None] | None = None,
    ) -> AddResult:
        """Enrol templates for ``identity`` (created if new) in one transaction.

        Rows whose ``(identity, hash)`` is already stored are skipped (counted as duplicates).
        The identity's codebook is re-quantized with ``codewords`` (or its stored count); ``"auto"``
        sizes it by the identity's template count at every change (:func:`~hybridface.index.lbg.auto_size`).
        ``faces``: one kept face crop (PNG bytes, :func:`hybridface.gallery.faces.encode_face`) or
        ``None`` per template, stored in the same transaction.
        """
        name = check_identity_name(identity)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ConfigError(f"templates must be a 2-D (n, d) array, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ConfigError(f"templates for {name!r} contain NaN or infinite values")
        if len(hashes) != len(vectors) or (sources is not None and len(sources) != len(vectors)) or (
                faces is not None and len(faces) != len(vectors)):
            raise ConfigError("need one hash (and one source and face, when given) per template")
        codewords = stored_codewords(codewords)
        vectors = l2_normalize(vectors).astype("<f4")
        sources = list(sources) if sources is not None else [""] * len(vectors)
        now = time.time()
        with self._write(f"enrol {name!r}") as conn:
            self.check_model(model_id, vectors.shape[1])
            if self.model_id is None:
                self._set_meta(conn, "model_id", model_id)
                self._set_meta(conn, "dim", str(vectors.shape[1]))
            row = conn.execute("SELECT id, codewords FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO identities(name, codewords, created) VALUES (?, ?, ?)",
                    (name, 1 if codewords is None else codewords, now),
                )
                ident = int(cur.lastrowid)
            else:
                ident = int(row[0])
                if codewords is not None and int(codewords) != row[1]:
                    conn.execute("UPDATE identities SET codewords = ? WHERE id = ?", (int(codewords), ident))
            added: list[int] = []
            kept: list[tuple[int, bytes]] = []
            for i, (vec, h, src) in enumerate(zip(vectors, hashes, sources)):
                cur = conn.execute(
                    "INSERT OR IGNORE INTO templates(identity_id, vector, source, image_hash, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (ident, vec.tobytes(), str(src), str(h), now),
                )
                if cur.rowcount:
                    added.append(int(cur.lastrowid))
                    if faces is not None and faces[i] is not None:
                        kept.append((added[-1], faces[i]))
            if kept:
                from hybridface.gallery.faces import has_faces_table, insert_faces

                if not has_faces_table(conn):
                    raise GalleryError(f"gallery {self.path} (schema 1) cannot keep faces; open it writable once to upgrade it")
                insert_faces(conn, ident, kept)
            if added or codewords is not None:
                self._refresh_identity(conn, ident)
        return AddResult(name, tuple(added), len(vectors) - len(added))

    def remove_identity(self, name: str) -> int:
        """Delete an identity with its templates and codebook; returns the number of templates removed."""
        with self._write(f"remove {name!r}") as conn:
            ident = self._identity_id(conn, name)
            n = conn.execute("DELETE FROM templates WHERE identity_id = ?", (ident,)).rowcount
            conn.execute("DELETE FROM codebooks WHERE identity_id = ?", (ident,))
            if self._has_blocks:
                conn.execute("DELETE FROM blocks WHERE identity_id = ?", (ident,))
            conn.execute("DELETE FROM identities WHERE id = ?", (ident,))
        return int(n)

    def rename_identity(self, old: str, new: str) -> None:
        """Rename an identity (`ConflictError` if ``new`` already exists)."""
        check_identity_name(new)
        with self._write(f"rename {old!r}") as conn:
            ident = self._identity_id(conn, old)
            if conn.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise ConflictError(f"gallery {self.path} already has an identity {new!r}; remove it or pick another name")
            conn.execute("UPDATE identities SET name = ? WHERE id = ?", (new, ident))

    def remove_template(self, template_id: int) -> str:
        """Delete one template and re-quantize its identity (removed with its last template);
        returns the identity name."""
        with self._write(f"remove template {template_id}") as conn:
            row = conn.execute(
                "SELECT t.identity_id, i.name FROM templates t JOIN identities i ON i.id = t.identity_id WHERE t.id = ?",
                (int(template_id),),
            ).fetchone()
            if row is None:
                raise UnknownIdentityError(f"gallery {self.path} has no template with id {template_id}")
            conn.execute("DELETE FROM templates WHERE id = ?", (int(template_id),))
            if conn.execute("SELECT 1 FROM templates WHERE identity_id = ? LIMIT 1", (int(row[0]),)).fetchone():
                self._refresh_identity(conn, int(row[0]))
            else:  # its last template: the identity goes too (never listed with 0 templates)
                for table in ("codebooks", "blocks") if self._has_blocks else ("codebooks",):
                    conn.execute(f"DELETE FROM {table} WHERE identity_id = ?", (int(row[0]),))
                conn.execute("DELETE FROM identities WHERE id = ?", (int(row[0]),))
        return str(row[1])

    # ------------------------------------------------------------------ reads
    def identities(self) -> list[tuple[str, int]]:
        """``(name, template count)`` of every identity, by name."""
        rows = self._read(
            "SELECT i.name, count(t.id) FROM identities i LEFT JOIN templates t ON t.identity_id = i.id "
            "GROUP BY i.id ORDER BY i.name"
        )
        return [(str(n), int(c)) for n, c in rows]

    def templates(self, name: str) -> list[tuple[int, str, str]]:
        """``(template id, source, image hash)`` of one identity's templates."""
        ident = self._identity_id(self.conn, name)
        return [(int(a), str(b), str(c)) for a, b, c in self._read(
            "SELECT id, source, image_hash FROM templates WHERE identity_id = ? ORDER BY id", (ident,)
        )]

    def num_identities(self) -> int:
        return int(self._read("SELECT count(*) FROM identities")[0][0])

    def kept_faces(self):
        """Every kept face crop with its identity (:class:`hybridface.gallery.faces.KeptFaces`)."""
        from hybridface.gallery.faces import read_faces

        try:
            return read_faces(self.conn)
        except sqlite3.DatabaseError as exc:
            raise db_error(self.path, exc, "read the kept faces", self.timeout) from exc

    def num_faces(self) -> int:
        """Number of kept face crops (0 for an old gallery without the table)."""
        from hybridface.gallery.faces import count_faces

        return count_faces(self.conn)

    def num_templates(self) -> int:
        return int(self._read("SELECT count(*) FROM templates")[0][0])

    def integrity_check(self) -> str:
        return str(self._read("PRAGMA integrity_check")[0][0])

    def load_matrix(self) -> TemplateMatrix:
        """The whole gallery as a `TemplateMatrix` (with codebooks)."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[int, TemplateMatrix]:
        """``(revision, matrix)`` read in one read transaction, so both describe the same state."""
        conn = self.conn
        try:
            conn.execute("BEGIN")
            try:
                revision = int(self._meta("revision") or 0)
                matrix = read_matrix(conn, path=self.path, dim=self.dim or 0, model_id=self.model_id or "",
                                     packed=self._has_blocks)
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise db_error(self.path, exc, "read", self.timeout) from exc
        return revision, matrix
