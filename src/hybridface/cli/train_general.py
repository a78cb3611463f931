"""Options of ``hybridface train`` for general models: ``--loss``, ``--teacher``, ``--unlabeled``, ``--arch``.

Not a command module: :mod:`hybridface.cli.train` calls :func:`add_general_arguments` on its
parser and hands the run to :func:`cmd_train_general` when one of these options is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hybridface.errors import ConfigError


def add_general_arguments(p: argparse.ArgumentParser) -> None:
    from hybridface.training.teacher import TEACHERS

    g = p.add_argument_group("general model (distillation / metric learning; see docs/general_model.md)")
    g.add_argument("--loss", choices=("softmax", "arcface", "cosface"),
                   help="identity loss on the 60-D feature with strong augmentation (labelled DATA_DIRs)")
    g.add_argument("--teacher", choices=TEACHERS,
                   help="distil the dlib 128-D descriptor on --unlabeled images and on the labelled DATA_DIRs / "
                        "--holdout training side (label-free unless --loss is given too): dlib (needs "
                        "hybridface[dlib]) or resnet (the same network on ONNX Runtime; shares dlib's cache)")
    g.add_argument("--unlabeled", metavar="DIR", help="folder of unlabeled face crops for distillation")
    g.add_argument("--unlabeled-limit", type=int, default=None, metavar="N",
                   help="seeded random subset of N unlabeled images (default: all)")
    g.add_argument("--teacher-cache", default=".cache/hybridface/teacher", metavar="DIR",
                   help="teacher descriptor cache (default .cache/hybridface/teacher)")
    g.add_argument("--relation-weight", type=float, default=0.0, metavar="W",
                   help="weight of the relational distillation loss on the 60-D feature (default 0: off)")
    g.add_argument("--batchnorm", action="store_true",
                   help="train with BatchNorm after every conv, folded into the convs at export (same network)")
    g.add_argument("--arch", choices=("paper", "wide"), default="paper",
                   help="paper: Table I (default); wide: doubled filters (~55K parameters)")
    g.add_argument("--holdout", metavar="DATASET",
                   help="DATA_DIR is a datasets root: train on the 'unseen' protocol's training side "
                        "(every dataset but DATASET)")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def uses_general(args: argparse.Namespace) -> bool:
    return bool(args.loss or args.teacher or args.unlabeled or args.holdout or args.arch != "paper")


def cmd_train_general(args: argparse.Namespace) -> int:
    from hybridface.config import DEFAULTS
    from hybridface.models.data import scan_image_folder
    from hybridface.training.distill import train_general
    from hybridface.models.preprocess import PreprocessSpec

    if args.protocol:
        raise ConfigError("--protocol is not used with --loss/--teacher/--unlabeled; use --holdout for 'unseen'")
    dirs = [Path(d) for d in args.data_dir]
    labelled, described = [], []
    if args.holdout:
        from hybridface.protocols.unseen import unseen

        if len(dirs) != 1:
            raise ConfigError("--holdout takes exactly one DATA_DIR: the datasets root")
        split = unseen(dirs[0], seed=args.seed, holdout=args.holdout)
        labelled = split.training_sources()
        described.append(f"unseen protocol training side of {dirs[0]} (held out {args.holdout}): "
                         f"{', '.join(split.train_datasets)}")
    else:
        detect = (args.detect or ["never"])[0]
        for d in dirs:
            labelled.append((scan_image_folder(d), detect, d.name if len(dirs) > 1 else ""))
            described.append(f"{d.name} (all images, detect={detect})")
    if not args.loss and not args.teacher:
        labelled = []  # labelled images serve an identity loss and/or distillation
        described = []
    elif not args.loss:
        described = [f"{d} (distilled, labels unused)" for d in described]
    if args.unlabeled:
        described.append(f"{Path(args.unlabeled).name} unlabeled (limit {args.unlabeled_limit})")
    spec = PreprocessSpec(input_size=DEFAULTS.input_size, channels=args.channels, illumination=args.illumination)
    r = train_general(out_dir=args.out, labelled=labelled, unlabeled=args.unlabeled,
                      unlabeled_limit=args.unlabeled_limit, teacher=args.teacher, teacher_cache=args.teacher_cache,
                      loss=args.loss, arch=args.arch, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      seed=args.seed, preprocessing=spec, data_description="; ".join(described),
                      progress=not args.no_progress, threads=args.threads,
                      relation_weight=args.relation_weight, batchnorm=args.batchnorm)
    if args.json:
        print(json.dumps({k: r[k] for k in ("out_dir", "model_id", "onnx_bytes", "arch", "loss", "teacher_rows",
                                            "labelled_rows", "identities", "unlabeled_images", "labelled_sources",
                                            "best_epoch", "epochs_run",
                                            "feature_parameters", "seconds")}
                         | {k: v for k, v in r.items() if k.startswith("val_")}))
        return 0
    print(f"model       {r['out_dir']}  (id {r['model_id'][:16]})")
    print(f"objective   loss={r['loss']} teacher={args.teacher}  arch={r['arch']} "
          f"({r['feature_parameters']:,} parameters)")
    print(f"data        {r['teacher_rows']} distilled, {r['labelled_rows']} labelled ({r['identities']} ids)")
    vals = "  ".join(f"{k} {v:.4f}" for k, v in r.items() if k.startswith("val_"))
    print(f"best epoch  {r['best_epoch']} of {r['epochs_run']}  {vals}")
    print(f"onnx        {r['onnx_bytes']:,} bytes   time {r['seconds']:.0f} s")
    return 0
