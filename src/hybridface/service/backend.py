"""The service's back end: one facade `Gallery` per thread over the gallery file, and the work
each route runs in the worker pool (decoding within the pixel budget, enrolment, search)."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any


from hybridface.errors import ConfigError, HybridFaceError, ImageDecodeError, UnknownIdentityError
from hybridface.gallery.keys import KeyStore
from hybridface.options import DEFAULTS, SearchOptions
from hybridface.service.limits import (
    ConflictError,
    ServiceSettings,
    TooManyFacesError,
    WorkerPool,
)
from hybridface.service.pixels import PixelBudget, request_pixels
from hybridface.service.schemas import (
    Candidate,
    EnrolResult,
    FaceResult,
    IdentifyResult,
    VerifyResult,
)

log = logging.getLogger(__name__)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


class GalleryService:
    """Per-app state: the key store, the worker pool, and one facade `Gallery` per thread.

    The store's SQLite connection belongs to the thread that opened it, so every thread gets
    its own `Gallery` over the same file (sharing one encoder). Each one rebuilds its matrix
    from the store whenever the store's revision counter moved, whichever process wrote.
    """

    def __init__(self, db_path: Path, settings: ServiceSettings, model: str | Path | None = None) -> None:
        from hybridface import api

        self.db_path = db_path
        self.settings = settings
        self.model = model
        self._local = threading.local()
        self._encoder_lock = threading.Lock()
        self._encoder: Any = None
        # Start-up checks, before the server listens: the file opens (and passes its integrity
        # check) and its model is the one this server encodes with.
        with api.open_gallery(db_path, model=model, create=True) as g:
            self._encoder = g.encoder  # the gallery's own model unless --model; a mismatch stops here
        if settings.storage == "int8":  # no Numba: fail at startup, not on the first exhaustive search
            from hybridface.search.int8 import load_int8_kernel

            load_int8_kernel()
        self.keys = KeyStore(db_path)
        self.pixels = PixelBudget(settings.max_server_pixels)
        self.pool = WorkerPool(
            workers=settings.workers,
            queue_size=settings.queue_size,
            queue_timeout_s=settings.queue_timeout_s,
            request_timeout_s=settings.request_timeout_s,
        )

    def _load_encoder(self) -> Any:
        """The one encoder every thread's gallery shares (loaded on first use)."""
        with self._encoder_lock:
            if self._encoder is None:
                from hybridface import api

                self._encoder = api.gallery_encoder(self.db_path, model=self.model)
        return self._encoder

    def gallery(self, *, encode: bool = False) -> Any:
        """This thread's `hybridface.api.Gallery`; with ``encode=True`` one that has the encoder."""
        from hybridface import api

        enc = self._load_encoder() if encode else self._encoder
        g = getattr(self._local, "gallery", None)
        if g is None or (enc is not None and getattr(self._local, "encoder", None) is not enc):
            if g is not None:
                g.close()
            g = api.open_gallery(self.db_path, encoder=enc, model=self.model)
            self._local.gallery, self._local.encoder = g, enc
        return g

    # All methods below run on worker threads.
    def faces(self, blobs: list[tuple[str, bytes]], detect: str) -> list[tuple[int, str, Any]]:
        """Crop the faces of every upload: ``(file index, file name, FaceCrop)`` each.

        The request's pixel total is checked from the headers first; then one image at a time
        is decoded (holding its pixels of the server's budget), cropped and dropped.
        """
        from hybridface.faces.crop import extract_faces
        from hybridface.faces.io import load_image

        sizes = request_pixels(blobs, budget=self.settings.max_request_pixels, max_pixels=self.settings.max_pixels)
        out = []
        for i, ((name, data), pixels) in enumerate(zip(blobs, sizes)):
            held = self.pixels.acquire(pixels, timeout=self.settings.queue_timeout_s)
            try:
                try:
                    image = load_image(data, max_pixels=self.settings.max_pixels)
                except HybridFaceError as exc:
                    # load_image names "<bytes>"; name the upload instead.
                    raise type(exc)(str(exc).replace("<bytes>", repr(name))) from exc
                crops = extract_faces(image, detect=detect, detector=DEFAULTS.service_detector, source=name)
                del image
            finally:
                self.pixels.release(held)
            if len(crops) > self.settings.max_faces:
                raise TooManyFacesError(
                    f"{name!r} holds {len(crops)} faces, more than the limit of {self.settings.max_faces}; "
                    "crop the image or send the faces separately"
                )
            out.extend((i, name, c) for c in crops)
        return out

    def counts(self) -> tuple[int, int]:
        """``(identities, templates)`` of the gallery, from two count queries."""
        store = self.gallery().store
        return store.num_identities(), store.num_templates()

    def template_ids(self, name: str) -> list[int]:
        return [int(t[0]) for t in self.gallery().store.templates(name)]

    def enrol(self, name: str, blobs: list[tuple[str, bytes]], detect: str) -> EnrolResult:
        faces = self.faces(blobs, detect)
        report = self.gallery(encode=True).enroll(name, [c.image for _, _, c in faces], detect="never",
                                     sources=[f"upload:{n}" for _, n, _ in faces])
        if report.skipped:  # cannot happen for decoded crops; never hide it if it does
            raise ImageDecodeError("; ".join(f"{src}: {why}" for src, why in report.skipped))
        return EnrolResult(identity=name, template_ids=list(report.template_ids), duplicates=report.duplicates,
                           templates=len(self.template_ids(name)))

    def rename(self, old: str, new: str) -> list[int]:
        if old != new and new in {n for n, _ in self.gallery().identities()}:
            raise ConflictError(f"an identity named {new!r} already exists; remove it or pick another name")
        self.gallery().rename(old, new)
        return self.template_ids(new)

    def remove(self, name: str) -> int:
        return int(self.gallery().remove(name))

    def remove_template(self, name: str, template_id: int) -> None:
        if template_id not in self.template_ids(name):
            raise UnknownIdentityError(f"identity {name!r} has no face (template) with id {template_id}")
        self.gallery().remove_template(template_id)

    def identify(self, blobs: list[tuple[str, bytes]], options: SearchOptions, detect: str) -> IdentifyResult:
        faces = self.faces(blobs, detect)
        gallery = self.gallery(encode=True)
        found = gallery.identify([c.image for _, _, c in faces], options=options,
                                 detect="never") if faces else []
        results = []
        counts: dict[int, int] = {}
        for (i, name, crop), ident in zip(faces, found):
            if ident.status != "ok":
                raise ImageDecodeError(f"{name!r}: {ident.error}")
            j = counts[i] = counts.get(i, -1) + 1
            results.append(FaceResult(
                file=i, filename=name, face=j,
                box=[int(v) for v in crop.box] if crop.box is not None else None,
                identity=ident.identity, distance=None if ident.distance is None else _finite(ident.distance),
                unknown=ident.identity is None,
                candidates=[Candidate(identity=n, distance=float(d)) for n, d in ident.candidates if math.isfinite(d)],
            ))
        used = options.threshold if options.threshold is not None else gallery.threshold
        return IdentifyResult(results=results, threshold=used, strategy=options.strategy)

    def verify(self, blobs: list[tuple[str, bytes]], threshold: float | None, detect: str) -> VerifyResult:
        from hybridface import api

        faces = self.faces(blobs, detect)
        if len(faces) != 2:
            raise ConfigError(f"verify needs one face in each of the two images, found {len(faces)} faces")
        if threshold is None:
            threshold = self.gallery().threshold
        v = api.verify(faces[0][2].image, faces[1][2].image, encoder=self._load_encoder(), threshold=threshold,
                       detect="never")
        return VerifyResult(same=bool(v.same), distance=float(v.distance), threshold=float(v.threshold))


# ---------------------------------------------------------------------------------- the app
