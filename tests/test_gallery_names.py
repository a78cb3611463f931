"""The one identity-name rule (gallery/names.py) in the store, the CLI and the REST service."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from hybridface import api
from hybridface.cli import main
from hybridface.errors import InvalidNameError
from hybridface.gallery.keys import KeyStore
from hybridface.gallery.names import MAX_NAME_LENGTH, check_identity_name, name_problem
from hybridface.gallery.store import GalleryStore

from service_server import model_path, png_bytes

GOOD = ["alice", "Zoë O'Brien-2", "José", "Алиса", "сосо", "山田 太郎", "やまだ Taro", "김민준", "ＡＬＩＣＥ",
        "a" * MAX_NAME_LENGTH, "x.y@z", "O\u2019Neil", "جميلة"]
BAD = {
    "": "empty", " bob": "whitespace", "bob ": "whitespace", "\tbob": "control", "alice\u200b": "invisible",
    "\u202eecila": "invisible", "a\u2066b\u2069": "invisible", "\ufeffbob": "invisible", "a\x00b": "control",
    "a\nb": "control", "\x7f": "control", "a/b": "path separator", "../../etc": "path separator",
    "a\\b": "path separator", ".": "reserved", "..": "reserved", "y" * (MAX_NAME_LENGTH + 1): "limit",
    "Zoe\u0308": "NFC", "\u0430lice": "mixes the scripts", "p\u0430yp\u0430l": "mixes the scripts",
    "a\u2028b": "line separator", "\ue000": "private-use", "\U000e0001x": "invisible",
}


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_are_returned_unchanged(name):
    assert check_identity_name(name) == name and name_problem(name) is None


@pytest.mark.parametrize("name, why", BAD.items())
def test_invalid_names_are_refused_with_the_reason(name, why):
    with pytest.raises(InvalidNameError, match=why):
        check_identity_name(name)


def test_confusable_decision_whole_script_allowed_mixed_script_refused(tmp_path):
    """Decision: a Cyrillic-only name that looks Latin is a legitimate, distinct identity; one
    Cyrillic letter inside a Latin name (a look-alike of an existing identity) is refused."""
    with GalleryStore(tmp_path / "g.db", create=True) as store:
        store.add_templates("coco", np.eye(1, 8, 0, np.float32), ["h0"], model_id="m")
        store.add_templates("сосо", np.eye(1, 8, 1, np.float32), ["h1"], model_id="m")  # Cyrillic
        with pytest.raises(InvalidNameError, match="mixes the scripts"):
            store.add_templates("c\u043ec\u043e", np.eye(1, 8, 2, np.float32), ["h2"], model_id="m")
        assert sorted(n for n, _ in store.identities()) == ["coco", "сосо"]


def test_store_refuses_bad_names_and_never_strips(tmp_path):
    with GalleryStore(tmp_path / "g.db", create=True) as store:
        store.add_templates("bob", np.eye(1, 8, 0, np.float32), ["h0"], model_id="m")
        for bad in (" bob", "bob\u200b", "../../etc"):
            with pytest.raises(InvalidNameError):
                store.add_templates(bad, np.eye(1, 8, 1, np.float32), ["h1"], model_id="m")
            with pytest.raises(InvalidNameError):
                store.rename_identity("bob", bad)
        assert store.identities() == [("bob", 1)]


def _folder(root, name, seed):
    d = root / name
    d.mkdir(parents=True)
    Image.open(__import__("io").BytesIO(png_bytes(seed))).save(d / "0.png")


def test_cli_enroll_reports_and_skips_bad_folder_names_never_merges(tmp_path, capsys):
    data = tmp_path / "data"
    _folder(data, "bob", 1)
    _folder(data, " bob", 2)
    _folder(data, "alice\u200b", 3)
    db = tmp_path / "g.db"
    model = ["--model", model_path()] if model_path() else []
    assert main(["enroll", str(data), "--db", str(db), "--detect", "never", *model]) == 0
    out = capsys.readouterr().out
    assert "of 1 identities" in out and "2 skipped" in out
    assert "' bob' has leading or trailing whitespace" in out and "'alice\\u200b'" in out
    with GalleryStore(db) as store:
        assert store.identities() == [("bob", 1)]
    assert main(["enroll", str(data), "--db", str(db), "--detect", "never", "--json", *model]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert {x["identity"] for x in lines if x["skipped"] and x["added"] == 0} >= {" bob", "alice\u200b"}


@pytest.mark.parametrize("new", ["../../etc", "a/b", "x\x07y", " bob", "alice\u200b"])
def test_cli_rename_refuses_bad_names_with_one_line(tmp_path, capsys, new):
    db = tmp_path / "g.db"
    with api.open_gallery(db, create=True) as g:
        g.enroll_vectors("bob", np.ones((1, 8), np.float32), model_id="m")
    assert main(["rename", "bob", new, "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: identity name")
    with GalleryStore(db) as store:
        assert store.identities() == [("bob", 1)]


def test_service_refuses_invisible_and_bidi_names(tmp_path):
    from hybridface.service.app import create_app

    db = tmp_path / "g.db"
    key = KeyStore(db, create=True).create("w", scope="write")[1]
    app = create_app(db, model=model_path())
    with TestClient(app, raise_server_exceptions=False) as c:
        h = {"X-API-Key": key}
        for bad in ("alice\u200b", "\u202eecila", "\u0430lice", "Zoe\u0308"):
            r = c.post(f"/v1/identities/{bad}/faces", params={"detect": "never"}, headers=h,
                       files=[("file", ("a.png", png_bytes(1), "image/png"))])
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name", (bad, r.text)
        r = c.post("/v1/identities/alice/faces", params={"detect": "never"}, headers=h,
                   files=[("file", ("a.png", png_bytes(1), "image/png"))])
        assert r.status_code == 201
        r = c.patch("/v1/identities/alice", headers=h, json={"name": "alice\u200b"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name"
        assert [i["name"] for i in c.get("/v1/identities", headers=h).json()["identities"]] == ["alice"]
