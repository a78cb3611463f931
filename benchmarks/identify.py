"""Identification benchmark: the four strategies vs FAISS on synthetic clustered galleries.

For each gallery (identities x templates, 60-D, unit vectors clustered around one centre per
identity) and each strategy it measures, in one run on the same data:

* q/s for a batch of probes (best of ``--repeats``), and p50/p99 single-probe latency;
* distance evaluations per probe (probe-template and probe-codeword products);
* Rank-1 agreement with exhaustive search, and Rank-1 accuracy against the true identity.

FAISS baselines: ``IndexFlatIP`` (exact; ``distance_compute_blas_threshold`` lowered to 20, its
default makes batched flat search far slower) and ``IndexIVFFlat`` whose coarse centroids are the
identity codewords and whose inverted lists are the identities' templates (the paper's index is
exactly that structure), searched with ``nprobe = top_n``.

Usage::

    nice -n 10 python benchmarks/identify.py                       # default sizes, Markdown table
    python benchmarks/identify.py --galleries 1000x10 --batch 200   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def make_gallery(n_ids: int, per_id: int, dim: int, noise: float, n_probes: int, seed: int):
    """Clustered unit templates, labels grouped by identity, and genuine probes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_ids), per_id)
    vec = centres[labels] + noise * rng.standard_normal((len(labels), dim)).astype(np.float32)
    truth = rng.integers(0, n_ids, size=n_probes)
    probes = centres[truth] + noise * rng.standard_normal((n_probes, dim)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return vec, labels, probes.astype(np.float32), truth


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def latencies(fn, probes: np.ndarray) -> np.ndarray:
    fn(probes[:1])  # warm-up
    out = []
    for i in range(len(probes)):
        t0 = time.perf_counter()
        fn(probes[i : i + 1])
        out.append(time.perf_counter() - t0)
    return np.array(out)


def faiss_indexes(matrix, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    faiss.cvar.distance_compute_blas_threshold = 20
    flat = faiss.IndexFlatIP(matrix.dim)
    flat.add(matrix.vectors)
    quantizer = faiss.IndexFlatIP(matrix.dim)
    quantizer.add(matrix.codewords)
    ivf = faiss.IndexIVFFlat(quantizer, matrix.dim, len(matrix.codewords), faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    ids = np.arange(matrix.num_templates, dtype=np.int64)
    # template j goes to the list of its identity's (single) codeword
    ivf.add_core(
        matrix.num_templates,
        faiss.swig_ptr(matrix.vectors),
        faiss.swig_ptr(ids),
        faiss.swig_ptr(np.ascontiguousarray(matrix.labels, dtype=np.int64)),
    )
    return faiss, flat, ivf


def run(args) -> list[dict]:
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.index.lbg import build_codebooks
    from hybridface.search.strategies import Exhaustive, Hybrid, Indexed, Parallel

    rows = []
    for spec in args.galleries:
        n_ids, per_id = (int(v) for v in spec.lower().split("x"))
        vec, labels, probes, truth = make_gallery(n_ids, per_id, args.dim, args.noise, args.batch, args.seed)
        t0 = time.perf_counter()
        matrix = build_codebooks(TemplateMatrix.from_arrays(vec, labels), codewords=1)
        build_s = time.perf_counter() - t0
        single = probes[: args.single]
        strategies = {
            "exhaustive (1 thread)": Exhaustive(matrix, threads=1),
            f"exhaustive ({args.threads} threads)": Exhaustive(matrix, threads=args.threads),
            f"parallel (W={args.threads})": Parallel(matrix, workers=args.threads),
        }
        for top_n in args.top_n:
            strategies[f"indexed (N={top_n})"] = Indexed(matrix, top_n=top_n)
            strategies[f"hybrid (N={top_n}, W={args.threads})"] = Hybrid(matrix, top_n=top_n, workers=args.threads)
        ref = strategies["exhaustive (1 thread)"].search(probes, 1).identities[:, 0]
        name_of = np.asarray([int(n) for n in matrix.names])  # identity index -> true label
        for name, searcher in strategies.items():
            secs, res = timed(lambda: searcher.search(probes, 1), args.repeats)
            lat = latencies(lambda p: searcher.search(p, 1), single)
            top = res.identities[:, 0]
            rows.append(dict(
                gallery=spec, templates=matrix.num_templates, method=name, qps=len(probes) / secs,
                p50_ms=np.percentile(lat, 50) * 1e3, p99_ms=np.percentile(lat, 99) * 1e3,
                evals=res.distance_evaluations / len(probes), agree=(top == ref).mean(),
                rank1=(name_of[top] == truth).mean(),
            ))
        if not args.no_faiss:
            faiss, flat, ivf = faiss_indexes(matrix, args.threads)
            runs = [(f"FAISS IndexFlatIP ({args.threads} threads)", flat, matrix.num_templates, 0),
                    ("FAISS IndexFlatIP (1 thread)", flat, matrix.num_templates, -1)]
            runs += [(f"FAISS IVFFlat, identity codewords (nprobe={t})", ivf, None, t) for t in args.top_n]
            for name, index, evals, nprobe in runs:
                faiss.omp_set_num_threads(1 if nprobe == -1 else args.threads)
                if nprobe > 0:
                    ivf.nprobe = nprobe
                secs, (_, ids) = timed(lambda: index.search(probes, 1), args.repeats)
                lat = latencies(lambda p: index.search(p, 1), single)
                top = np.where(ids[:, 0] >= 0, matrix.labels[ids[:, 0]], -1)
                if evals is None:  # coarse centroids + the probed lists
                    sims = probes @ matrix.codewords.T
                    probed = np.argsort(-sims, axis=1)[:, :nprobe]
                    evals = matrix.num_identities + np.diff(matrix.offsets)[probed].sum(axis=1).mean()
                rows.append(dict(
                    gallery=spec, templates=matrix.num_templates, method=name, qps=len(probes) / secs,
                    p50_ms=np.percentile(lat, 50) * 1e3, p99_ms=np.percentile(lat, 99) * 1e3,
                    evals=float(evals), agree=(top == ref).mean(), rank1=(name_of[top] == truth).mean(),
                ))
        rows.append(dict(gallery=spec, templates=matrix.num_templates, method=f"(codebook build {build_s:.2f} s)"))
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| gallery (ids x templates) | N | method | q/s (batch) | p50 ms (1 probe) | p99 ms | dist. evals / probe | Rank-1 agree w/ exhaustive | Rank-1 |"
    out = [head, "|" + "---|" * 9]
    for r in rows:
        if "qps" not in r:
            continue
        out.append(
            f"| {r['gallery']} | {r['templates']:,} | {r['method']} | {r['qps']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['evals']:,.0f} | {r['agree']:.4f} | {r['rank1']:.4f} |"
        )
    return "\n".join(out)


def machine() -> str:
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        import faiss

        fv = faiss.__version__
    except ImportError:
        fv = "absent"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, load average at start {load:.1f}; "
        f"Python {platform.python_version()}, NumPy {numpy.__version__}, FAISS {fv}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--galleries", nargs="+", default=["1000x10", "1000x100", "10000x10"],
                    help="IDSxTEMPLATES per gallery (default: 1000x10 1000x100 10000x10)")
    ap.add_argument("--dim", type=int, default=60)
    ap.add_argument("--noise", type=float, default=0.12, help="per-dimension template noise around the centre")
    ap.add_argument("--batch", type=int, default=1000, help="probes per batch")
    ap.add_argument("--single", type=int, default=50, help="probes timed one by one for latency")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top-n", type=int, nargs="+", default=[5, 20], help="shortlist sizes N (and IVF nprobe)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-faiss", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/identify.py {' '.join(os.sys.argv[1:])}".rstrip())
    rows = run(args)
    print()
    print(markdown(rows))
    print()
    for r in rows:
        if "qps" not in r:
            print(f"- {r['gallery']}: {r['method']}")
    print()
    print(targets(rows, args))


def targets(rows: list[dict], args) -> str:
    """One line per gallery: the issue's targets, measured."""
    out = []
    for g in dict.fromkeys(r["gallery"] for r in rows):
        by = {r["method"]: r for r in rows if r["gallery"] == g and "qps" in r}
        ex = by.get(f"exhaustive ({args.threads} threads)")
        ff = by.get(f"FAISS IndexFlatIP ({args.threads} threads)")
        ex1 = by.get("exhaustive (1 thread)")
        line = f"- {g}:"
        if ex and ff:
            line += f" exhaustive/FAISS-flat q/s at {args.threads} threads = {ex['qps'] / ff['qps']:.2f}x;"
        for t in args.top_n:
            hy = by.get(f"hybrid (N={t}, W={args.threads})")
            if hy and ex1:
                line += (
                    f" hybrid N={t}: {ex1['evals'] / hy['evals']:.1f}x fewer distance evaluations,"
                    f" Rank-1 {hy['rank1']:.4f} vs exhaustive {ex1['rank1']:.4f};"
                )
        out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    main()
