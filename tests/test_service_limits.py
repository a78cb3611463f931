"""The bounded worker pool (queue -> 503, timeout -> 504), settings checks and the metrics text."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hybridface.errors import ConfigError
from hybridface.service.limits import (
    BusyError,
    InvalidNameError,
    RequestTimeoutError,
    ServiceSettings,
    WorkerPool,
    check_identity_name,
)
from hybridface.service.metrics import Metrics


def test_burst_queues_then_refuses_with_busy():
    pool = WorkerPool(workers=1, queue_size=2, queue_timeout_s=5, request_timeout_s=5)
    running = []
    peak = [0]
    lock = threading.Lock()

    def job(i):
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.05)
        with lock:
            running.remove(i)
        return i

    async def burst():
        return await asyncio.gather(*(pool.run(job, i) for i in range(6)), return_exceptions=True)

    out = asyncio.run(burst())
    done = [x for x in out if isinstance(x, int)]
    busy = [x for x in out if isinstance(x, BusyError)]
    assert len(done) == 3 and len(busy) == 3 and peak[0] == 1  # 1 running + 2 queued, never more
    assert busy[0].http_status == 503 and "busy" in str(busy[0])
    assert pool.pending == 0
    assert asyncio.run(pool.run(job, 9)) == 9  # capacity is back
    pool.shutdown()


def test_queue_wait_limit_and_request_timeout():
    pool = WorkerPool(workers=1, queue_size=4, queue_timeout_s=0.05, request_timeout_s=0.1)

    async def go():
        return await asyncio.gather(pool.run(time.sleep, 1.0), pool.run(time.sleep, 0.0), return_exceptions=True)

    first, second = asyncio.run(go())
    assert isinstance(first, RequestTimeoutError) and first.http_status == 504
    assert isinstance(second, (BusyError, RequestTimeoutError))  # waited too long behind the slow one
    assert pool.pending >= 1  # the abandoned job still runs and holds its slot
    deadline = time.monotonic() + 5
    while pool.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.pending == 0  # ... and releases it when it really ends
    pool.shutdown()


def test_settings_and_names():
    with pytest.raises(ConfigError):
        ServiceSettings(workers=0)
    with pytest.raises(ConfigError):
        ServiceSettings(engine="gpu")
    assert check_identity_name("Zoë O'Brien-2") == "Zoë O'Brien-2"
    for bad in ("", "a/b", "a\\b", "..", ".", "x\n", "\x7f", " a", "y" * 129):
        with pytest.raises(InvalidNameError):
            check_identity_name(bad)


def test_metrics_text_format():
    m = Metrics()
    m.observe("GET", "/health", 200, 0.003)
    m.observe("GET", "/health", 200, 0.2)
    m.observe("POST", '/v1/x"y', 422, 50.0)
    text = m.render({"hybridface_worker_jobs": ("Jobs.", 2)})
    assert 'hybridface_http_requests_total{method="GET",route="/health",status="200"} 2' in text
    assert 'hybridface_http_request_duration_seconds_bucket{method="GET",route="/health",le="0.005"} 1' in text
    assert 'hybridface_http_request_duration_seconds_bucket{method="GET",route="/health",le="+Inf"} 2' in text
    assert 'route="/v1/x\\"y"' in text  # label values escaped
    assert 'le="30.0"} 0' in text and "hybridface_worker_jobs 2" in text
