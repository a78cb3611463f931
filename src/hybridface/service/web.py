"""The service's web page and the two small routes it needs beyond the core ``/v1`` API.

``add_web(app)`` serves ``/`` (``static/index.html``) and ``/static/*`` (plain files shipped in the
package: no CDN, no build step) and adds ``GET /v1/me`` (the calling key's name and scope, so the
page can offer only what the key may do) and ``POST /v1/calibrate`` (admin: the open-set threshold
from the gallery's own templates at a target false-accept rate, stored in the gallery).
The page talks to the service only through ``fetch`` on the ``/v1`` routes; the API key is sent
in the ``X-API-Key`` header and kept in the browser's session storage, never in a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from hybridface.errors import EmptyGalleryError
from hybridface.gallery.calibration import Calibration
from hybridface.gallery.keys import ApiKey
from hybridface.service.auth import require

__all__ = ["STATIC_DIR", "add_web"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: No caching surprises after an upgrade, and the page may not be framed by another site.
_PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                            "style-src 'self'; script-src 'self'; frame-ancestors 'none'"}


class Me(BaseModel):
    name: str
    scope: str


def _calibrate(svc, far: float) -> Calibration:
    g = svc.gallery()
    m = g.matrix()
    if len(m.vectors) == 0:
        raise EmptyGalleryError(f"gallery {g.path} has no templates to calibrate on: enrol people first")
    labels = [m.names[int(i)] for i in m.labels]
    return g.calibrate(m.vectors, labels, target_far=far, store=True)


def add_web(app: FastAPI) -> None:
    """Add the web page, ``/v1/me`` and ``/v1/calibrate`` to the service ``app``."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    @router.get("/v1/me", response_model=Me, tags=["service"])
    def me(key: Annotated[ApiKey, Depends(require("read"))]) -> Me:
        """The calling API key's name and scope (read < write < admin)."""
        return Me(name=key.name, scope=key.scope)

    @router.post("/v1/calibrate", response_model=Calibration, tags=["identities"],
                 dependencies=[Depends(require("admin"))])
    async def calibrate(request: Request, far: Annotated[float, Query(gt=0.0, lt=1.0, description=(
            "target false-accept rate over the gallery's impostor pairs"))] = 0.01) -> Calibration:
        """Set the open-set threshold from the gallery's own templates (needs 2+ identities with 2+ each)."""
        svc = request.app.state.service
        return await svc.pool.run(_calibrate, svc, far)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
