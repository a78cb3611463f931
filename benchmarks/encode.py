"""Encode throughput: faces/s for batch 1 and batch 256 on N CPU threads, PyTorch vs ONNX Runtime
fp32 vs ONNX Runtime int8, measured side by side in one run. Prints a Markdown table.

    python benchmarks/encode.py [--model MODEL_DIR_OR_ONNX] [--threads 2] [--seconds 2]

The network input is already preprocessed float32 NCHW (the same array for all engines); the
last row times :func:`hybridface.models.preprocess.preprocess` itself (uint8 60x60 → float32).
Without ``--model`` the shipped default model is used. The int8 model is quantized on the fly
(calibration: 256 of the benchmark's own inputs) unless ``MODEL.int8.onnx`` exists beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except Exception:  # noqa: BLE001
        name = ""
    return f"{name or platform.processor() or 'unknown CPU'}, {platform.machine()}, Python {platform.python_version()}"


def _rate(fn, x: np.ndarray, batch: int, seconds: float) -> float:
    """Best-of-3 faces/s of ``fn`` over batches of ``batch`` rows, each trial lasting ~``seconds``/3."""
    xb = np.ascontiguousarray(x[:batch])
    fn(xb)  # warm-up
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds / 3:
            fn(xb)
            n += len(xb)
        best = max(best, n / dt)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model dir or .onnx (default: the shipped default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per cell (split in 3 trials)")
    args = ap.parse_args()

    import torch

    from hybridface.models.card import load_card
    from hybridface.models.encoders import OnnxEncoder, TorchEncoder, default_model_path
    from hybridface.training.export import quantize_int8
    from hybridface.models.preprocess import preprocess

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else default_model_path()
    fp32 = OnnxEncoder(model, threads=args.threads)
    card, onnx_path = load_card(model)
    pt = TorchEncoder.from_model_dir(model)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(256, 60, 60, 3), dtype=np.uint8)
    x = preprocess(raw, fp32.spec)
    int8_path = onnx_path.with_name(onnx_path.stem + ".int8.onnx")
    tmp = None
    if not (int8_path.is_file() and int8_path.with_suffix(".json").is_file()):
        from hybridface.models.card import ModelCard, sha256_file, write_card

        tmp = tempfile.TemporaryDirectory()
        int8_path = Path(tmp.name) / "bench.int8.onnx"
        quantize_int8(onnx_path, int8_path, x)
        write_card(ModelCard(**{**card.to_dict(), "model_id": sha256_file(int8_path), "precision": "int8",
                                "onnx_file": int8_path.name}), int8_path.with_suffix(".json"))
    int8 = OnnxEncoder(int8_path, threads=args.threads)
    engines = [("PyTorch eager fp32", pt.encode_preprocessed), ("ONNX Runtime fp32", fp32.encode_preprocessed),
               ("ONNX Runtime int8", int8.encode_preprocessed)]
    print(f"Machine: {_machine()}; {args.threads} threads; torch {torch.__version__}; "
          f"onnxruntime {__import__('onnxruntime').__version__}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"Model: {onnx_path.name} ({onnx_path.stat().st_size:,} B fp32, {int8_path.stat().st_size:,} B int8)\n")
    print("| engine | batch 1 (faces/s) | batch 256 (faces/s) |")
    print("|---|---:|---:|")
    for name, fn in engines:
        print(f"| {name} | {_rate(fn, x, 1, args.seconds):,.0f} | {_rate(fn, x, 256, args.seconds):,.0f} |")
    pre = lambda b: preprocess(b, fp32.spec)  # noqa: E731
    print(f"| preprocess only (uint8 60x60 → float32) | {_rate(pre, raw, 1, args.seconds):,.0f} | "
          f"{_rate(pre, raw, 256, args.seconds):,.0f} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
