"""Request counters and latency histograms in the Prometheus text exposition format (0.0.4)."""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from typing import Any

#: Latency histogram bucket upper bounds in seconds.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(**kv: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe counts of requests by (method, route, status) and latency by (method, route).

    Routes are the route *templates* (``/v1/identities/{name}``), never raw paths, so label
    cardinality stays bounded whatever clients send.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            key = (method, route)
            buckets = self._buckets.setdefault(key, [0] * len(BUCKETS))
            i = bisect.bisect_left(BUCKETS, seconds)
            if i < len(BUCKETS):
                buckets[i] += 1
            self._sums[key] += seconds
            self._counts[key] += 1

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """Prometheus text; ``gauges`` maps metric name to ``(help, value)``."""
        out: list[str] = [
            "# HELP hybridface_http_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE hybridface_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                out.append(f"hybridface_http_requests_total{_labels(method=method, route=route, status=status)} {n}")
            out += [
                "# HELP hybridface_http_request_duration_seconds Time to answer HTTP requests.",
                "# TYPE hybridface_http_request_duration_seconds histogram",
            ]
            for (method, route), buckets in sorted(self._buckets.items()):
                cumulative = 0
                for le, n in zip(BUCKETS, buckets):
                    cumulative += n
                    out.append(
                        "hybridface_http_request_duration_seconds_bucket"
                        f"{_labels(method=method, route=route, le=repr(le))} {cumulative}"
                    )
                total = self._counts[(method, route)]
                lbl = _labels(method=method, route=route)
                out.append(f'hybridface_http_request_duration_seconds_bucket{_labels(method=method, route=route, le="+Inf")} {total}')
                out.append(f"hybridface_http_request_duration_seconds_sum{lbl} {self._sums[(method, route)]:.6f}")
                out.append(f"hybridface_http_request_duration_seconds_count{lbl} {total}")
        for name, (help_text, value) in sorted((gauges or {}).items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request's status and latency into `Metrics`."""

    def __init__(self, app: Any, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status["code"], time.perf_counter() - start)
