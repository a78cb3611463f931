"""Train the compressed VGGFace network as in the paper and write a model directory.

The loop is :func:`hybridface.training.trainer.train` with :meth:`~hybridface.training.trainer.TrainConfig.paper`:
softmax cross-entropy over the training identities, Adam (lr 1e-4 by default; the authors'
graph used 1e-3), batch 100, no dropout, no weight decay, fixed seeds, a stratified held-out
validation split (by source image, so augmented copies never straddle it), early stopping on
validation accuracy. Images are loaded and cropped once into a uint8 array. The model directory
(``model.onnx`` + ``model.json``) is written to a temporary folder and renamed into place, so a
failed or interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.cache import replace_dir
from hybridface.errors import ConfigError, DatasetError
from hybridface.models.preprocess import PreprocessSpec
from hybridface.training.trainer import TrainConfig, train

__all__ = ["TrainReport", "train_model", "train_sources", "write_model_dir", "load_samples"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainReport:
    """Outcome of a training run (also summarised in the model card's ``training``)."""

    out_dir: Path
    model_id: str
    val_accuracy: float | None
    train_accuracy: float
    best_epoch: int
    epochs_run: int
    num_train: int
    num_val: int
    identities: tuple[str, ...]
    onnx_bytes: int
    seconds: float
    skipped: tuple[tuple[str, str], ...] = ()
    history: tuple[dict[str, float], ...] = field(default=(), repr=False)


def _sample_fields(s: Any) -> tuple[Any, str, int]:
    """(source, identity, variant) from a protocol ``Sample`` or a ``(source, identity[, variant])`` tuple."""
    if hasattr(s, "identity") and hasattr(s, "path"):
        return s.path, str(s.identity), int(getattr(s, "variant", 0) or 0)
    if isinstance(s, (tuple, list)) and len(s) in (2, 3):
        return s[0], str(s[1]), int(s[2]) if len(s) == 3 else 0
    raise ConfigError(f"a training sample must be (image_or_path, identity[, variant]) or a Sample, got {s!r}")


def load_samples(samples: Sequence[Any], *, detect: str = "never", size: int = 60, seed: int = 0,
                 progress: bool = False) -> tuple[np.ndarray, list[str], list[str], list[tuple[str, str]]]:
    """Load samples once → ``(images uint8 (n,S,S,3), identities, group keys, skipped [(path, reason)])``.

    Each unique path is read and cropped once; a sample with ``variant > 0`` is that crop passed
    through :func:`hybridface.faces.augment.augment`. Group keys (the source path) keep augmented
    copies of one image on the same side of the validation split.
    """
    from hybridface.models.data import load_faces

    rows = [_sample_fields(s) for s in samples]
    if not rows:
        raise DatasetError("no training samples: the dataset (or protocol gallery) is empty")
    paths = sorted({str(src) for src, _, _ in rows if isinstance(src, (str, Path))})
    crops: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    if paths:
        imgs, kept, errors = load_faces(paths, detect=detect, size=size, progress=progress)
        crops = {paths[i]: imgs[j] for j, i in enumerate(kept)}
        skipped = [(p, str(e)) for p, e in errors]
        for p, why in skipped:
            log.warning("skipped %s", why if why.startswith(p) else f"{p}: {why}")
    images: list[np.ndarray] = []
    ids: list[str] = []
    groups: list[str] = []
    augment = None
    for k, (src, ident, variant) in enumerate(rows):
        if isinstance(src, (str, Path)):
            img = crops.get(str(src))
            if img is None:
                continue
            key = str(src)
        else:
            img = preprocess_uint8(np.asarray(src), size)
            key = f"#array{k}"
        if variant:
            if augment is None:
                from hybridface.faces.augment import augment
            img = augment(img, variant, seed=seed)
        images.append(img)
        ids.append(ident)
        groups.append(key)
    if not images:
        raise DatasetError(f"none of the {len(rows)} training images could be read (first problem: "
                           f"{skipped[0][1] if skipped else 'none'})")
    return np.ascontiguousarray(np.stack(images)), ids, groups, skipped


def preprocess_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """An in-memory image → ``(size, size, 3)`` uint8 RGB (grey replicated, resized INTER_AREA)."""
    import cv2

    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ConfigError(f"in-memory training images must be uint8 (H, W[, 3]), got {img.dtype} {img.shape}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def write_model_dir(net, out_dir: Path, spec: PreprocessSpec, training: dict[str, Any]) -> tuple[str, int]:
    """Write ``model.onnx`` + ``model.json`` to a temp dir beside ``out_dir`` and rename it into place."""
    from hybridface.models.card import MODEL_STEM, ModelCard, library_versions, sha256_file, write_card
    from hybridface.models.compressed import FEATURE_DIM
    from hybridface.training.export import INPUT_NAME, OUTPUT_NAME, export_onnx

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / f"{MODEL_STEM}.json").is_file():
        raise ConfigError(f"--out {out_dir} is a non-empty folder that is not a model directory; choose another path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        onnx_path = tmp / f"{MODEL_STEM}.onnx"
        size = export_onnx(net, onnx_path, input_size=spec.input_size)
        card = ModelCard(model_id=sha256_file(onnx_path), onnx_file=onnx_path.name, input_size=spec.input_size,
                         embedding_dim=FEATURE_DIM, preprocessing=spec.to_dict(), precision="fp32",
                         input_name=INPUT_NAME, output_name=OUTPUT_NAME, training=training,
                         versions=library_versions())
        write_card(card, tmp / f"{MODEL_STEM}.json")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card.model_id, size


def train_model(samples: Sequence[Any], *, out_dir: str | Path, detect: str = "never",
                data_description: str = "", **options: Any) -> TrainReport:
    """Train on ``samples`` and write the model directory ``out_dir``; return a :class:`TrainReport`.

    ``samples``: protocol ``Sample`` objects (``path``, ``identity``, ``variant``) or tuples
    ``(path_or_uint8_image, identity[, variant])``. Unreadable files are reported and skipped.
    ``options``: ``epochs, lr, val_fraction, seed, batch_size, patience, preprocessing,
    augment_on_the_fly, progress`` (see :func:`train_sources`).
    """
    return train_sources([(samples, detect, "")], out_dir=out_dir, data_description=data_description, **options)


def train_sources(sources: Sequence[tuple[Sequence[Any], str, str]], *, out_dir: str | Path, epochs: int = 100,
                  lr: float = 1e-4, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 100,
                  patience: int = 15, preprocessing: PreprocessSpec | None = None,
                  augment_on_the_fly: float = 0.0, data_description: str = "",
                  progress: bool = True, threads: int | None = None, lr_schedule: str = "constant") -> TrainReport:
    """Train on several datasets at once: ``sources`` = ``[(samples, detect, prefix), ...]``.

    Each source is loaded with its own face-detection policy; identities are prefixed with
    ``prefix + "/"`` when ``prefix`` is non-empty (so ``s1`` of two datasets stay apart).
    """
    t0 = time.perf_counter()
    spec = preprocessing or PreprocessSpec()
    parts, ids, groups, skipped = [], [], [], []
    for samples, detect, prefix in sources:
        imgs, i, g, sk = load_samples(samples, detect=detect, size=spec.input_size, seed=seed, progress=progress)
        parts.append(imgs)
        ids += [f"{prefix}/{x}" if prefix else x for x in i]
        groups += g
        skipped += sk
    images = np.concatenate(parts) if len(parts) > 1 else parts[0]
    log.info("training on %d images of %d identities (%d files skipped)", len(images), len(set(ids)), len(skipped))
    config = TrainConfig.paper(epochs=epochs, lr=lr, val_fraction=val_fraction, seed=seed, batch_size=batch_size,
                               patience=patience, preprocessing=spec, augment="paper" if augment_on_the_fly else "none",
                               augment_p=float(augment_on_the_fly), progress=progress, threads=threads,
                               schedule=lr_schedule)
    result = train(config, images, labels=ids, groups=groups)
    detects = sorted({d for _, d, _ in sources})
    training = {
        "data": data_description, "identities": list(result.identities), "num_train": result.num_train,
        "num_val": result.num_val, "val_accuracy": result.val_accuracy, "train_accuracy": result.train_accuracy,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "epochs": epochs, "lr": lr,
        "lr_schedule": lr_schedule,
        "batch_size": batch_size, "patience": patience, "val_fraction": val_fraction, "seed": seed,
        "detect": detects[0] if len(detects) == 1 else detects, "augment_on_the_fly": float(augment_on_the_fly),
        "skipped_files": len(skipped),
        "optimizer": "Adam(beta1=0.9, beta2=0.999, eps=1e-8), no weight decay, no dropout",
    }
    model_id, size = write_model_dir(result.net, Path(out_dir), spec, training)
    return TrainReport(
        out_dir=Path(out_dir), model_id=model_id, val_accuracy=result.val_accuracy,
        train_accuracy=result.train_accuracy, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
        num_train=result.num_train, num_val=result.num_val, identities=result.identities, onnx_bytes=size,
        seconds=time.perf_counter() - t0, skipped=tuple(skipped), history=result.history,
    )
