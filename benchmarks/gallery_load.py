"""Time `GalleryStore.load_matrix` on a large synthetic gallery (target: 1M templates in <= 3 s).

Usage: python benchmarks/gallery_load.py [--templates 1000000] [--per-identity 50] [--db /tmp/big.db]
Builds the gallery with `GalleryStore.add_templates` (one transaction per identity), then loads it
three times through the packed per-identity blocks and three times through the template rows
(interleaved) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hybridface.gallery.store import GalleryStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--per-identity", type=int, default=50)
    ap.add_argument("--dim", type=int, default=60)
    ap.add_argument("--db", default="/tmp/hybridface_bench_gallery.db")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the gallery file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_ids = args.templates // args.per_identity
    if os.path.exists(args.db) and not args.keep:
        os.remove(args.db)
    t0 = time.perf_counter()
    with GalleryStore(args.db, create=True) as store:
        for i in range(n_ids if store.num_templates() == 0 else 0):
            v = rng.normal(size=(args.per_identity, args.dim)).astype(np.float32)
            hashes = [f"{i}-{j}" for j in range(args.per_identity)]
            store.add_templates(f"id{i:06d}", v, hashes, model_id="bench")
    build = time.perf_counter() - t0
    size = os.path.getsize(args.db) / 2**20
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    print(f"command: python benchmarks/gallery_load.py --templates {args.templates} --per-identity {args.per_identity}\n")
    print("| templates | identities | build (s) | file (MiB) | load_matrix, packed blocks (s) | load_matrix, one row per template (s) |")
    print("| ---: | ---: | ---: | ---: | --- | --- |")
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for blocks in (True, False):  # interleaved, so both see the same machine load
            with GalleryStore(args.db, readonly=True) as store:
                store._has_blocks = store._has_blocks and blocks
                t0 = time.perf_counter()
                m = store.load_matrix()
                times[blocks].append(time.perf_counter() - t0)
            assert m.num_templates == n_ids * args.per_identity and m.codewords is not None
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    print(f"| {m.num_templates:,} | {m.num_identities:,} | {build:.1f} | {size:.0f} | {fmt(times[True])} | "
          f"{fmt(times[False])} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cpus)")
    if not args.keep:
        os.remove(args.db)


if __name__ == "__main__":
    main()
