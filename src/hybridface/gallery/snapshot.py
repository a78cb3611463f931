"""Reading a gallery file into a `TemplateMatrix`: packed per-identity blocks or template rows,
grouped by identity, with the codebooks (read-only SQL, used by `GalleryStore.snapshot`)."""

from __future__ import annotations

import logging
import sqlite3
from operator import itemgetter
from pathlib import Path

import numpy as np

from hybridface.gallery.integrity import check_vectors
from hybridface.gallery.matrix import TemplateMatrix

log = logging.getLogger(__name__)


def _read_blocks(conn: sqlite3.Connection, dim: int):
    """Per-identity packed blocks: ``(identity ids per row, template ids, vectors)`` — one row per identity."""
    blocks = conn.execute("SELECT identity_id, template_ids, vectors FROM blocks ORDER BY identity_id").fetchall()
    if not blocks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    counts = np.fromiter((len(b[1]) // 8 for b in blocks), dtype=np.int64, count=len(blocks))
    ident_ids = np.repeat(np.fromiter((b[0] for b in blocks), dtype=np.int64, count=len(blocks)), counts)
    tmpl_ids = np.frombuffer(b"".join(map(itemgetter(1), blocks)), dtype="<i8").astype(np.int64)
    vectors = np.frombuffer(b"".join(map(itemgetter(2), blocks)), dtype="<f4").reshape(-1, dim)
    return ident_ids, tmpl_ids, vectors


def _read_rows(conn: sqlite3.Connection, dim: int):
    """One SELECT over the templates (rowid order, no SQL sort), grouped by identity in numpy."""
    rows = conn.execute("SELECT identity_id, id, vector FROM templates").fetchall()
    n = len(rows)
    ident_ids = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=n)
    tmpl_ids = np.fromiter(map(itemgetter(1), rows), dtype=np.int64, count=n)
    vectors = np.frombuffer(b"".join(map(itemgetter(2), rows)), dtype="<f4").reshape(n, dim)
    del rows
    if n > 1 and (np.diff(ident_ids) < 0).any():
        order = np.lexsort((tmpl_ids, ident_ids))
        ident_ids, tmpl_ids, vectors = ident_ids[order], tmpl_ids[order], vectors[order]
    return ident_ids, tmpl_ids, vectors

def read_matrix(conn: sqlite3.Connection, *, path: Path, dim: int, model_id: str, packed: bool) -> TemplateMatrix:
    """The gallery's templates and codebooks as a `TemplateMatrix`, read on ``conn`` (inside the
    caller's read transaction); ``packed``: read the per-identity blocks instead of the rows."""
    names = dict(conn.execute("SELECT id, name FROM identities").fetchall())
    read = _read_blocks if packed else _read_rows
    ident_ids, tmpl_ids, vectors = read(conn, dim)
    if len(ident_ids) == 0:
        return TemplateMatrix(
            vectors=np.zeros((0, dim), np.float32), labels=np.zeros(0, np.int64),
            template_ids=np.zeros(0, np.int64), names=(), offsets=np.zeros(1, np.int64),
            model_id=model_id,
        )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    check_vectors(path, vectors)  # SQLite has no checksums: a damaged blob shows here
    uniq, starts = np.unique(ident_ids, return_index=True)
    matrix = TemplateMatrix(
        vectors=vectors,
        labels=np.searchsorted(uniq, ident_ids).astype(np.int64),
        template_ids=np.ascontiguousarray(tmpl_ids, dtype=np.int64),
        names=tuple(str(names[int(i)]) for i in uniq),
        offsets=np.append(starts, len(ident_ids)).astype(np.int64),
        model_id=model_id,
    )
    cb = conn.execute("SELECT identity_id, vector FROM codebooks ORDER BY identity_id, idx").fetchall()
    if cb:
        cb_ids = np.fromiter((r[0] for r in cb), dtype=np.int64, count=len(cb))
        keep = np.isin(cb_ids, uniq)
        if np.isin(uniq, cb_ids[keep]).all():
            words = np.frombuffer(b"".join(r[1] for r in cb), dtype="<f4").reshape(len(cb), dim)[keep]
            matrix = matrix.with_codebooks(words, np.searchsorted(uniq, cb_ids[keep]))
        else:
            log.warning("gallery %s: some identities lack a codebook; loading without codewords", path)
    return matrix
