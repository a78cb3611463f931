"""API-key authentication for the service: ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.

No key, an unknown key or a revoked key → 401; a valid key whose scope is below the route's
(read < write < admin) → 403. Keys are checked against `hybridface.gallery.keys.KeyStore` on
every request, so a revocation takes effect at once, in every server process.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from hybridface.errors import HybridFaceError
from hybridface.gallery.keys import SCOPES, ApiKey, KeyStore

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


class UnauthorizedError(HybridFaceError):
    """No API key, or one that is unknown or revoked."""

    http_status = 401
    code = "unauthorized"


class ForbiddenError(HybridFaceError):
    """A valid API key whose scope is too low for the route."""

    http_status = 403
    code = "forbidden"


def authenticate(keys: KeyStore, header_key: str | None, bearer: str | None, scope: str) -> ApiKey:
    """Return the key record allowed to use a ``scope`` route, or raise 401/403."""
    token = header_key or bearer
    if not token:
        raise UnauthorizedError("missing API key; send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'")
    record = keys.authenticate(token)
    if record is None:
        raise UnauthorizedError("invalid or revoked API key; ask an admin for a new one (hybridface keys create)")
    if not record.allows(scope):
        raise ForbiddenError(f"API key {record.name!r} has scope {record.scope!r}; this route needs {scope!r}")
    return record


def require(scope: str) -> Callable[..., ApiKey]:
    """A FastAPI dependency admitting keys whose scope is at least ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(
        request: Request,
        header_key: str | None = Depends(_api_key_header),
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> ApiKey:
        keys: KeyStore = request.app.state.keys
        return authenticate(keys, header_key, bearer.credentials if bearer else None, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency
