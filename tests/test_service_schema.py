"""Property-based API tests from the service's own OpenAPI document: no 5xx on generated input."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from hybridface.gallery.keys import KeyStore
from hybridface.service.app import create_app
from hybridface.service.limits import ServiceSettings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app_and_key(tmp_path_factory):
    db = tmp_path_factory.mktemp("schema") / "g.db"
    app = create_app(db, settings=ServiceSettings(max_upload_bytes=256 * 1024, workers=1))
    _, key = KeyStore(db).create("fuzzer", scope="admin")
    return app, key


def test_no_server_errors(app_and_key):
    """Every operation, examples generated from the OpenAPI document, called with an admin key."""
    app, key = app_and_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen = []
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(headers={"X-API-Key": key})
            assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                                response.text[:300])
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message"}

        check()
    assert len(seen) == 12, seen  # 10 core routes + /v1/me and /v1/calibrate (service/web.py)


def test_openapi_document_lists_every_route(app_and_key):
    app, _ = app_and_key
    paths = app.openapi()["paths"]
    assert set(paths) >= {"/v1/identities", "/v1/identities/{name}", "/v1/identities/{name}/faces",
                          "/v1/identities/{name}/faces/{template_id}", "/v1/identify", "/v1/verify",
                          "/health", "/metrics", "/v1/me", "/v1/calibrate"}
    schemes = app.openapi()["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
