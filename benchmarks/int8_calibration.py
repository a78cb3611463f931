"""int8 calibration options for resnet students: fp32 → int8 agreement per option.

For each fp32 student (an unfolded ``student.onnx``), folds the affines, quantises it with
`resnet_int8.quantize_onnx` for every (per-channel, calibration) option on ``--calib`` chips
of a distillation run's data, and reports the mean cosine of the int8 descriptors with the fp32
ones on ``--eval`` other chips of the same data, raw and centred (each set minus its own mean:
what identification compares), and the file bytes. Writes ``--out-dir/NAME-OPTION.int8.onnx``.

    python benchmarks/int8_calibration.py --data /tmp/hf14/runs/w050b/data \
        --student w0.25=/tmp/hf14/runs/w025/student.onnx --out-dir /tmp/hf14b/int8
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="a distillation run's data/ (chips.npy)")
    ap.add_argument("--student", action="append", required=True, metavar="NAME=student.onnx")
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--methods", default="minmax,percentile,entropy")
    ap.add_argument("--ops", default="all,conv", help="QUANTIZE_OPS keys")
    ap.add_argument("--percentile", type=float, default=99.999)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from hybridface.models.dlib_format import default_dat_path, read_dlib_net
    from hybridface.models.resnet import build_onnx, resnet_spec
    from hybridface.models.resnet_int8 import quantize_onnx
    from hybridface.training.resnet_student import spec_from_onnx

    chips = np.load(args.data / "chips.npy", mmap_mode="r")
    calib_idx = np.linspace(0, len(chips) - 1, args.calib).astype(int)  # what the export calibrates on
    rest = np.setdiff1d(np.arange(len(chips)), calib_idx)
    calib = np.asarray(chips[calib_idx])
    held = np.asarray(chips[rest[np.linspace(0, len(rest) - 1, args.eval).astype(int)]])
    teacher = resnet_spec(read_dlib_net(default_dat_path()))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1

    def run(path) -> np.ndarray:
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"chips": held[i:i + 64]})[0] for i in range(0, len(held), 64)])

    print(f"command: python benchmarks/int8_calibration.py {' '.join(argv if argv is not None else sys.argv[1:])}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| student | int8 ops | weights | activations | int8 bytes | cos with fp32 | centred cos with fp32 |")
    print("|---|---|---|---|---:|---:|---:|")
    for item in args.student:
        name, path = item.split("=", 1)
        ref = run(path)
        with tempfile.TemporaryDirectory() as tmp:
            fused = Path(tmp) / "fused.onnx"
            fused.write_bytes(build_onnx(spec_from_onnx(path, teacher), fold_affine=True).SerializeToString())
            for ops, per_channel, method in itertools.product(args.ops.split(","), (False, True),
                                                              args.methods.split(",")):
                out = args.out_dir / f"{name}-{ops}-{method}-{'pc' if per_channel else 'pt'}.int8.onnx"
                quantize_onnx(fused, out, calib, per_channel=per_channel, calibrate=method, percentile=args.percentile,
                              ops=ops)
                q = run(out)
                print(f"| {name} | {ops} | {'per-channel' if per_channel else 'per-tensor'} | {method} | "
                      f"{out.stat().st_size:,} | {_cos(q, ref):.4f} | {_cos(q - q.mean(0), ref - ref.mean(0)):.4f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
