"""Speed and size of candidate ``resnet-tiny`` architectures, before training any of them.

Each candidate is `prune_spec` of the teacher (inner ``width``, ``stream_width``, kept ``blocks``,
``input_side``), exported as the distillation exports a student (fp32, affine folded; int8 QDQ
conv-only percentile per-channel, calibrated on ``--calib`` chips; int8 weight-only), then timed
with ONNX Runtime on 1 thread at batch 1 and 64 (chips in, descriptors out), candidates
interleaved round by round; the median over rounds. The weight-only file is timed twice: opened
as `ResNetEncoder` opens it (``session.disable_quant_qdq``: the dequantisation folded into float
weights at load) and with a default session (dequantised every call). Weights are the pruned teacher's (untrained): speed does not depend on them.

    python benchmarks/tiny_candidates.py --chips RUN/data/chips.npy --rounds 3 \
        --candidate "w0.25-all:0.25:0.25:all:150" --candidate "w0.25-5b-112:0.25:0.25:0,3,7,10,13:112"

A candidate is ``NAME:WIDTH:STREAM_WIDTH:BLOCKS:SIDE`` (BLOCKS ``all`` or comma-separated indices).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


#: fp32 (affine folded), int8 QDQ conv-only, int8 weight-only as ResNetEncoder opens it, and in a default session
KINDS = ("fp32", "int8", "w8", "w8 default session")


def _rate(sess, chips: np.ndarray, batch: int, seconds: float) -> float:
    n, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = chips[i % (len(chips) - batch + 1):][:batch]
        sess.run(None, {"chips": b})
        n, i = n + batch, i + batch
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", required=True, type=Path, help="uint8 (n, 150, 150, 3) .npy of aligned chips")
    ap.add_argument("--candidate", action="append", required=True, metavar="NAME:W:SW:BLOCKS:SIDE")
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=None, help="keep the ONNX files here")
    args = ap.parse_args(argv)

    from hybridface.models.dlib_format import default_dat_path, read_dlib_net
    from hybridface.models.ort import cpu_session
    from hybridface.models.resnet import build_onnx, resnet_spec
    from hybridface.models.resnet_int8 import quantize_onnx, quantize_weights
    from hybridface.training.resnet_student import count_parameters, prune_spec

    chips_all = np.load(args.chips, mmap_mode="r")
    chips = np.ascontiguousarray(chips_all[np.linspace(0, 8000 if len(chips_all) > 8000 else len(chips_all) - 1,
                                                       128).astype(int)])
    teacher = resnet_spec(read_dlib_net(default_dat_path()))
    out = args.out or Path(tempfile.mkdtemp(prefix="tiny_candidates_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for c in args.candidate:
        name, w, sw, blocks, side = c.split(":")
        keep = None if blocks == "all" else tuple(int(b) for b in blocks.split(","))
        spec = prune_spec(teacher, width=float(w), stream_width=float(sw), blocks=keep, input_side=int(side))
        fp32, fused, int8 = out / f"{name}.onnx", out / f"{name}.fused.onnx", out / f"{name}.int8.onnx"
        fp32.write_bytes(build_onnx(spec).SerializeToString())
        fused.write_bytes(build_onnx(spec, fold_affine=True).SerializeToString())
        quantize_onnx(fused, int8, chips[:args.calib], per_channel=True, calibrate="percentile", ops="conv")
        w8 = out / f"{name}.w8.onnx"
        quantize_weights(fused, w8)
        rows[name] = {"params": count_parameters(spec), "fp32": (fused, []), "int8": (int8, []), "w8": (w8, []),
                      "w8 default session": (w8, [])}
    for _ in range(args.rounds):
        for name, r in rows.items():
            for kind in KINDS:
                fold = {"session.disable_quant_qdq": "1"} if kind == "w8" else None
                sess = cpu_session(r[kind][0], threads=1, config=fold)
                r[kind][1].append((_rate(sess, chips, 1, args.seconds), _rate(sess, chips, 64, args.seconds)))
    print(f"{platform.processor() or platform.machine()}, 1 ORT thread, {args.rounds} rounds x {args.seconds} s, "
          f"median faces/s")
    print("| candidate | parameters | int8 QDQ bytes | int8 weights bytes | "
          + " | ".join(f"{k} b1 | {k} b64" for k in KINDS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * (2 * len(KINDS)))
    for name, r in rows.items():
        med = {k: [statistics.median(x[j] for x in r[k][1]) for j in (0, 1)] for k in KINDS}
        print(f"| {name} | {r['params']:,} | {r['int8'][0].stat().st_size:,} | {r['w8'][0].stat().st_size:,} | "
              + " | ".join(f"{med[k][0]:,.0f} | {med[k][1]:,.0f}" for k in KINDS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
