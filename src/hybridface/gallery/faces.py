"""Kept face crops: the ``faces`` table of a gallery (schema 2), one lossless PNG per template.

A gallery keeps each enrolled face (by default) so that ``hybridface fit`` can later train the
paper's network on it, with the gallery's own templates as the teacher. A kept face is the same
crop framing the encoders see (:mod:`hybridface.faces.crop`), stored at ``FACE_SIZE`` pixels: the
60x60 network input plus resolution for the random-crop/zoom augmentation. ``CROP_VERSION``
names that framing and size; a gallery whose faces have another version is refused by ``fit``.
Rows follow their template: an SQL trigger deletes a face with its template, so removing an
identity (or one template) removes its faces.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError

__all__ = ["CROP_VERSION", "FACES_DDL", "FACE_SIZE", "KeptFaces", "decode_face", "encode_face", "has_faces_table",
           "insert_faces", "read_faces", "count_faces"]

#: side of a kept face crop (pixels); the network input is 60
FACE_SIZE = 80
#: framing + size of kept faces; bump when `hybridface.faces.crop` changes how a face is framed
CROP_VERSION = f"hf-crop-1/{FACE_SIZE}px"

FACES_DDL = """
CREATE TABLE IF NOT EXISTS faces (
    template_id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL,
    crop_version TEXT NOT NULL,
    image BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_identity ON faces(identity_id);
CREATE TRIGGER IF NOT EXISTS faces_follow_templates AFTER DELETE ON templates
BEGIN
    DELETE FROM faces WHERE template_id = OLD.id;
END;
"""


@dataclass(frozen=True)
class KeptFaces:
    """A gallery's kept faces, aligned with their templates (rows in template-id order)."""

    template_ids: np.ndarray  # (n,) int64
    identities: tuple[str, ...]  # (n,) identity name per row
    images: np.ndarray  # (n, FACE_SIZE, FACE_SIZE, 3) uint8 RGB
    versions: tuple[str, ...]  # distinct crop versions found

    def __len__(self) -> int:
        return len(self.template_ids)


def encode_face(image: np.ndarray) -> bytes:
    """A face crop (H, W, 3) uint8 RGB → PNG bytes of the ``FACE_SIZE`` square."""
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"a kept face must be an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    if img.shape[:2] != (FACE_SIZE, FACE_SIZE):
        interp = cv2.INTER_AREA if img.shape[0] > FACE_SIZE else cv2.INTER_CUBIC
        img = cv2.resize(img, (FACE_SIZE, FACE_SIZE), interpolation=interp)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 PNG
        raise ConfigError("could not encode a face crop as PNG")
    return buf.tobytes()


def decode_face(blob: bytes) -> np.ndarray:
    """PNG bytes → (FACE_SIZE, FACE_SIZE, 3) uint8 RGB."""
    import cv2

    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError("a kept face is not a readable PNG (gallery damaged?)")
    return np.ascontiguousarray(img[:, :, ::-1])


def has_faces_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'faces'").fetchone() is not None


def insert_faces(conn: sqlite3.Connection, identity_id: int, rows: Sequence[tuple[int, bytes]]) -> None:
    """Store ``(template id, png)`` rows inside the caller's write transaction."""
    conn.executemany("INSERT OR REPLACE INTO faces(template_id, identity_id, crop_version, image) VALUES (?, ?, ?, ?)",
                     [(int(t), int(identity_id), CROP_VERSION, b) for t, b in rows])


def count_faces(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM faces").fetchone()[0]) if has_faces_table(conn) else 0


def read_faces(conn: sqlite3.Connection) -> KeptFaces:
    """Every kept face with its identity name (an old gallery without the table: none)."""
    if not has_faces_table(conn):
        return KeptFaces(np.zeros(0, np.int64), (), np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8), ())
    rows = conn.execute(
        "SELECT f.template_id, i.name, f.crop_version, f.image FROM faces f "
        "JOIN templates t ON t.id = f.template_id JOIN identities i ON i.id = t.identity_id ORDER BY f.template_id"
    ).fetchall()
    versions = tuple(sorted({r[2] for r in rows}))
    images = (np.stack([decode_face(r[3]) for r in rows]) if rows and versions == (CROP_VERSION,)
              else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8))
    return KeptFaces(np.array([r[0] for r in rows], np.int64), tuple(str(r[1]) for r in rows), images, versions)
