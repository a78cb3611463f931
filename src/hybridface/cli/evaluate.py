"""``hybridface evaluate``: reproduce the paper's Table IV on a protocol and write a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hybridface.errors import ConfigError
from hybridface.options import DEFAULTS, SearchOptions


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r} must look like NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _option_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="run a protocol with several models and search strategies; write report.md, results.json, plots",
        description="Reproduce (and beat) Table IV of Meddad et al. (2020): per model × scenario, time per probe "
        "(feature extraction + search), Rank-1/Rank-5 and speed-up; optional open-set DIR@FAR.",
    )
    p.add_argument("--protocol", required=True, help="yale-augmented | vidtimit | folder | unseen")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (or the folder holding it)")
    p.add_argument("--models", default="compressed,paper", type=_csv,
                   help="comma list of compressed, paper, vggface, inception_v3, dlib (default: compressed,paper)")
    p.add_argument("--strategies", default="exhaustive,indexed,parallel,hybrid", type=_csv)
    p.add_argument("--top-n", type=int, default=DEFAULTS.top_n, help="identities searched after the index (indexed, hybrid)")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="threads of the parallel strategies")
    p.add_argument("--codewords", type=int, default=DEFAULTS.codewords, help="LBG codewords per identity")
    p.add_argument("--engine", default=DEFAULTS.engine, metavar="{local,ray}",
                   help="search locally or sharded over Ray actors (same answers)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="join this Ray cluster (--engine ray; default: start a local Ray)")
    p.add_argument("--open-set", action="store_true", help="hold out identities as impostors; report DIR@FAR")
    p.add_argument("--impostor-fraction", type=float, default=0.2, help="share of identities held out (--open-set)")
    p.add_argument("--limit-probes", type=int, default=None, help="at most N probes (evenly spaced)")
    p.add_argument("--weights", action="append", metavar="MODEL=PATH",
                   help="weights file/dir of a model, e.g. vggface=vgg_face.pth (repeatable)")
    p.add_argument("--protocol-option", action="append", metavar="KEY=VALUE",
                   help="protocol option, e.g. variants=1 or subjects=10 (repeatable)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs of the compressed model")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-schedule", default="cosine", choices=("constant", "cosine"),
                   help="learning-rate schedule of the compressed model")
    p.add_argument("--patience", type=int, default=40)
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the gallery held out for early stopping (0: train on every gallery image)")
    p.add_argument("--augment-prob", type=float, default=0.0,
                   help="probability that a training image is replaced by a random one of the 17 transformations")
    p.add_argument("--illumination", default="tan_triggs",
                   help="none | hist_eq | clahe | tan_triggs (compressed model)")
    p.add_argument("--channels", default="grey3", choices=("grey3", "rgb"),
                   help="input of the compressed model: grey3 (the paper: grey level as three equal channels) or rgb")
    p.add_argument("--timing-probes", type=int, default=200, help="probes encoded one by one to time extraction")
    p.add_argument("--search-timing-probes", type=int, default=500,
                   help="probes searched one at a time to time each strategy (accuracy always uses every probe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="template/model cache folder (default: OUT/.cache)")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The exact command line, as typed when run from a shell, else rebuilt from the options."""
    argv = sys.argv[1:]
    if "evaluate" in argv:
        return "hybridface " + " ".join(shlex.quote(a) for a in argv)
    parts = ["hybridface", "evaluate", "--protocol", args.protocol, "--data", str(args.data),
             "--models", ",".join(args.models), "--strategies", ",".join(args.strategies),
             "--top-n", str(args.top_n), "--workers", str(args.workers), "--codewords", str(args.codewords),
             "--epochs", str(args.epochs), "--lr", str(args.lr), "--lr-schedule", args.lr_schedule,
             "--patience", str(args.patience), "--illumination", args.illumination]
    if args.channels != "grey3":
        parts += ["--channels", args.channels]
    if args.augment_prob:
        parts += ["--augment-prob", str(args.augment_prob)]
    if args.val_fraction != 0.1:
        parts += ["--val-fraction", str(args.val_fraction)]
    if args.engine != "local":
        parts += ["--engine", args.engine] + (["--address", args.address] if args.address else [])
    if args.open_set:
        parts += ["--open-set", "--impostor-fraction", str(args.impostor_fraction)]
    if args.limit_probes:
        parts += ["--limit-probes", str(args.limit_probes)]
    for opt in args.protocol_option or []:
        parts += ["--protocol-option", opt]
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from hybridface.evaluation.harness import EvalConfig, run_evaluation
    from hybridface.evaluation.report import table_rows, write_report
    from hybridface.evaluation.training import TrainOptions
    from hybridface.protocols import PROTOCOLS

    if args.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {args.protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if not args.data.is_dir():
        raise ConfigError(f"--data {args.data} is not a folder")
    search = SearchOptions(top_n=args.top_n, workers=args.workers, engine=args.engine, address=args.address)
    if args.engine == "ray":  # fail fast on an unreachable cluster, before any training
        from hybridface.engines.ray import connect

        connect(args.address)
    cfg = EvalConfig(
        protocol=args.protocol, data_dir=args.data, cache_dir=args.cache or args.out / ".cache",
        models=args.models, strategies=args.strategies, search=search,
        codewords=args.codewords, open_set=args.open_set, impostor_fraction=args.impostor_fraction,
        limit_probes=args.limit_probes, seed=args.seed, weights=_pairs(args.weights, "--weights"),
        protocol_options={k: _option_value(v) for k, v in _pairs(args.protocol_option, "--protocol-option").items()},
        train=TrainOptions(epochs=args.epochs, lr=args.lr, patience=args.patience, illumination=args.illumination,
                           lr_schedule=args.lr_schedule, augment=args.augment_prob,
                           val_fraction=args.val_fraction, seed=args.seed,
                           channels=args.channels),
        timing_probes=args.timing_probes, search_timing_probes=args.search_timing_probes, progress=not args.no_progress and sys.stderr.isatty(),
    )
    result = run_evaluation(cfg)
    command = _command(args)
    paths = write_report(result, args.out, command=command)
    print(f"{'model':<13} {'scenario':<11} {'extract ms':>10} {'search ms':>10} {'rank-1':>8} {'speed-up':>8}")
    for r in table_rows(result):
        r1 = "n/a" if not r["has_weights"] else f"{100 * r['rank1']:.2f}%"
        sp = "" if r["speedup_search"] is None else f"{r['speedup_search']:.2f}x"
        print(f"{r['model']:<13} {r['scenario']:<11} {r['extraction_ms']:>10.2f} {r['search_ms']:>10.3f} {r1:>8} {sp:>8}")
    print(f"report: {paths['md']}")
    return 0
