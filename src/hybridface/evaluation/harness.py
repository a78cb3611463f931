"""Run a protocol end to end: crop → augment → encode (cached) → enrol → search → measure.

`run_evaluation(config)` returns an `EvalResult`; `hybridface.evaluation.report` turns it into
``report.md``, ``results.json`` and plots. For each model it crops the protocol's images at the
model's input size, materialises each sample's augmentation variant, encodes through a
resumable `TemplateCache`, trains ``compressed`` on the gallery side (cached by a hash of
protocol + options), then runs each search strategy one probe at a time (the paper's scenario)
and once as a batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, DatasetError
from hybridface.evaluation.cache import TemplateCache, content_hash, template_key
from hybridface.evaluation.metrics import Timing, cmc, dir_at_far, ranks_of_truth, timing_from
from hybridface.evaluation.splits import EvalSplit, make_eval_split, materialise
from hybridface.evaluation.training import TrainOptions, train_compressed
from hybridface.options import DEFAULTS, STRATEGIES, SearchOptions

log = logging.getLogger(__name__)

FARS = (0.01, 0.001)


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run depends on (recorded in ``results.json``)."""

    protocol: str
    data_dir: Path
    cache_dir: Path
    models: tuple[str, ...] = ("compressed", "paper")
    strategies: tuple[str, ...] = STRATEGIES
    #: top_n, workers, engine, address of every strategy (``strategy`` itself is ignored)
    search: SearchOptions = SearchOptions()
    codewords: int | str = DEFAULTS.codewords  # or "auto"
    open_set: bool = False
    impostor_fraction: float = 0.2
    limit_probes: int | None = None
    seed: int = 0
    weights: dict[str, str] = field(default_factory=dict)
    protocol_options: dict[str, object] = field(default_factory=dict)
    train: TrainOptions = TrainOptions()
    #: name of the recipe (`hybridface.evaluation.presets`) and the values given over it
    preset: str = ""
    overrides: dict[str, object] = field(default_factory=dict)
    timing_probes: int = 200
    search_timing_probes: int = 500
    timing_budget_s: float = 20.0
    encode_random: bool = False
    max_rank: int = 20
    progress: bool = True
    #: gallery sizes of the scaling section (first model only; empty: no scaling section)
    scaling: tuple[int, ...] = ()
    scaling_noise: float = 0.01
    #: test-time flip: every template from the image and its mirror (`evaluation.flip`)
    flip: bool = False


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    search: Timing
    batch_ms_per_probe: float
    rank1: float | None
    rank5: float | None
    cmc: tuple[float, ...] | None
    distance_evaluations_per_probe: float
    index_build_s: float
    open_set: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ModelResult:
    name: str
    model_id: str
    dim: int
    has_weights: bool
    templates: str  # "encoded" or "random" (timing-only run of a model without weights)
    extraction: Timing
    encode_batch_ms_per_image: float | None
    num_gallery: int
    num_probes: int
    num_impostors: int
    num_identities: int
    skipped_files: int
    strategies: tuple[StrategyResult, ...]
    training: dict | None = None
    scaling: tuple = ()  # ScalingPoint per gallery size (hybridface.evaluation.scaling)


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: its config, the split it ran on, one result per model, wall time."""

    config: EvalConfig
    split_summary: str
    models: tuple[ModelResult, ...]
    seconds: float


def _check_config(cfg: EvalConfig) -> None:
    from hybridface.models.zoo import MODEL_NAMES

    bad = [m for m in cfg.models if m not in MODEL_NAMES]
    if bad or not cfg.models:
        raise ConfigError(f"unknown model(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODEL_NAMES)}")
    if not cfg.strategies:
        raise ConfigError(f"no strategy given; choose from {', '.join(STRATEGIES)}")
    for s in cfg.strategies:
        cfg.search.replace(strategy=s)  # one line naming a bad strategy and the valid ones
    from hybridface.index.lbg import check_codewords

    check_codewords(cfg.codewords)  # a supported size or "auto", one line otherwise
    if cfg.limit_probes is not None and cfg.limit_probes < 1:
        raise ConfigError("--limit-probes must be >= 1")
    if any(int(n) < 1 for n in cfg.scaling):
        raise ConfigError(f"--scaling sizes must be >= 1, got {','.join(map(str, cfg.scaling))}")
    if cfg.scaling_noise < 0:
        raise ConfigError("--scaling-noise must be >= 0")


def _load_encoder(name: str, cfg: EvalConfig, split: EvalSplit, crops60, progress: bool):
    from hybridface.models.zoo import load_encoder

    weights = cfg.weights.get(name)
    if name == "compressed" and weights is None:
        return train_compressed(split, crops60, cfg, progress=progress)
    return load_encoder(name, weights=weights), None


#: face detector of the evaluation protocols (Table IV): ``cascade`` before its CNN fallback stage
EVAL_DETECTOR = "cascade-fast"


def _crops(paths: list[str], detect: str, size: int, cache_dir: Path, progress: bool) -> tuple[dict, int]:
    from hybridface.faces.crop import load_crops

    try:
        import hybridface.faces.cache  # noqa: F401

        cdir: Path | None = cache_dir / "crops"
    except ImportError:
        cdir = None
    # the cascade without its CNN stage: the detector the README's Table IV numbers were made with
    # (`hybridface two-tier` and enrolment use the full cascade)
    outcomes = load_crops(paths, detect=detect, detector=EVAL_DETECTOR, size=size, cache_dir=cdir, progress=progress)
    crops = {o.path: o.crop.image for o in outcomes if o.crop is not None}
    return crops, len(paths) - len(crops)


def encode_samples(encoder, samples, crops, cache: TemplateCache, hashes: dict, crop_params: dict,
                   *, batch: int = 512, progress: bool = False, desc: str = "encode") -> tuple[np.ndarray, float | None]:
    """Templates of ``samples`` (cached); also the measured batch ms per freshly encoded image."""
    from tqdm import tqdm

    keys = [template_key(hashes[str(s.path)], s.variant, s.seed, crop_params) for s in samples]
    todo = [i for i, k in enumerate(keys) if k not in cache]
    secs, done = 0.0, 0
    if todo:
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for j in range(0, len(todo), batch):
                idx = todo[j : j + batch]
                imgs = materialise([samples[i] for i in idx], crops)
                t0 = time.perf_counter()
                vecs = encoder.encode(imgs)
                secs += time.perf_counter() - t0
                done += len(idx)
                cache.put_many([keys[i] for i in idx], vecs)
                bar.update(len(idx))
    if not keys:
        return np.zeros((0, encoder.dim), np.float32), None
    return np.stack([cache.get(k) for k in keys]).astype(np.float32), (secs * 1000 / done if done else None)


def time_extraction(encoder, samples, crops, cfg: EvalConfig) -> Timing:
    """Encode up to ``timing_probes`` probes one at a time (within ``timing_budget_s``)."""
    n = min(cfg.timing_probes, len(samples))
    if n == 0:
        return timing_from([])
    pick = np.linspace(0, len(samples) - 1, n).round().astype(int)
    imgs = materialise([samples[i] for i in pick], crops)
    encoder.encode(imgs[:1])  # warm-up
    secs: list[float] = []
    start = time.perf_counter()
    for img in imgs:
        t0 = time.perf_counter()
        encoder.encode(img[None])
        secs.append(time.perf_counter() - t0)
        if time.perf_counter() - start > cfg.timing_budget_s and len(secs) >= 3:
            break
    return timing_from(secs)


def run_strategy(strategy: str, matrix, probes: np.ndarray, truth: np.ndarray, impostors: np.ndarray,
                 cfg: EvalConfig, *, scored: bool, progress: bool = False) -> StrategyResult:
    from tqdm import tqdm

    from hybridface.search import searcher_for

    t0 = time.perf_counter()
    if strategy in ("indexed", "hybrid"):
        from hybridface.index.lbg import build_codebooks

        matrix = build_codebooks(matrix, codewords=cfg.codewords)
    build_s = time.perf_counter() - t0
    opts = cfg.search.replace(strategy=strategy)
    if opts.engine == "local":
        searcher = searcher_for(matrix, opts)
    else:
        from hybridface.engines.local import make_engine

        searcher = make_engine(opts.engine, matrix, options=opts)
    try:
        k = min(cfg.max_rank, matrix.num_identities)
        if strategy in ("indexed", "hybrid"):
            # the index ranks only its N shortlisted identities (paper Fig. 3): asking for more
            # would widen the shortlist to k and silently turn the scenario into exhaustive search
            k = min(k, opts.top_n)
        searcher.search(probes[:1], k)  # warm-up (thread pools, caches)
        t = time.perf_counter()
        res = searcher.search(probes, k)  # accuracy: every probe, one batch
        batch_ms = (time.perf_counter() - t) * 1000 / max(len(probes), 1)
        ids, dist = res.identities, res.distances
        evals = res.distance_evaluations
        # latency: up to `search_timing_probes` probes, one per call (the paper's scenario)
        n_t = min(cfg.search_timing_probes, len(probes))
        pick = np.linspace(0, len(probes) - 1, n_t).round().astype(int) if n_t else np.zeros(0, int)
        secs = np.empty(n_t)
        for j, i in enumerate(tqdm(pick, desc=f"search {strategy}", unit="probe", disable=not progress, leave=False)):
            t = time.perf_counter()
            one = searcher.search(probes[i : i + 1], k)
            secs[j] = time.perf_counter() - t
            if not np.array_equal(one.identities[0], ids[i]):
                log.warning("%s: probe %d ranked differently alone than in a batch", strategy, i)
        open_set: tuple[dict, ...] = ()
        if scored and len(impostors):
            imp = searcher.search(impostors, 1).distances[:, 0]
            correct = ids[:, 0] == truth
            open_set = tuple(vars(dir_at_far(dist[:, 0], correct, imp, far)) for far in FARS)
    finally:
        close = getattr(searcher, "close", None)
        if callable(close):
            close()
    ranks = ranks_of_truth(ids, truth)
    curve = cmc(ranks, cfg.max_rank) if scored else None
    return StrategyResult(
        strategy=strategy, search=timing_from(secs), batch_ms_per_probe=batch_ms,
        rank1=float(curve[0]) if scored else None, rank5=float(curve[min(4, len(curve) - 1)]) if scored else None,
        cmc=tuple(float(c) for c in curve) if scored else None,
        distance_evaluations_per_probe=evals / max(len(probes), 1), index_build_s=build_s, open_set=open_set,
    )


def evaluate_model(name: str, cfg: EvalConfig, split: EvalSplit, hashes: dict, crop_cache: dict) -> ModelResult:
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.models.zoo import has_weights

    progress = cfg.progress

    def crops_at(size: int):
        if size not in crop_cache:
            crop_cache[size] = _crops(sorted(hashes), split.detect, size, cfg.cache_dir, progress)
        return crop_cache[size]

    crops60, _ = crops_at(60)
    encoder, training = _load_encoder(name, cfg, split, crops60, progress)
    if cfg.flip:
        from hybridface.evaluation.flip import FlipEncoder

        encoder = FlipEncoder(encoder)
    size = int(encoder.input_size[0])
    crops, skipped = crops_at(size)
    keep = lambda ss: [s for s in ss if str(s.path) in crops]  # noqa: E731
    gallery, probes, impostors = keep(split.gallery), keep(split.probes), keep(split.impostors)
    if not gallery or not probes:
        raise DatasetError(f"{cfg.protocol}: no usable gallery or probe image after cropping ({skipped} files failed)")
    scored = has_weights(encoder) or cfg.encode_random
    crop_params = {"detect": split.detect, "size": size}
    g_ids = [s.identity for s in gallery]
    extraction = time_extraction(encoder, probes, crops, cfg)
    batch_ms = None
    if scored:
        cache = TemplateCache(cfg.cache_dir, encoder.model_id, encoder.dim)
        G, batch_ms = encode_samples(encoder, gallery, crops, cache, hashes, crop_params, progress=progress,
                                     desc=f"{name} gallery")
        P, _ = encode_samples(encoder, probes, crops, cache, hashes, crop_params, progress=progress,
                              desc=f"{name} probes")
        Q, _ = encode_samples(encoder, impostors, crops, cache, hashes, crop_params, progress=progress,
                              desc=f"{name} impostors")
    else:  # no weights: accuracy is meaningless, search time depends only on (n, d)
        log.warning("%s has no weights: search timed on random %d-D templates", name, encoder.dim)
        rng = np.random.default_rng(cfg.seed)
        G, P, Q = (rng.standard_normal((len(x), encoder.dim)).astype(np.float32) for x in (gallery, probes, impostors))
    matrix = TemplateMatrix.from_arrays(G, g_ids, model_id=encoder.model_id)
    truth = np.array([matrix.names.index(s.identity) if s.identity in matrix.names else -1 for s in probes])
    results = tuple(
        run_strategy(st, matrix, P, truth, Q, cfg, scored=scored, progress=progress) for st in cfg.strategies
    )
    scaling = ()
    if cfg.scaling and name == cfg.models[0]:
        from hybridface.evaluation.scaling import run_scaling

        scaling = run_scaling(G, g_ids, P, sizes=cfg.scaling, strategies=cfg.strategies, search=cfg.search,
                              codewords=cfg.codewords, noise=cfg.scaling_noise, seed=cfg.seed,
                              probes_timed=min(cfg.search_timing_probes, 200), model_id=encoder.model_id)
    return ModelResult(
        name=name, model_id=encoder.model_id, dim=int(encoder.dim), has_weights=has_weights(encoder),
        templates="encoded" if scored else "random", extraction=extraction, encode_batch_ms_per_image=batch_ms,
        num_gallery=len(gallery), num_probes=len(probes), num_impostors=len(impostors),
        num_identities=matrix.num_identities, skipped_files=skipped, strategies=results, training=training,
        scaling=scaling,
    )


def run_evaluation(cfg: EvalConfig) -> EvalResult:
    """Run every model × strategy of ``cfg`` on its protocol."""
    _check_config(cfg)
    t0 = time.perf_counter()
    split = make_eval_split(cfg)
    log.info("%s", split.summary)
    paths = sorted({str(s.path) for s in (*split.gallery, *split.probes, *split.impostors)})
    hashes = {p: content_hash(p) for p in paths}
    crop_cache: dict = {}
    models = tuple(evaluate_model(m, cfg, split, hashes, crop_cache) for m in cfg.models)
    return EvalResult(config=cfg, split_summary=split.summary, models=models, seconds=time.perf_counter() - t0)
