"""Corruption detection (check on open, ``hybridface check``, ``--salvage``) and ``hybridface backup``."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import httpx
import numpy as np
import pytest

from hybridface import api
from hybridface.cli import main
from hybridface.gallery.salvage import full_check
from hybridface.gallery.keys import KeyStore
from hybridface.gallery.store import GalleryStore

from service_server import Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A closed (checkpointed) gallery of 60 identities x 20 unit vectors, plus one API key."""
    db = tmp_path_factory.mktemp("integrity") / "g.db"
    rng = np.random.default_rng(0)
    vectors = {f"p{i:02d}": rng.standard_normal((20, 60)).astype(np.float32) for i in range(60)}
    with api.open_gallery(db, create=True) as g:
        for name, v in vectors.items():
            g.enroll_vectors(name, v, model_id="vec")
    KeyStore(db).create("ops", scope="admin")
    return db, vectors


def _damage(src, dst, *, mode: str, where: float) -> None:
    shutil.copy(src, dst)
    size = dst.stat().st_size
    off = int(size * where)
    with open(dst, "r+b") as fh:  # the test's own descriptor, in a process that holds no gallery lock
        if mode == "page":
            fh.seek(off // 4096 * 4096)
            fh.write(np.random.default_rng(off).bytes(4096))
        else:
            fh.seek(off)
            data = fh.read(16)
            fh.seek(off)
            fh.write(bytes(b ^ 0xFF for b in data))


@pytest.mark.parametrize("mode, where", [("page", 0.5), ("page", 0.3), ("flip16", 0.5), ("flip16", 0.67),
                                         ("flip16", 0.25)])
def test_damaged_gallery_is_refused_by_every_command_with_one_line(pristine, tmp_path, capsys, mode, where):
    src, _ = pristine
    db = tmp_path / "bad.db"
    _damage(src, db, mode=mode, where=where)
    before = db.read_bytes()
    for argv in (["list"], ["remove", "p01"], ["rename", "p02", "zz"], ["check"]):
        code = main([*argv, "--db", str(db)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(err) == 1 and "is damaged" in err[0] and "--salvage" in err[0], err
        assert "Traceback" not in err[0]
    assert db.read_bytes() == before  # refused before anything was written


def test_healthy_gallery_checks_ok(pristine, capsys):
    src, _ = pristine
    assert main(["check", "--db", str(src)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
    assert full_check(src).ok


def test_salvage_copies_every_readable_identity(pristine, tmp_path, capsys):
    src, vectors = pristine
    db = tmp_path / "bad.db"
    _damage(src, db, mode="page", where=0.5)
    out = tmp_path / "saved.db"
    assert main(["check", "--db", str(db), "--salvage", str(out), "--json"]) == 0
    import json

    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["identities"] >= 50 and rep["keys"] == 1
    assert full_check(out).ok
    with GalleryStore(out, readonly=True) as store:
        m = store.load_matrix()
        assert store.model_id == "vec" and len(m.names) == rep["identities"]
        for i, name in enumerate(m.names):
            got = m.vectors[m.offsets[i]:m.offsets[i + 1]]
            want = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
            # every salvaged template is one of the originals, bit for bit after normalisation
            assert all(np.abs(want - g).max(axis=1).min() < 1e-6 for g in got)
    assert [k.name for k in KeyStore(out).list()] == ["ops"]
    # salvage never overwrites
    assert main(["check", "--db", str(db), "--salvage", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_backup_refuses_to_overwrite_and_copies_a_healthy_file(pristine, tmp_path, capsys):
    src, vectors = pristine
    out = tmp_path / "b.db"
    out.write_bytes(b"keep me")
    assert main(["backup", "--db", str(src), str(out)]) == 2
    assert out.read_bytes() == b"keep me"
    out2 = tmp_path / "b2.db"
    assert main(["backup", "--db", str(src), str(out2)]) == 0
    with GalleryStore(out2, readonly=True) as store:
        assert len(store.identities()) == len(vectors)


def test_backup_while_a_live_server_enrols(tmp_path):
    """The online backup is consistent, and the server's later acknowledged enrolments survive it."""
    import subprocess
    import sys

    db = tmp_path / "live.db"
    key = KeyStore(db, create=True).create("w", scope="write")[1]
    server = Server(db, *model_args())
    acknowledged: dict[str, list[int]] = {}
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                r = c.post(f"/v1/identities/q{i}/faces", params={"detect": "never"},
                           files=[("file", (f"{i}.png", png_bytes(i), "image/png"))])
                assert r.status_code == 201, r.text
                acknowledged[f"q{i}"] = r.json()["template_ids"]

    t = threading.Thread(target=stream)
    t.start()
    try:
        while len(acknowledged) < 5:
            threading.Event().wait(0.05)
        outs = []
        for j in range(3):
            out = tmp_path / f"backup{j}.db"
            before = set(acknowledged)
            r = subprocess.run([sys.executable, "-m", "hybridface", "backup", "--db", str(db), str(out)],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            outs.append((out, before))
        while len(acknowledged) < len(outs[-1][1]) + 3:
            threading.Event().wait(0.05)
    finally:
        stop.set()
        t.join(60)
        server.stop()
    assert "Traceback" not in server.log()
    for out, before in outs:
        assert full_check(out).ok
        with GalleryStore(out, readonly=True) as store:
            assert before <= {n for n, _ in store.identities()}
    with GalleryStore(db, readonly=True) as store:
        held = {n: [t[0] for t in store.templates(n)] for n, _ in store.identities()}
    assert held == acknowledged
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
