"""Issue 15 items 6-8 through the real server process and CLI: start-up checks, no leaked internals,
last template removal, keys kept out of logs, /health, /docs."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import httpx
import pytest

from hybridface import api
from hybridface.gallery.keys import KeyStore
from hybridface.models.encoders import shipped_model_path

from service_server import HOST, Server, free_port, model_args, model_path, png_bytes

pytestmark = pytest.mark.timeout(180)


def _serve(db, *extra) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hybridface", "serve", "--db", str(db), "--host", HOST,
                           "--port", str(free_port()), *extra], capture_output=True, text=True, env=env, timeout=120)


def test_serve_refuses_a_model_mismatch_by_model_names_before_listening(tmp_path):
    if not (shipped_model_path("general").is_file() and shipped_model_path("classifier").is_file()):
        pytest.skip("the shipped general and classifier models are not installed")
    db = tmp_path / "g.db"
    with api.open_gallery(db, create=True, model="general") as g:
        g.enroll("alice", [png_bytes(1)], detect="never")
    out = _serve(db, "--model", "classifier")
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "'general'" in err[0] and "'classifier'" in err[0] and "--model general" in err[0]
    assert "hybridface service on" not in out.stdout  # never listened


def test_serve_refuses_a_damaged_gallery_before_listening(tmp_path):
    db = tmp_path / "g.db"
    with api.open_gallery(db, create=True, model=model_path()) as g:
        for i in range(40):
            g.enroll(f"p{i}", [png_bytes(i)], detect="never")
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(b"\xa5" * 4096)
    out = _serve(db, *model_args())
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "is damaged" in err[0] and "--salvage" in err[0], out.stderr
    assert "hybridface service on" not in out.stdout


@pytest.fixture
def live(tmp_path):
    db = tmp_path / "g.db"
    ks = KeyStore(db, create=True)
    keys = {s: ks.create(s, scope=s)[1] for s in ("read", "write", "admin")}
    server = Server(db, *model_args())
    yield server, keys
    server.stop()


def test_no_internals_reach_clients(live):
    server, keys = live
    h = {"X-API-Key": keys["admin"]}
    db = str(server.db)
    r = httpx.get(f"{server.url}/v1/identities/nobody", headers=h, timeout=30)
    assert r.status_code == 404 and db not in r.text and str(server.db.parent) not in r.text, r.text
    r = httpx.post(f"{server.url}/v1/identify", headers=h, params={"detect": "never"}, timeout=30,
                   files=[("file", ("x.png", b"\x89PNG\r\n\x1a\n garbage", "image/png"))])
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_image"
    assert not re.search(r"at 0x[0-9a-f]+", r.text) and "object" not in r.text, r.text
    r = httpx.post(f"{server.url}/v1/identities/alice/faces", headers=h, params={"detect": "never"}, timeout=30,
                   files=[("file", ("a.png", png_bytes(1), "image/png"))])
    assert r.status_code == 201
    with sqlite3.connect(server.db) as con:  # an outside hand breaks the schema under the server
        con.execute("DROP TABLE templates")
    r = httpx.get(f"{server.url}/v1/identities/alice", headers=h, timeout=30)
    assert r.status_code == 500, r.text
    assert r.json()["error"] == {"code": "internal", "message": "internal server error; the details are in the server log"}
    assert "no such table" in server.log()  # the operator still gets the details


def test_removing_the_last_template_removes_the_identity(live):
    server, keys = live
    h = {"X-API-Key": keys["write"]}
    r = httpx.post(f"{server.url}/v1/identities/solo/faces", headers=h, params={"detect": "never"}, timeout=30,
                   files=[("file", ("a.png", png_bytes(5), "image/png"))])
    tid = r.json()["template_ids"][0]
    r = httpx.delete(f"{server.url}/v1/identities/solo/faces/{tid}", headers=h, timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{server.url}/v1/identities/solo", headers=h, timeout=30).status_code == 404
    names = [i["name"] for i in httpx.get(f"{server.url}/v1/identities", headers=h, timeout=30).json()["identities"]]
    assert "solo" not in names


def test_keys_in_query_strings_are_not_logged_in_clear(live):
    server, keys = live
    secret = keys["read"].split("_", 2)[2]
    r = httpx.get(f"{server.url}/v1/identities", params={"api_key": keys["read"]}, timeout=30)
    assert r.status_code == 401  # keys go in headers only
    httpx.get(f"{server.url}/health", params={"key": keys["admin"]}, timeout=30)
    log = server.log()
    assert "GET /v1/identities?api_key=hfk_" in log  # the access log did record the request ...
    assert secret not in log and keys["admin"].split("_", 2)[2] not in log  # ... without the secret


def test_health_is_anonymous_and_says_nothing_about_the_gallery(live):
    server, keys = live
    r = httpx.get(f"{server.url}/health", timeout=30)
    assert r.status_code == 200 and set(r.json()) == {"status", "version"}
    r = httpx.get(f"{server.url}/health", headers={"X-API-Key": "hfk_00000000_" + "x" * 40}, timeout=30)
    assert set(r.json()) == {"status", "version"}
    r = httpx.get(f"{server.url}/health", headers={"X-API-Key": keys["read"]}, timeout=30)
    assert r.json()["identities"] == 0 and r.json()["templates"] == 0


def test_docs_are_off_by_default_and_the_schema_is_served(live):
    server, _ = live
    assert httpx.get(f"{server.url}/docs", timeout=30).status_code == 404
    assert httpx.get(f"{server.url}/openapi.json", timeout=30).status_code == 200


def test_redaction_helpers(tmp_path):
    import logging

    from hybridface.service.redact import RedactKeysFilter, client_message

    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5", "GET", "/v1/identities/hfk_0123abcd_SECRETsecretSECRET42?x=1", "1.1", 401),
                            None)
    assert RedactKeysFilter().filter(rec)
    assert "SECRET" not in rec.getMessage() and "hfk_0123abcd_***" in rec.getMessage()
    db = tmp_path / "g.db"
    msg = f"gallery {db} has no identity 'x' (see: hybridface list --db {db})"
    assert client_message(msg, db) == "the gallery has no identity 'x'"
    assert client_message("bad <_io.BytesIO object at 0x7f00deadbeef>", db) == "bad the data"
