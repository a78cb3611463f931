"""Kept face crops (schema 2): stored with their templates by default, opt-out, removed with their
identity, and the v1 → v2 migration (an old gallery without the table opens and works)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

from hybridface import api
from hybridface.cli import main
from hybridface.errors import GalleryError
from hybridface.gallery.faces import CROP_VERSION, FACE_SIZE
from hybridface.gallery.migrate import SCHEMA_VERSION
from synthetic_faces import noisy_faces

MODEL = "general"  # fast (ONNX); the default (dlib) costs ~85 ms per face


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return noisy_faces(tmp_path_factory.mktemp("faces"))


def _version(db) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def _make_v1(db) -> None:
    """Turn a gallery into what hybridface with schema 1 wrote: no faces table, version 1."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("DROP TRIGGER faces_follow_templates")
    c.execute("DROP TABLE faces")
    c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    c.close()


def test_faces_kept_by_default_and_removed_with_identity(data_dir, tmp_path):
    db = tmp_path / "g.db"
    assert main(["-q", "enroll", str(data_dir), "--db", str(db), "--model", MODEL, "--detect", "never"]) == 0
    with api.open_gallery(db, model=MODEL) as g:
        faces = g.store.kept_faces()
        assert len(faces) == g.store.num_templates() == g.store.num_faces() == 9
        assert faces.images.shape == (9, FACE_SIZE, FACE_SIZE, 3) and faces.images.dtype == np.uint8
        assert faces.versions == (CROP_VERSION,) and sorted(set(faces.identities)) == ["ann", "bob", "cid"]
        # the kept face is the enrolled image (lossless PNG of the crop, resized 60 -> 80)
        src = np.asarray(Image.open(data_dir / "ann" / "0.png").convert("RGB"))
        got = faces.images[faces.identities.index("ann")]
        import cv2

        back = cv2.resize(got, (60, 60), interpolation=cv2.INTER_AREA).astype(float)
        assert np.corrcoef(back.ravel(), src.astype(float).ravel())[0, 1] > 0.8  # same picture (noise-like pixels)
        g.remove("bob")
        assert g.store.num_faces() == 6 and "bob" not in g.store.kept_faces().identities
        tid = g.store.templates("ann")[0][0]
        g.remove_template(tid)
        assert g.store.num_faces() == 5 and tid not in g.store.kept_faces().template_ids


def test_no_keep_faces_opt_out_is_recorded(data_dir, tmp_path):
    db = tmp_path / "n.db"
    assert main(["-q", "enroll", str(data_dir), "--db", str(db), "--model", MODEL, "--no-keep-faces", "--detect", "never"]) == 0
    with api.open_gallery(db, model=MODEL) as g:
        assert g.store.num_faces() == 0 and not g.keeps_faces
        g.enroll("zed", [str(data_dir / "bob" / "0.png")], detect="never")  # the gallery's setting holds
        assert g.store.num_faces() == 0
        g.enroll("yan", [str(data_dir / "cid" / "0.png")], detect="never", keep_faces=True)  # explicit wins
        assert g.store.num_faces() == 1


def test_run_protocol_keeps_faces(data_dir, tmp_path):
    from hybridface.evaluation.runner import run_protocol
    from hybridface.options import SearchOptions

    r = run_protocol("folder", data_dir, db=tmp_path / "p.db", model=MODEL, search=SearchOptions(strategy="exhaustive"),
                     detect="never", gallery_per_identity=2)
    with api.open_gallery(tmp_path / "p.db", readonly=True) as g:
        assert g.store.num_faces() == r.templates > 0


def test_v1_gallery_opens_and_works(data_dir, tmp_path, capsys):
    db = tmp_path / "old.db"
    assert main(["-q", "enroll", str(data_dir), "--db", str(db), "--model", MODEL, "--detect", "never"]) == 0
    _make_v1(db)
    probe = str(data_dir / "bob" / "1.png")
    # read-only: searches as before, no faces, file untouched
    assert main(["identify", probe, "--db", str(db), "--model", MODEL, "--json", "--detect", "never"]) == 0
    assert '"identity": "bob"' in capsys.readouterr().out
    with api.open_gallery(db, model=MODEL, readonly=True) as g:
        assert g.store.num_faces() == 0 and len(g.store.kept_faces()) == 0
    assert _version(db) == 1
    # writable: upgraded to 2 in place, old templates kept, new enrolments keep faces
    with api.open_gallery(db, model=MODEL) as g:
        assert g.store.num_templates() == 9
        g.enroll("dan", [str(data_dir / "ann" / "2.png")], detect="never")
        assert g.store.num_faces() == 1
        assert g.identify([probe], strategy="exhaustive", detect="never")[0].identity == "bob"
    assert _version(db) == SCHEMA_VERSION == 2


def test_newer_schema_is_refused(data_dir, tmp_path, capsys):
    db = tmp_path / "new.db"
    assert main(["-q", "enroll", str(data_dir), "--db", str(db), "--model", MODEL, "--detect", "never"]) == 0
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(GalleryError, match="newer hybridface"):
        api.open_gallery(db, readonly=True)
    capsys.readouterr()
    assert main(["list", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "newer hybridface" in err[0]
