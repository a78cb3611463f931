"""Bounded memory: decoded-pixel budgets per request and per server, checked before decoding."""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest
from PIL import Image

from hybridface.gallery.keys import KeyStore
from hybridface.service.pixels import PixelBudget, PixelBudgetBusyError, PixelBudgetError, request_pixels

from service_server import Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(180)


def _flat_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 90, 60)).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_request_pixels_reads_headers_only():
    big = _flat_png(5000, 5000)
    assert len(big) < 200_000
    t = time.perf_counter()
    assert request_pixels([("a.png", big)] * 3, budget=10**9, max_pixels=25_000_000) == [25_000_000] * 3
    assert time.perf_counter() - t < 0.5  # 75M pixels sized, none decoded
    with pytest.raises(PixelBudgetError, match="75,000,000 pixels"):
        request_pixels([("a.png", big)] * 3, budget=50_000_000, max_pixels=25_000_000)


def test_pixel_budget_waits_then_refuses():
    b = PixelBudget(100)
    assert b.acquire(60, timeout=1) == 60
    got = []
    t = threading.Thread(target=lambda: got.append(b.acquire(50, timeout=5)))
    t.start()
    time.sleep(0.1)
    assert not got  # waits for budget
    b.release(60)
    t.join(5)
    assert got == [50] and b.peak == 60
    b.release(50)
    assert b.acquire(500, timeout=1) == 100  # an image larger than the whole budget takes all of it
    with pytest.raises(PixelBudgetBusyError):
        b.acquire(10, timeout=0.1)
    b.release(100)
    assert b.in_use == 0


def test_hostile_pixel_request_is_refused_before_decoding_and_memory_stays_bounded(tmp_path):
    db = tmp_path / "g.db"
    key = KeyStore(db, create=True).create("reader", scope="read")[1]
    server = Server(db, *model_args(), "--max-request-pixels", "30000000", "--max-server-pixels", "20000000")
    try:
        h = {"X-API-Key": key}
        httpx.post(f"{server.url}/v1/identify", headers=h, params={"detect": "never"}, timeout=60,
                   files=[("file", ("p.png", png_bytes(1), "image/png"))])  # warm up (encoder, pools)
        idle = _peak_rss_mb(server.proc.pid)
        bomb = _flat_png(5000, 5000)
        files = [("file", (f"{i}.png", bomb, "image/png")) for i in range(16)]  # 400M pixels in ~1 MB
        r = httpx.post(f"{server.url}/v1/identify", headers=h, params={"detect": "never"}, files=files, timeout=60)
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_pixels", r.text
        assert _peak_rss_mb(server.proc.pid) < idle + 50  # nothing was decoded
        # within the request budget: decoded one image at a time (each 4000x3000, 36 MB as RGB)
        ok = _flat_png(4000, 3000)
        r = httpx.post(f"{server.url}/v1/identify", headers=h, params={"detect": "never"}, timeout=120,
                       files=[("file", (f"{i}.png", ok, "image/png")) for i in range(2)])
        assert r.status_code in (200, 409), r.text  # 409: the gallery is empty
        peak = _peak_rss_mb(server.proc.pid)
        bound = 2 * idle + 30_000_000 * 3 / 2**20  # the documented bound: 2x idle + one request's budget
        assert peak < bound, (idle, peak, bound)
    finally:
        server.stop()
