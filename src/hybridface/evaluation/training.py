"""Train the ``compressed`` model on an evaluation split's gallery side, cached on disk.

The paper trains on the gallery (training) images and enrols the same images; we do the same,
on exactly the pixels the harness enrols (crop → augmentation variant). The trained model
directory is cached under ``<cache>/models/compressed-<hash>`` where the hash covers the split
(files, identities, variants, held-out impostors) and every training option, so a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Training options of the ``compressed`` model (see :meth:`hybridface.training.trainer.TrainConfig.paper`)."""

    epochs: int = 40
    lr: float = 2e-3
    batch_size: int = 100
    patience: int = 40
    val_fraction: float = 0.1
    illumination: str = "tan_triggs"
    lr_schedule: str = "cosine"
    augment: float = 0.0
    seed: int = 0
    channels: str = "grey3"  # "grey3" (the paper) or "rgb"
    center_loss: float = 0.0  # weight of the cosine centre loss added to CE (0: CE only)
    loss: str = "classifier"  # identity loss: the network's own FC-K (the paper) or an arcface/cosface/softmax head
    batchnorm: bool = False  # BatchNorm after each conv and FC-128 while training, folded into the weights after
    margin: float | None = None  # arcface/cosface margin (None: the head's default, 0.5 / 0.35)
    denoise: str = "none"  # "median3" | "auto": median filter inside the preprocessing (training and inference)


def illumination_text(opts: TrainOptions) -> str:
    """``opts.illumination``, with the denoising step before it when there is one (recipe lines)."""
    return opts.illumination + ("" if opts.denoise == "none" else f" after {opts.denoise} denoising")


def objective_parts(opts: TrainOptions) -> list[str]:
    """The objective's non-default parts, for recipe lines: centre loss, margin head, BatchNorm."""
    parts = [f"centre loss {opts.center_loss}"] if opts.center_loss else []
    if opts.loss != "classifier":
        parts.append(f"loss {opts.loss}" + (f" (margin {opts.margin})" if opts.margin is not None else ""))
    if opts.batchnorm:
        parts.append("BatchNorm (folded)")
    return parts


def train_compressed(split, crops60: dict, cfg, *, progress: bool = False):
    """``(OnnxEncoder, training dict)`` for the split's gallery, trained now or loaded from the cache."""
    from hybridface.evaluation.splits import materialise
    from hybridface.models.card import load_card
    from hybridface.models.encoders import load_model
    from hybridface.models.preprocess import PreprocessSpec

    opts: TrainOptions = cfg.train
    spec = PreprocessSpec(input_size=60, channels=opts.channels, illumination=opts.illumination, denoise=opts.denoise)
    # ``channels`` and ``denoise`` are keyed through ``spec`` (kept out of the options so older cached models stay valid)
    # (``center_loss`` only when used, so models trained before it existed stay valid)
    # (likewise ``loss`` and ``batchnorm`` at their defaults)
    unkeyed = {"center_loss": 0.0, "loss": "classifier", "batchnorm": False, "margin": None}
    keyed = {k: v for k, v in asdict(opts).items() if k not in ("channels", "denoise") and not (k in unkeyed and v == unkeyed[k])}
    key = hashlib.sha256(json.dumps([split.key, keyed, spec.to_dict()], sort_keys=True).encode()).hexdigest()
    out = cfg.cache_dir / "models" / f"compressed-{key[:16]}"
    if (out / "model.json").is_file():
        log.info("reusing trained model %s", out)
        card, _ = load_card(out)
        return load_model(out), dict(card.training, cached=True)

    import time

    from hybridface.training.train import write_model_dir
    from hybridface.training.trainer import TrainConfig, train

    samples = [s for s in split.gallery if str(s.path) in crops60]
    images = materialise(samples, crops60)
    t0 = time.perf_counter()
    config = TrainConfig.paper(epochs=opts.epochs, lr=opts.lr, val_fraction=opts.val_fraction, seed=opts.seed,
                               batch_size=opts.batch_size, patience=opts.patience, preprocessing=spec,
                               progress=progress, schedule=opts.lr_schedule, threads=1,
                               augment="paper" if opts.augment else "none", augment_p=float(opts.augment),
                               center_loss=opts.center_loss, loss=opts.loss, batchnorm=opts.batchnorm,
                               margin=opts.margin)
    result = train(config, images, labels=[s.identity for s in samples], groups=[str(s.path) for s in samples])
    training = {
        "data": f"{split.protocol} gallery side ({len(samples)} images)",
        "seconds": round(time.perf_counter() - t0, 1),
        **{k: getattr(result, k) for k in ("num_train", "num_val", "val_accuracy", "train_accuracy", "best_epoch",
                                           "epochs_run")},
        **asdict(opts),
        "preprocessing": spec.to_dict(),
    }
    write_model_dir(result.net, out, spec, training)
    log.info("trained compressed model in %.0f s → %s", training["seconds"], out)
    return load_model(out), dict(training, cached=False)
