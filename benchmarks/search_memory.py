"""Peak memory per phase of the exact-search benchmark (where does RSS above the stored matrix go?).

    python benchmarks/search_memory.py --size 10000000

Prints, after each phase (data, matrix, exact batch, bandwidth probe, int8 build, searches), the
Python-traced current and peak bytes (NumPy allocations are traced) and the process's max RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="gallery templates")
    ap.add_argument("--probes", type=int, default=1000)
    args = ap.parse_args(argv)
    import search as bench

    from hybridface.search.strategies import Exhaustive

    tracemalloc.start()

    def phase(name: str) -> None:
        cur, peak = tracemalloc.get_traced_memory()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        print(f"{name:>16}: traced now {cur / 1e6:8.0f} MB, traced peak {peak / 1e6:8.0f} MB, max RSS {rss:8.0f} MB",
              flush=True)
        tracemalloc.reset_peak()

    x, labels, probes = bench.make_data("clustered", args.size, per=10, n_probes=args.probes)
    phase("make_data")
    matrix = bench.to_matrix(x, labels)
    phase("to_matrix")
    Exhaustive(matrix).search(probes, 1)
    phase("exact batch")
    bench.machine_limits(1)
    phase("machine_limits")
    s = Exhaustive(matrix, threads=1, storage="int8")
    phase("int8 build")
    s.search(probes, 1)
    phase("int8 batch")
    s.search(probes[:1], 1)
    phase("int8 single")
    Exhaustive(matrix, threads=1).search(probes[:1], 1)
    phase("float32 single")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
