"""Security of the live service: keys and scopes on every route, hostile names and bodies."""

from __future__ import annotations

import socket

import httpx
import pytest

from hybridface.gallery.keys import KeyStore

from service_server import HOST, Server, model_args, png_bytes

pytestmark = pytest.mark.timeout(120)

#: (method, path, needed scope) for every keyed route.
ROUTES = [
    ("GET", "/v1/identities", "read"),
    ("GET", "/v1/identities/alice", "read"),
    ("POST", "/v1/identities/alice/faces", "write"),
    ("PATCH", "/v1/identities/alice", "write"),
    ("DELETE", "/v1/identities/alice", "admin"),
    ("DELETE", "/v1/identities/alice/faces/1", "write"),
    ("POST", "/v1/identify", "read"),
    ("POST", "/v1/verify", "read"),
    ("GET", "/metrics", "read"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("sec") / "g.db"
    ks = KeyStore(db, create=True)
    keys = {scope: ks.create(f"k-{scope}", scope=scope)[1] for scope in ("read", "write", "admin")}
    keys["revoked"] = ks.create("k-old", scope="admin")[1]
    ks.revoke("k-old")
    server = Server(db, "--max-upload-mb", "1", "--workers-pool", "1", *model_args())
    yield server, keys
    server.stop()
    assert "Traceback" not in server.log()


def _call(server, method, path, key=None, bearer=False):
    headers = {}
    if key:
        headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
    kwargs = {}
    if method == "POST":
        kwargs["files"] = [("file", ("a.png", png_bytes(0), "image/png"))]
        if path.endswith("verify"):
            kwargs["files"].append(("file", ("b.png", png_bytes(1), "image/png")))
    if method == "PATCH":
        kwargs["json"] = {"name": "bob"}
    params = {"detect": "never"} if method == "POST" else None
    return httpx.request(method, server.url + path, headers=headers, params=params, timeout=30, **kwargs)


def _assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"] and "Traceback" not in r.text
    if code:
        assert body["error"]["code"] == code


@pytest.mark.parametrize("method,path,scope", ROUTES)
def test_every_route_needs_a_valid_key(live, method, path, scope):
    server, keys = live
    _assert_error(_call(server, method, path), 401, "unauthorized")
    _assert_error(_call(server, method, path, "hfk_deadbeef_" + "A" * 43), 401, "unauthorized")
    _assert_error(_call(server, method, path, keys["revoked"]), 401, "unauthorized")
    _assert_error(_call(server, method, path, keys["revoked"], bearer=True), 401, "unauthorized")
    order = ["read", "write", "admin"]
    for have in order:
        r = _call(server, method, path, keys[have], bearer=have == "write")
        if order.index(have) < order.index(scope):
            _assert_error(r, 403, "forbidden")
        else:
            assert r.status_code not in (401, 403), r.text


def test_health_needs_no_key_and_metrics_count(live):
    server, keys = live
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    m = httpx.get(server.url + "/metrics", headers={"X-API-Key": keys["read"]})
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'hybridface_http_requests_total{method="GET",route="/health",status="200"}' in m.text
    assert "hybridface_http_request_duration_seconds_bucket" in m.text


@pytest.mark.parametrize("name", ["..", ".", "a\\b", "tab\there", "nul\x00", "x" * 129, " padded"])
def test_hostile_identity_names(live, name):
    server, keys = live
    from urllib.parse import quote

    path = "/v1/identities/" + quote(name, safe="")
    r = httpx.post(server.url + path + "/faces", headers={"X-API-Key": keys["write"]},
                   files=[("file", ("a.png", png_bytes(0), "image/png"))], timeout=30)
    # the client normalises "." and ".." away, leaving a path no route matches
    assert r.status_code in ((404, 405) if name in (".", "..") else (422,)), r.text
    _assert_error(r, r.status_code)
    r = httpx.patch(server.url + "/v1/identities/alice", headers={"X-API-Key": keys["write"]},
                    json={"name": name}, timeout=30)
    _assert_error(r, 422)


def test_path_separators_never_reach_a_route(live):
    server, keys = live
    for raw in ("/v1/identities/a%2Fb/faces", "/v1/identities/../../etc/passwd", "/v1/identities/a/b/faces"):
        r = httpx.post(server.url + raw, headers={"X-API-Key": keys["write"]},
                       files=[("file", ("a.png", png_bytes(0), "image/png"))], timeout=30)
        assert r.status_code in (404, 405, 422), (raw, r.status_code)
        assert r.json()["error"]["code"]
    # raw requests keep literal dot segments: the name ".." itself is refused
    for raw in ("/v1/identities/..", "/v1/identities/%2e%2e", "/v1/identities/..%2F..%2Fetc"):
        head = (f"GET {raw} HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {keys['read']}\r\n"
                "Connection: close\r\n\r\n").encode()
        resp = _raw(server, head)
        assert resp.split(b" ")[1] in (b"404", b"422"), (raw, resp[:300])
        assert b'"error"' in resp
    # nothing got enrolled
    ids = httpx.get(server.url + "/v1/identities", headers={"X-API-Key": keys["read"]}).json()
    assert all("/" not in i["name"] and ".." not in i["name"] for i in ids["identities"])


def _raw(server, head: bytes, body_chunks=(), chunked=False) -> bytes:
    with socket.create_connection((HOST, server.port), timeout=30) as s:
        s.sendall(head)
        try:
            for c in body_chunks:
                s.sendall((b"%x\r\n" % len(c) + c + b"\r\n") if chunked else c)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def test_oversized_upload_by_content_length(live):
    server, keys = live
    head = (f"POST /v1/identify HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {keys['read']}\r\n"
            "Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 50000000\r\n\r\n").encode()
    resp = _raw(server, head, [b"--xx\r\n"])
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"payload_too_large"' in resp


def test_oversized_upload_streamed_without_length(live):
    server, keys = live
    head = (f"POST /v1/identify HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {keys['read']}\r\n"
            "Content-Type: multipart/form-data; boundary=xx\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = (b'--xx\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    resp = _raw(server, head, [part] + [b"\0" * 65536] * 20, chunked=True)  # 1.3 MB > 1 MB limit
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"payload_too_large"' in resp
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.parametrize("body,ctype", [
    (b"not multipart at all", "multipart/form-data; boundary=xx"),
    (b"--xx\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc", "multipart/form-data; boundary=xx"),
    (b"--xx\r\n\r\n\r\n--xx--\r\n", "multipart/form-data; boundary=xx"),
    (b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n", "multipart/form-data"),
    (b'{"file": "x"}', "application/json"),
    (b"", "multipart/form-data; boundary=xx"),
    (b"--xx\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nabc\r\n--xx--\r\n",
     "multipart/form-data; boundary=xx"),
])
def test_malformed_multipart_is_a_4xx(live, body, ctype):
    server, keys = live
    r = httpx.post(server.url + "/v1/identify", content=body, timeout=30,
                   headers={"X-API-Key": keys["read"], "Content-Type": ctype})
    assert 400 <= r.status_code < 500, r.text
    _assert_error(r, r.status_code)


def test_too_many_files(live):
    server, keys = live
    files = [("file", (f"{i}.png", png_bytes(i, 8), "image/png")) for i in range(17)]
    r = httpx.post(server.url + "/v1/identify", files=files, headers={"X-API-Key": keys["read"]}, timeout=30)
    _assert_error(r, 400, "invalid_argument")


def test_unknown_route_and_method(live):
    server, keys = live
    _assert_error(httpx.get(server.url + "/v2/nothing"), 404, "not_found")
    _assert_error(httpx.put(server.url + "/v1/identify", headers={"X-API-Key": keys["admin"]}), 405)
