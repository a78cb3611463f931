"""Crash safety: SIGKILL the server mid-stream of enrolments; nothing answered 2xx is lost."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import httpx
import pytest

from hybridface import api
from hybridface.gallery.keys import KeyStore
from hybridface.gallery.store import GalleryStore

from service_server import Server, model_args, model_path, png_bytes

pytestmark = pytest.mark.timeout(180)


def test_sigkill_during_enrolments_loses_nothing_answered(tmp_path):
    db = tmp_path / "g.db"
    key = KeyStore(db, create=True).create("writer", scope="write")[1]
    server = Server(db, *model_args())
    answered: dict[int, tuple[str, list[int]]] = {}
    stop = threading.Event()

    def stream(offset: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10) as c:
            for i in range(offset, 10_000, 2):
                if stop.is_set():
                    return
                name = f"p{i % 7}"
                try:
                    r = c.post(f"/v1/identities/{name}/faces", params={"detect": "never"},
                               files=[("file", (f"img-{i}.png", png_bytes(1000 + i), "image/png"))])
                except httpx.HTTPError:
                    return  # the server died under us: this one was never answered
                if r.status_code == 201:
                    answered[i] = (name, r.json()["template_ids"])

    clients = [threading.Thread(target=stream, args=(k,)) for k in (0, 1)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL in the middle of the stream
    stop.set()
    for t in clients:
        t.join(30)
    assert len(answered) >= 30

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    restarted = Server(db, *model_args())
    try:
        h = {"X-API-Key": key}
        for i, (name, ids) in answered.items():
            assert len(ids) == 1
        by_name: dict[str, set[int]] = {}
        for name, ids in answered.values():
            by_name.setdefault(name, set()).update(ids)
        for name, ids in by_name.items():
            r = httpx.get(f"{restarted.url}/v1/identities/{name}", headers=h, timeout=30)
            assert r.status_code == 200
            assert ids <= set(r.json()["template_ids"]), f"answered enrolments of {name} lost"

        # rebuild from scratch: enrol every image the store holds into a new gallery, compare searches
        with GalleryStore(db) as store:
            stored = {int(m.group(1)): name for name, _ in store.identities()
                      for _, src, _ in store.templates(name) if (m := re.fullmatch(r"upload:img-(\d+)\.png", src))}
        assert set(answered) <= set(stored)
        fresh = api.open_gallery(tmp_path / "fresh.db", create=True, model=model_path())
        for i, name in sorted(stored.items()):
            fresh.enroll(name, [png_bytes(1000 + i)], detect="never")
        probes = [png_bytes(1000 + i) for i in sorted(stored)[:5]] + [png_bytes(50_000 + j) for j in range(5)]
        expected = fresh.identify(probes, strategy="exhaustive", k=3, detect="never")
        for strategy in ("exhaustive", "hybrid"):
            r = httpx.post(f"{restarted.url}/v1/identify", headers=h, timeout=60,
                           params={"detect": "never", "strategy": strategy, "k": 3, "top_n": 7},
                           files=[("file", (f"p{j}.png", p, "image/png")) for j, p in enumerate(probes)])
            assert r.status_code == 200, r.text
            got = r.json()["results"]
            assert [g["identity"] for g in got] == [e.identity for e in expected], strategy
            for g, e in zip(got, expected):
                assert [c["identity"] for c in g["candidates"]] == [n for n, _ in e.candidates]
                assert g["distance"] == pytest.approx(e.distance, abs=1e-5)
    finally:
        restarted.stop()
    assert "Traceback" not in restarted.log()
