"""The facade every front end calls (CLI, REST service, evaluation): encoders, galleries, 1:N, 1:1.

``open_gallery(db)`` returns a :class:`Gallery` over a :class:`~hybridface.gallery.store.GalleryStore`.
The store is the truth: the in-memory `TemplateMatrix` and the searchers built on it are cached per
store revision (:mod:`hybridface.engines.cache`). Inputs are cropped and encoded by
:mod:`hybridface.prepare`; results are the frozen records of :mod:`hybridface.results`. Those
names are re-exported here, so ``from hybridface.api import ...`` keeps working for all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.engines.cache import ENGINES, STRATEGIES, SearcherCache
from hybridface.errors import ConfigError, ModelFileError, ModelMismatchError
from hybridface.gallery.calibration import Calibration, calibrate_threshold
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.gallery.store import GalleryStore
from hybridface.models.base import Encoder
from hybridface.prepare import (
    Prepared,
    as_vectors,
    crop_size,
    encode_crops,
    is_vectors,
    prepare_images,
    vector_hash,
)
from hybridface.results import EnrollReport, Identification, Verification

__all__ = [
    "ENGINES",
    "STRATEGIES",
    "Calibration",
    "EnrollReport",
    "Gallery",
    "Identification",
    "Prepared",
    "Verification",
    "as_vectors",
    "crop_size",
    "encode_crops",
    "gallery_encoder",
    "is_vectors",
    "load_encoder",
    "open_gallery",
    "prepare_images",
    "vector_hash",
    "verify",
]


def load_encoder(name_or_path: str | os.PathLike | None = None) -> Encoder:
    """The encoder of a model directory / ``.onnx`` file, or a zoo name (``paper``, ``dlib``, ...);
    ``None`` → the default: dlib when installed, else the shipped compressed model with one warning
    (:mod:`hybridface.models.default`)."""
    try:
        from hybridface.models.default import default_encoder
        from hybridface.models.encoders import load_model
        from hybridface.models.zoo import MODEL_NAMES, load_encoder as zoo_encoder
    except ImportError as exc:  # pragma: no cover - depends on the models package
        raise ModelFileError(f"cannot load encoders: {exc}") from exc
    if name_or_path is None:
        return default_encoder()
    if isinstance(name_or_path, str) and name_or_path in MODEL_NAMES:
        return zoo_encoder(name_or_path)
    return load_model(name_or_path)


def _check_threshold(t: float | None) -> float | None:
    if t is None:
        return None
    t = float(t)
    if not np.isfinite(t) or t < 0:
        raise ConfigError(f"threshold must be a finite distance >= 0, got {t}")
    return t


def _face_blobs(crops: Sequence[np.ndarray]) -> list[bytes]:
    from hybridface.gallery.faces import encode_face

    return [encode_face(c) for c in crops]


class Gallery:
    """A gallery file plus (lazily) its encoder; see :func:`open_gallery`."""

    def __init__(self, store: GalleryStore, encoder: Encoder | None = None, *,
                 model: str | os.PathLike | None = None) -> None:
        self.store = store
        self._encoder = encoder
        self._model = model
        self._searchers = SearcherCache(store)
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
        """The gallery's encoder (loaded on first use; must match the gallery's model).

        With no ``model`` a gallery that already has templates gets its own model back (dlib, a
        shipped model, or the model a fitted gallery records); an empty one gets the default."""
        if self._encoder is None:
            if self._model is None:
                from hybridface.models.default import encoder_for_gallery

                enc = encoder_for_gallery(self.store.model_id, model_path=self.model_path)
            else:
                enc = load_encoder(self._model)
            self.store.check_model(enc.model_id, enc.dim)
            self._encoder = enc
        return self._encoder

    @property
    def model_path(self) -> Path | None:
        """The model directory a fitted gallery records (``hybridface fit``), relative to the gallery."""
        rel = self.store.info("model_path")
        return None if rel is None else (self.path.parent / rel)

    def close(self) -> None:
        self._searchers.close()
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
    @property
    def keeps_faces(self) -> bool:
        """Whether enrolments keep their face crops (on unless ``set_keep_faces(False)``/``--no-keep-faces``)."""
        return self.store.info("keep_faces") != "0"

    def set_keep_faces(self, keep: bool) -> None:
        """Record in the gallery whether later enrolments keep face crops (for ``hybridface fit``)."""
        self.store.set_info("keep_faces", "1" if keep else "0")

    def enroll(self, identity: str, images: Sequence[Any] | np.ndarray, *, detect: str = "never",
               detector: str = "cascade", codewords: int | None = None,
               sources: Sequence[str] | None = None, keep_faces: bool | None = None) -> EnrollReport:
        """Crop, encode and store images of one identity in one transaction; bad files are skipped.

        ``keep_faces`` (default: the gallery's setting, on): also store each face crop, so
        ``hybridface fit`` can train the paper's network on this gallery."""
        if is_vectors(images):
            return self.enroll_vectors(identity, images, codewords=codewords, sources=sources)
        prepared = prepare_images(images, detect=detect, detector=detector, sources=sources,
                                  size=crop_size(self.encoder))
        good = [p for p in prepared if p.crop is not None]
        skipped = tuple((p.source, str(p.error)) for p in prepared if p.crop is None)
        if not good:
            return EnrollReport(str(identity), skipped=skipped)
        vecs = encode_crops(self.encoder, [p.crop for p in good])
        keep = self.keeps_faces if keep_faces is None else bool(keep_faces)
        res = self.store.add_templates(identity, vecs, [p.hash for p in good], model_id=self.encoder.model_id,
                                       sources=[p.source for p in good], codewords=codewords,
                                       faces=_face_blobs([p.crop for p in good]) if keep else None)
        return EnrollReport(res.identity, res.template_ids, res.duplicates, skipped)

    def enroll_vectors(self, identity: str, vectors: np.ndarray, *, model_id: str | None = None,
                       sources: Sequence[str] | None = None, hashes: Sequence[str] | None = None,
                       codewords: int | None = None, faces: Sequence[np.ndarray] | None = None) -> EnrollReport:
        """Store ready-made templates (``model_id`` defaults to the encoder's or the gallery's);
        ``faces``: the face crop (uint8 RGB) each template came from, kept for ``fit``."""
        if model_id is None:
            model_id = self._encoder.model_id if self._encoder is not None else self.store.model_id
        if model_id is None:
            raise ConfigError(f"gallery {self.path} has no model yet: pass model_id= with the first templates")
        v = as_vectors(vectors, self.store.dim, what=f"templates of {identity!r}")
        hashes = list(hashes) if hashes is not None else [vector_hash(x) for x in v]
        res = self.store.add_templates(identity, v, hashes, model_id=model_id, sources=sources, codewords=codewords,
                                       faces=_face_blobs(faces) if faces is not None else None)
        return EnrollReport(res.identity, res.template_ids, res.duplicates)

    # -- fit (the paper's network trained on this gallery's kept faces)
    def fit(self, out: str | os.PathLike, **options: Any) -> Gallery:
        """Train the paper's network on this gallery's kept faces and return the new gallery ``out``
        (options: :func:`hybridface.training.fit.fit_gallery`; `SelfCheckError` if it is worse)."""
        from hybridface.training.fit import fit_gallery

        fit_gallery(self.path, out, **options)
        return open_gallery(out)

    # -- search
    def matrix(self) -> TemplateMatrix:
        """The cached in-memory view, reloaded when the store changed."""
        return self._searchers.matrix()

    def searcher(self, strategy: str = "hybrid", *, top_n: int = 5, workers: int = 4, engine: str = "local",
                 address: str | None = None, cells: int | None = None, probe_cells: int = 16,
                 storage: str = "float32"):
        """The (cached) searcher of ``strategy`` over the current matrix.

        ``engine="ray"`` shards the gallery over Ray actors (``address``: an existing cluster's
        ``host:port``; ``None`` starts a local Ray). Its results index into ``searcher.names``.
        ``cells``: coarse LBG cells over the identity codewords (``indexed``/``hybrid``, for very
        large galleries; ``None`` = off), ``probe_cells`` of them visited per probe.
        ``storage``: ``"float32"`` | ``"int8"`` (``exhaustive`` only: see :meth:`identify`).
        """
        return self._searchers.searcher(strategy, top_n=top_n, workers=workers, engine=engine, address=address,
                                        cells=cells, probe_cells=probe_cells, storage=storage)

    def identify_vectors(self, vectors: np.ndarray, *, probes: Sequence[str] | None = None,
                         model_id: str | None = None, strategy: str = "hybrid", top_n: int = 5,
                         workers: int = 4, k: int = 5, threshold: float | None = None,
                         engine: str = "local", address: str | None = None, cells: int | None = None,
                         probe_cells: int = 16, storage: str = "float32") -> list[Identification]:
        """1:N search of templates; ``identity`` is ``None`` where the best distance exceeds the threshold."""
        if model_id is not None and self.store.model_id not in (None, model_id):
            self.store.check_model(model_id, self.store.dim or 0)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        threshold = _check_threshold(threshold if threshold is not None else self.threshold)
        m, searcher = self.searcher(strategy, top_n=top_n, workers=workers, engine=engine, address=address,
                                    cells=cells, probe_cells=probe_cells, storage=storage)
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
                 address: str | None = None, cells: int | None = None,
                 probe_cells: int = 16, storage: str = "float32") -> list[Identification]:
        """1:N identification of images (or template vectors): one `Identification` per input, in order.

        ``engine="ray"``: search sharded over Ray actors (``address`` = ``host:port`` of a running
        cluster, ``None`` = a local Ray); same answers as ``engine="local"``.
        ``cells`` (``indexed``/``hybrid``, default off): group the identity codewords into that many
        coarse LBG cells and compare each probe only with the codewords of its ``probe_cells``
        nearest cells — for very large galleries; approximate like the shortlist, re-ranking exact.
        ``storage="int8"`` (``exhaustive`` only; the others ignore it): also keep int8 codes of the
        templates (+27 % memory) and answer k = 1 searches of few probes from them, reading 4x fewer
        bytes — answers identical to ``"float32"`` (needs Numba).
        """
        opts = dict(strategy=strategy, top_n=top_n, workers=workers, k=k, threshold=threshold, engine=engine,
                    address=address, cells=cells, probe_cells=probe_cells, storage=storage)
        if is_vectors(images):
            return self.identify_vectors(images, **opts)
        # fail fast on an empty gallery, bad search options or an unreachable cluster
        self.searcher(strategy, top_n=top_n, workers=workers, engine=engine, address=address, cells=cells,
                      probe_cells=probe_cells, storage=storage)
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


def gallery_encoder(db: str | os.PathLike, *, model: str | os.PathLike | None = None) -> Encoder:
    """The encoder to use with gallery ``db``: ``model`` if given, else the gallery's own (or the default)."""
    with open_gallery(db, model=model, readonly=True) as g:
        return g.encoder


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
