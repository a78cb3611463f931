"""The facade every front end calls (CLI, REST service, evaluation): encoders, galleries, 1:N, 1:1.

    import hybridface as hf
    g = hf.open_gallery("people.db", create=True)
    g.enroll_folder("people/")                 # <identity>/<images>, faces detected
    r = g.identify("probe.jpg")                # one input -> one result; a list -> a list
    print(r.identity, r.distance)

``open_gallery(db)`` returns a :class:`Gallery` over a :class:`~hybridface.gallery.store.GalleryStore`.
The store is the truth: the in-memory `TemplateMatrix` and the searchers built on it are cached per
store revision (:mod:`hybridface.engines.cache`). Inputs are cropped and encoded by
:mod:`hybridface.prepare`; results are the frozen records of :mod:`hybridface.results`. Defaults come from :data:`hybridface.options.DEFAULTS`; search settings travel as one
:class:`~hybridface.options.SearchOptions`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.engines.cache import SearcherCache
from hybridface.errors import ConfigError, ModelFileError, ModelMismatchError
from hybridface.gallery.calibration import Calibration, calibrate_threshold
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.gallery.store import GalleryStore
from hybridface.models.base import Encoder
from hybridface.options import DEFAULTS, SearchOptions, check_threshold, search_options
from hybridface.prepare import as_vectors, crop_size, encode_crops, is_vectors, prepare_images, vector_hash
from hybridface.results import EnrollReport, Identification, Verification

__all__ = ["Gallery", "SearchOptions", "load_encoder", "open_gallery", "verify"]


def _is_single(x: Any) -> bool:
    """One input (a path, encoded bytes, one image array or one template vector), not a batch."""
    if isinstance(x, (str, os.PathLike, bytes, bytearray)):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim == 1 if x.dtype.kind == "f" else x.ndim in (2, 3)
    return False


def load_encoder(name_or_path: str | os.PathLike | None = None) -> Encoder:
    """The encoder of a model directory / ``.onnx`` file, or a zoo name (``paper``, ``dlib``, ...);
    ``None`` → ``DEFAULTS.model``; when that is ``None`` too, the default: dlib when installed, else
    the shipped compressed model with one warning (:mod:`hybridface.models.default`)."""
    if name_or_path is None:
        name_or_path = DEFAULTS.model
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


def _check_model(store: GalleryStore, encoder: Encoder, model: str | os.PathLike | None) -> None:
    """`GalleryStore.check_model`, its error naming both models rather than their hashes."""
    try:
        store.check_model(encoder.model_id, encoder.dim)
    except ModelMismatchError as exc:
        from hybridface.models.naming import model_label, shipped_name

        have = store.model_id
        used = f"--model {model}" if model is not None else "the default model"
        fix = f"--model {shipped_name(have)}" if shipped_name(have) else "the model it was built with"
        raise ModelMismatchError(
            f"gallery {store.path} was built with {model_label(have)} ({store.dim}-D templates), but {used} is "
            f"{model_label(encoder.model_id)} ({encoder.dim}-D); use {fix}, or enrol into a new gallery"
        ) from exc


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
            _check_model(store, encoder, model)

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
            _check_model(self.store, enc, self._model)
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

    def enroll(self, identity: str, images: Sequence[Any] | np.ndarray, *, detect: str = DEFAULTS.detect,
               detector: str = DEFAULTS.detector, codewords: int | str | None = None,
               sources: Sequence[str] | None = None, keep_faces: bool | None = None) -> EnrollReport:
        """Crop, encode and store images of one identity in one transaction; bad files are skipped.

        ``detect="largest"`` (default) finds the largest face of each photo; ``"never"`` takes
        each image as a ready face crop. ``keep_faces`` (default: the gallery's setting, on): also store each face crop, so
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

    def enroll_folder(self, folder: str | os.PathLike, *, detect: str = DEFAULTS.detect,
                      detector: str = DEFAULTS.detector, codewords: int | str | None = None,
                      keep_faces: bool | None = None, progress: bool = False, engine: str = DEFAULTS.engine,
                      address: str | None = None) -> list[EnrollReport]:
        """Enrol ``folder/<identity>/<images>``: one transaction and one `EnrollReport` per identity
        (``keep_faces`` as in `enroll`; ``progress``: a progress bar per identity on stderr).
        ``engine="ray"``: crop and encode in Ray tasks on the cluster at ``address``
        (:mod:`hybridface.enroll`), same gallery contents."""
        if engine == "ray":
            from hybridface.enroll import enroll_folder_ray

            return enroll_folder_ray(self, folder, model=self._model, address=address, detect=detect,
                                     detector=detector, codewords=codewords,
                                     keep_faces=self.keeps_faces if keep_faces is None else bool(keep_faces))
        if engine != "local":
            raise ConfigError(f"engine={engine!r} is not valid; use one of local, ray")
        from tqdm import tqdm

        from hybridface.gallery.names import name_problem
        from hybridface.protocols.dataset import scan_dataset

        scan = scan_dataset(folder, check="none")
        people = [(name, list(paths)) for name, paths in sorted(scan.identities.items()) if paths]
        # A folder whose name breaks the identity-name rule is reported, never renamed or merged.
        bad = [EnrollReport(name, skipped=((str(Path(folder) / name),
                                            f"folder skipped: identity name {ascii(name)} {problem}"),))
               for name, _ in people if (problem := name_problem(name)) is not None]
        people = [(name, paths) for name, paths in people if name_problem(name) is None]
        return bad + [self.enroll(name, paths, detect=detect, detector=detector, codewords=codewords,
                                  keep_faces=keep_faces)
                      for name, paths in tqdm(people, desc="enrol", unit="id", disable=not progress)]

    def enroll_vectors(self, identity: str, vectors: np.ndarray, *, model_id: str | None = None,
                       sources: Sequence[str] | None = None, hashes: Sequence[str] | None = None,
                       codewords: int | str | None = None, faces: Sequence[np.ndarray] | None = None) -> EnrollReport:
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

    def searcher(self, options: SearchOptions | None = None, **search: Any) -> tuple[TemplateMatrix, Any]:
        """``(matrix, searcher)``: the current matrix and the cached searcher over it.

        ``options`` (default: :data:`~hybridface.options.DEFAULTS`) with any `SearchOptions` field
        given as a keyword on top (``strategy="exhaustive"``, ``cells=1024``, ``engine="ray"``...).
        Result identity ``i`` of the searcher is ``searcher.names[i]`` for a Ray engine and
        ``matrix.names[i]`` otherwise.
        """
        return self._searchers.searcher(search_options(options, **search))

    def identify_vectors(self, vectors: np.ndarray, *, probes: Sequence[str] | None = None,
                         model_id: str | None = None, options: SearchOptions | None = None,
                         **search: Any) -> list[Identification]:
        """1:N search of templates ``(n, d)``; ``identity`` is ``None`` where the best distance
        exceeds the threshold. ``options``/``search``: as in :meth:`searcher`."""
        opts = search_options(options, **search)
        if model_id is not None and self.store.model_id not in (None, model_id):
            self.store.check_model(model_id, self.store.dim or 0)
        threshold = opts.threshold if opts.threshold is not None else check_threshold(self.threshold)
        m, searcher = self._searchers.searcher(opts)
        v = as_vectors(vectors, m.dim)
        names = list(probes) if probes is not None else [f"#{i}" for i in range(len(v))]
        if len(names) != len(v):
            raise ConfigError(f"{len(v)} probe vectors but {len(names)} probe names")
        # a kept-in-step engine (Ray) has its own identity order: read it under the engine's lock,
        # so a concurrent store edit cannot shift it between the search and the mapping
        with getattr(searcher, "lock", None) or contextlib.nullcontext():
            res = searcher.search(v, k=opts.k)
            index_names = getattr(searcher, "names", m.names)
        out = []
        for i in range(len(v)):
            cands = tuple((index_names[int(j)], float(d)) for j, d in zip(res.identities[i], res.distances[i]) if j >= 0)
            best = cands[0] if cands else (None, None)
            known = best[0] is not None and (threshold is None or best[1] <= threshold)
            out.append(Identification(names[i], best[0] if known else None, best[1], cands))
        return out

    def identify(self, images: Any, *, options: SearchOptions | None = None, detect: str = DEFAULTS.detect,
                 detector: str = DEFAULTS.detector, **search: Any) -> Identification | list[Identification]:
        """1:N identification: one input (path, bytes, image array, template vector) gives one
        `Identification`; a list (or a batch array) gives one per input, in order.

        Search settings: ``options`` (a `SearchOptions`) and/or its fields as keywords, e.g.
        ``strategy="exhaustive"``, ``k=1``, ``threshold=0.4``; ``cells``/``probe_cells`` for very
        large galleries, ``storage="int8"`` (exhaustive), ``engine="ray"`` (``address=host:port``).
        A bad value is an `OptionError` before any image is read. ``detect``: ``largest``
        (default) finds the largest face of each photo, ``never`` takes inputs as face crops.
        """
        opts = search_options(options, **search)
        if _is_single(images):
            batch = images[None] if is_vectors(images) else [images]
            return self.identify(batch, options=opts, detect=detect, detector=detector)[0]
        if is_vectors(images):
            return self.identify_vectors(images, options=opts)
        # fail fast on an empty gallery or an unreachable cluster
        self._searchers.searcher(opts)
        prepared = prepare_images(images, detect=detect, detector=detector, size=crop_size(self.encoder))
        good = [p for p in prepared if p.crop is not None]
        found = iter(self.identify_vectors(encode_crops(self.encoder, [p.crop for p in good]),
                                           probes=[p.source for p in good], options=opts) if good else [])
        return [next(found) if p.crop is not None else
                Identification(p.source, None, None, (), p.status, str(p.error)) for p in prepared]

    # -- video
    def watch(self, source: str | int | os.PathLike, **options: Any):
        """Identify the faces of a video file, camera index, stream URL or folder of frames: returns a
        :class:`hybridface.watch.Watch` whose iteration yields ``track_start``/``identified``/``track_end``
        events (options: see :func:`hybridface.watch.watch`)."""
        from hybridface.watch import watch

        return watch(self, source, **options)

    # -- open set
    def calibrate(self, items: Sequence[Any] | np.ndarray, labels: Sequence[str], *, target_far: float = 0.01,
                  detect: str = DEFAULTS.detect, detector: str = DEFAULTS.detector, store: bool = True,
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
           detect: str = DEFAULTS.detect, detector: str = DEFAULTS.detector) -> Verification:
    """1:1: are ``a`` and ``b`` (images or template vectors) the same person?"""
    threshold = check_threshold(threshold)
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
