"""`hybridface serve --engine ray --address …`: a live server searching on the 2-node Ray cluster."""

from __future__ import annotations

import os

import httpx
import pytest

from hybridface.gallery.keys import KeyStore

from service_server import Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(180)

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")


def _files(*seeds):
    return [("file", (f"img-{s}.png", png_bytes(s), "image/png")) for s in seeds]


@pytest.mark.skipif(not ADDRESS, reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with "
                    "`eval $(scripts/ray_cluster.sh start)` to run the Ray service test")
def test_ray_engine_answers_like_the_local_engine(tmp_path):
    db = tmp_path / "g.db"
    keys = KeyStore(db, create=True)
    key = keys.create("ops", scope="write")[1]
    local = Server(db, *model_args(), wait=False)
    ray = Server(db, "--engine", "ray", "--address", ADDRESS, *model_args(), wait=False)
    try:
        local.wait_ready()
        ray.wait_ready()
        w = httpx.Client(base_url=local.url, headers={"X-API-Key": key}, timeout=120)
        for name, seeds in {"alice": (1, 2, 3), "bob": (4, 5), "carol": (6, 7)}.items():
            r = w.post(f"/v1/identities/{name}/faces", params={"detect": "never"}, files=_files(*seeds))
            assert r.status_code == 201, r.text
        answers = {}
        for label, server in (("local", local), ("ray", ray)):
            c = httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=120)
            r = c.post("/v1/identify", params={"detect": "never", "strategy": "exhaustive", "k": 3},
                       files=_files(2, 5, 7, 9))
            assert r.status_code == 200, (label, r.text)
            answers[label] = [
                [(cand["identity"], round(cand["distance"], 5)) for cand in res["candidates"]]
                for res in r.json()["results"]
            ]
        assert answers["ray"] == answers["local"]
        assert [a[0][0] for a in answers["ray"][:3]] == ["alice", "bob", "carol"]
        # an enrolment made through the other process reaches the Ray shards
        r = w.post("/v1/identities/dave/faces", params={"detect": "never"}, files=_files(9))
        assert r.status_code == 201, r.text
        c = httpx.Client(base_url=ray.url, headers={"X-API-Key": key}, timeout=120)
        r = c.post("/v1/identify", params={"detect": "never", "strategy": "exhaustive", "k": 1}, files=_files(9))
        assert r.json()["results"][0]["identity"] == "dave"
    finally:
        local.stop()
        ray.stop()
    assert "Traceback" not in ray.log()
