"""``hybridface evaluate``: reproduce the paper's Table IV on a protocol and write a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hybridface.cli.gallery import codewords_arg, engine_opts
from hybridface.errors import ConfigError
from hybridface.models.preprocess import DENOISE
from hybridface.options import DEFAULTS, SearchOptions


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _sizes(value: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(float(v)) for v in _csv(value or ""))
    except ValueError:
        raise ConfigError(f"--scaling {value!r} is not a comma list of gallery sizes, e.g. 10000,100000") from None


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


def protocol_options(values: list[str] | None) -> dict[str, object]:
    """``--protocol-option NAME=VALUE`` items as a dict, numbers parsed (a `ConfigError` otherwise)."""
    return {k: _option_value(v) for k, v in _pairs(values, "--protocol-option").items()}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="run a protocol with several models and search strategies; write report.md, results.json, plots",
        description="Reproduce (and beat) Table IV of Meddad et al. (2020): per model × scenario, time per probe "
        "(feature extraction + search), Rank-1/Rank-5 and speed-up; optional open-set DIR@FAR.",
    )
    p.add_argument("--protocol", required=True,
                   help="yale-augmented | vidtimit (temporal) | vidtimit-paper (the paper's random split) | folder | unseen")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="named training + index recipe (default: the protocol's own, e.g. yale-augmented; "
                   "folder/unseen: default); any training flag below overrides one field of it")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (or the folder holding it)")
    p.add_argument("--models", default="compressed,paper", type=_csv,
                   help="comma list of compressed, paper, vggface, inception_v3, dlib (default: compressed,paper)")
    p.add_argument("--strategies", default="exhaustive,indexed,parallel,hybrid", type=_csv)
    p.add_argument("--top-n", type=int, default=None,
                   help="identities searched after the index (indexed, hybrid; default: the preset's)")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="threads of the parallel strategies")
    p.add_argument("--codewords", type=codewords_arg, default=None,
                   help="LBG codewords per identity: 1, 2, 4, 8 or auto (default: the preset's)")
    engine_opts(p, engine_help="search locally or sharded over Ray actors (same answers)")
    p.add_argument("--open-set", action="store_true", help="hold out identities as impostors; report DIR@FAR")
    p.add_argument("--impostor-fraction", type=float, default=0.2, help="share of identities held out (--open-set)")
    p.add_argument("--limit-probes", type=int, default=None, help="at most N probes (evenly spaced)")
    p.add_argument("--weights", action="append", metavar="MODEL=PATH",
                   help="weights file/dir of a model, e.g. vggface=vgg_face.pth (repeatable)")
    p.add_argument("--protocol-option", action="append", metavar="KEY=VALUE",
                   help="protocol option, e.g. variants=1 or subjects=10 (repeatable)")
    t = p.add_argument_group("training of the compressed model (default: the preset's value)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs")
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--lr-schedule", default=None, choices=("constant", "cosine"), help="learning-rate schedule")
    t.add_argument("--patience", type=int, default=None, help="early-stopping patience (epochs)")
    t.add_argument("--val-fraction", type=float, default=None,
                   help="share of the gallery held out for early stopping (0: train on every gallery image)")
    t.add_argument("--augment-prob", type=float, default=None,
                   help="probability that a training image is replaced by a random one of the 17 transformations")
    t.add_argument("--illumination", default=None, help="none | hist_eq | clahe | tan_triggs")
    t.add_argument("--denoise", default=None, choices=DENOISE,
                   help="median3: 3x3 median filter before the illumination step; auto: only on images whose "
                        "estimated noise is high, before the resize (training and inference)")
    t.add_argument("--channels", default=None, choices=("grey3", "rgb"),
                   help="grey3 (the paper: grey level as three equal channels) or rgb")
    t.add_argument("--center-loss", type=float, default=None,
                   help="weight of a cosine centre loss on the 60-D feature, added to cross-entropy (0: none)")
    t.add_argument("--loss", default=None, choices=("classifier", "arcface", "cosface", "softmax"),
                   help="identity loss: classifier (the paper: cross-entropy through FC-K) or a margin/softmax "
                   "head on the 60-D feature")
    t.add_argument("--margin", type=float, default=None,
                   help="margin of the arcface/cosface head (default: 0.5 arcface, 0.35 cosface)")
    t.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm after each conv and FC-128 while training (folded into the weights after); "
                   "--no-batchnorm trains without it")
    p.add_argument("--timing-probes", type=int, default=200, help="probes encoded one by one to time extraction")
    p.add_argument("--search-timing-probes", type=int, default=500,
                   help="probes searched one at a time to time each strategy (accuracy always uses every probe)")
    p.add_argument("--scaling", default=None, metavar="N,N,...",
                   help="scaling section: replicate the first model's gallery (noisy copies) to these sizes, "
                   "e.g. 10000,100000,1000000, and time every strategy (adds speedup.png)")
    p.add_argument("--scaling-noise", type=float, default=0.01, help="noise σ per dimension of the replicated templates")
    p.add_argument("--flip", action="store_true",
                   help="test-time flip: each template from the image and its mirror (twice the extraction time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="template/model cache folder (default: OUT/.cache)")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


#: command-line flag -> TrainOptions field
_TRAIN_FLAGS = {"epochs": "epochs", "lr": "lr", "lr_schedule": "lr_schedule", "patience": "patience",
                "val_fraction": "val_fraction", "augment_prob": "augment", "illumination": "illumination",
                "channels": "channels", "center_loss": "center_loss", "loss": "loss",
                "batchnorm": "batchnorm", "margin": "margin",
                "denoise": "denoise"}


def _command(args: argparse.Namespace) -> str:
    """The exact command line, as typed when run from a shell, else rebuilt from the options."""
    argv = sys.argv[1:]
    if "evaluate" in argv:
        return "hybridface " + " ".join(shlex.quote(a) for a in argv)
    parts = ["hybridface", "evaluate", "--protocol", args.protocol, "--data", str(args.data),
             "--models", ",".join(args.models), "--strategies", ",".join(args.strategies),
             "--workers", str(args.workers)]
    if args.preset:
        parts += ["--preset", args.preset]
    for flag in ("top_n", "codewords", *_TRAIN_FLAGS):
        value = getattr(args, flag)
        if isinstance(value, bool):  # a switch (--batchnorm / --no-batchnorm)
            parts.append(("--" if value else "--no-") + flag.replace("_", "-"))
        elif value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.engine != "local":
        parts += ["--engine", args.engine] + (["--address", args.address] if args.address else [])
    if args.open_set:
        parts += ["--open-set", "--impostor-fraction", str(args.impostor_fraction)]
    if args.limit_probes:
        parts += ["--limit-probes", str(args.limit_probes)]
    if args.flip:
        parts += ["--flip"]
    if args.scaling:
        parts += ["--scaling", args.scaling]
    for opt in args.protocol_option or []:
        parts += ["--protocol-option", opt]
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from hybridface.evaluation.harness import EvalConfig, run_evaluation
    from hybridface.evaluation.presets import apply_overrides, get_preset, preset_for_protocol
    from hybridface.evaluation.report import table_rows, write_report
    from hybridface.protocols import PROTOCOLS

    if args.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {args.protocol!r}; use one of {', '.join(PROTOCOLS)}")
    preset = get_preset(args.preset) if args.preset else preset_for_protocol(args.protocol)
    if not args.data.is_dir():
        raise ConfigError(f"--data {args.data} is not a folder")
    train, codewords, top_n, overrides = apply_overrides(
        preset, train={field: getattr(args, flag) for flag, field in _TRAIN_FLAGS.items()} | {"seed": args.seed},
        codewords=args.codewords, top_n=args.top_n)
    overrides.pop("seed", None)  # the split seed is recorded on its own
    search = SearchOptions(top_n=top_n, workers=args.workers, engine=args.engine, address=args.address)
    if args.engine == "ray":  # fail fast on an unreachable cluster, before any training
        from hybridface.engines.ray import connect

        connect(args.address)
    cfg = EvalConfig(
        protocol=args.protocol, data_dir=args.data, cache_dir=args.cache or args.out / ".cache",
        models=args.models, strategies=args.strategies, search=search,
        codewords=codewords, open_set=args.open_set, impostor_fraction=args.impostor_fraction,
        limit_probes=args.limit_probes, seed=args.seed, weights=_pairs(args.weights, "--weights"),
        protocol_options=protocol_options(args.protocol_option),
        train=train, preset=preset.name, overrides=overrides,
        scaling=_sizes(args.scaling), scaling_noise=args.scaling_noise, flip=args.flip,
        timing_probes=args.timing_probes, search_timing_probes=args.search_timing_probes,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    result = run_evaluation(cfg)
    command = _command(args)
    paths = write_report(result, args.out, command=command)
    changed = ", ".join(f"{k}={v}" for k, v in overrides.items())
    print(f"preset {preset.describe()}" + (f" (overridden: {changed})" if changed else ""))
    print(f"{'model':<13} {'scenario':<11} {'extract ms':>10} {'search ms':>10} {'rank-1':>8} {'speed-up':>8}")
    for r in table_rows(result):
        r1 = "n/a" if not r["has_weights"] else f"{100 * r['rank1']:.2f}%"
        sp = "" if r["speedup_search"] is None else f"{r['speedup_search']:.2f}x"
        print(f"{r['model']:<13} {r['scenario']:<11} {r['extraction_ms']:>10.2f} {r['search_ms']:>10.3f} {r1:>8} {sp:>8}")
    print(f"report: {paths['md']}")
    return 0
