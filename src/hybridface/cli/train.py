"""``hybridface train`` and ``hybridface export``: train the compressed network, export ONNX / int8."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hybridface.config import DEFAULTS
from hybridface.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the compressed VGGFace network on <identity>/<image> folders",
                       description="Train on DATA_DIR (an <identity>/<image> folder) and write MODEL_DIR "
                                   "(model.onnx + model.json). Several DATA_DIRs train one model on all of them "
                                   "(identities prefixed by the folder name).")
    p.add_argument("data_dir", nargs="*", metavar="DATA_DIR", help="dataset folder(s), <identity>/<image> layout")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write (atomically)")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (default 100)")
    p.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                   help="Adam learning rate (default 1e-4 as in the paper; the authors' graph used 1e-3)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="batch size (default 100)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out validation share per identity")
    p.add_argument("--patience", type=int, default=15, help="early-stopping patience in epochs (default 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detect", choices=("never", "largest"), action="append",
                   help="face detection per DATA_DIR (once for all, or once per DATA_DIR; default: "
                        "the protocol's policy, else never)")
    p.add_argument("--protocol", action="append", metavar="NAME",
                   help="train only on this protocol's gallery side of DATA_DIR (once for all, or once per DATA_DIR)")
    p.add_argument("--illumination", choices=("none", "hist_eq", "clahe", "tan_triggs"), default="none",
                   help="illumination normalisation of the grey level (default none; tan_triggs: "
                        "Tan & Triggs 2010, best on Extended Yale B)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate: constant (default) or cosine decay to 0 over --epochs")
    p.add_argument("--channels", choices=("grey3", "rgb"), default="grey3",
                   help="grey3: RGB -> grey -> 3 equal channels (default); rgb: keep colour")
    p.add_argument("--augment", action="store_true",
                   help="on-the-fly augmentation with the 17 paper transformations (see --augment-prob)")
    p.add_argument("--augment-prob", type=float, default=1.0, metavar="P",
                   help="with --augment: each epoch a training image is transformed with probability P (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from hybridface.cli.train_general import add_general_arguments

    add_general_arguments(p)
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="check/copy a model's fp32 ONNX file, or export an int8 model",
                       description="Print the size of MODEL_DIR's fp32 ONNX model (copy it with --out), or "
                                   "with --int8 quantize it (static, calibrated on DATA_DIR) and report the "
                                   "Rank-1 change on a held-out split of DATA_DIR.")
    e.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory (or, with --bundle, a gallery file)")
    e.add_argument("--bundle", metavar="DIR", default=None,
                   help="write gallery MODEL_DIR (e.g. a fitted G2) with its ONNX model into one folder for a "
                        "device: hybridface identify --bundle DIR needs only numpy, onnxruntime, opencv")
    e.add_argument("--int8", action="store_true", help="int8 static quantization (ONNX Runtime)")
    e.add_argument("--calibration", metavar="DATA_DIR", help="<identity>/<image> folder for calibration and Rank-1")
    e.add_argument("--max-calibration", type=int, default=300, help="calibration images (default 300)")
    e.add_argument("--detect", choices=("never", "largest"), default="never")
    e.add_argument("--out", metavar="PATH", help="output .onnx path (its card is written beside it)")
    e.add_argument("--json", action="store_true", help="print the report as one JSON object")
    e.set_defaults(func=cmd_export)


def _per_dir(values: list[str] | None, n: int, what: str) -> list[str | None]:
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"give {what} once, or once per DATA_DIR ({n}), not {len(values)} times")
    return list(values)


def cmd_train(args: argparse.Namespace) -> int:
    from hybridface.models.data import scan_image_folder
    from hybridface.models.preprocess import PreprocessSpec
    from hybridface.training.train import train_sources
    from hybridface.cli.train_general import cmd_train_general, uses_general

    if uses_general(args):
        return cmd_train_general(args)
    if not args.data_dir:
        raise ConfigError("give at least one DATA_DIR (or --unlabeled DIR with --teacher dlib)")

    dirs = [Path(d) for d in args.data_dir]
    protocols = _per_dir(args.protocol, len(dirs), "--protocol")
    detects = _per_dir(args.detect, len(dirs), "--detect")
    sources, described = [], []
    for d, proto, detect in zip(dirs, protocols, detects):
        if proto:
            from hybridface.protocols import get_protocol

            split = get_protocol(proto, d, seed=args.seed)
            samples, detect = list(split.gallery), detect or split.detect
            described.append(f"{d.name} (protocol {proto}, gallery side, {len(samples)} samples, detect={detect})")
        else:
            samples, detect = scan_image_folder(d), detect or "never"
            described.append(f"{d.name} (all images, detect={detect})")
        sources.append((samples, detect, d.name if len(dirs) > 1 else ""))
    spec = PreprocessSpec(input_size=DEFAULTS.input_size, channels=args.channels, illumination=args.illumination)
    report = train_sources(sources, out_dir=args.out, epochs=args.epochs, lr=args.lr,
                           val_fraction=args.val_fraction, seed=args.seed, batch_size=args.batch_size,
                           patience=args.patience, preprocessing=spec, augment_on_the_fly=args.augment_prob if args.augment else 0.0,
                           lr_schedule=args.lr_schedule,
                           data_description="; ".join(described), progress=not args.no_progress,
                           threads=getattr(args, "threads", None))
    for path, why in report.skipped:
        print(f"skipped: {why if why.startswith(path) else f'{path}: {why}'}")
    val = "n/a" if report.val_accuracy is None else f"{100 * report.val_accuracy:.2f} %"
    if args.json:
        print(json.dumps({"out_dir": str(report.out_dir), "model_id": report.model_id,
                          "val_accuracy": report.val_accuracy, "train_accuracy": report.train_accuracy,
                          "best_epoch": report.best_epoch, "epochs_run": report.epochs_run,
                          "num_train": report.num_train, "num_val": report.num_val,
                          "identities": len(report.identities), "onnx_bytes": report.onnx_bytes,
                          "skipped": len(report.skipped), "seconds": round(report.seconds, 1)}))
        return 0
    print(f"model       {report.out_dir}  (id {report.model_id[:16]})")
    print(f"identities  {len(report.identities)}   train {report.num_train}   val {report.num_val}"
          f"   skipped files {len(report.skipped)}")
    print(f"val acc     {val}   (best epoch {report.best_epoch} of {report.epochs_run}, "
          f"train acc {100 * report.train_accuracy:.2f} %)")
    print(f"onnx        {report.onnx_bytes:,} bytes   time {report.seconds:.0f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hybridface.models.card import load_card

    if args.bundle:  # MODEL_DIR is a gallery here
        from hybridface.bundle import write_bundle

        if args.int8 or args.calibration or args.out:
            raise ConfigError("--bundle takes a gallery and a folder only (a fitted int8 model is included "
                              "when hybridface fit --int8 made one)")
        m = write_bundle(args.model_dir, args.bundle)
        if args.json:
            print(json.dumps(m))
        else:
            print(f"bundle {args.bundle}: {m['identities']} identities, {m['templates']} templates, "
                  f"{m['bytes']:,} bytes ({', '.join(m['files'])}); on a device it needs "
                  f"{m['sizes']['fp32_bytes']:,} bytes (float32) or {m['sizes']['int8_bytes']:,} bytes (int8), "
                  f"budget {m['sizes']['budget_bytes']:,}; run it with: hybridface identify PROBES "
                  f"--bundle {args.bundle} [--storage int8]")
        return 0

    if not args.int8:
        if args.calibration:
            raise ConfigError("--calibration is only used with --int8")
        card, onnx_path = load_card(args.model_dir)
        target = onnx_path
        if args.out:
            target = Path(args.out)
            target = target if target.suffix == ".onnx" else target.with_name(target.name + ".onnx")
            from dataclasses import replace

            from hybridface.models.card import write_card

            shutil.copyfile(onnx_path, target)
            write_card(replace(card, onnx_file=target.name), target.with_suffix(".json"))
        size = target.stat().st_size
        if args.json:
            print(json.dumps({"path": str(target), "bytes": size, "precision": card.precision,
                              "model_id": card.model_id}))
        else:
            print(f"{card.precision} model {target}: {size:,} bytes (id {card.model_id[:16]}), self-contained ONNX")
        return 0
    if not args.calibration:
        raise ConfigError("--int8 needs --calibration DATA_DIR (an <identity>/<image> folder)")
    from hybridface.training.export import export_int8

    r = export_int8(args.model_dir, args.calibration, out=args.out, max_calibration=args.max_calibration,
                    detect=args.detect)
    if args.json:
        print(json.dumps({"fp32_path": str(r.fp32_path), "int8_path": str(r.int8_path), "fp32_bytes": r.fp32_bytes,
                          "int8_bytes": r.int8_bytes, "model_id": r.model_id, "rank1_fp32": r.rank1_fp32,
                          "rank1_int8": r.rank1_int8, "rank1_change_points": r.rank1_change,
                          "gallery": r.num_gallery, "probes": r.num_probes, "calibration": r.num_calibration}))
        return 0
    print("| model | file | bytes | Rank-1 |")
    print("|---|---|---:|---:|")
    print(f"| fp32 | {r.fp32_path} | {r.fp32_bytes:,} | {100 * r.rank1_fp32:.2f} % |")
    print(f"| int8 | {r.int8_path} | {r.int8_bytes:,} | {100 * r.rank1_int8:.2f} % |")
    print(f"\nRank-1 change (int8 - fp32): {r.rank1_change:+.2f} points; held-out split of {args.calibration}: "
          f"{r.num_gallery} gallery / {r.num_probes} probe images (1-NN cosine); {r.num_calibration} calibration images")
    return 0
