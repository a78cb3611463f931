"""Search throughput near the hardware limit: our four strategies vs FAISS, side by side.

Synthetic 60-D galleries — *clustered* (identities with several noisy templates each, the
structure the LBG index exploits) and a *uniform* random control — at several sizes; batches of
1 and 1,000 probes; 1 and 2 threads. In the same run: our ``exhaustive``, ``indexed``,
``parallel``, ``hybrid`` (locally or sharded on Ray with ``--engine ray``), FAISS ``IndexFlatIP``
(``distance_compute_blas_threshold`` lowered), ``IndexIVFFlat`` and ``IndexHNSWFlat``; and the
machine's own limits (memory read bandwidth, float32 GEMM), from which each configuration's
lower bound on time (upper bound on q/s) for exact float32 search follows.

    nice -n 10 python benchmarks/search.py --sizes 10000,100000
    python benchmarks/search.py --sizes 10000 --engine ray --address 127.0.0.1:6391

Writes ``docs/results/search/<name>.md`` (table) and ``<name>.png`` (q/s vs gallery size);
``<name>`` defaults to ``search_<engine>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# FAISS's OpenMP threads spin-wait after every call by default; on this shared 2-core box that
# made FAISS with 2 threads 5-7x slower than with 1 (and, timed interleaved, it stole the core
# from whatever ran next). Passive waiting is FAISS's best configuration here; set before import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

D = 60
OURS = ("exhaustive", "indexed", "parallel", "hybrid")
# opt-in (--methods): hybrid over coarse LBG cells of the codewords; exhaustive with int8 storage
# for few-probe k = 1 searches (its single-probe bound uses the int8 bytes a probe streams)
EXTRA = ("hybrid-cells", "exhaustive-int8")
FAISS = ("faiss-flat", "faiss-ivf", "faiss-hnsw")


# ---------------------------------------------------------------------------- machine limits
def machine_limits(threads: int) -> dict:
    """Measured memory read bandwidth (GB/s) and float32 GEMM rate (GFLOP/s) with ``threads``.

    Bandwidth: a BLAS matrix-vector product streaming a 256 MiB matrix (the single-probe search
    pattern). GEMM: (1024 x 60) @ (60 x 2048) products into a preallocated, cache-sized output,
    the shape of one block of batched search. Best of several runs.
    """
    from threadpoolctl import threadpool_limits

    a = np.ones((1 << 20, 64), np.float32)  # 256 MiB, far beyond the caches
    v = np.ones(64, np.float32)
    p = np.random.default_rng(0).random((1024, D), np.float32)
    g = np.random.default_rng(1).random((D, 2048), np.float32)
    out = np.empty((1024, 2048), np.float32)
    reps = 40
    with threadpool_limits(limits=threads):
        a @ v
        bw = a.nbytes / min(_timed(lambda: a @ v) for _ in range(5)) / 1e9

        def gemm():
            for _ in range(reps):
                np.matmul(p, g, out=out)

        gemm()
        best = min(_timed(gemm) for _ in range(3))
    return {"read_gbps": bw, "gemm_gflops": reps * 2 * 1024 * D * 2048 / best / 1e9}


def bound_qps(n_templates: int, batch: int, lim: dict, bytes_per: float = 4 * D) -> float:
    """Upper bound on q/s of exact search: one pass over the gallery per batch, 2·N·d flops per probe."""
    mem = n_templates * bytes_per / (lim["read_gbps"] * 1e9)
    flops = batch * 2 * n_templates * D / (lim["gemm_gflops"] * 1e9)
    return batch / max(mem, flops)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the calling thread) of one call: wall >> CPU = the call
    waited for a core (other threads' CPU, e.g. spinning OpenMP workers, is not counted)."""
    t, c = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t, time.thread_time() - c


# ---------------------------------------------------------------------------- data
def make_data(kind: str, n: int, *, per: int, n_probes: int, seed: int = 0, chunk: int = 1 << 18):
    """(vectors, identity label per row, probes) — unit rows, float32.

    The ``(n, D)`` matrix is filled in place, ``chunk`` rows at a time, so building it never
    holds two copies (peak = the matrix + one chunk)."""
    rng = np.random.default_rng(seed)
    m = max(1, n // per)
    labels = np.repeat(np.arange(m), per)[:n]
    x = np.empty((n, D), np.float32)
    sigma = np.float32(0.6 / np.sqrt(D))
    centres = None
    if kind == "clustered":
        centres = rng.standard_normal((m, D), np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        if centres is not None:
            x[a:b] = rng.standard_normal((b - a, D), np.float32)
            x[a:b] *= sigma
            x[a:b] += centres[labels[a:b]]
        else:
            x[a:b] = rng.standard_normal((b - a, D), np.float32)
        x[a:b] /= np.linalg.norm(x[a:b], axis=1, keepdims=True)
    if centres is not None:
        q = rng.integers(0, m, n_probes)
        probes = centres[q] + rng.standard_normal((n_probes, D), np.float32) * sigma
    else:
        probes = rng.standard_normal((n_probes, D), np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return x, labels, np.ascontiguousarray(probes)


def to_matrix(x: np.ndarray, labels: np.ndarray):
    """TemplateMatrix straight from grouped rows (rows are already sorted by identity)."""
    from hybridface.gallery.matrix import TemplateMatrix

    m = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=m)
    return TemplateMatrix(vectors=x, labels=labels.astype(np.int64),
                          template_ids=np.arange(len(x), dtype=np.int64),
                          names=tuple(f"i{j}" for j in range(m)),
                          offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                          model_id="synthetic")


# ---------------------------------------------------------------------------- methods
def build(method: str, matrix, args, threads: int):
    """-> (top1(probes) -> identity indices, evaluations-per-probe getter, bytes/template).

    ``top1.close()`` releases what the method holds (Ray actors)."""
    x, labels = matrix.vectors, matrix.labels
    n = len(x)
    if method in ("hybrid-cells", "indexed", "hybrid") and matrix.codewords is None:
        from hybridface.index.lbg import build_codebooks  # the codebooks count as build time

        matrix = build_codebooks(matrix, codewords=args.codewords)
    if method == "hybrid-cells":
        from hybridface.search.strategies import Hybrid

        top_n, cells, probe_cells = args.top_n, args.cells, args.probe_cells
        if args.recall is not None:  # tuned on held-out queries; tuning time counts as build time
            from hybridface.search.autotune import tune_cells

            tuned = tune_cells(matrix, args.tune_queries, recall=args.recall, cells=args.cells, workers=threads)
            args.tuned = tuned
            s = tuned.searcher  # its cells are fitted once, during tuning
        else:
            if cells is None:
                from hybridface.search.autotune import default_cells

                cells = default_cells(matrix.num_identities)
            s = Hybrid(matrix, top_n=top_n, workers=threads, cells=cells, probe_cells=probe_cells)
        cells = s._cells
        extra = s.matrix.codewords.nbytes + s.matrix.codeword_labels.nbytes
        if cells is not None:
            extra += sum(a.nbytes for a in (cells.centres, cells.centres_t, cells.centres8_t, cells.centre_scale,
                                            cells.codewords, cells.scan, cells.scan8, cells.scale, cells.identity))
        t = _ours_top1(s)
        return t, t.evals, (x.nbytes + labels.nbytes + matrix.template_ids.nbytes + extra) / n
    if method == "exhaustive-int8":
        from hybridface.search.strategies import Exhaustive

        s = Exhaustive(matrix, threads=threads, storage="int8")
        t = _ours_top1(s)
        t.stream_bytes = s.int8_.nbytes / n  # codes + error bound: what one probe reads
        return t, t.evals, (x.nbytes + labels.nbytes + matrix.template_ids.nbytes + s.int8_.nbytes) / n
    if method in OURS:
        if args.engine == "ray":
            from hybridface.engines.local import make_engine
            from hybridface.options import SearchOptions

            opts = SearchOptions(strategy=method, top_n=args.top_n, workers=threads, engine="ray", address=args.address)
            s = make_engine("ray", matrix, options=opts, shards=args.shards)
        elif method == "exhaustive":  # threads > 1 split the probe batch (make_searcher: 1 thread)
            from hybridface.search.strategies import Exhaustive

            s = Exhaustive(matrix, threads=threads)
        else:
            from hybridface.search import make_searcher

            s = make_searcher(method, matrix, top_n=args.top_n, workers=threads)
        held = getattr(s, "matrix", matrix)
        extra = 0 if held.codewords is None else held.codewords.nbytes + held.codeword_labels.nbytes
        nbytes = x.nbytes + labels.nbytes + matrix.template_ids.nbytes + extra
        t = _ours_top1(s)
        return t, t.evals, nbytes / n
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 20
    if method == "faiss-flat":
        index = faiss.IndexFlatIP(x.shape[1])
        evals = float(n)
    elif method == "faiss-ivf":
        index, nlist = ivf_index(x, args.nlist)
        index.nprobe = args.nprobe
        evals = nlist + n * args.nprobe / nlist
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        index.hnsw.efSearch = args.ef_search
        evals = float("nan")
    index.add(x)
    nbytes = len(faiss.serialize_index(index))
    top1 = faiss_top1(index, labels)

    if args.recall is not None and method != "faiss-flat":  # the same target, queries and tuning rule as ours
        want = exact_top1(matrix, args.tune_queries)
        knob, top = ("nprobe", nlist) if method == "faiss-ivf" else ("efSearch", 4096)
        target = index if method == "faiss-ivf" else index.hnsw

        def recall_at(value: int) -> float:
            setattr(target, knob, value)
            return float((top1(args.tune_queries) == want).mean())

        v, rec = tune_knob(recall_at, 1 if method == "faiss-ivf" else 16, top, args.recall, len(want))
        setattr(target, knob, v)
        args.faiss_tuned[method] = (knob, v, rec)
        if method == "faiss-ivf":
            evals = nlist + n * v / nlist
    return top1, lambda: evals, nbytes / n


def exact_top1(matrix, queries: np.ndarray) -> np.ndarray:
    """Each query's exact top-1 identity (our exhaustive search): the ground truth of recall@1."""
    from hybridface.search import make_searcher

    return make_searcher("exhaustive", matrix).search(queries, 1).identities[:, 0]


def ivf_index(x: np.ndarray, nlist: int | None = None):
    """An empty FAISS ``IndexIVFFlat`` (inner product) trained on a seeded sample of 40·nlist rows
    of ``x`` (``nlist``: default 4·√n): ``(index, nlist)``."""
    import faiss

    n = len(x)
    nlist = nlist or int(max(16, 4 * np.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(x[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    return index, nlist


def faiss_top1(index, labels: np.ndarray):
    """``top1(probes)``: the identity label of each probe's nearest row in a FAISS ``index``."""
    def top1(p):
        _, ids = index.search(p, 1)
        return np.where(ids[:, 0] >= 0, labels[np.maximum(ids[:, 0], 0)], -1)

    return top1


def tune_knob(recall_at, start: int, top: int, recall: float, queries: int) -> tuple[int, float]:
    """FAISS's knob tuned by our rule (`autotune.tune_cells`'): double from ``start`` (up to ``top``)
    until ``recall_at`` `reaches` ``recall`` on ``queries`` queries, then bisect down. ``(value, recall)``."""
    from hybridface.search.autotune import bisect_down, reaches

    v, rec = start, recall_at(start)
    while not reaches(rec, queries, recall) and v < top:
        v = min(2 * v, top)
        rec = recall_at(v)
    return bisect_down(recall_at, v // 2, v, rec, target=recall, queries=queries)


def _confidence_pct() -> int:
    """The confidence of the tuning rule (`autotune.reaches`), for the report."""
    from statistics import NormalDist

    from hybridface.search.autotune import CONFIDENCE_Z

    return round(100 * NormalDist().cdf(CONFIDENCE_Z))


def _ours_top1(s):
    """top1(probes) over one of our searchers; ``top1.evals()`` = evaluations per probe of the last call."""
    last = {}

    def top1(p):
        r = s.search(p, 1)
        last["evals"] = r.distance_evaluations / len(p)
        return r.identities[:, 0]

    top1.close = getattr(s, "close", lambda: None)
    top1.evals = lambda: last.get("evals", float("nan"))
    return top1


# ---------------------------------------------------------------------------- run
#: held-out queries (same distribution as the timed probes) that --recall tunes on
TUNE_QUERIES = 2000
#: bytes per template each method holds besides the shared float32 matrix + labels + ids (256 B):
#: FAISS copies the vectors (flat/IVF 240 B + ids, HNSW + 2·M links); int8 codes + bound; cells
EXTRA_BYTES = {"faiss-flat": 240, "faiss-ivf": 256, "faiss-hnsw": 240 + 8 * 32, "exhaustive-int8": 64,
               "hybrid-cells": 40, "indexed": 30, "hybrid": 30}


def check_fits(n: int, methods: list[str]) -> None:
    """Exit with one line, before allocating, when ``n`` templates will not fit in free memory."""
    need = n * (256 + sum(EXTRA_BYTES.get(m, 0) for m in methods)) * 1.15  # + exact answers, slack
    avail = _mem_available()
    if avail and need > avail:
        raise SystemExit(
            f"error: --sizes {n:,} needs about {need / 2**30:.1f} GiB for {','.join(methods)} but only "
            f"{avail / 2**30:.1f} GiB is available; use a smaller size or fewer methods")


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(args) -> list[dict]:
    import faiss
    from threadpoolctl import threadpool_limits

    if args.engine == "ray":
        from hybridface.engines.ray import connect

        connect(args.address)
    threads_list = [int(t) for t in args.threads.split(",")]
    limits: dict[int, list[dict]] = {}
    rows = []
    methods = [m for m in args.methods.split(",") if m]
    for kind in args.data.split(","):
        for n in [int(s) for s in args.sizes.split(",")]:
            check_fits(n, methods)
            if kind == "faces":
                from face_data import face_templates

                x, labels, probes = face_templates(n, args.batch + TUNE_QUERIES, root=Path(args.faces_root),
                                                   cache_dir=Path(args.cache_dir), model=args.faces_model)
            else:
                x, labels, probes = make_data(kind, n, per=args.per, n_probes=args.batch + TUNE_QUERIES)
            probes, args.tune_queries = probes[: args.batch], probes[args.batch :]
            matrix = to_matrix(x, labels)
            exact = exact_top1(matrix, probes)
            n_single = max(10, min(200, int(2e7 // n)))
            for threads in threads_list:
                faiss.omp_set_num_threads(threads)
                lim = machine_limits(threads)  # re-measured per block: the box is shared
                limits.setdefault(threads, []).append(lim)
                with threadpool_limits(limits=threads):
                    rows += measure(methods, matrix, probes, exact, args, threads, n_single, kind, lim)
    return rows, limits


def measure(methods, matrix, probes, exact, args, threads, n_single, kind, lim) -> list[dict]:
    """Build every method, then time them *interleaved* (repeat after repeat, probe after probe),
    so a burst of load from other jobs on the shared box hits all methods alike."""
    n = matrix.num_templates
    built = []
    for method in methods:
        t0 = time.perf_counter()
        top1, evals, bpt = build(method, matrix, args, threads)
        built.append((method, top1, evals, bpt, time.perf_counter() - t0))
        top1(probes[:8])  # warm up (batch and single-probe paths)
        top1(probes[:1])
    try:
        got = [b[1](probes) for b in built]
        batch = np.full(len(built), np.inf)
        # best of many short batches (>= --repeats; up to 50 at 10K templates): the box is shared
        for _ in range(max(args.repeats, min(50, int(2e6 // n)))):
            for j, b in enumerate(built):
                batch[j] = min(batch[j], _timed(lambda: b[1](probes)))
        lat = np.zeros((len(built), n_single, 2))
        for i in range(n_single):
            for j, b in enumerate(built):
                lat[j, i] = _timed_cpu(lambda: b[1](probes[i:i + 1]))
    finally:
        for b in built:
            getattr(b[1], "close", lambda: None)()
    rows = []
    for j, (method, top1, evals, bpt, build_s) in enumerate(built):
        wall, cpu = lat[j, :, 0], lat[j, :, 1]
        stream = getattr(top1, "stream_bytes", 4 * D)  # bytes per template one probe streams
        row = dict(
            data=kind, n=n, method=method, threads=threads, build_s=build_s,
            qps_batch=len(probes) / batch[j], qps_1=1 / wall.mean(),
            p50_ms=1e3 * np.percentile(wall, 50), p99_ms=1e3 * np.percentile(wall, 99),
            p99_cpu_ms=1e3 * np.percentile(cpu, 99),
            recall=float((got[j] == exact).mean()), evals=evals(), bytes=bpt,
            bound_batch=bound_qps(n, len(probes), lim),
            bound_1=bound_qps(n, 1, lim, stream), stream_B=stream, gbps=lim["read_gbps"],
            gflops=lim["gemm_gflops"],
        )
        rows.append(row)
        print(fmt_row(row), flush=True)
    return rows


HEADER = ("| data | N | method | thr | GB/s | GFLOP/s | q/s @1000 | bound | % | q/s @1 | bound @1 "
          "| p50 ms | p99 ms | p99 CPU ms | recall@1 | evals/probe | build s | B/template |")


def fmt_row(r: dict) -> str:
    return (f"| {r['data']} | {r['n']:,} | {r['method']} | {r['threads']} | {r['gbps']:.1f} "
            f"| {r['gflops']:.1f} | {r['qps_batch']:,.0f} "
            f"| {r['bound_batch']:,.0f} | {100 * r['qps_batch'] / r['bound_batch']:.0f} "
            f"| {r['qps_1']:,.0f} | {r['bound_1']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r.get('p99_cpu_ms', float('nan')):.2f}"
            f" | {r['recall']:.3f} | {r['evals']:,.0f} | {r['build_s']:.2f} | {r['bytes']:.0f} |")


def report(rows, limits, args) -> str:
    lines = [
        f"# Search benchmark ({args.engine} engine)", "",
        f"Command: `{' '.join(['python'] + sys.argv)}`  ",
        f"Code: {_git_version()}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
        f"Python {platform.python_version()}, NumPy {np.__version__}; shared with other jobs, "
        "so absolute numbers are noisy.  ",
    ]
    for t, lims in limits.items():
        bw = max(x["read_gbps"] for x in lims)
        fl = max(x["gemm_gflops"] for x in lims)
        lines.append(f"Measured limits, {t} thread(s) (best over the run; each row's bound uses "
                     f"the values measured just before it): memory read {bw:.1f} GB/s, "
                     f"float32 GEMM {fl:.1f} GFLOP/s.  ")
    lines += [
        "", f"Probes: {args.batch} per batch; single-probe latency over up to 200 one-probe calls; "
        f"batch q/s = best of max({args.repeats}, min(50, 2·10⁶ / N)) batches. `bound` = upper bound on q/s of *exact* float32 "
        "search from the measured limits (max of one gallery read and 2·N·d flops per probe); "
        "`%` = q/s as a share of it (index methods skip work, so they may exceed it). recall@1 = "
        "top-1 identity equal to exact search. `p99 CPU ms` = 99th percentile of the calling "
        "thread's CPU time in one single-probe call: where p99 wall time is far above it, the call "
        "was waiting for a core (the box is shared), not computing. FAISS runs with "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. `bound @1` of `exhaustive-int8` = one read of the int8 codes + error bounds (64 B/template at 60-D), its batches use float32 storage (bound @1000 as float32); `B/template` counts the float32 copy it keeps too. `evals/probe` = distance evaluations (templates + "
        f"codewords; hybrid-cells: + cell centres). IVF: nlist = {args.nlist or '4·sqrt(N)'}, {_faiss_text(args, 'faiss-ivf', 'nprobe', args.nprobe)}; "
        f"HNSW: M = {args.hnsw_m}, efConstruction = {args.ef_construction}, {_faiss_text(args, 'faiss-hnsw', 'efSearch', args.ef_search)}; "
        f"ours: top_n = {args.top_n}, {args.per} templates per identity (clustered data), LBG codewords per "
        f"identity: {args.codewords}{' (about one per 8 templates, up to 8)' if args.codewords == 'auto' else ''}, "
        "built in the build time; hybrid-cells: the codewords "
        f"in {_cells_text(args)}. Methods are timed interleaved "
        "(each repeat and each single probe runs every method in turn), so load bursts from other "
        "jobs hit all of them alike.",
        "", HEADER, HEADER_RULE, *map(fmt_row, rows), "",
    ]
    return "\n".join(lines)


def _faiss_text(args, method: str, knob: str, default: int) -> str:
    got = getattr(args, "faiss_tuned", {}).get(method)
    if got is None:
        return f"{knob} = {default}"
    return (f"{knob} = {got[1]}, tuned like ours (doubling, then bisecting, to the fewest reaching recall@1 >= {args.recall} with {_confidence_pct()} % confidence on the same held-out "
            f"queries, tuning counted in its build time; tuning recall {got[2]:.3f})")


def _cells_text(args) -> str:
    t = args.tuned
    if t is not None:
        return (f"{t.cells} LBG cells, tuned for recall@1 >= {args.recall} ({_confidence_pct()} % confidence) on {TUNE_QUERIES} held-out "
                f"queries (tuning counted in its build time): top_n = {t.top_n}, {t.probe_cells} cells "
                f"visited per probe (tuning recall {t.recall:.3f})")
    return f"{args.cells or 'auto'} LBG cells, {args.probe_cells} visited per probe"


HEADER_RULE = "|" + "---|" * (HEADER.count("|") - 1)


def _git_version() -> str:
    import subprocess

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {rev or '?'}{' + uncommitted changes under src/' if dirty else ''}"


def plot(rows, path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, bkey, title in ((axes[0], "qps_batch", "bound_batch", "batch of probes"),
                                 (axes[1], "qps_1", "bound_1", "single probe")):
        sel = [r for r in rows if r["data"] == "clustered" and r["threads"] == threads]
        for method in dict.fromkeys(r["method"] for r in sel):
            pts = sorted((r["n"], r[key]) for r in sel if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        bound = sorted({(r["n"], r[bkey]) for r in sel if r.get("stream_B", 4 * D) == 4 * D})
        if bound:
            ax.plot(*zip(*bound), "k--", lw=2, marker="_", ms=18, mew=2, label="bound (exact, float32)")
        small = sorted({(r["n"], r[bkey]) for r in sel if r.get("stream_B", 4 * D) != 4 * D})
        if small and key == "qps_1":
            ax.plot(*zip(*small), "k:", lw=2, marker="_", ms=18, mew=2, label="bound (int8 storage)")
        ax.set(xscale="log", yscale="log", xlabel="gallery templates", ylabel="queries / s",
               title=f"{title}, {threads} thread(s), clustered")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma list of gallery sizes (templates)")
    ap.add_argument("--data", default="clustered,uniform",
                    help="comma list of clustered, uniform (synthetic) and faces (real templates of the "
                         "default encoder over --faces-root, augmented to reach N; see face_data.py)")
    ap.add_argument("--faces-model", default=None,
                    help="--data faces: the encoder (zoo name or model path; default: the default encoder)")
    ap.add_argument("--faces-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"),
                    help="datasets folder for --data faces")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "hybridface" / "bench"),
                    help="where --data faces keeps its templates (reruns load them)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=1000, help="probes per batch")
    ap.add_argument("--per", type=int, default=10, help="templates per identity")
    ap.add_argument("--methods", default=",".join(OURS + FAISS))
    ap.add_argument("--top-n", type=int, default=20, help="shortlist of indexed/hybrid")
    ap.add_argument("--codewords", default="auto", choices=["1", "2", "4", "8", "auto"],
                    help="LBG codewords per identity of indexed/hybrid/hybrid-cells (auto: about one per 8 "
                         "templates, up to 8)")
    ap.add_argument("--cells", type=int, default=None,
                    help="hybrid-cells: coarse LBG cells over the identity codewords "
                         "(default: a power of two near 3·sqrt(identities))")
    ap.add_argument("--recall", type=float, default=None,
                    help="tune every approximate method for this recall@1 in (0, 1] on 2,000 held-out "
                         "queries: hybrid-cells its top_n and probe_cells, FAISS IVF its nprobe, HNSW its "
                         "efSearch (each the cheapest setting that reaches it; tuning counts as build time)")
    ap.add_argument("--probe-cells", type=int, default=128, help="hybrid-cells: cells visited per probe")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: 4·sqrt(N))")
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node (M)")
    ap.add_argument("--ef-construction", type=int, default=40, help="HNSW efConstruction (FAISS default 40)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--address", default=None, help="Ray cluster host:port (default: local Ray)")
    ap.add_argument("--shards", type=int, default=None, help="Ray shards (default: one per node)")
    ap.add_argument("--out", default="docs/results/search")
    ap.add_argument("--plot-threads", type=int, default=None,
                    help="thread count plotted (default: the smallest; the least disturbed on a shared box)")
    ap.add_argument("--name", default=None, help="file stem (default: search_<engine>)")
    args = ap.parse_args(argv)
    args.codewords = args.codewords if args.codewords == "auto" else int(args.codewords)
    if args.recall is not None:
        from hybridface.errors import OptionError
        from hybridface.search.autotune import check_recall

        try:
            check_recall(args.recall)
        except OptionError as e:
            ap.exit(2, f"error: --{e}\n")
    args.tuned = None
    args.faiss_tuned = {}
    from hybridface.errors import HybridFaceError

    try:
        rows, limits = run(args)
    except HybridFaceError as exc:  # e.g. an unknown --faces-model or a missing model file
        ap.exit(2, f"error: {exc}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(rows, limits, args)
    stem = args.name or f"search_{args.engine}"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / f"{stem}.png", args.plot_threads or min(int(t) for t in args.threads.split(",")))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
