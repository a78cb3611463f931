"""The facade every front end calls (CLI, REST service, evaluation): encoders, galleries, 1:N, 1:1.

``open_gallery(db)`` returns a :class:`Gallery` over a :class:`~hybridface.gallery.store.GalleryStore`.
The store is the truth: the in-memory `TemplateMatrix` and the searchers built on it are cached and
rebuilt whenever the store's revision counter moved (a write from this or any other process).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import (
    ConfigError,
    EmptyGalleryError,
    HybridFaceError,
    ImageDecodeError,
    ModelFileError,
    ModelMismatchError,
    NoFaceError,
)
from hybridface.gallery.calibration import Calibration, calibrate_threshold
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.gallery.store import GalleryStore
from hybridface.models.base import Encoder, l2_normalize

log = logging.getLogger(__name__)

STRATEGIES = ("exhaustive", "indexed", "parallel", "hybrid")
ENGINES = ("local", "ray")
_ENCODE_BATCH = 512


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EnrollReport:
    """What one `Gallery.enroll` did: templates added, duplicates ignored, files skipped (with why)."""

    identity: str
    template_ids: tuple[int, ...] = ()
    duplicates: int = 0
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def added(self) -> int:
        return len(self.template_ids)


@dataclass(frozen=True)
class Identification:
    """The answer for one probe. ``identity`` is ``None`` when unknown (over the threshold) or on error."""

    probe: str
    identity: str | None
    distance: float | None
    candidates: tuple[tuple[str, float], ...] = ()
    status: str = "ok"  # ok | no_face | error
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI and the service."""
        return {
            "probe": self.probe,
            "identity": self.identity,
            "distance": self.distance,
            "candidates": [[n, d] for n, d in self.candidates],
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class Verification:
    """1:1 answer: cosine distance between two faces and the same/different decision."""

    a: str
    b: str
    distance: float
    threshold: float
    same: bool


@dataclass(frozen=True)
class Prepared:
    """One input image after cropping: source name, content hash, 60x60 crop or the error."""

    source: str
    hash: str
    crop: np.ndarray | None = None
    error: HybridFaceError | None = None

    @property
    def status(self) -> str:
        if self.error is None:
            return "ok"
        return "no_face" if isinstance(self.error, NoFaceError) else "error"


# ---------------------------------------------------------------------------- helpers
def load_encoder(name_or_path: str | os.PathLike | None = None) -> Encoder:
    """The encoder of a model directory / ``.onnx`` file, or a zoo name (``paper``, ``dlib``, ...);
    ``None`` → the shipped default model."""
    try:
        from hybridface.models.encoders import load_model
        from hybridface.models.zoo import MODEL_NAMES, load_encoder as zoo_encoder
    except ImportError as exc:  # pragma: no cover - depends on the models package
        raise ModelFileError(f"cannot load encoders: {exc}") from exc
    if isinstance(name_or_path, str) and name_or_path in MODEL_NAMES:
        return zoo_encoder(name_or_path)
    return load_model(name_or_path)


def is_vectors(x: Any) -> bool:
    """True when ``x`` is a float array of templates (1-D or 2-D) rather than images."""
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim in (1, 2)


def _check_finite_rows(vectors: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise ConfigError(f"{what} {bad[:5].tolist()} contain NaN or infinite values")


def as_vectors(vectors: Any, dim: int | None = None, *, what: str = "probe vectors") -> np.ndarray:
    """Validate a template batch: 2-D float, finite, ``dim`` columns; returns unit float32 rows."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        raise ModelMismatchError(f"{what} have shape {v.shape}, expected (n, {dim}) for this gallery/model")
    _check_finite_rows(v, what)
    return l2_normalize(v)


def vector_hash(vector: np.ndarray) -> str:
    return "v:" + hashlib.sha256(np.asarray(vector, "<f4").tobytes()).hexdigest()


def crop_size(encoder: Encoder) -> int:
    """Side of the square face crop an encoder wants (its input height; 60 for the paper's network)."""
    return int(getattr(encoder, "input_size", (60, 60))[0])


def prepare_images(images: Sequence[Any] | np.ndarray, *, detect: str = "never", detector: str = "cascade",
                   sources: Sequence[str] | None = None, size: int = 60) -> list[Prepared]:
    """Crop each image (path, encoded bytes or uint8 array) to ``size`` x ``size``; bad inputs
    become `Prepared` entries with ``error`` set, never an exception."""
    from hybridface.faces.crop import extract_faces

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (str, Path, bytes, np.ndarray)):
        images = [images]
    if detect not in ("never", "always", "largest"):
        raise ConfigError(f"detect={detect!r}: use never, always or largest")
    out: list[Prepared] = []
    for i, img in enumerate(images):
        if isinstance(img, (str, Path)):
            name = str(img)
        elif isinstance(img, (bytes, bytearray)):
            name = f"<bytes #{i}>"
        else:
            name = f"<array #{i}>"
        if sources is not None:
            name = str(sources[i])
        try:
            if isinstance(img, (str, Path)):
                try:
                    data = Path(img).read_bytes()
                except OSError as exc:
                    raise ImageDecodeError(f"{img}: cannot read file ({exc.strerror or exc})") from exc
            elif isinstance(img, (bytes, bytearray)):
                data = bytes(img)
            elif isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim in (2, 3):
                data = None
            else:
                raise ImageDecodeError(f"{name}: not an image (give a path, encoded bytes or a uint8 HxWx3 array)")
            digest = hashlib.sha256(data if data is not None else
                                    repr(img.shape).encode() + np.ascontiguousarray(img).tobytes()).hexdigest()
            src = img if isinstance(img, (str, Path)) else (data if data is not None else img)
            crop = extract_faces(src, detect=detect, detector=detector, size=size, source=name)[0]
            out.append(Prepared(name, digest, crop.image))
        except HybridFaceError as exc:
            log.debug("skipping %s: %s", name, exc)
            out.append(Prepared(name, "", None, exc))
    return out


def encode_crops(encoder: Encoder, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Encode 60x60 crops in batches into ``(n, dim)`` unit float32 templates."""
    if not crops:
        return np.zeros((0, encoder.dim), np.float32)
    parts = [encoder.encode(np.stack(crops[i:i + _ENCODE_BATCH])) for i in range(0, len(crops), _ENCODE_BATCH)]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _check_threshold(t: float | None) -> float | None:
    if t is None:
        return None
    t = float(t)
    if not np.isfinite(t) or t < 0:
        raise ConfigError(f"threshold must be a finite distance >= 0, got {t}")
    return t


def _make_searcher(strategy: str, matrix: TemplateMatrix, *, top_n: int, workers: int, engine: str,
                   address: str | None = None):
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if engine == "local" and address is not None:
        raise ConfigError("address only applies to engine='ray' (--engine ray --address HOST:PORT)")
    if engine == "local":
        from hybridface.search import make_searcher

        return make_searcher(strategy, matrix, top_n=top_n, workers=workers)
    if engine == "ray":
        # Hook: the Ray engine (hybridface.engines.ray) shards the matrix over Ray actors.
        import importlib.util

        if importlib.util.find_spec("hybridface.engines.ray") is None:
            raise ConfigError("engine 'ray' not available (hybridface.engines.ray is not installed); use engine='local'")
        from hybridface.engines.local import make_engine

        return make_engine("ray", matrix, strategy=strategy, top_n=top_n, workers=workers, address=address)
    raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


# ---------------------------------------------------------------------------- the gallery
@dataclass
class _Cache:
    revision: int = -1
    matrix: TemplateMatrix | None = None
    searchers: dict = field(default_factory=dict)


class Gallery:
    """A gallery file plus (lazily) its encoder; see :func:`open_gallery`."""

    def __init__(self, store: GalleryStore, encoder: Encoder | None = None, *,
                 model: str | os.PathLike | None = None) -> None:
        self.store = store
        self._encoder = encoder
        self._model = model
        self._cache = _Cache()
        self._lock = threading.RLock()
        if encoder is not None:
            store.check_model(encoder.model_id, encoder.dim)

    # -- basics
    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def threshold(self) -> float | None:
        return self.store.threshold

    @property
    def encoder(self) -> Encoder:
        """The gallery's encoder (loaded on first use; must match the gallery's model)."""
        if self._encoder is None:
            enc = load_encoder(self._model)
            self.store.check_model(enc.model_id, enc.dim)
            self._encoder = enc
        return self._encoder

    def _close_searchers(self, searchers: dict | None = None) -> None:
        """Release searchers that hold resources (thread pools, Ray actors) before they are dropped."""
        searchers = self._cache.searchers if searchers is None else searchers
        for searcher in searchers.values():
            close = getattr(searcher, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # a failing shutdown must not hide the caller's result
                    log.warning("closing searcher %r failed: %s", searcher, exc)
        searchers.clear()

    def close(self) -> None:
        with self._lock:
            self._close_searchers()
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def identities(self) -> list[tuple[str, int]]:
        """``(name, template count)`` per identity."""
        return self.store.identities()

    def remove(self, name: str) -> int:
        return self.store.remove_identity(name)

    def rename(self, old: str, new: str) -> None:
        self.store.rename_identity(old, new)

    def remove_template(self, template_id: int) -> str:
        return self.store.remove_template(template_id)

    # -- enrolment
    def enroll(self, identity: str, images: Sequence[Any] | np.ndarray, *, detect: str = "never",
               detector: str = "cascade", codewords: int | None = None,
               sources: Sequence[str] | None = None) -> EnrollReport:
        """Crop, encode and store images of one identity in one transaction; bad files are skipped."""
        if is_vectors(images):
            return self.enroll_vectors(identity, images, codewords=codewords, sources=sources)
        prepared = prepare_images(images, detect=detect, detector=detector, sources=sources,
                                  size=crop_size(self.encoder))
        good = [p for p in prepared if p.crop is not None]
        skipped = tuple((p.source, str(p.error)) for p in prepared if p.crop is None)
        if not good:
            return EnrollReport(str(identity), skipped=skipped)
        vecs = encode_crops(self.encoder, [p.crop for p in good])
        res = self.store.add_templates(identity, vecs, [p.hash for p in good], model_id=self.encoder.model_id,
                                       sources=[p.source for p in good], codewords=codewords)
        return EnrollReport(res.identity, res.template_ids, res.duplicates, skipped)

    def enroll_vectors(self, identity: str, vectors: np.ndarray, *, model_id: str | None = None,
                       sources: Sequence[str] | None = None, hashes: Sequence[str] | None = None,
                       codewords: int | None = None) -> EnrollReport:
        """Store ready-made templates (``model_id`` defaults to the encoder's or the gallery's)."""
        if model_id is None:
            model_id = self._encoder.model_id if self._encoder is not None else self.store.model_id
        if model_id is None:
            raise ConfigError(f"gallery {self.path} has no model yet: pass model_id= with the first templates")
        v = as_vectors(vectors, self.store.dim, what=f"templates of {identity!r}")
        hashes = list(hashes) if hashes is not None else [vector_hash(x) for x in v]
        res = self.store.add_templates(identity, v, hashes, model_id=model_id, sources=sources, codewords=codewords)
        return EnrollReport(res.identity, res.template_ids, res.duplicates)

    # -- search
    def matrix(self) -> TemplateMatrix:
        """The cached in-memory view, reloaded when the store changed."""
        with self._lock:
            rev = self.store.revision()
            if self._cache.matrix is None or rev != self._cache.revision:
                old = self._cache
                self._cache = _Cache(*self.store.snapshot())
                self._cache.searchers = self._carry_engines(old, self._cache.matrix)
            return self._cache.matrix  # type: ignore[return-value]

    def _carry_engines(self, old: _Cache, new: TemplateMatrix | None) -> dict:
        """Keep live Ray engines in step with the store (routed add/remove); close every other searcher.

        Local searchers are rebuilt on demand (cheap); a Ray engine would re-ship every shard and
        restart every actor, so only the changed identities are sent to their owning shards.
        """
        kept: dict = {}
        if old.matrix is not None and new is not None:
            from hybridface.engines.sync import sync_engine

            for key, searcher in list(old.searchers.items()):
                if key[3] != "ray":
                    continue
                try:
                    if sync_engine(searcher, old.matrix, new):
                        kept[key] = old.searchers.pop(key)
                except HybridFaceError as exc:  # fall back to a rebuild on next use
                    log.warning("could not update the Ray engine in place (%s); rebuilding it", exc)
        self._close_searchers(old.searchers)
        return kept

    def searcher(self, strategy: str = "hybrid", *, top_n: int = 5, workers: int = 4, engine: str = "local",
                 address: str | None = None):
        """The (cached) searcher of ``strategy`` over the current matrix.

        ``engine="ray"`` shards the gallery over Ray actors (``address``: an existing cluster's
        ``host:port``; ``None`` starts a local Ray). Its results index into ``searcher.names``.
        """
        if int(top_n) < 1 or int(workers) < 1:
            raise ConfigError(f"top_n and workers must be >= 1, got top_n={top_n}, workers={workers}")
        with self._lock:
            m = self.matrix()
            if m.num_templates == 0:
                raise EmptyGalleryError(f"gallery {self.path} has no templates; enrol some first (hybridface enroll)")
            key = (strategy, int(top_n), int(workers), engine, address)
            if key not in self._cache.searchers:
                self._cache.searchers[key] = _make_searcher(strategy, m, top_n=int(top_n), workers=int(workers),
                                                            engine=engine, address=address)
            return m, self._cache.searchers[key]

    def identify_vectors(self, vectors: np.ndarray, *, probes: Sequence[str] | None = None,
                         model_id: str | None = None, strategy: str = "hybrid", top_n: int = 5,
                         workers: int = 4, k: int = 5, threshold: float | None = None,
                         engine: str = "local", address: str | None = None) -> list[Identification]:
        """1:N search of templates; ``identity`` is ``None`` where the best distance exceeds the threshold."""
        if model_id is not None and self.store.model_id not in (None, model_id):
            self.store.check_model(model_id, self.store.dim or 0)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        threshold = _check_threshold(threshold if threshold is not None else self.threshold)
        m, searcher = self.searcher(strategy, top_n=top_n, workers=workers, engine=engine, address=address)
        v = as_vectors(vectors, m.dim)
        names = list(probes) if probes is not None else [f"#{i}" for i in range(len(v))]
        if len(names) != len(v):
            raise ConfigError(f"{len(v)} probe vectors but {len(names)} probe names")
        # a kept-in-step engine (Ray) has its own identity order: read it under the engine's lock,
        # so a concurrent store edit cannot shift it between the search and the mapping
        with getattr(searcher, "lock", None) or contextlib.nullcontext():
            res = searcher.search(v, k=int(k))
            index_names = getattr(searcher, "names", m.names)
        out = []
        for i in range(len(v)):
            cands = tuple((index_names[int(j)], float(d)) for j, d in zip(res.identities[i], res.distances[i]) if j >= 0)
            best = cands[0] if cands else (None, None)
            known = best[0] is not None and (threshold is None or best[1] <= threshold)
            out.append(Identification(names[i], best[0] if known else None, best[1], cands))
        return out

    def identify(self, images: Sequence[Any] | np.ndarray, *, strategy: str = "hybrid", top_n: int = 5,
                 workers: int = 4, k: int = 5, threshold: float | None = None, detect: str = "never",
                 detector: str = "cascade", engine: str = "local",
                 address: str | None = None) -> list[Identification]:
        """1:N identification of images (or template vectors): one `Identification` per input, in order.

        ``engine="ray"``: search sharded over Ray actors (``address`` = ``host:port`` of a running
        cluster, ``None`` = a local Ray); same answers as ``engine="local"``.
        """
        opts = dict(strategy=strategy, top_n=top_n, workers=workers, k=k, threshold=threshold, engine=engine,
                    address=address)
        if is_vectors(images):
            return self.identify_vectors(images, **opts)
        # fail fast on an empty gallery or an unreachable cluster
        self.searcher(strategy, top_n=top_n, workers=workers, engine=engine, address=address)
        prepared = prepare_images(images, detect=detect, detector=detector, size=crop_size(self.encoder))
        good = [p for p in prepared if p.crop is not None]
        found = iter(self.identify_vectors(encode_crops(self.encoder, [p.crop for p in good]),
                                           probes=[p.source for p in good], **opts) if good else [])
        return [next(found) if p.crop is not None else
                Identification(p.source, None, None, (), p.status, str(p.error)) for p in prepared]

    # -- open set
    def calibrate(self, items: Sequence[Any] | np.ndarray, labels: Sequence[str], *, target_far: float = 0.01,
                  detect: str = "never", detector: str = "cascade", store: bool = True,
                  max_samples: int = 3000, seed: int = 0) -> Calibration:
        """Threshold with false-accept rate <= ``target_far`` on all pairs of a labelled set; stored in the gallery."""
        if is_vectors(items):
            v = as_vectors(items, self.store.dim, what="calibration vectors")
            lab = list(labels)
        else:
            prepared = prepare_images(items, detect=detect, detector=detector, size=crop_size(self.encoder))
            keep = [i for i, p in enumerate(prepared) if p.crop is not None]
            v = encode_crops(self.encoder, [prepared[i].crop for i in keep])
            lab = [labels[i] for i in keep]
        cal = calibrate_threshold(v, lab, target_far=target_far, max_samples=max_samples, seed=seed)
        if store:
            self.store.set_threshold(cal.threshold)
        return cal


def open_gallery(db: str | os.PathLike, *, encoder: Encoder | None = None, model: str | os.PathLike | None = None,
                 create: bool = False, readonly: bool = False, timeout: float = 30.0) -> Gallery:
    """Open (or with ``create=True`` create) a gallery file; ``encoder``/``model`` must match its model id."""
    return Gallery(GalleryStore(db, create=create, readonly=readonly, timeout=timeout), encoder, model=model)


def verify(a: Any, b: Any, *, encoder: Encoder | None = None, threshold: float | None = None,
           detect: str = "never", detector: str = "cascade") -> Verification:
    """1:1: are ``a`` and ``b`` (images or template vectors) the same person?"""
    threshold = _check_threshold(threshold)
    if threshold is None:
        raise ConfigError("verify needs a threshold: pass --threshold T, or --db of a calibrated gallery")
    vecs, names = [], []
    for i, x in enumerate((a, b)):
        if is_vectors(x):
            vecs.append(as_vectors(x, what="vector")[0])
            names.append(f"<vector #{i}>")
            continue
        encoder = encoder or load_encoder(None)
        p = prepare_images([x], detect=detect, detector=detector, size=crop_size(encoder))[0]
        if p.error is not None:
            raise p.error
        vecs.append(encode_crops(encoder, [p.crop])[0])
        names.append(p.source)
    if vecs[0].shape != vecs[1].shape:
        raise ModelMismatchError(f"cannot compare a {vecs[0].shape[0]}-D with a {vecs[1].shape[0]}-D template")
    dist = float(max(0.0, 1.0 - float(vecs[0] @ vecs[1])))
    return Verification(names[0], names[1], dist, threshold, dist <= threshold)
