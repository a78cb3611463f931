"""How much of the teacher a pruned resnet student keeps at initialisation, before any training.

Centred cosine (each set minus its own mean descriptor) between the student's and the teacher's
descriptors on held-out chips of a distillation run's data (every 2nd of the last 500), for
the original pruning (streams and inner channels at one width) and the stream-preserving one
(``stream_width=1``: inner channels only), with and without the least-squares conv2 refit
(`refit_conv2` on ``--fit`` chips from the first 3,000).

    python benchmarks/student_init.py --data /tmp/hf14/runs/w050b/data --fit 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def _ccos(s: np.ndarray, t: np.ndarray) -> float:
    s, t = s - s.mean(0), t - t.mean(0)
    return float((np.sum(s * t, 1) / np.linalg.norm(s, axis=1) / np.linalg.norm(t, axis=1)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="a distillation run's data/ (chips.npy, teacher.npy)")
    ap.add_argument("--fit", type=int, default=64, help="chips for the least-squares refit")
    ap.add_argument("--students", default="0.5:0.5,0.3:1,0.25:1", help="width:stream_width pairs")
    args = ap.parse_args(argv)
    import torch

    from hybridface.models.dlib_format import default_dat_path, read_dlib_net
    from hybridface.models.resnet import build_torch, preprocess_chips, resnet_spec
    from hybridface.training.resnet_student import count_parameters, prune_spec, refit_conv2

    torch.set_num_threads(1)
    chips = np.load(args.data / "chips.npy", mmap_mode="r")
    teach = np.load(args.data / "teacher.npy")
    teacher = resnet_spec(read_dlib_net(default_dat_path()))
    held = np.arange(len(chips) - 500, len(chips), 2)
    fit = np.linspace(0, min(3000, len(chips) - 501), args.fit).astype(int)

    def enc(spec) -> np.ndarray:
        net = build_torch(spec)
        with torch.no_grad():
            return np.concatenate([net(torch.from_numpy(preprocess_chips(np.asarray(chips[held[i:i + 50]]),
                                                                          spec.mean_rgb))).numpy()
                                   for i in range(0, len(held), 50)])

    print(f"command: python benchmarks/student_init.py {' '.join(argv if argv is not None else sys.argv[1:])}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| inner width | stream width | parameters | centred cos, pruned | after refit | refit s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for pair in args.students.split(","):
        w, sw = (float(v) for v in pair.split(":"))
        st = prune_spec(teacher, width=w, stream_width=sw)
        pruned = _ccos(enc(st), teach[held])
        refit, secs = "-", "-"
        if sw == 1:
            t0 = time.perf_counter()
            rf = refit_conv2(st, teacher, np.asarray(chips[fit]))
            secs = f"{time.perf_counter() - t0:.0f}"
            refit = f"{_ccos(enc(rf), teach[held]):.3f}"
        print(f"| {w} | {sw} | {count_parameters(st):,} | {pruned:.3f} | {refit} | {secs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
