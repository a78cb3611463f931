"""What each change to the compressed model's training buys on a protocol (Rank-1, exhaustive and
hybrid), e.g. illumination normalisation, epochs, LBG codewords per identity.

    python benchmarks/eval_ablation.py --protocol yale-augmented --data ../shared/datasets \
        --cache /tmp/ablation --variant illumination=none --variant illumination=clahe \
        --variant illumination=clahe,epochs=80 --codewords 1,3

Each ``--variant`` is a comma list of TrainOptions overrides (epochs, lr, illumination, patience,
val_fraction, batch_size). Prints one Markdown table; trained models and templates are cached.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path


def main() -> int:
    from hybridface.evaluation.harness import EvalConfig, run_evaluation
    from hybridface.options import SearchOptions
    from hybridface.evaluation.training import TrainOptions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="yale-augmented")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--variant", action="append", default=[], help="e.g. illumination=clahe,epochs=60")
    ap.add_argument("--codewords", default="1", help="comma list of LBG codewords per identity")
    ap.add_argument("--top-n", type=int, default=5)
    args = ap.parse_args()
    fields = {f.name: f.type for f in dataclasses.fields(TrainOptions)}
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("command: python " + " ".join(sys.argv))
    print()
    print("| training | codewords | Rank-1 exhaustive | Rank-1 hybrid (N=%d) | val acc | epochs run | train s | run s |"
          % args.top_n)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.variant or [""]:
        over = {}
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=", 1)
            over[k] = v if fields[k] in ("str", str) else (float(v) if "." in v or "e" in v else int(v))
        for cw in (int(c) for c in args.codewords.split(",")):
            t0 = time.perf_counter()
            cfg = EvalConfig(protocol=args.protocol, data_dir=args.data, cache_dir=args.cache, models=("compressed",),
                             strategies=("exhaustive", "hybrid"), codewords=cw, search=SearchOptions(top_n=args.top_n),
                             train=TrainOptions(**over), timing_probes=20, search_timing_probes=50, progress=False)
            m = run_evaluation(cfg).models[0]
            ex, hy = m.strategies
            t = m.training or {}
            print(f"| {spec or 'defaults'} | {cw} | {100 * ex.rank1:.2f} % | {100 * hy.rank1:.2f} % | "
                  f"{t.get('val_accuracy', float('nan')):.4f} | {t.get('epochs_run')} | {t.get('seconds')} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
