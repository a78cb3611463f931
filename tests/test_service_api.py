"""The service end to end on live servers: enrol, list, identify, verify, rename, delete, two processes."""

from __future__ import annotations

import httpx
import pytest

from hybridface.gallery.keys import KeyStore

from service_server import Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(180)


def _files(*seeds):
    return [("file", (f"img-{s}.png", png_bytes(s), "image/png")) for s in seeds]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "g.db"
    ks = KeyStore(db, create=True)
    keys = {s: ks.create(f"k-{s}", scope=s)[1] for s in ("read", "write", "admin")}
    a = Server(db, "--max-faces", "4", *model_args(), wait=False)
    b = Server(db, "--max-faces", "4", *model_args(), wait=False)  # a second process on the same file
    a.wait_ready()
    b.wait_ready()
    yield a, b, keys
    a.stop()
    b.stop()
    assert "Traceback" not in a.log() + b.log()


def test_enrol_identify_verify_rename_delete(env):
    a, b, keys = env
    w = httpx.Client(base_url=a.url, headers={"X-API-Key": keys["write"]}, timeout=60)
    r = w.get("/v1/identities/alice")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_identity"
    # enrol (detect=never: the synthetic images are the face crops)
    r = w.post("/v1/identities/alice/faces", params={"detect": "never"}, files=_files(1, 2, 3))
    assert r.status_code == 201, r.text
    alice = r.json()
    assert alice["identity"] == "alice" and len(alice["template_ids"]) == 3 and alice["templates"] == 3
    r = w.post("/v1/identities/alice/faces", params={"detect": "never"}, files=_files(1))
    assert r.status_code == 201 and r.json()["duplicates"] == 1 and r.json()["template_ids"] == []
    r = w.post("/v1/identities/bob/faces", params={"detect": "never"}, files=_files(4, 5))
    assert r.status_code == 201 and r.json()["templates"] == 2
    listing = w.get("/v1/identities").json()
    assert {i["name"]: i["templates"] for i in listing["identities"]} == {"alice": 3, "bob": 2}
    assert listing["templates"] == 5
    assert w.get("/v1/identities/alice").json()["template_ids"] == alice["template_ids"]

    # identify: a batch, one result per face, enrolled images find themselves at distance ~0
    rd = httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {keys['read']}"}, timeout=60)
    for strategy in ("exhaustive", "indexed", "parallel", "hybrid"):
        r = rd.post("/v1/identify", params={"detect": "never", "strategy": strategy, "k": 2, "top_n": 2},
                    files=_files(2, 5))
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["identity"] for x in res] == ["alice", "bob"], (strategy, res)
        assert [x["file"] for x in res] == [0, 1] and [x["face"] for x in res] == [0, 0]
        assert all(x["distance"] < 1e-4 and not x["unknown"] and len(x["candidates"]) == 2 for x in res)
        assert res[0]["box"] is not None and res[0]["filename"] == "img-2.png"
    # coarse LBG cells over the codewords (hybrid): same answers on this tiny gallery; bad values 422
    r = rd.post("/v1/identify", params={"detect": "never", "strategy": "hybrid", "k": 2, "top_n": 2, "cells": 2,
                                        "probe_cells": 1}, files=_files(2, 5))
    assert r.status_code == 200 and [x["identity"] for x in r.json()["results"]] == ["alice", "bob"], r.text
    r = rd.post("/v1/identify", params={"detect": "never", "cells": 0}, files=_files(2))
    assert r.status_code == 422 and "cells" in r.text
    # unknown past the threshold
    r = rd.post("/v1/identify", params={"detect": "never", "threshold": 0.0, "k": 1}, files=_files(77))
    x = r.json()["results"][0]
    assert r.status_code == 200 and x["unknown"] and x["identity"] is None and x["distance"] > 0
    assert r.json()["threshold"] == 0.0 and len(x["candidates"]) == 1

    # verify
    r = rd.post("/v1/verify", params={"detect": "never", "threshold": 0.3}, files=_files(1, 1))
    assert r.status_code == 200 and r.json()["same"] and r.json()["distance"] < 1e-4
    r = rd.post("/v1/verify", params={"detect": "never"}, files=_files(1, 2))
    assert r.status_code == 400 and "threshold" in r.json()["error"]["message"]  # gallery not calibrated
    r = rd.post("/v1/verify", params={"detect": "never", "threshold": 0.3}, files=_files(1))
    assert r.status_code == 400 and "two files" in r.json()["error"]["message"]

    # rename (and refuse a clash), remove one face, remove the identity (admin)
    r = w.patch("/v1/identities/alice", json={"name": "carol"})
    assert r.status_code == 200 and r.json()["template_ids"] == alice["template_ids"]
    assert w.get("/v1/identities/alice").status_code == 404
    r = w.patch("/v1/identities/carol", json={"name": "bob"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = w.delete(f"/v1/identities/bob/faces/{alice['template_ids'][0]}")
    assert r.status_code == 404  # that face belongs to carol
    r = w.delete(f"/v1/identities/carol/faces/{alice['template_ids'][0]}")
    assert r.status_code == 200 and w.get("/v1/identities/carol").json()["templates"] == 2
    assert w.delete("/v1/identities/carol").status_code == 403  # write < admin
    ad = httpx.Client(base_url=a.url, headers={"X-API-Key": keys["admin"]}, timeout=60)
    r = ad.delete("/v1/identities/carol")
    assert r.status_code == 200 and r.json()["templates_removed"] == 2
    r = rd.post("/v1/identify", params={"detect": "never", "k": 1}, files=_files(2))
    assert r.json()["results"][0]["identity"] == "bob"  # carol's faces are gone from the index


def test_two_processes_share_one_gallery(env):
    a, b, keys = env
    h = {"X-API-Key": keys["write"]}
    r = httpx.post(b.url + "/v1/identities/dave/faces", params={"detect": "never"}, files=_files(40), headers=h,
                   timeout=60)
    assert r.status_code == 201, r.text
    # process A answers with B's enrolment at once (its index follows the store's revision)
    r = httpx.post(a.url + "/v1/identify", params={"detect": "never", "k": 1}, files=_files(40), headers=h,
                   timeout=60)
    assert r.json()["results"][0]["identity"] == "dave" and r.json()["results"][0]["distance"] < 1e-4
    assert httpx.delete(a.url + "/v1/identities/dave", headers={"X-API-Key": keys["admin"]}).status_code == 200
    r = httpx.get(b.url + "/v1/identities/dave", headers=h)
    assert r.status_code == 404


def test_no_face_and_too_many_faces(env, dataset):
    """Real detection: a frame of a VidTIMIT person has one face; four tiled frames exceed --max-faces."""
    import io

    import numpy as np
    from PIL import Image

    a, _, keys = env
    h = {"X-API-Key": keys["read"]}
    # no face in a smooth synthetic image: zero results for identify, 422 no_face for enrolment
    r = httpx.post(a.url + "/v1/identify", params={"detect": "all"}, files=_files(3), headers=h, timeout=60)
    assert r.status_code == 200 and r.json()["results"] == []
    r = httpx.post(a.url + "/v1/identities/x/faces", files=_files(3), headers={"X-API-Key": keys["write"]},
                   timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
    frames = sorted((dataset("vidtimit14") / "faks0").glob("*.jpg"))[:1]
    if not frames:
        pytest.skip("VidTIMIT person faks0 not found")
    img = np.asarray(Image.open(frames[0]).convert("RGB"))
    one = frames[0].read_bytes()
    r = httpx.post(a.url + "/v1/identify", params={"detect": "all"}, headers=h, timeout=60,
                   files=[("file", ("one.jpg", one, "image/jpeg"))])
    assert r.status_code == 200 and len(r.json()["results"]) == 1, r.text
    tiled = np.concatenate([np.concatenate([img] * 3, axis=1)] * 2, axis=0)  # six faces > --max-faces 4
    buf = io.BytesIO()
    Image.fromarray(tiled).save(buf, format="PNG")
    r = httpx.post(a.url + "/v1/identify", params={"detect": "all"}, headers=h, timeout=60,
                   files=[("file", ("crowd.png", buf.getvalue(), "image/png"))])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "too_many_faces" and "'crowd.png'" in r.json()["error"]["message"]
