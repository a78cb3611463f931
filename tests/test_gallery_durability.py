"""Durability: an acknowledged write (HTTP 2xx, CLI exit 0) survives other processes on the same file.

Regression for issue 15 item 1: the gallery header used to be read with Python ``open()`` and
closed once per new connection, which on Linux drops every POSIX lock the process holds on the
file; a CLI process closing its own connection then believed it was alone and deleted the live
server's ``-wal`` and ``-shm`` files, losing the enrolments acknowledged after it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import httpx
import pytest

from hybridface.gallery.keys import KeyStore
from hybridface.gallery.store import GalleryStore

from service_server import Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(240)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hybridface", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_acknowledged_enrolments_survive_cli_keys_commands_beside_a_live_server(tmp_path):
    db = tmp_path / "g.db"
    key = KeyStore(db, create=True).create("ops", scope="admin")[1]
    server = Server(db, *model_args())
    acknowledged: dict[str, list[int]] = {}
    seed = [0]

    def enrol(name: str) -> None:
        seed[0] += 1
        r = httpx.post(f"{server.url}/v1/identities/{name}/faces", params={"detect": "never"},
                       headers={"X-API-Key": key}, timeout=60,
                       files=[("file", (f"{name}.png", png_bytes(seed[0]), "image/png"))])
        assert r.status_code == 201, r.text
        acknowledged[name] = r.json()["template_ids"]
        # /health runs on another thread, which opens its own gallery connection
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200

    try:
        enrol("s1")
        for step, cmd in enumerate([("keys", "create", "--db", str(db), "--name", "k2", "--scope", "read"),
                                    ("keys", "list", "--db", str(db)),
                                    ("keys", "revoke", "--db", str(db), "k2"),
                                    ("list", "--db", str(db)),
                                    ("keys", "list", "--db", str(db), "--json")]):
            out = _cli(*cmd)
            assert out.returncode == 0, out.stderr
            enrol(f"s{step + 2}")
            r = httpx.get(f"{server.url}/v1/identities", headers={"X-API-Key": key}, timeout=30)
            assert r.status_code == 200, r.text
            assert {i["name"] for i in r.json()["identities"]} == set(acknowledged)
    finally:
        server.stop()
    assert "Traceback" not in server.log()

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with GalleryStore(db, readonly=True) as store:
        held = {name: [t[0] for t in store.templates(name)] for name, _ in store.identities()}
    assert held == acknowledged, "acknowledged enrolments lost"
    assert [k.name for k in KeyStore(db).list()] == ["ops", "k2"]


def test_opening_another_store_in_this_process_keeps_its_locks(tmp_path):
    """The same defect without a server: a second open in this process must not drop the first
    connection's POSIX locks, or another process's close deletes the live WAL."""
    import numpy as np

    db = tmp_path / "g.db"
    first = GalleryStore(db, create=True)
    first.add_templates("x", np.eye(1, 8, 0, np.float32), ["h0"], model_id="m")
    GalleryStore(db).close()
    KeyStore(db).list()
    other = subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                            "c.execute('SELECT count(*) FROM meta').fetchall(); c.close()", str(db)], timeout=60)
    assert other.returncode == 0
    assert (tmp_path / "g.db-wal").exists(), "another process deleted the live WAL"
    first.add_templates("y", np.eye(1, 8, 1, np.float32), ["h1"], model_id="m")
    first.close()
    with GalleryStore(db, readonly=True) as store:
        assert [n for n, _ in store.identities()] == ["x", "y"]
