"""Recall@1 against q/s for hybrid-cells and FAISS IVF over a sweep of their search knobs, on one
gallery, all timed interleaved: each method's q/s at *equal* recall on the timed probes.

`benchmarks/search.py --recall R` tunes each method on held-out queries, so the two land at
different recalls on the timed probes (say 0.989 and 0.994). Here both are swept around their
tuned setting (ours: ``probe_cells`` at the tuned ``top_n``; IVF: ``nprobe``) and each reports
the fastest setting whose recall on the timed probes reaches the target.

    python benchmarks/search_curve.py --size 1000000 --recall 0.99 --name search_curve_1m \
        --out docs/results/search
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search as S  # noqa: E402  (the data, the timing helpers and FAISS's tuning rule)

#: each method's knob is swept over its tuned value times these factors
FACTORS = (0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5, 2.0)


def _grid(tuned: int, top: int) -> list[int]:
    """The knob values swept: ``tuned`` times `FACTORS`, and its neighbours (small tuned values)."""
    values = {round(tuned * f) for f in FACTORS} | {tuned + s for s in (-2, -1, 1, 2)}
    return sorted({min(top, max(1, v)) for v in values})


def build_points(matrix, tune_queries, recall: float, threads: int, cells: int | None = None) -> list[dict]:
    """Every (method, setting) point, with its ``top1(probes)`` and build seconds."""
    from hybridface.index.lbg import build_codebooks
    from hybridface.search.autotune import tune_cells

    points = []
    t0 = time.perf_counter()
    tuned = tune_cells(build_codebooks(matrix, codewords="auto"), tune_queries, recall=recall, workers=threads,
                       cells=cells)
    build = time.perf_counter() - t0
    for pc in _grid(tuned.probe_cells, tuned.cells):
        s = copy.copy(tuned.searcher)  # the same fitted cells, its own probe_cells
        s.probe_cells = pc
        points.append(dict(method="hybrid-cells", knob=f"probe_cells={pc} (top_n {s.top_n})", value=pc,
                           tuned=pc == tuned.probe_cells, build_s=build,
                           top1=lambda p, s=s: s.search(p, 1).identities[:, 0]))
    t0 = time.perf_counter()
    index, nlist = S.ivf_index(matrix.vectors)
    index.add(matrix.vectors)
    top1 = S.faiss_top1(index, matrix.labels)
    want = S.exact_top1(matrix, tune_queries)

    def ivf_top1(p, nprobe: int):
        index.nprobe = nprobe
        return top1(p)

    v, _ = S.tune_knob(lambda n: float((ivf_top1(tune_queries, n) == want).mean()), 1, nlist, recall, len(want))
    build = time.perf_counter() - t0
    for nprobe in _grid(v, nlist):
        points.append(dict(method="faiss-ivf", knob=f"nprobe={nprobe}", value=nprobe, tuned=nprobe == v,
                           build_s=build, top1=lambda p, n=nprobe: ivf_top1(p, n)))
    return points


def measure(points, probes, exact, repeats: int, n_single: int) -> None:
    """Recall, batch q/s (best of ``repeats``) and mean single-probe q/s of every point, timed
    interleaved (each repeat and each single probe runs every point in turn, in a random order)."""
    for pt in points:
        pt["top1"](probes[:8])
        pt["recall"] = float((pt["top1"](probes) == exact).mean())
        pt["batch_s"] = np.inf
        pt["single_s"] = []
    rng = np.random.default_rng(0)  # a fresh order each round: no point always runs first (cold caches)
    for _ in range(repeats):
        for j in rng.permutation(len(points)):
            pt = points[j]
            pt["batch_s"] = min(pt["batch_s"], S._timed(lambda: pt["top1"](probes)))
    for i in range(n_single):
        for j in rng.permutation(len(points)):
            pt = points[j]
            pt["single_s"].append(S._timed(lambda: pt["top1"](probes[i : i + 1])))
    for pt in points:
        pt["qps_batch"] = len(probes) / pt["batch_s"]
        pt["qps_1"] = 1.0 / float(np.mean(pt["single_s"]))
        pt["p50_ms"] = 1e3 * float(np.median(pt["single_s"]))


def best_at(points, method: str, recall: float, key: str) -> dict | None:
    """The fastest ``method`` point (by ``key``) whose timed recall reaches ``recall``."""
    ok = [p for p in points if p["method"] == method and p["recall"] >= recall]
    return max(ok, key=lambda p: p[key]) if ok else None


def report(points, args, n: int) -> str:
    lines = [
        "# Recall against speed: hybrid-cells and FAISS IVF at equal recall", "",
        f"Command: `{' '.join(['python'] + sys.argv)}`  ",
        f"Code: {S._git_version()}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}; 1 thread; shared with other jobs, so absolute numbers are noisy.  ",
        f"Gallery: {args.data}, {n:,} templates (10 per identity); {args.batch} timed probes; "
        f"{S.TUNE_QUERIES} held-out tuning queries. Each method is tuned to recall@1 >= {args.recall} "
        "(95 % confidence) by the rule of `benchmarks/search.py`, then its knob is swept around the "
        "tuned value; every point is timed interleaved with all the others, in a fresh random order each round. recall@1 is measured on the "
        "timed probes against exact search.", "",
        "| method | setting | tuned | recall@1 | q/s @1000 | q/s @1 (mean) | p50 ms | build s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(f"| {p['method']} | {p['knob']} | {'yes' if p['tuned'] else ''} | {p['recall']:.3f} "
                     f"| {p['qps_batch']:,.0f} | {p['qps_1']:,.0f} | {p['p50_ms']:.3f} | {p['build_s']:.2f} |")
    lines += ["", f"**At recall@1 >= {args.recall} on the timed probes** (the fastest point of each method):", ""]
    for key, label in (("qps_batch", "batch of 1,000"), ("qps_1", "single probe")):
        ours, ivf = best_at(points, "hybrid-cells", args.recall, key), best_at(points, "faiss-ivf", args.recall, key)
        if ours is None or ivf is None:
            lines.append(f"- {label}: a method reached no point at this recall (its sweep stops at twice its tuned setting; try a lower --recall)")
            continue
        lines.append(f"- {label}: hybrid-cells {ours[key]:,.0f} q/s ({ours['knob']}, recall {ours['recall']:.3f}) "
                     f"vs IVF {ivf[key]:,.0f} q/s ({ivf['knob']}, recall {ivf['recall']:.3f}): "
                     f"**{ours[key] / ivf[key]:.2f}×**")
    return "\n".join(lines) + "\n"


def chart(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "qps_batch", "batch of 1,000"), (axes[1], "qps_1", "single probe")):
        for method, style in (("hybrid-cells", "o-"), ("faiss-ivf", "s--")):
            pts = sorted((p for p in points if p["method"] == method), key=lambda p: p["value"])
            ax.plot([p["recall"] for p in pts], [p[key] for p in pts], style, label=method)
        ax.set_xlabel("recall@1 (timed probes)")
        ax.set_ylabel("queries / s")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="gallery templates")
    ap.add_argument("--data", default="clustered", choices=["clustered", "uniform"])
    ap.add_argument("--recall", type=float, default=0.99, help="the recall@1 both methods are compared at")
    ap.add_argument("--batch", type=int, default=1000, help="timed probes")
    ap.add_argument("--repeats", type=int, default=3, help="timed batches per point (best kept)")
    ap.add_argument("--single", type=int, default=200, help="single-probe calls per point")
    ap.add_argument("--cells", type=int, default=None, help="hybrid-cells: LBG cells (default: autotune's)")
    ap.add_argument("--name", default="search_curve")
    ap.add_argument("--out", default="docs/results/search")
    args = ap.parse_args(argv)
    from hybridface.errors import OptionError
    from hybridface.search.autotune import check_recall

    try:
        check_recall(args.recall)
    except OptionError as e:
        ap.error(str(e))
    for name, value, least in (("--size", args.size, 100), ("--batch", args.batch, 1), ("--repeats", args.repeats, 1),
                               ("--single", args.single, 1)):
        if value < least:
            ap.error(f"{name} must be at least {least}, got {value}")
    S.check_fits(args.size, ["hybrid-cells", "faiss-ivf"])
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    x, labels, probes = S.make_data(args.data, args.size, per=10, n_probes=args.batch + S.TUNE_QUERIES)
    probes, tune = probes[: args.batch], probes[args.batch :]
    matrix = S.to_matrix(x, labels)
    with threadpool_limits(limits=1):
        exact = S.exact_top1(matrix, probes)
        points = build_points(matrix, tune, args.recall, threads=1, cells=args.cells)
        measure(points, probes, exact, args.repeats, args.single)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(points, args, args.size)
    (out / f"{args.name}.md").write_text(text)
    (out / f"{args.name}.json").write_text(json.dumps(
        [{k: v for k, v in p.items() if k not in ("top1", "single_s")} for p in points], indent=1))
    chart(points, out / f"{args.name}.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
