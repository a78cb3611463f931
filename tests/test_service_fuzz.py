"""Hostile images through the upload path: >= 500 malformed inputs, 0 crashes, each a clear 4xx."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from hybridface.gallery.keys import KeyStore
from hybridface.service.app import create_app
from hybridface.service.limits import ServiceSettings

from hostile_images import base_images, corrupted, malformed, odd_but_valid
from service_server import Server, model_args, model_path, png_bytes

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def db_and_key(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "g.db"
    ks = KeyStore(db, create=True)
    return db, ks.create("fuzz", scope="write")[1]


@pytest.fixture(scope="module")
def client(db_and_key):
    db, _ = db_and_key
    app = create_app(db, settings=ServiceSettings(max_pixels=4_000_000, workers=2), model=model_path())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _check_refused(r, label):
    assert r.status_code == 422, (label, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == "bad_image", (label, err)
    assert len(err["message"]) > 15 and "Traceback" not in err["message"], (label, err)


def test_malformed_corpus_in_process(client, db_and_key):
    _, key = db_and_key
    corpus = malformed(450)
    for i, (label, data) in enumerate(corpus):
        route = "/v1/identify" if i % 2 else "/v1/identities/fuzz/faces"
        r = client.post(route, params={"detect": "never"}, headers={"X-API-Key": key},
                        files=[("file", (f"{label}.img", data, "application/octet-stream"))])
        _check_refused(r, label)
        assert repr(f"{label}.img") in r.json()["error"]["message"]  # names the upload
    # nothing malformed got enrolled
    assert client.get("/v1/identities/fuzz", headers={"X-API-Key": key}).status_code == 404


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.one_of(
    st.binary(max_size=600),
    st.builds(lambda kind, cut: base_images()[kind][:cut],
              st.sampled_from(sorted(base_images())), st.integers(0, 40)),
))
def test_hypothesis_bytes_in_process(client, db_and_key, data):
    _, key = db_and_key
    r = client.post("/v1/identify", params={"detect": "never"}, headers={"X-API-Key": key},
                    files=[("file", ("x.bin", data, "application/octet-stream"))])
    _check_refused(r, data[:16])


def test_a_batch_with_one_bad_file_is_refused_whole(client, db_and_key):
    _, key = db_and_key
    files = [("file", ("good.png", png_bytes(1), "image/png")), ("file", ("bad.jpg", b"\xff\xd8\xff", "image/jpeg"))]
    r = client.post("/v1/identities/batch/faces", params={"detect": "never"}, headers={"X-API-Key": key}, files=files)
    _check_refused(r, "batch")
    assert "'bad.jpg'" in r.json()["error"]["message"]
    assert client.get("/v1/identities/batch", headers={"X-API-Key": key}).status_code == 404


def test_corrupted_and_odd_images_never_crash_the_live_server(db_and_key, tmp_path):
    """Through a real server: part of the malformed corpus, flipped bytes and odd valid kinds."""
    db, key = db_and_key
    server = Server(db, "--max-pixels", "4000000", *model_args())
    try:
        h = {"X-API-Key": key}
        with httpx.Client(base_url=server.url, headers=h, timeout=30) as c:
            r = c.post("/v1/identities/seed/faces", params={"detect": "never"},
                       files=[("file", ("seed.png", png_bytes(99), "image/png"))])
            assert r.status_code == 201, r.text
            for label, data in malformed(450, seed=5)[::9]:  # 50 through the live server
                r = c.post("/v1/identify", params={"detect": "never"}, files=[("file", (label, data))])
                _check_refused(r, label)
            for label, data in corrupted(40) + odd_but_valid():
                r = c.post("/v1/identify", params={"detect": "never"}, files=[("file", (label, data))])
                assert r.status_code in (200, 422), (label, r.status_code, r.text[:300])
                if r.status_code == 422:
                    assert r.json()["error"]["code"] == "bad_image"
                else:
                    assert len(r.json()["results"]) == 1
            for label, data in odd_but_valid():
                r = c.post("/v1/identify", params={"detect": "never"}, files=[("file", (label, data))])
                assert r.status_code == 200, (label, r.text[:300])
            assert c.get("/health").status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in server.log()
