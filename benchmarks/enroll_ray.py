"""Enrolment throughput: local (one process) vs Ray tasks on a cluster, same folder, same model.

    python benchmarks/enroll_ray.py ../shared/datasets/att_orl --address 127.0.0.1:6391 --detect never

Enrols the folder into two fresh galleries (local, then ``--engine ray``), checks that their
contents are identical, and prints faces/s for each with the model and the cluster's node count.
``--warm``: before the Ray run is timed, every node's worker loads the model (one task per CPU of
the cluster, run at the same time), as the local run's model load is not timed either; without
it the Ray figure includes each worker's start and model load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="<identity>/<images> folder")
    ap.add_argument("--address", default=None, help="Ray cluster host:port (default: local Ray)")
    ap.add_argument("--model", default=None, help="encoder (default: the shipped default)")
    ap.add_argument("--detect", default="never")
    ap.add_argument("--warm", action="store_true", help="load the model on every Ray worker before timing")
    args = ap.parse_args(argv)
    from hybridface import api
    from hybridface.engines.ray import alive_nodes, connect

    connect(args.address)
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for engine in ("local", "ray"):
            with api.open_gallery(Path(tmp) / f"{engine}.db", model=args.model, create=True) as g:
                if engine == "local":
                    g.encoder  # model load not timed (each Ray worker loads it once, timed unless --warm)
                elif args.warm:
                    print(f"warm workers (node, pid): {_warm(None if g._model is None else str(g._model))}")  # as enroll_folder_ray keys it
                t = time.perf_counter()
                reports = g.enroll_folder(args.data, detect=args.detect, engine=engine, address=args.address)
                dt = time.perf_counter() - t
                m = g.matrix()
                out[engine] = (sum(r.added for r in reports), dt, m.vectors.copy(), m.template_ids.copy(), m.names)
        same = (np.array_equal(out["local"][2], out["ray"][2]) and np.array_equal(out["local"][3], out["ray"][3])
                and out["local"][4] == out["ray"][4])
        for engine, (n, dt, *_) in out.items():
            nodes = len(alive_nodes()) if engine == "ray" else 1
            print(f"{engine}: {n} faces in {dt:.1f} s = {n / dt:.1f} faces/s ({nodes} node(s), model "
                  f"{args.model or 'default'}, detect {args.detect})")
        print(f"identical gallery contents: {same}")
    return 0 if same else 1


def _warm(model: str | None) -> list[tuple[str, int]]:
    """One task per CPU of the cluster, all in flight together (each holds its CPU for a second after
    loading), so every worker that the enrolment's tasks will use has the model loaded."""
    import ray

    def load(model):
        import os
        import time

        from hybridface import enroll
        from hybridface.options import DEFAULTS

        enroll.encode_identity(model, "warm-up", [], "never", DEFAULTS.detector)
        time.sleep(1.0)
        return os.uname().nodename, os.getpid()

    task = ray.remote(num_cpus=1)(load)
    return ray.get([task.remote(model) for _ in range(int(ray.cluster_resources().get("CPU", 1)))])


if __name__ == "__main__":
    from hybrid_n import run_script  # a sibling benchmark: a HybridFaceError is one line, exit 2

    run_script(main)
