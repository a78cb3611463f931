"""Gallery commands: enroll, identify, remove, rename, list, calibrate, verify, run-protocol.

Parsing and printing only; every action is a call into :mod:`hybridface.api`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hybridface.errors import ConfigError
from hybridface.options import DEFAULTS, DETECT, STRATEGIES, SearchOptions

MODEL_HELP = ("model directory, .onnx, or a zoo name: dlib (the default when installed; an existing gallery "
              "uses its own model), resnet / resnet-int8 (dlib's network on ONNX Runtime), resnet-small / "
              "resnet-tiny (shipped distilled students), general, classifier (compressed, experimental for "
              "people the model never saw), paper")


def codewords_arg(text: str) -> int | str:
    """``--codewords``: a supported size or ``auto`` (argparse turns the error into one line, exit 2)."""
    from hybridface.index.lbg import check_codewords

    try:
        return check_codewords(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emit(args, obj: dict, line: str) -> None:
    print(json.dumps(obj) if args.json else line)


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The `SearchOptions` of parsed ``--strategy/--top-n/...`` flags (a bad one: one line, exit 2)."""
    return SearchOptions.from_mapping(vars(args))


def _dataset(root: str) -> dict[str, list[Path]]:
    from hybridface.protocols.dataset import scan_dataset

    scan = scan_dataset(root, check="none")
    return {name: list(paths) for name, paths in scan.identities.items() if paths}


def _probe_paths(items: list[str]) -> list[str]:
    from hybridface.protocols.dataset import IMAGE_EXTENSIONS, natural_key

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted((f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS),
                           key=lambda f: (str(f.parent), natural_key(f)))
            if not files:
                raise ConfigError(f"{p}: no image files in this folder")
            out.extend(map(str, files))
        else:
            out.append(item)  # a missing file becomes a per-probe error, not an abort
    return out


# ---------------------------------------------------------------------------- commands
def cmd_enroll(args) -> int:
    from hybridface.api import open_gallery

    if args.engine == "ray":  # an address that does not answer fails before the gallery is created
        from hybridface.enroll import connect_cluster

        connect_cluster(args.address)
    with open_gallery(args.db, model=args.model, create=True) as g:
        if args.no_keep_faces and g.keeps_faces:
            g.set_keep_faces(False)  # recorded: later enrolments into this gallery keep no faces either
        reports = g.enroll_folder(args.data_dir, detect=args.detect, detector=args.detector,
                                  codewords=args.codewords, progress=not args.json and sys.stderr.isatty(),
                                  engine=args.engine, address=args.address)
    added = sum(r.added for r in reports)
    dup = sum(r.duplicates for r in reports)
    skipped = [s for r in reports for s in r.skipped]
    enrolled = [r for r in reports if not any(why.startswith("folder skipped") for _, why in r.skipped)]
    if args.json:
        for rep in reports:
            print(json.dumps({"identity": rep.identity, "added": rep.added, "duplicates": rep.duplicates,
                              "skipped": [list(s) for s in rep.skipped]}))
    else:
        print(f"enrolled {added} templates of {len(enrolled)} identities into {args.db} "
              f"({dup} already enrolled, {len(skipped)} skipped)")
        for path, why in skipped:
            print(f"  skipped {path}: {why}")
    return 0


def cmd_identify(args) -> int:
    if (args.db is None) == (args.bundle is None):
        raise ConfigError("identify needs exactly one of --db GALLERY or --bundle DIR")
    probes = _probe_paths(args.probes)
    if args.bundle is not None:  # a device bundle: numpy + onnxruntime + opencv only
        from hybridface.bundle import identify_bundle

        opts = search_options(args)
        answers = identify_bundle(args.bundle, probes, strategy=opts.strategy, top_n=opts.top_n,
                                  workers=opts.workers, k=opts.k, threshold=opts.threshold, detect=args.detect,
                                  detector=args.detector, precision="int8" if opts.storage == "int8" else "fp32")
    else:
        from hybridface.api import open_gallery

        with open_gallery(args.db, model=args.model, readonly=True) as g:
            answers = g.identify(probes, options=search_options(args), detect=args.detect, detector=args.detector)
    if args.json:
        for a in answers:
            print(json.dumps(a.to_dict()))
        return 0
    print(f"{'probe':40s} {'identity':16s} {'distance':>8s}  candidates")
    for a in answers:
        if a.status != "ok":
            print(f"{a.probe:40s} {'-':16s} {'-':>8s}  {a.status}: {a.error}")
            continue
        cands = ", ".join(f"{n} {d:.3f}" for n, d in a.candidates[1:])
        who = a.identity if a.identity is not None else "unknown"
        dist = f"{a.distance:8.4f}" if a.distance is not None else f"{'-':>8s}"
        print(f"{a.probe:40s} {who:16s} {dist}  {cands}")
    return 0


def cmd_remove(args) -> int:
    from hybridface.api import open_gallery

    with open_gallery(args.db) as g:
        n = g.remove(args.name)
    _emit(args, {"removed": args.name, "templates": n}, f"removed {args.name!r} ({n} templates)")
    return 0


def cmd_rename(args) -> int:
    from hybridface.api import open_gallery

    with open_gallery(args.db) as g:
        g.rename(args.old, args.new)
    _emit(args, {"renamed": args.old, "to": args.new}, f"renamed {args.old!r} to {args.new!r}")
    return 0


def cmd_list(args) -> int:
    from hybridface.api import open_gallery

    with open_gallery(args.db, readonly=True) as g:
        rows = g.identities()
        model, threshold = g.store.model_id, g.threshold
    if args.json:
        for name, n in rows:
            print(json.dumps({"identity": name, "templates": n}))
        return 0
    print(f"gallery {args.db}: model {model}, threshold {threshold}, {len(rows)} identities, "
          f"{sum(n for _, n in rows)} templates")
    print(f"{'identity':30s} {'templates':>9s}")
    for name, n in rows:
        print(f"{name:30s} {n:9d}")
    return 0


def cmd_calibrate(args) -> int:
    from hybridface.api import open_gallery

    data = _dataset(args.data_dir)
    paths = [p for ps in data.values() for p in ps]
    labels = [name for name, ps in data.items() for _ in ps]
    with open_gallery(args.db, model=args.model) as g:
        cal = g.calibrate(paths, labels, target_far=args.far, detect=args.detect, detector=args.detector)
    _emit(args, cal.__dict__, f"threshold {cal.threshold:.4f} stored in {args.db} (FAR {cal.far:.4f} for target "
          f"{cal.target_far}, FRR {cal.frr:.4f}; {cal.genuine_pairs} genuine / {cal.impostor_pairs} impostor pairs)")
    return 0


def cmd_verify(args) -> int:
    from hybridface.api import load_encoder, open_gallery, verify

    threshold = args.threshold
    if args.db:  # the gallery's own model (and threshold) unless --model says otherwise
        with open_gallery(args.db, model=args.model, readonly=True) as g:
            encoder = g.encoder
            threshold = g.threshold if threshold is None else threshold
    else:
        encoder = load_encoder(args.model)
    v = verify(args.a, args.b, encoder=encoder, threshold=threshold, detect=args.detect, detector=args.detector)
    _emit(args, v.__dict__, f"{'same' if v.same else 'different'} (distance {v.distance:.4f}, threshold {v.threshold:.4f})")
    return 0


def cmd_run_protocol(args) -> int:
    import logging

    from hybridface.evaluation.runner import run_protocol

    if not getattr(args, "verbose", 0):  # one warning per face-less frame drowns the table; counted below
        logging.getLogger("hybridface.faces.crop").setLevel(logging.ERROR)

    r = run_protocol(args.protocol, args.data, db=args.db, model=args.model, search=search_options(args),
                     codewords=args.codewords, seed=args.seed, overwrite=args.overwrite, progress=not args.json,
                     keep_faces=not args.no_keep_faces)
    row = {"protocol": r.protocol, "strategy": r.strategy, "identities": r.identities, "templates": r.templates,
           "probes": r.probes, "skipped": len(r.skipped), "rank1": r.rank1, "ms_per_probe": r.ms_per_probe,
           "search_ms_per_probe": r.search_ms_per_probe, "enrol_seconds": r.enrol_seconds}
    if args.json:
        print(json.dumps(row))
        return 0
    print(r.summary)
    print(f"gallery {args.db}: {r.identities} identities, {r.templates} templates; {len(r.skipped)} files skipped")
    print("| protocol | strategy | probes | Rank-1 | ms/probe (crop+encode+search) | search ms/probe |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    print(f"| {r.protocol} | {r.strategy} | {r.probes} | {100 * r.rank1:.2f} % | {r.ms_per_probe:.3f} | "
          f"{r.search_ms_per_probe:.4f} |")
    return 0


# ---------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, *, db: bool = True, model: bool = False, detect: bool = False) -> None:
    if db:
        p.add_argument("--db", required=True, help="gallery file (SQLite)")
    if model:
        p.add_argument("--model", default=DEFAULTS.model, help=MODEL_HELP)
    if detect:
        p.add_argument("--detect", choices=DETECT, default=DEFAULTS.detect,
                       help=f"largest/always: detect the largest face of each photo; never: images are "
                            f"face crops already (default: {DEFAULTS.detect})")
        p.add_argument("--detector", default=DEFAULTS.detector, help=f"face detector (default: {DEFAULTS.detector})")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _search_opts(p: argparse.ArgumentParser) -> None:
    # no argparse choices: a bad value is SearchOptions' one-line OptionError (exit 2), the same
    # text as the REST service's 422 and the Python ConfigError
    p.add_argument("--strategy", default=DEFAULTS.strategy, metavar="{" + ",".join(STRATEGIES) + "}",
                   help=f"search strategy (default: {DEFAULTS.strategy})")
    p.add_argument("--top-n", type=int, default=DEFAULTS.top_n, help="identities kept by the index")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="parallel workers")
    p.add_argument("--cells", type=int, default=DEFAULTS.cells, metavar="N",
                   help="coarse LBG cells over the identity codewords, for indexed/hybrid on very large "
                        "galleries (e.g. 1024 at ~1M templates; per shard with --engine ray; default: off)")
    p.add_argument("--probe-cells", type=int, default=DEFAULTS.probe_cells, metavar="M",
                   help="cells visited per probe with --cells (more = higher recall; default: 16)")
    p.add_argument("--storage", default=DEFAULTS.storage, metavar="{float32,int8}",
                   help="template storage of --strategy exhaustive: int8 also keeps int8 codes of the "
                        "templates, so searches of a few probes (k = 1) read ~4x fewer bytes with "
                        "exactly the float32 answers, for +27 %% memory (needs numba; default: float32); with "
                        "--bundle: the bundle's int8 model and templates, candidates re-scored in float32")


def engine_opts(p: argparse.ArgumentParser, *, engine_help: str) -> None:
    """``--engine {local,ray}`` and ``--address`` (the Ray cluster to join)."""
    p.add_argument("--engine", default=DEFAULTS.engine, metavar="{local,ray}", help=engine_help)
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="join this Ray cluster (--engine ray; default: start a local Ray)")


def register(sub) -> None:
    p = sub.add_parser("enroll", help="enrol a folder of <identity>/<image> into a gallery")
    p.add_argument("data_dir", help="folder with one sub-folder per identity")
    p.add_argument("--codewords", type=codewords_arg, default=None,
                   help="LBG codewords per identity: 1, 2, 4, 8, or auto (about one per 8 templates, up to 8)")
    p.add_argument("--no-keep-faces", action="store_true",
                   help="do not store face crops in the gallery (kept by default so `hybridface fit` can train "
                        "on them); recorded in the gallery for later enrolments")
    engine_opts(p, engine_help="ray: crop and encode in Ray tasks across a cluster, written here (default: local)")
    _common(p, model=True, detect=True)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="1:N identification of probe images (files or folders)")
    p.add_argument("probes", nargs="+", help="image files or folders of images")
    _search_opts(p)
    p.add_argument("--k", type=int, default=DEFAULTS.k, help="candidates per probe")
    p.add_argument("--threshold", type=float, default=None, help="unknown above this distance (default: calibrated)")
    engine_opts(p, engine_help="local search, or sharded over Ray actors")
    p.add_argument("--db", default=None, help="gallery file (SQLite)")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="instead of --db: a device bundle (hybridface export G2 --bundle DIR); needs only "
                        "numpy, onnxruntime and opencv")
    _common(p, db=False, model=True, detect=True)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("remove", help="remove an identity and its templates")
    p.add_argument("name")
    _common(p)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("rename", help="rename an identity")
    p.add_argument("old")
    p.add_argument("new")
    _common(p)
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("list", help="identities and template counts")
    _common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("calibrate", help="estimate and store the open-set threshold from a labelled folder")
    p.add_argument("data_dir")
    p.add_argument("--far", type=float, default=DEFAULTS.far, help="target false-accept rate")
    _common(p, model=True, detect=True)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("verify", help="1:1: are two images the same person?")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threshold", type=float, default=None, help="same when distance <= T")
    p.add_argument("--db", default=None, help="take the calibrated threshold of this gallery")
    _common(p, db=False, model=True, detect=True)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("run-protocol", help="the main job: enrol a protocol's gallery, identify its probes")
    p.add_argument("protocol", help="protocol name (vidtimit, yale-augmented, folder)")
    p.add_argument("--data", required=True, help="datasets folder (or the dataset itself)")
    p.add_argument("--db", required=True, help="gallery file to create")
    p.add_argument("--overwrite", action="store_true", help="replace --db if it is an existing gallery")
    p.add_argument("--model", default=DEFAULTS.model, help=MODEL_HELP)
    _search_opts(p)
    p.add_argument("--codewords", type=codewords_arg, default=DEFAULTS.codewords,
                   help="LBG codewords per identity: 1, 2, 4, 8 or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-keep-faces", action="store_true", help="do not store the gallery's face crops")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run_protocol)


__all__ = ["register"]
