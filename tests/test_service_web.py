"""The service's web page (/, /static) and the routes it adds (/v1/me, /v1/calibrate), in process."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hybridface.api import load_encoder, open_gallery
from hybridface.gallery.keys import KeyStore
from hybridface.service.app import create_app


@pytest.fixture()
def env(tmp_path):
    db = tmp_path / "g.db"
    open_gallery(db, model="general", create=True).close()
    ks = KeyStore(db)
    keys = {s: ks.create(f"k-{s}", scope=s)[1] for s in ("read", "write", "admin")}
    app = create_app(db, model="general")
    with TestClient(app) as client:
        yield client, keys, db


def _enrol_vectors(db, people: int = 3, per: int = 4) -> None:
    enc = load_encoder("general")
    rng = np.random.default_rng(0)
    with open_gallery(db, model="general") as g:
        for p in range(people):
            centre = rng.normal(size=enc.dim)
            g.enroll_vectors(f"p{p}", centre + 0.3 * rng.normal(size=(per, enc.dim)), model_id=enc.model_id)


def test_page_and_assets_are_served_small_and_offline(env):
    c, _, _ = env
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    html = r.text
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert sorted(assets) == ["/static/app.js", "/static/style.css"]
    total = len(r.content)
    for a in assets:
        ra = c.get(a)
        assert ra.status_code == 200
        total += len(ra.content)
        assert "http://" not in ra.text and "https://" not in ra.text, f"{a} loads nothing from elsewhere"
    assert "http://" not in html and "https://" not in html
    assert total <= 200 * 1024, f"first load {total} bytes"
    assert c.get("/static/app.js").headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert c.get("/static/nope.js").status_code == 404


def test_key_field_can_never_reach_the_url(env):
    c, _, _ = env

    class Forms(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    p = Forms()
    p.feed(c.get("/").text)
    form = next(a for t, a in p.tags if t == "form" and a.get("id") == "key-form")
    key_input = next(a for t, a in p.tags if t == "input" and a.get("id") == "key-input")
    assert form["method"] == "post" and "name" not in key_input and key_input["type"] == "password"
    js = c.get("/static/app.js").text
    assert "sessionStorage" in js and "localStorage" not in js and "X-API-Key" in js
    assert "?key" not in js and "api_key=" not in js


def test_me_reports_the_key_scope(env):
    c, keys, _ = env
    r = c.get("/v1/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert c.get("/v1/me", headers={"X-API-Key": "hf_wrong"}).status_code == 401
    for scope, key in keys.items():
        r = c.get("/v1/me", headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json() == {"name": f"k-{scope}", "scope": scope}


def test_calibrate_needs_admin_and_stores_the_threshold(env):
    c, keys, db = env
    admin = {"X-API-Key": keys["admin"]}
    r = c.post("/v1/calibrate", headers=admin)
    assert r.status_code == 409 and r.json()["error"]["code"] == "empty_gallery"
    _enrol_vectors(db)
    for scope in ("read", "write"):
        r = c.post("/v1/calibrate", headers={"X-API-Key": keys[scope]})
        assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    for far in ("0", "1", "-0.1", "x"):
        r = c.post("/v1/calibrate", params={"far": far}, headers=admin)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = c.post("/v1/calibrate", params={"far": 0.05}, headers=admin)
    assert r.status_code == 200, r.text
    cal = r.json()
    assert cal["target_far"] == 0.05 and cal["far"] <= 0.05 and cal["genuine_pairs"] == 3 * 6
    assert cal["impostor_pairs"] == 66 - 18
    with open_gallery(db, model="general", readonly=True) as g:
        assert g.threshold == pytest.approx(cal["threshold"])


def test_calibrate_with_one_identity_is_a_clear_400(env):
    c, keys, db = env
    _enrol_vectors(db, people=1)
    r = c.post("/v1/calibrate", headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 400 and "at least 2 identities" in r.json()["error"]["message"]
