"""API keys: only hashes stored, scopes ordered, revocation, CLI create/list/revoke."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from hybridface.cli import main
from hybridface.errors import ConfigError, GalleryError
from hybridface.gallery.keys import KeyStore


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "g.db"


def test_create_authenticate_revoke(db):
    ks = KeyStore(db, create=True)
    rec, token = ks.create("cam-1", scope="write")
    assert token.startswith("hfk_") and len(token) > 40
    assert ks.authenticate(token) == rec
    assert ks.authenticate(f"  {token} ") == rec
    assert ks.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ks.authenticate("hfk_00000000_" + "x" * 43) is None
    assert ks.authenticate("") is None and ks.authenticate(None) is None
    assert rec.allows("read") and rec.allows("write") and not rec.allows("admin")
    revoked = ks.revoke("cam-1")
    assert revoked.revoked is not None and not revoked.allows("read")
    assert ks.authenticate(token) is None
    # another process/connection sees the revocation at once
    assert KeyStore(db).authenticate(token) is None


def test_only_a_salted_hash_is_stored(db):
    ks = KeyStore(db, create=True)
    _, t1 = ks.create("a")
    _, t2 = ks.create("b")
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # the file and its WAL
    for t in (t1, t2):
        secret = t.split("_", 2)[2]  # hfk_<id>_<secret>; the secret itself may contain "_"
        assert t.encode() not in raw and secret.encode() not in raw and secret[:16].encode() not in raw
    with sqlite3.connect(db) as con:
        salts = [r[0] for r in con.execute("SELECT salt FROM api_keys")]
    assert len(set(salts)) == 2


def test_bad_input(db, tmp_path):
    with pytest.raises(GalleryError):
        KeyStore(tmp_path / "missing.db")  # does not create by default
    ks = KeyStore(db, create=True)
    with pytest.raises(ConfigError, match="scope"):
        ks.create("x", scope="root")
    with pytest.raises(ConfigError, match="invalid key name"):
        ks.create("../etc")
    ks.create("dup")
    with pytest.raises(ConfigError, match="already exists"):
        ks.create("dup")
    with pytest.raises(ConfigError, match="no API key"):
        ks.revoke("nobody")
    notdb = tmp_path / "not.db"
    notdb.write_text("hello")
    with pytest.raises(GalleryError):
        KeyStore(notdb)


def test_cli_keys(db, capsys):
    assert main(["keys", "create", "--db", str(db), "--name", "app", "--scope", "admin", "--create"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token = out[-1]
    assert KeyStore(db).authenticate(token).scope == "admin"
    assert main(["keys", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "app" in listing and "admin" in listing and token not in listing
    assert main(["keys", "revoke", "--db", str(db), "app"]) == 0
    assert KeyStore(db).authenticate(token) is None
    # errors: one line, exit 2
    r = subprocess.run([sys.executable, "-m", "hybridface", "keys", "revoke", "--db", str(db), "ghost"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
