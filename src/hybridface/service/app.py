"""The REST service: a FastAPI app over the `hybridface.api` facade (no identification logic here).

``create_app(db_path, settings=ServiceSettings())`` opens the gallery (the facade rebuilds its
in-memory index from the SQLite store and follows changes made by other processes), checks API
keys on every ``/v1`` route, bounds uploads, pixels, faces and concurrent work, and answers
every error as ``{"error": {"code", "message"}}`` — never with a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridface import __version__
from hybridface.errors import ConfigError, HybridFaceError
from hybridface.options import DEFAULTS, STRATEGIES
from hybridface.service.auth import require
from hybridface.service.backend import GalleryService
from hybridface.service.limits import (
    BodyLimitMiddleware,
    ServiceSettings,
    check_identity_name,
)
from hybridface.service.metrics import Metrics, MetricsMiddleware
from hybridface.service.redact import client_message, install_log_redaction
from hybridface.service.schemas import (
    EnrolResult,
    ErrorBody,
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
    svc = GalleryService(Path(db_path), settings, model)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        svc.pool.shutdown()

    install_log_redaction()
    app = FastAPI(
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,  # Swagger UI loads its scripts from a CDN: opt-in
        redoc_url=None,
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
        if exc.http_status == 500:  # never SQLite's text, paths or reprs: the details are logged
            return _error(500, "internal", "internal server error; the details are in the server log")
        return _error(exc.http_status, exc.code, client_message(str(exc), svc.db_path), headers)

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
    @app.get("/health", response_model=Health, response_model_exclude_none=True, tags=["service"])
    async def health(request: Request) -> Health:
        """Liveness (no key needed); the gallery size too when a valid read key is sent."""
        token = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not token or not await svc.pool.run(svc.keys.authenticate, token.strip()):
            return Health(status="ok", version=__version__)
        n_ids, n_templates = await svc.pool.run(svc.counts)
        return Health(status="ok", version=__version__, identities=n_ids, templates=n_templates)

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
            description="never: each image is already a face crop; largest: detect and use the largest face")] = DEFAULTS.detect,
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
        # lower bounds and choices are SearchOptions' (one 422 line, the CLI's and Python's text);
        # the upper bounds here are service limits
        strategy: Annotated[str, Query(description=f"one of {', '.join(STRATEGIES)}")] = DEFAULTS.strategy,
        top_n: Annotated[int, Query(le=1000, description="identities kept by the LBG pre-filter")] = DEFAULTS.top_n,
        k: Annotated[int, Query(le=100, description="candidates returned per face")] = DEFAULTS.k,
        threshold: Annotated[float | None, Query(le=2.0, description="cosine distance beyond which "
                                                 "a face is unknown (default: the gallery's calibrated one)")] = None,
        detect: Annotated[Detect, Query(description="face detection per image (all: every face)")] = DEFAULTS.detect,
        cells: Annotated[int | None, Query(le=1 << 20, description="indexed/hybrid: coarse LBG cells over "
                                           "the identity codewords, for very large galleries (default off)")] = None,
        probe_cells: Annotated[int, Query(le=1 << 20, description="cells visited per probe "
                                          "(with cells; more = higher recall)")] = DEFAULTS.probe_cells,
    ) -> IdentifyResult:
        """Identify the faces of each uploaded image (the largest one by default; ``detect=all``: every face)."""
        options = settings.search_options().replace(strategy=strategy, top_n=top_n, k=k, threshold=threshold,
                                                    cells=cells, probe_cells=probe_cells)
        blobs = await _read_files(file, settings)
        return await svc.pool.run(svc.identify, blobs, options, detect)

    @app.post("/v1/verify", response_model=VerifyResult, dependencies=read, tags=["search"])
    async def verify(
        file: Files,
        threshold: Annotated[float | None, Query(ge=0.0, le=2.0)] = None,
        detect: Annotated[Detect, Query()] = DEFAULTS.detect,
    ) -> VerifyResult:
        """Are the faces in the two uploaded images the same person?"""
        blobs = await _read_files(file, settings)
        if len(blobs) != 2:
            raise ConfigError(f"verify needs exactly two files in the field 'file', got {len(blobs)}")
        return await svc.pool.run(svc.verify, blobs, threshold, detect)

    from hybridface.service.web import add_web

    add_web(app)  # the web page at /, /static, /v1/me, /v1/calibrate
    return app
