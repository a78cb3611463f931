"""The dlib ResNet port: parity with dlib on N shared faces, and speed against dlib, interleaved.

Parity (``--parity N``, default 1,000): N images spread over the shared datasets; dlib finds the
face (HOG, else the whole image), its 5 landmarks and the 150x150 chip, and computes the
descriptor. On the same chips ``resnet`` (fp32) and ``resnet-int8`` compute theirs; our landmark
and chip ports redo the alignment from dlib's box. Reported: min cosine and max |diff| of the
raw descriptors, landmark agreement, chip agreement, end-to-end (our alignment + ``resnet``)
agreement.

Speed (``--rounds R``): the same chips, engines interleaved round by round (dlib, resnet,
resnet-int8), batch 1 and batch 64, ``--threads`` intra-op threads for ONNX Runtime (dlib's CPU
runtime is single-threaded per call); the median over rounds of faces/s.

    python benchmarks/resnet.py --data ../shared/datasets --parity 1000 --rounds 5 --threads 1
    python benchmarks/resnet.py --data ../shared/datasets --parity 0 --rounds 5 --onnx small=RUN/student.int8.onnx

Batch enrolment (``--encode-batch N``): ``encode`` of N face crops (150x150, ``cascade-fast``
on the same images) split into its stages: landmarks (our shape-predictor port), chips, ONNX
Runtime (``resnet``, ``resnet-int8`` and any ``--onnx``); best of ``--rounds`` (at least 3).

    python benchmarks/resnet.py --data ../shared/datasets --parity 0 --rounds 0 --encode-batch 64
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _agree(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min()), float(cos.mean()), float(np.abs(a - b).max())


def _rate(fn, chips: np.ndarray, batch: int, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        b = chips[i % len(chips):i % len(chips) + batch]
        if len(b) < batch:
            b = chips[:batch]
        fn(b)
        n += len(b)
        i += batch
    return n / (time.perf_counter() - t0)


def _encode_split(files: list[Path], encoders: dict, batch: int, rounds: int) -> list[str]:
    """Markdown rows: ms per batch of ``batch`` crops for landmarks, chips, ORT and the whole ``encode``."""
    from hybridface.models.chip import face_chips
    from hybridface.prepare import prepare_images

    crops = [p.crop for p in prepare_images(files, detect="largest", detector="cascade-fast", size=150)
             if p.crop is not None][:batch]
    crops = np.stack(crops)
    first = next(iter(encoders.values()))
    first.encode(crops[:1])  # loads the predictor, compiles the kernels
    h, w = first.input_size
    boxes = np.tile(np.array([0, 0, w - 1, h - 1], np.float64), (len(crops), 1))

    def best(fn, *a) -> float:
        out = []
        for _ in range(max(3, rounds)):
            t0 = time.perf_counter()
            fn(*a)
            out.append(time.perf_counter() - t0)
        return 1e3 * min(out)

    marks = first._predictor.predict(crops, boxes)
    chips = face_chips(crops, marks)
    t_lm, t_chip = best(first._predictor.predict, crops, boxes), best(face_chips, crops, marks)
    lines = [f"Batch enrolment: `encode` of {len(crops)} face crops (150x150), best of {max(3, rounds)}, ms per batch; "
             f"landmarks {t_lm:.1f} ms, chips {t_chip:.1f} ms:", "",
             "| encoder | landmarks | chips | ORT | encode (all) | alignment share |", "|---|---:|---:|---:|---:|---:|"]
    for name, enc in encoders.items():
        t_ort, t_all = best(enc.descriptors, chips), best(enc.encode, crops)
        lines.append(f"| {name} | {t_lm:.1f} | {t_chip:.1f} | {t_ort:.1f} | {t_all:.1f} | "
                     f"{100 * (t_lm + t_chip) / t_all:.0f} % |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--parity", type=int, default=1000, help="faces for the parity check (0: skip)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds (0: skip)")
    ap.add_argument("--seconds", type=float, default=3.0, help="per engine, batch and round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--onnx", action="append", default=[], metavar="NAME=FILE.onnx",
                    help="also time a chip-input ONNX model (a resnet student) in the speed rounds")
    ap.add_argument("--no-dlib", action="store_true", help="speed rounds without dlib's runtime (× dlib left out)")
    ap.add_argument("--encode-batch", type=int, default=0, metavar="N",
                    help="also time encode of N face crops split into landmarks / chips / ORT (0: skip)")
    ap.add_argument("--json", type=Path, default=None, help="also write the speeds here (benchmarks/frontier.py reads it)")
    args = ap.parse_args(argv)

    import dlib  # the reference
    from dlib_chips import dlib_reference, sample_files

    from hybridface.models.chip import face_chips
    from hybridface.models.landmarks import ShapePredictor
    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.resnet_int8 import cached_int8_path
    from hybridface.models.baselines.dlib_encoder import default_model_files

    n = max(args.parity, 64)
    t0 = time.perf_counter()
    ref = dlib_reference(sample_files(args.data, n, seed=args.seed))
    print(f"dlib reference on {len(ref['chips'])} faces: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    fp32 = ResNetEncoder(threads=args.threads)
    int8_path = cached_int8_path()
    int8 = ResNetEncoder(int8_path, threads=args.threads)
    chips = ref["chips"]
    lines = [f"machine: {platform.machine()} {platform.processor() or ''} ({sys.platform}), "
             f"python {platform.python_version()}; command: python benchmarks/resnet.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}", ""]
    if args.parity:
        d_ref = ref["descriptors"]
        d32, d8 = fp32.descriptors(chips), int8.descriptors(chips)
        sp = ShapePredictor()
        lm = sp.predict(ref["images"], ref["boxes"])
        lm_diff = np.abs(lm - ref["landmarks"]).max(axis=(1, 2))
        our_chips = face_chips(ref["images"], lm)
        chip_diff = np.abs(our_chips.astype(np.int16) - chips)
        d_e2e = fp32.descriptors(our_chips)
        lines += [f"Parity on {len(chips)} faces (vidtimit14, extended_yale_b, att_orl, utkface):", "",
                  "| compared with dlib | min cosine | mean cosine | max abs diff |", "|---|---:|---:|---:|"]
        for name, x in (("resnet (fp32, ORT), dlib's chips", d32), ("resnet-int8, dlib's chips", d8),
                        ("resnet, our landmarks + chips", d_e2e)):
            c_min, c_mean, diff = _agree(x, d_ref)
            lines.append(f"| {name} | {c_min:.7f} | {c_mean:.7f} | {diff:.2e} |")
        c_min, c_mean, _ = _agree(d8, d32)
        lines += ["", f"resnet-int8 vs resnet: min cosine {c_min:.5f}, mean {c_mean:.5f}; "
                  f"int8 file {int8_path.stat().st_size:,} bytes, fp32 {fp32.path_.stat().st_size:,} bytes",
                  f"landmarks: {100 * (lm_diff == 0).mean():.1f} % of faces identical to dlib's, max diff "
                  f"{int(lm_diff.max())} px; chips (from dlib's landmarks): {100 * (chip_diff == 0).mean():.5f} % "
                  f"of values identical, max diff {int(chip_diff.max())}", ""]
    if args.encode_batch:
        encs = {"resnet (ORT fp32)": fp32, "resnet-int8 (ORT)": int8}
        encs.update({k: ResNetEncoder(v, threads=args.threads) for k, v in (x.split("=", 1) for x in args.onnx)})
        lines += _encode_split(sample_files(args.data, 2 * args.encode_batch, seed=args.seed), encs,
                               args.encode_batch, args.rounds)
    if args.rounds:
        import os

        load_before = os.getloadavg()
        engines = {}
        if not args.no_dlib:
            net = dlib.face_recognition_model_v1(default_model_files()[0])
            engines["dlib (its runtime)"] = lambda b: net.compute_face_descriptor(list(b), 0)
        engines.update({"resnet (ORT fp32)": fp32.descriptors, "resnet-int8 (ORT)": int8.descriptors})
        teacher = fp32.descriptors(chips)
        agreement = {}
        for item in args.onnx:
            oname, opath = item.split("=", 1)
            engines[oname] = ResNetEncoder(opath, threads=args.threads).descriptors
        for name, fn in list(engines.items())[1 if not args.no_dlib else 0:]:
            d = fn(chips)  # agreement with the teacher (resnet fp32) on the same chips, raw and centred
            mu = teacher.mean(0)
            agreement[name] = {"cos": _agree(d, teacher)[1], "centred_cos": _agree(d - d.mean(0), teacher - mu)[1]}
        rates: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for batch in (1, 64):
                for name, fn in engines.items():
                    rates.setdefault((name, batch), []).append(_rate(fn, chips, batch, args.seconds))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        load_after = os.getloadavg()
        base = {b: float(np.median(rates[("dlib (its runtime)", b)])) if not args.no_dlib else float("nan")
                for b in (1, 64)}
        lines += [f"Agreement with resnet (fp32) on the {len(chips)} chips, mean cosine raw / centred: "
                  + "; ".join(f"{k} {v['cos']:.4f} / {v['centred_cos']:.4f}" for k, v in agreement.items()), ""]
        lines += [f"Speed, {args.rounds} interleaved rounds, {args.threads} ORT thread(s), median faces/s "
                  f"(chips in, descriptors out); 1-min load average {load_before[0]:.1f} before, "
                  f"{load_after[0]:.1f} after:", "",
                  "| engine | batch 1 | × dlib | batch 64 | × dlib |", "|---|---:|---:|---:|---:|"]
        for name in engines:
            m1, m64 = (float(np.median(rates[(name, b)])) for b in (1, 64))
            lines.append(f"| {name} | {m1:.1f} | {m1 / base[1]:.2f} | {m64:.1f} | {m64 / base[64]:.2f} |")
        if args.json is not None:
            import json

            args.json.write_text(json.dumps({
                "command": lines[0], "threads": args.threads, "rounds": args.rounds,
                "load_average": [load_before[0], load_after[0]], "agreement_faces": len(chips), "agreement": agreement,
                "faces_per_s": {name: {str(b): float(np.median(rates[(name, b)])) for b in (1, 64)} for name in engines},
            }, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
