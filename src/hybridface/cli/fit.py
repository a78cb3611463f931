"""``hybridface fit``: train the paper's network on a gallery's kept faces, write a new gallery.

Parsing and printing only; the work is :func:`hybridface.training.fit.fit_gallery`.
"""

from __future__ import annotations

import json
import shlex
import sys

from hybridface.options import DEFAULTS, STRATEGIES


def _num(x: float) -> float | None:
    return None if x != x else x  # NaN (nothing held out) -> null: valid JSON


def cmd_fit(args) -> int:
    from hybridface.training.fit import fit_gallery

    warm = False if args.no_warm_start else (args.warm_start or True)
    rep = fit_gallery(args.db, args.out, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      relation_weight=args.relation_weight, batchnorm=args.batchnorm,
                      hold_out=args.hold_out, max_drop=args.max_drop, force=args.force, int8=args.int8,
                      warm_start=warm, channels=args.channels, illumination=args.illumination,
                      codewords=args.codewords, seed=args.seed, threads=args.threads, progress=not args.json,
                      command="hybridface " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["fit"] else None)
    c = rep.check
    row = {"out": str(rep.out), "model_dir": str(rep.model_dir), "model_id": rep.model_id,
           "onnx_bytes": rep.onnx_bytes, "int8_bytes": rep.int8_bytes, "identities": rep.identities,
           "faces": rep.faces, "epochs": rep.epochs, "seconds": round(rep.seconds, 1), "warm_start": rep.warm_start,
           "held_out": c.held_out, "fitted_rank1": _num(c.fitted_rank1), "gallery_rank1": _num(c.gallery_rank1),
           "self_check_passed": c.passed}
    if args.json:
        print(json.dumps(row))
        return 0
    print(f"fitted the paper's network on {rep.faces} faces of {rep.identities} identities in {rep.seconds:.0f} s "
          f"({rep.epochs} epochs{', warm start from ' + rep.warm_start if rep.warm_start else ''})")
    print(f"self-check: {c.verdict}" + ("" if c.passed else "  -- WRITTEN ONLY BECAUSE OF --force"))
    size = f"{rep.onnx_bytes:,} bytes" + (f", int8 {rep.int8_bytes:,} bytes" if rep.int8_bytes else "")
    print(f"wrote {rep.out} (identify with: hybridface identify PROBES --db {rep.out}) and {rep.model_dir} ({size})")
    return 0


def cmd_two_tier(args) -> int:
    import tempfile

    from hybridface.evaluation.two_tier import format_table, run_two_tier

    from hybridface.cli.evaluate import protocol_options

    options = protocol_options(args.protocol_option)
    workdir = args.workdir or tempfile.mkdtemp(prefix="hybridface-main-")
    fit_options = {"force": True, "threads": args.threads}
    for key in ("epochs", "batch_size", "relation_weight", "batchnorm"):
        if getattr(args, key) is not None:
            fit_options[key] = getattr(args, key)
    run = run_two_tier(args.protocol, args.data, workdir=workdir, model=args.model, strategy=args.strategy,
                       workers=args.workers, fit_options=fit_options, seed=args.seed, protocol_options=options,
                       progress=not args.json)
    if args.json:
        print(json.dumps({"summary": run.summary, "rows": [r.__dict__ for r in run.rows], "seconds": run.seconds,
                          "fit_check": run.fit_check}))
        return 0
    print(run.summary)
    print(f"galleries in {workdir}; fit self-check: {run.fit_check}")
    print(format_table(run))
    print("(encode ms/face: per face on one core; dlib ran in "
          f"{args.workers or 'all'} worker processes. Times: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in run.seconds.items()) + ")")
    return 0


def register(sub) -> None:
    t = sub.add_parser("two-tier", help="the main job: enrol with dlib, fit the paper's network, identify with both",
                       description="Enrol a protocol's gallery side with the default (accurate) encoder, keeping "
                                   "the faces; fit the paper's network on it; identify the probe side with both "
                                   "galleries; print one table.")
    t.add_argument("protocol", help="protocol name: vidtimit (the main job), yale-augmented, unseen, folder, "
                                    "vidtimit-paper")
    t.add_argument("--data", required=True, help="datasets folder (or the dataset itself)")
    t.add_argument("--protocol-option", action="append", metavar="KEY=VALUE",
                   help="protocol parameter, repeatable (unseen: holdout=att_orl; folder: gallery_per_identity=1, "
                        "order=first, detect=never)")
    t.add_argument("--workdir", default=None, help="folder for the two galleries (default: a new temp folder)")
    t.add_argument("--model", default=None, help="enrolment model (default: dlib when installed)")
    t.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy)
    t.add_argument("--workers", type=int, default=None, help="encoder processes (default: all cores)")
    t.add_argument("--epochs", type=int, default=None, help="fit epochs (default: fit's)")
    t.add_argument("--batch-size", type=int, default=None, help="fit batch size (default: fit's)")
    t.add_argument("--relation-weight", type=float, default=None, help="fit relational weight (default: fit's)")
    t.add_argument("--batchnorm", action="store_const", const=True, default=None,
                   help="fit with BatchNorm while training (folded after; default: fit's)")
    t.add_argument("--threads", type=int, default=None, help="torch threads for fit (default: all cores)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_two_tier)

    p = sub.add_parser("fit", help="train the paper's 100 KB network on a gallery's own faces; write a new gallery",
                       description="Train the paper's compressed network on the kept faces of --db (cross-entropy "
                                   "over its identities + distillation to its own templates), check it on held-out "
                                   "faces, and write --out: a gallery encoded by the fitted model. For galleries "
                                   "probed in the conditions they were enrolled in (one camera, an enrolment clip); "
                                   "not for recognising people from unconstrained photos.")
    p.add_argument("--db", required=True, help="source gallery (enrolled with faces kept; opened read-only)")
    p.add_argument("--out", required=True, help="gallery file to write (an existing fitted gallery is replaced)")
    p.add_argument("--epochs", type=int, default=None, help="default 100 from scratch, 10 on a warm start")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3; 1e-3 warm)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--relation-weight", type=float, default=1.0,
                   help="weight of the relational (pairwise-cosine) distillation term (default 1.0)")
    p.add_argument("--batchnorm", action="store_true",
                   help="BatchNorm after every conv and FC-128 while training, folded into the weights after "
                   "(the same parameters at inference)")
    p.add_argument("--hold-out", type=float, default=0.2, help="share of each identity's faces held out for the "
                   "self-check (the last ones enrolled; default 0.2)")
    p.add_argument("--max-drop", type=float, default=2.0, help="Rank-1 points the fitted model may lose to the "
                   "gallery's encoder on the held-out faces (default 2)")
    p.add_argument("--force", action="store_true", help="write --out even when the self-check fails")
    p.add_argument("--int8", action="store_true", help="also write an int8 model (model.int8.onnx)")
    p.add_argument("--warm-start", default=None, metavar="MODEL_DIR",
                   help="start from this model (default: the model of an existing fitted --out, if any)")
    p.add_argument("--no-warm-start", action="store_true", help="train from scratch")
    p.add_argument("--channels", choices=("rgb", "grey3"), default="rgb", help="network input (default rgb)")
    p.add_argument("--illumination", choices=("none", "hist_eq", "clahe", "tan_triggs"), default="none")
    p.add_argument("--codewords", type=int, default=1, help="LBG codewords per identity in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="one JSON line instead of the text summary")
    p.set_defaults(func=cmd_fit)


__all__ = ["register"]
