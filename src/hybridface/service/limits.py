"""Service limits: settings, the upload-size guard, the bounded worker pool and name checks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hybridface.errors import ConfigError, ConflictError, HybridFaceError, InvalidNameError  # noqa: F401
from hybridface.gallery.names import MAX_NAME_LENGTH, check_identity_name  # noqa: F401  (the one name rule)
from hybridface.options import SearchOptions

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and defaults of one service process.

    Attributes:
        max_upload_bytes: largest request body (413 beyond it); checked on Content-Length and
            on the bytes actually streamed.
        max_pixels: largest decoded image (width x height); larger ones (decompression bombs)
            answer 422 before they are decoded.
        max_files: most ``file`` parts in one request.
        max_faces: most faces used from one image (422 beyond it).
        workers: threads that run encode/search work; requests beyond them queue.
        queue_size: requests that may wait for a worker; beyond it the service answers 503.
        queue_timeout_s: longest wait for a worker before 503.
        request_timeout_s: longest a request may run before 504.
        engine: ``local`` or ``ray`` (passed to the facade's ``identify``).
        ray_address: Ray cluster to join with ``engine="ray"`` (None: ``RAY_ADDRESS`` or an embedded Ray).
        search_workers: partitions searched in parallel by the parallel/hybrid strategies.
        storage: template storage of the ``exhaustive`` strategy, ``float32`` or ``int8`` (int8
            codes kept beside the templates, +27 % memory: single-image searches read 4x fewer
            bytes, answers unchanged; needs Numba). A server setting, not a query parameter.
        public_metrics: serve ``/metrics`` without a key (default: any valid key).
        docs: serve the Swagger UI at ``/docs`` (off by default: it loads its scripts from a CDN;
            ``/openapi.json`` is always served).
        max_request_pixels: decoded-pixel budget of one request (sum of width x height of its
            images, read from their headers before anything is decoded; 422 beyond it).
        max_server_pixels: pixels being decoded at once across all requests; an image waits for
            budget (up to ``queue_timeout_s``, then 503) before it is decoded.
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_files: int = 16
    max_faces: int = 10
    workers: int = 2
    queue_size: int = 64
    queue_timeout_s: float = 30.0
    request_timeout_s: float = 60.0
    engine: str = "local"
    ray_address: str | None = None
    search_workers: int = 2
    storage: str = "float32"
    public_metrics: bool = False
    docs: bool = False
    max_request_pixels: int = 100_000_000
    max_server_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_files", "max_faces", "workers", "max_request_pixels",
                     "max_server_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"service setting {name} must be >= 1, got {getattr(self, name)}")
        if self.queue_size < 0 or self.queue_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ConfigError("queue_size must be >= 0 and the timeouts > 0")
        self.search_options()  # engine, address, workers and storage: one OptionError naming the bad one

    def search_options(self) -> SearchOptions:
        """The server-side search settings; each request adds its strategy, top_n, k, ... on top."""
        return SearchOptions(engine=self.engine, address=self.ray_address, workers=self.search_workers,
                             storage=self.storage)


class PayloadTooLargeError(HybridFaceError):
    """The request body is larger than the service accepts."""

    http_status = 413
    code = "payload_too_large"


class BusyError(HybridFaceError):
    """Every worker is busy and the queue is full (or the wait was too long)."""

    http_status = 503
    code = "busy"


class RequestTimeoutError(HybridFaceError):
    """The work for a request took longer than the request timeout."""

    http_status = 504
    code = "timeout"


class TooManyFacesError(ConfigError):
    """An image holds more faces than the service uses from one image."""

    http_status = 422
    code = "too_many_faces"


def error_body(code: str, message: str) -> bytes:
    """The JSON error body every error response carries."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class BodyLimitMiddleware:
    """ASGI middleware: 413 when Content-Length or the streamed body exceeds ``max_bytes``.

    When the streamed count crosses the limit, the 413 is sent at once, the application is told
    the client disconnected, and whatever it tries to send afterwards is dropped.
    """

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Callable) -> None:
        body = error_body(
            "payload_too_large", f"request body exceeds the limit of {self.max_bytes} bytes"
        )
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        state = {"received": 0, "started": False, "rejected": False}

        async def limited_receive() -> dict:
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["rejected"] = True
                    if not state["started"]:
                        state["started"] = True
                        await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class WorkerPool:
    """A bounded thread pool for blocking work, with a bounded queue in front of it.

    ``await pool.run(fn, *args)`` waits at most ``queue_timeout_s`` for a slot (`BusyError`,
    503, when the queue is full or the wait too long) and at most ``request_timeout_s`` for the
    result (`RequestTimeoutError`, 504). A timed-out job keeps its slot until it really ends,
    so the number of running jobs never exceeds ``workers``.
    """

    def __init__(self, *, workers: int, queue_size: int, queue_timeout_s: float, request_timeout_s: float) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self.request_timeout_s = request_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hybridface-worker")
        self._slots = threading.BoundedSemaphore(workers + queue_size)
        self._waiting = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs admitted and not yet finished (running + queued)."""
        return self._waiting

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._slots.acquire(blocking=False):
            raise BusyError(
                f"the service is busy ({self.workers} workers, {self.queue_size} queued); retry later"
            )
        with self._lock:
            self._waiting += 1
        admitted = time.monotonic()

        def job() -> T:
            waited = time.monotonic() - admitted
            if waited > self.queue_timeout_s:
                raise BusyError(f"waited {waited:.1f} s for a worker; the service is busy, retry later")
            return fn(*args)

        future = self._executor.submit(job)

        def _release(_: Any) -> None:
            with self._lock:
                self._waiting -= 1
            self._slots.release()

        future.add_done_callback(_release)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.request_timeout_s)
        except TimeoutError as exc:
            future.cancel()  # drops it if still queued; a running job finishes and frees its slot
            raise RequestTimeoutError(
                f"the request took longer than {self.request_timeout_s:g} s and was abandoned"
            ) from exc

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
