"""``hybridface fit`` / ``Gallery.fit``: the paper's network trained on a gallery's kept faces.

Galleries here are enrolled with the fast shipped ``general`` model (the real dlib default costs
~85 ms per face); fit does not care which encoder made the teacher templates.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hybridface import api
from hybridface.cli import main
from hybridface.errors import ConfigError, GalleryError, SelfCheckError
from hybridface.training.fit import fit_gallery, split_held_out
from synthetic_faces import shifted_people

pytest.importorskip("torch")
MODEL = "general"
REPO = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    data = shifted_people(root / "data", ["ann", "bob", "cid", "dan"], per=6)
    db = root / "g.db"
    assert main(["-q", "enroll", str(data), "--db", str(db), "--model", MODEL, "--detect", "never"]) == 0
    return db, data


def _copy(src: Path, dst: Path) -> None:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".fit-" in p.name)


def test_split_held_out_is_the_last_share_per_identity():
    ids = ["a"] * 5 + ["b"] * 2 + ["c"]
    held = split_held_out(ids, 0.2)
    assert held.tolist() == [False] * 4 + [True] + [False, True] + [False]
    assert not split_held_out(ids, 0.0).any()


def test_fit_writes_a_gallery_its_model_and_card(gallery, tmp_path):
    db, data = gallery
    before = _sha(db)
    out = tmp_path / "g2.db"
    rep = fit_gallery(db, out, epochs=3, force=True, int8=True, progress=False, threads=1)
    assert _sha(db) == before  # the source is never written
    assert out.is_file() and rep.model_dir.is_dir() and (rep.model_dir / "model.int8.onnx").is_file()
    assert rep.identities == 4 and rep.faces == 24 and rep.check.held_out == 4 and rep.int8_bytes > 0
    card = json.loads((rep.model_dir / "model.json").read_text())
    assert card["model_id"] == rep.model_id and card["training"]["gallery"] == str(db.resolve())
    assert card["training"]["identities"] == 4 and card["training"]["feature_parameters"] == 24_798
    assert card["training"]["self_check"]["held_out"] == 4 and "closed set" in card["training"]["intended_use"]
    assert _leftovers(tmp_path) == []
    with api.open_gallery(out, readonly=True) as g2:  # no --model: the gallery's fitted model
        assert g2.encoder.model_id == rep.model_id == g2.store.model_id and g2.store.dim == 60
        assert dict(g2.identities()) == {"ann": 6, "bob": 6, "cid": 6, "dan": 6}
        assert g2.store.num_faces() == 0 and not g2.keeps_faces  # a device gallery keeps templates only
        ans = g2.identify([str(data / "bob" / "05.png")], strategy="hybrid", k=2, detect="never")[0]
        assert ans.status == "ok" and ans.identity is not None


def test_gallery_fit_returns_the_new_gallery_and_warm_starts(gallery, tmp_path):
    db, data = gallery
    with api.open_gallery(db, readonly=True) as g:
        g2 = g.fit(tmp_path / "g2.db", epochs=2, force=True, progress=False, threads=1)
    first = Path(g2.model_path)
    g2.close()
    assert first.is_dir()
    # a new person enrolled into a copy of G: re-fitting starts from the previous fit
    grown = tmp_path / "grown.db"
    _copy(db, grown)
    shifted_people(tmp_path / "more", ["eve"], per=6, seed=5)
    assert main(["-q", "enroll", str(tmp_path / "more"), "--db", str(grown), "--model", MODEL, "--detect", "never"]) == 0
    rep = fit_gallery(grown, tmp_path / "g2.db", epochs=2, force=True, progress=False, threads=1)
    assert rep.warm_start == str(first) and rep.identities == 5
    assert not first.exists() and rep.model_dir.is_dir()  # the old model went with the old G2
    with api.open_gallery(tmp_path / "g2.db", readonly=True) as g2:
        assert "eve" in dict(g2.identities())
    rep = fit_gallery(grown, tmp_path / "g2.db", epochs=1, force=True, progress=False, warm_start=False, threads=1)
    assert rep.warm_start is None


def test_self_check_refuses_a_one_face_per_person_gallery(tmp_path, capsys):
    data = shifted_people(tmp_path / "data", ["ann", "bob", "cid"], per=1)
    db = tmp_path / "one.db"
    assert main(["-q", "enroll", str(data), "--db", str(db), "--model", MODEL, "--detect", "never"]) == 0
    with pytest.raises(SelfCheckError, match="no face could be held out"):
        fit_gallery(db, tmp_path / "g2.db", epochs=1, progress=False, threads=1)
    capsys.readouterr()
    assert main(["fit", "--db", str(db), "--out", str(tmp_path / "g2.db"), "--epochs", "1", "--threads", "1"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert len(err) == 1 and "--force" in err[0]
    assert not (tmp_path / "g2.db").exists() and _leftovers(tmp_path) == []
    assert main(["fit", "--db", str(db), "--out", str(tmp_path / "g2.db"), "--epochs", "1", "--threads", "1",
                 "--force", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # valid JSON: null, not NaN
    assert row["held_out"] == 0 and row["fitted_rank1"] is None and not row["self_check_passed"]


def test_self_check_refuses_a_worse_model(tmp_path):
    """Faces of pure noise, but perfect teacher templates: the gallery's 'encoder' knows everyone,
    a network trained on the noise cannot recognise held-out faces."""
    rng = np.random.default_rng(1)
    db = tmp_path / "oracle.db"
    with api.open_gallery(db, create=True) as g:
        for i in range(6):
            vecs = np.eye(6, 16, k=i, dtype=np.float32)[0] + 0.01 * rng.normal(size=(5, 16)).astype(np.float32)
            g.enroll_vectors(f"p{i}", vecs, model_id="oracle",
                             faces=list(rng.integers(0, 256, size=(5, 80, 80, 3), dtype=np.uint8)))
    with pytest.raises(SelfCheckError, match="MORE than") as exc:
        fit_gallery(db, tmp_path / "g2.db", epochs=2, progress=False, threads=1)
    assert "Nothing was written" in str(exc.value) and not (tmp_path / "g2.db").exists()
    rep = fit_gallery(db, tmp_path / "g2.db", epochs=1, progress=False, threads=1, force=True)
    card = json.loads((rep.model_dir / "model.json").read_text())["training"]
    assert not rep.check.passed and card["self_check"]["forced"] and "FAILED" in card["intended_use"]


def _variant(gallery, tmp_path, how: str) -> Path:
    db, data = gallery
    if how == "one identity":
        p = tmp_path / "one_id.db"
        shifted_people(tmp_path / "solo", ["ann"], per=3)
        assert main(["-q", "enroll", str(tmp_path / "solo"), "--db", str(p), "--model", MODEL, "--detect", "never"]) == 0
        return p
    if how == "no faces":
        p = tmp_path / "nofaces.db"
        assert main(["-q", "enroll", str(data), "--db", str(p), "--model", MODEL, "--no-keep-faces", "--detect", "never"]) == 0
        return p
    p = tmp_path / f"{how.replace(' ', '_')}.db"
    _copy(db, p)
    c = sqlite3.connect(p, isolation_level=None)
    if how == "other crop version":
        c.execute("UPDATE faces SET crop_version = 'hf-crop-0/64px'")
    else:
        c.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    c.close()  # checkpoints the WAL: the file's bytes are final from here
    return p


@pytest.mark.parametrize("how, message", [
    ("one identity", "at least 2"),
    ("no faces", "keeps no face crops"),
    ("other crop version", "crop version"),
    ("newer schema", "newer hybridface"),
])
def test_bad_galleries_one_line_exit_2_and_untouched(gallery, tmp_path, capsys, how, message):
    db = _variant(gallery, tmp_path, how)
    before = _sha(db)
    capsys.readouterr()
    out = tmp_path / "g2.db"
    assert main(["fit", "--db", str(db), "--out", str(out), "--epochs", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert _sha(db) == before and not out.exists() and _leftovers(tmp_path) == []


def test_out_must_not_be_a_foreign_gallery_or_the_source(gallery, tmp_path):
    db, _ = gallery
    with pytest.raises(ConfigError, match="not the source"):
        fit_gallery(db, db, epochs=1, progress=False)
    other = tmp_path / "other.db"
    _copy(db, other)
    with pytest.raises(GalleryError, match="fit did not write"):
        fit_gallery(db, other, epochs=1, progress=False)
    with pytest.raises(GalleryError, match="no gallery at"):
        fit_gallery(tmp_path / "missing.db", tmp_path / "x.db", epochs=1, progress=False)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_fit_leaves_g_unchanged_and_no_g2(gallery, tmp_path, sig):
    db, _ = gallery
    before = _sha(db)
    out = tmp_path / "g2.db"
    log = tmp_path / "fit.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hybridface", "fit", "--db", str(db), "--out", str(out),
                                 "--epochs", "500", "--threads", "1", "--force"], stdout=fh, stderr=fh, env=env,
                                # a shell's background job inherits SIGINT ignored: give the child Ctrl-C back
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while b"epoch 2 " not in log.read_bytes():
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.2)
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert _sha(db) == before and not out.exists()
    assert not any(p.name.startswith("g2.db") for p in tmp_path.iterdir())
    if sig == signal.SIGINT:
        assert _leftovers(tmp_path) == []


def test_fit_with_batchnorm_folds_it_away(gallery, tmp_path):
    """`--batchnorm`: BatchNorm while training only; the written model has the paper's parameters."""
    db, data = gallery
    rep = fit_gallery(db, tmp_path / "g2.db", epochs=2, force=True, batchnorm=True, progress=False, threads=1)
    card = json.loads((rep.model_dir / "model.json").read_text())
    assert card["training"]["batchnorm"] is True and card["training"]["feature_parameters"] == 24_798
    with api.open_gallery(tmp_path / "g2.db", readonly=True) as g2:
        ans = g2.identify([str(data / "ann" / "01.png")], strategy="exhaustive", detect="never")[0]
        assert ans.status == "ok" and np.isfinite(ans.distance)
