"""The REST service: a FastAPI app over the `hybridface.api` facade (no identification logic here).

``create_app(db_path, settings=ServiceSettings())`` opens the gallery (the facade rebuilds its
in-memory index from the SQLite store and follows changes made by other processes), checks API
keys on every ``/v1`` route, bounds uploads, pixels, faces and concurrent work, and answers
every error as ``{"error": {"code", "message"}}`` — never with a stack trace.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridface import __version__
from hybridface.errors import ConfigError, HybridFaceError, ImageDecodeError, UnknownIdentityError
from hybridface.gallery.keys import KeyStore
from hybridface.service.auth import require
from hybridface.service.limits import (
    BodyLimitMiddleware,
    ConflictError,
    ServiceSettings,
    TooManyFacesError,
    WorkerPool,
    check_identity_name,
)
from hybridface.service.metrics import Metrics, MetricsMiddleware
from hybridface.service.schemas import (
    Candidate,
    EnrolResult,
    ErrorBody,
    FaceResult,
    Health,
    IdentifyResult,
    IdentityDetail,
    IdentityList,
    IdentitySummary,
    Removed,
    RenameBody,
    VerifyResult,
)

log = logging.getLogger(__name__)

Strategy = Literal["exhaustive", "indexed", "parallel", "hybrid"]
Detect = Literal["never", "largest", "all"]
NamePath = Annotated[str, PathParam(min_length=1, max_length=128, description="identity name")]
Files = Annotated[list[UploadFile], File(description="image file(s); repeat the field for a batch")]


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (401, 403, 413, 422, 503, 504)
}


# ---------------------------------------------------------------------------------- helpers
def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
               413: "payload_too_large", 415: "unsupported_media_type"}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


class _Service:
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
        api.open_gallery(db_path, model=model, create=True).close()  # creates / validates the file
        if settings.storage == "int8":  # no Numba: fail at startup, not on the first exhaustive search
            from hybridface.search.quantized import load_int8_kernel

            load_int8_kernel()
        self.keys = KeyStore(db_path)
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
    def decode(self, blobs: list[tuple[str, bytes]]) -> list[Any]:
        from hybridface.faces.io import load_image

        images = []
        for name, data in blobs:
            try:
                images.append(load_image(data, max_pixels=self.settings.max_pixels))
            except HybridFaceError as exc:
                # load_image names "<bytes>"; name the upload instead.
                raise type(exc)(str(exc).replace("<bytes>", repr(name))) from exc
        return images

    def faces(self, blobs: list[tuple[str, bytes]], detect: str) -> list[tuple[int, str, Any]]:
        """Decode every upload and crop its faces: ``(file index, file name, FaceCrop)`` each."""
        from hybridface.faces.crop import extract_faces

        out = []
        for i, ((name, _), image) in enumerate(zip(blobs, self.decode(blobs))):
            crops = extract_faces(image, detect=detect, source=name)
            if len(crops) > self.settings.max_faces:
                raise TooManyFacesError(
                    f"{name!r} holds {len(crops)} faces, more than the limit of {self.settings.max_faces}; "
                    "crop the image or send the faces separately"
                )
            out.extend((i, name, c) for c in crops)
        return out

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

    def identify(self, blobs: list[tuple[str, bytes]], strategy: str, top_n: int, k: int,
                 threshold: float | None, detect: str, cells: int | None = None,
                 probe_cells: int = 16) -> IdentifyResult:
        faces = self.faces(blobs, detect)
        gallery = self.gallery(encode=True)
        found = gallery.identify([c.image for _, _, c in faces], strategy=strategy, top_n=top_n, k=k,
                                 threshold=threshold, detect="never", engine=self.settings.engine,
                                 address=self.settings.ray_address, workers=self.settings.search_workers,
                                 cells=cells, probe_cells=probe_cells,
                                 storage=self.settings.storage) if faces else []
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
        used = threshold if threshold is not None else gallery.threshold
        return IdentifyResult(results=results, threshold=used, strategy=strategy)

    def verify(self, blobs: list[tuple[str, bytes]], threshold: float | None, detect: str) -> VerifyResult:
        from hybridface import api

        faces = self.faces(blobs, detect)
        if len(faces) != 2:
            raise ConfigError(f"verify needs one face in each of the two images, found {len(faces)} faces")
        if threshold is None:
            threshold = self.gallery().threshold
        v = api.verify(faces[0][2].image, faces[1][2].image, encoder=self._load_encoder(), threshold=threshold)
        return VerifyResult(same=bool(v.same), distance=float(v.distance), threshold=float(v.threshold))


# ---------------------------------------------------------------------------------- the app
async def _read_files(files: list[UploadFile], settings: ServiceSettings) -> list[tuple[str, bytes]]:
    if not files:
        raise ConfigError("send at least one image in the multipart field 'file'")
    if len(files) > settings.max_files:
        raise ConfigError(f"{len(files)} files in one request; the limit is {settings.max_files}")
    blobs = []
    for i, f in enumerate(files):
        name = (f.filename or f"file{i}")[:200]
        blobs.append((name, await f.read()))
    return blobs


def create_app(db_path: str | Path, *, settings: ServiceSettings | None = None,
               model: str | Path | None = None) -> FastAPI:
    """The service for the gallery file ``db_path`` (created empty if missing).

    ``model`` is a model directory or ``.onnx`` file (default: the shipped model); it must match
    the gallery's model id.
    """
    settings = settings or ServiceSettings()
    svc = _Service(Path(db_path), settings, model)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        svc.pool.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="hybridface",
        version=__version__,
        description="1:N face identification service. Every /v1 route needs an API key "
        "(X-API-Key or Authorization: Bearer); scopes read < write < admin.",
        responses=_ERRORS,
    )
    app.state.keys = svc.keys
    app.state.service = svc
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ error mapping
    @app.exception_handler(HybridFaceError)
    async def _hybridface_error(request: Request, exc: HybridFaceError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {"Retry-After": "1"} if exc.http_status == 503 else None
        if exc.http_status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return _error(exc.http_status, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _error(exc.status_code, code, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, "internal", "internal server error; the details are in the server log")

    # ------------------------------------------------------------------ public routes
    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Liveness and gallery size (no key needed)."""
        ids = svc.gallery().identities()
        return Health(status="ok", version=__version__, identities=len(ids),
                      templates=sum(int(n) for _, n in ids))

    metrics_deps = [] if settings.public_metrics else [Depends(require("read"))]

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"], dependencies=metrics_deps)
    def get_metrics() -> PlainTextResponse:
        """Request counts and latency histograms (Prometheus text format)."""
        text = metrics.render({
            "hybridface_worker_jobs": ("Jobs admitted to the worker pool and not yet finished.",
                                       float(svc.pool.pending)),
        })
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    read = [Depends(require("read"))]
    write = [Depends(require("write"))]
    admin = [Depends(require("admin"))]

    # ------------------------------------------------------------------ identities
    @app.get("/v1/identities", response_model=IdentityList, dependencies=read, tags=["identities"])
    async def list_identities() -> IdentityList:
        ids = await svc.pool.run(lambda: svc.gallery().identities())
        return IdentityList(identities=[IdentitySummary(name=n, templates=int(c)) for n, c in ids],
                            templates=sum(int(c) for _, c in ids))

    @app.get("/v1/identities/{name}", response_model=IdentityDetail, dependencies=read, tags=["identities"],
             responses={404: {"model": ErrorBody}})
    async def get_identity(name: NamePath) -> IdentityDetail:
        check_identity_name(name)
        ids = await svc.pool.run(svc.template_ids, name)
        return IdentityDetail(name=name, templates=len(ids), template_ids=ids)

    @app.post("/v1/identities/{name}/faces", response_model=EnrolResult, status_code=201, dependencies=write,
              tags=["identities"])
    async def enrol(
        name: NamePath,
        file: Files,
        detect: Annotated[Literal["never", "largest"], Query(
            description="never: each image is already a face crop; largest: detect and use the largest face")] = "largest",
    ) -> EnrolResult:
        """Enrol the face in each uploaded image under ``name`` (committed before the answer)."""
        check_identity_name(name)
        blobs = await _read_files(file, settings)
        return await svc.pool.run(svc.enrol, name, blobs, detect)

    @app.patch("/v1/identities/{name}", response_model=IdentityDetail, dependencies=write, tags=["identities"],
               responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
    async def rename_identity(name: NamePath, body: RenameBody) -> IdentityDetail:
        check_identity_name(name)
        check_identity_name(body.name)
        ids = await svc.pool.run(svc.rename, name, body.name)
        return IdentityDetail(name=body.name, templates=len(ids), template_ids=ids)

    @app.delete("/v1/identities/{name}", response_model=Removed, dependencies=admin, tags=["identities"],
                responses={404: {"model": ErrorBody}})
    async def remove_identity(name: NamePath) -> Removed:
        check_identity_name(name)
        n = await svc.pool.run(svc.remove, name)
        return Removed(identity=name, templates_removed=n)

    @app.delete("/v1/identities/{name}/faces/{template_id}", response_model=Removed, dependencies=write,
                tags=["identities"], responses={404: {"model": ErrorBody}})
    async def remove_face(name: NamePath, template_id: Annotated[int, PathParam(ge=0, le=2**62)]) -> Removed:
        check_identity_name(name)
        await svc.pool.run(svc.remove_template, name, template_id)
        return Removed(identity=name, templates_removed=1)

    # ------------------------------------------------------------------ search
    @app.post("/v1/identify", response_model=IdentifyResult, dependencies=read, tags=["search"],
              responses={409: {"model": ErrorBody}})
    async def identify(
        file: Files,
        strategy: Annotated[Strategy, Query()] = "exhaustive",
        top_n: Annotated[int, Query(ge=1, le=1000, description="identities kept by the LBG pre-filter")] = 5,
        k: Annotated[int, Query(ge=1, le=100, description="candidates returned per face")] = 5,
        threshold: Annotated[float | None, Query(ge=0.0, le=2.0, description="cosine distance beyond which "
                                                 "a face is unknown (default: the gallery's calibrated one)")] = None,
        detect: Annotated[Detect, Query(description="face detection per image")] = "all",
        cells: Annotated[int | None, Query(ge=1, le=1 << 20, description="indexed/hybrid: coarse LBG cells over "
                                           "the identity codewords, for very large galleries (default off)")] = None,
        probe_cells: Annotated[int, Query(ge=1, le=1 << 20, description="cells visited per probe "
                                          "(with cells; more = higher recall)")] = 16,
    ) -> IdentifyResult:
        """Identify every face found in each uploaded image."""
        blobs = await _read_files(file, settings)
        return await svc.pool.run(svc.identify, blobs, strategy, top_n, k, threshold, detect, cells, probe_cells)

    @app.post("/v1/verify", response_model=VerifyResult, dependencies=read, tags=["search"])
    async def verify(
        file: Files,
        threshold: Annotated[float | None, Query(ge=0.0, le=2.0)] = None,
        detect: Annotated[Detect, Query()] = "largest",
    ) -> VerifyResult:
        """Are the faces in the two uploaded images the same person?"""
        blobs = await _read_files(file, settings)
        if len(blobs) != 2:
            raise ConfigError(f"verify needs exactly two files in the field 'file', got {len(blobs)}")
        return await svc.pool.run(svc.verify, blobs, threshold, detect)

    return app
