"""Bounded load test of the REST service on loopback: concurrent clients mixing identify and enrol.

Builds a gallery of ``--templates`` templates (random unit vectors stored through the facade
under the real model's id, so search cost is that of a real gallery), starts ``hybridface serve``
on 127.0.0.1, runs ``--clients`` concurrent clients for ``--duration`` seconds, stops by itself
and prints a Markdown table (throughput, p50/p99 latency, errors) plus the machine and command.

    python benchmarks/load.py                      # 50 clients, 60 s, 10,000 templates
    python benchmarks/load.py --clients 8 --duration 10 --templates 2000   # a quick look
    python benchmarks/load.py --clients 20 --duration 60 --hostile-every 10   # issue 15's hostile mix

With ``--hostile-every N`` about one request in N is hostile but valid HTTP: 16 flat 5000x5000
PNGs in ~1 MB (a pixel flood, refused from the headers), one 20000x20000 PNG (a bomb), or one
flat 4000x3000 PNG (large but within budget, decoded). Hostile answers must be 4xx (any 5xx
counts as an error); the server's peak RSS (VmHWM) is reported against the documented bound,
2 x idle + one request's pixel budget x 3 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 64), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build_gallery(db: Path, templates: int, per_identity: int, model: str | None) -> str:
    """Fill ``db`` with ``templates`` random templates; return an admin key."""
    from hybridface import api
    from hybridface.gallery.keys import KeyStore

    gallery = api.open_gallery(db, create=True, model=model)
    enc = gallery.encoder
    rng = np.random.default_rng(0)
    for start in range(0, templates, per_identity):
        n = min(per_identity, templates - start)
        gallery.enroll_vectors(f"id{start // per_identity:05d}", rng.standard_normal((n, enc.dim)).astype(np.float32),
                               model_id=enc.model_id)
    gallery.close()
    return KeyStore(db).create("load", scope="admin")[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _flat_png(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 90, 60)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def hostile_payloads() -> dict[str, list[tuple[str, bytes]]]:
    flood = _flat_png(5000, 5000)
    return {"pixel_flood": [(f"f{i}.png", flood) for i in range(16)],
            "bomb": [("bomb.png", _flat_png(20000, 20000))],
            "large_valid": [("large.png", _flat_png(4000, 3000))]}


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """``(current RSS, peak RSS)`` of a process in MiB (Linux /proc)."""
    vals = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return vals.get("VmRSS", float("nan")), vals.get("VmHWM", float("nan"))


async def run_clients(url: str, key: str, *, clients: int, duration: float, identify_ratio: float,
                      strategy: str, identities: int, hostile_every: int = 0) -> dict[str, list]:
    stats: dict[str, list] = {"identify": [], "enrol": [], "errors": [], "hostile": []}
    hostile = hostile_payloads() if hostile_every else {}
    deadline = time.perf_counter() + duration
    probes = [_png(i) for i in range(64)]
    counter = iter(range(10**9))

    async def client(cid: int) -> None:
        rnd = random.Random(cid)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120, limits=limits) as c:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                if hostile_every and rnd.random() < 1.0 / hostile_every:
                    kind = rnd.choice(sorted(hostile))
                    r = await c.post("/v1/identify", params={"detect": "never", "strategy": strategy},
                                     files=[("file", (n, b, "image/png")) for n, b in hostile[kind]])
                    stats["hostile"].append((kind, r.status_code))
                    if r.status_code >= 500:
                        stats["errors"].append((f"hostile {kind}", r.status_code, r.text[:200]))
                    continue
                if rnd.random() < identify_ratio:
                    kind = "identify"
                    r = await c.post("/v1/identify", params={"detect": "never", "strategy": strategy, "k": 5},
                                     files=[("file", ("p.png", rnd.choice(probes), "image/png"))])
                    ok = r.status_code == 200
                else:
                    kind = "enrol"
                    i = next(counter)
                    r = await c.post(f"/v1/identities/id{rnd.randrange(identities):05d}/faces",
                                     params={"detect": "never"},
                                     files=[("file", (f"e{i}.png", _png(10**6 + cid * 10**5 + i), "image/png"))])
                    ok = r.status_code == 201
                dt = time.perf_counter() - t0
                if ok:
                    stats[kind].append(dt)
                else:
                    stats["errors"].append((kind, r.status_code, r.text[:200]))

    await asyncio.gather(*(client(i) for i in range(clients)))
    return stats


def _row(name: str, lat: list[float], seconds: float) -> str:
    if not lat:
        return f"| {name} | 0 | 0 | - | - |"
    a = np.asarray(lat) * 1000
    return (f"| {name} | {len(a)} | {len(a) / seconds:.1f} | {np.percentile(a, 50):.0f} | "
            f"{np.percentile(a, 99):.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (the test stops by itself)")
    p.add_argument("--templates", type=int, default=10_000)
    p.add_argument("--per-identity", type=int, default=10)
    p.add_argument("--identify-ratio", type=float, default=0.8)
    p.add_argument("--strategy", default="hybrid", choices=("exhaustive", "indexed", "parallel", "hybrid"))
    p.add_argument("--workers-pool", type=int, default=2)
    p.add_argument("--model", default=None, help="model dir/.onnx (default: the shipped model)")
    p.add_argument("--hostile-every", type=int, default=0, metavar="N",
                   help="about one request in N is a hostile-but-valid upload (0: none)")
    p.add_argument("--max-request-pixels", type=int, default=100_000_000, help="passed to serve")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hf-load-") as tmp:
        db = Path(tmp) / "load.db"
        t0 = time.perf_counter()
        key = build_gallery(db, args.templates, args.per_identity, args.model)
        build_s = time.perf_counter() - t0
        port = _free_port()
        cmd = [sys.executable, "-m", "hybridface", "-q", "serve", "--db", str(db), "--host", HOST, "--port", str(port),
               "--workers-pool", str(args.workers_pool), "--queue", str(max(64, args.clients * 2)),
               "--max-request-pixels", str(args.max_request_pixels)]
        if args.model:
            cmd += ["--model", args.model]
        log = open(Path(tmp) / "server.log", "wb")
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://{HOST}:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise SystemExit("server did not start")
            # warm-up: load the encoder and build the index once
            httpx.post(url + "/v1/identify", params={"detect": "never", "strategy": args.strategy},
                       headers={"X-API-Key": key}, files=[("file", ("w.png", _png(0), "image/png"))], timeout=120)
            idle_rss, _ = peak_rss_mb(server.pid)
            t1 = time.perf_counter()
            stats = asyncio.run(run_clients(url, key, clients=args.clients, duration=args.duration,
                                            identify_ratio=args.identify_ratio, strategy=args.strategy,
                                            identities=max(1, args.templates // args.per_identity),
                                            hostile_every=args.hostile_every))
            wall = time.perf_counter() - t1
            _, peak_rss = peak_rss_mb(server.pid)
            final = httpx.get(url + "/health", headers={"X-API-Key": key}, timeout=10).json()
        finally:
            server.terminate()
            server.wait(30)
            log.close()

    total = stats["identify"] + stats["enrol"]
    print(f"## Service load test ({args.clients} clients, {args.duration:g} s, {args.strategy}, "
          f"{args.templates:,} templates)\n")
    print("| requests | count | throughput (req/s) | p50 (ms) | p99 (ms) |")
    print("|---|---|---|---|---|")
    print(_row("identify", stats["identify"], wall))
    print(_row("enrol", stats["enrol"], wall))
    print(_row("all", total, wall))
    print(f"\nerrors: {len(stats['errors'])}" + (f" (first: {stats['errors'][0]})" if stats["errors"] else ""))
    if stats["hostile"]:
        from collections import Counter

        seen = Counter(stats["hostile"])
        print("hostile requests: " + ", ".join(f"{k} -> {c}: {n}" for (k, c), n in sorted(seen.items())))
    bound = 2 * idle_rss + args.max_request_pixels * 3 / 2**20
    print(f"server RSS: idle {idle_rss:.0f} MiB, peak {peak_rss:.0f} MiB; bound 2 x idle + one request's "
          f"budget ({args.max_request_pixels:,} px x 3 B) = {bound:.0f} MiB: {'within' if peak_rss <= bound else 'OVER'}")
    print(f"gallery after the run: {final['templates']:,} templates, {final['identities']:,} identities "
          f"(built in {build_s:.1f} s)")
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; server --workers-pool {args.workers_pool}")
    print(f"command: python benchmarks/load.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    return 1 if stats["errors"] or peak_rss > bound else 0


if __name__ == "__main__":
    sys.exit(main())
