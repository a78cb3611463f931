"""``hybridface serve`` (the REST service under uvicorn) and ``hybridface keys`` (API keys)."""

from __future__ import annotations

import argparse
import json

from hybridface.cli.gallery import MODEL_HELP
from hybridface.options import DEFAULTS


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hybridface.service.app import create_app
    from hybridface.service.limits import ServiceSettings

    settings = ServiceSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
        max_faces=args.max_faces, workers=args.workers_pool, queue_size=args.queue, request_timeout_s=args.timeout,
        engine=args.engine, ray_address=args.address, storage=args.storage, public_metrics=args.public_metrics,
        docs=args.docs, max_request_pixels=args.max_request_pixels, max_server_pixels=args.max_server_pixels)
    app = create_app(args.db, settings=settings, model=args.model)
    docs = "docs at /docs" if args.docs else "OpenAPI at /openapi.json"
    print(f"hybridface service on http://{args.host}:{args.port} (gallery {args.db}); {docs}", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=5,
        server_header=False,
    )
    return 0


def _store(args: argparse.Namespace):
    from pathlib import Path

    from hybridface.errors import GalleryError
    from hybridface.gallery.keys import KeyStore

    create = getattr(args, "create", False)
    if not create and not Path(args.db).exists():
        hint = "pass --create to make an empty one" if hasattr(args, "create") else "create it first"
        raise GalleryError(f"no gallery at {args.db}; {hint} (or enrol into it with hybridface enroll)")
    return KeyStore(args.db, create=create)


def _keys_create(args: argparse.Namespace) -> int:
    record, token = _store(args).create(args.name, scope=args.scope)
    print(f"created API key {record.name!r} (id {record.key_id}, scope {record.scope}); "
          "store it now, it is not shown again:")
    print(token)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    keys = _store(args).list()
    if args.json:
        for k in keys:
            print(json.dumps({"key_id": k.key_id, "name": k.name, "scope": k.scope,
                              "created": k.created, "revoked": k.revoked}))
        return 0
    print(f"{'KEY ID':<10} {'NAME':<24} {'SCOPE':<6} {'CREATED':<26} REVOKED")
    for k in keys:
        print(f"{k.key_id:<10} {k.name:<24} {k.scope:<6} {k.created:<26} {k.revoked or '-'}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    record = _store(args).revoke(args.name)
    print(f"revoked API key {record.name!r} (id {record.key_id}) at {record.revoked}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the REST identification service")
    p.add_argument("--db", required=True, help="gallery file (created empty if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=DEFAULTS.model, help=MODEL_HELP)
    p.add_argument("--engine", default=DEFAULTS.engine, metavar="{local,ray}", help="search engine for /v1/identify")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --engine ray: the Ray cluster to join (default: RAY_ADDRESS or an embedded Ray)")
    p.add_argument("--storage", default=DEFAULTS.storage, metavar="{float32,int8}",
                   help="template storage of the exhaustive strategy: int8 also keeps int8 codes of the "
                        "templates, so identify requests of a few faces read ~4x fewer bytes with exactly "
                        "the float32 answers, for +27 %% memory (needs numba; default: float32)")
    p.add_argument("--workers-pool", type=int, default=2, metavar="N",
                   help="threads doing decode/encode/search work; further requests queue (default 2)")
    p.add_argument("--queue", type=int, default=64, help="requests that may wait for a worker before 503")
    p.add_argument("--timeout", type=float, default=60.0, help="request timeout in seconds (504 beyond)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body (413 beyond)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image in pixels (422 beyond)")
    p.add_argument("--max-faces", type=int, default=10, help="most faces per image (422 beyond)")
    p.add_argument("--limit-concurrency", type=int, default=256,
                   help="open connections uvicorn serves before answering 503")
    p.add_argument("--public-metrics", action="store_true", help="serve /metrics without an API key")
    p.add_argument("--docs", action="store_true",
                   help="serve the Swagger UI at /docs (its scripts come from a public CDN; off by default)")
    p.add_argument("--max-request-pixels", type=int, default=100_000_000, metavar="N",
                   help="decoded pixels one request may hold, summed over its images from their headers (422 beyond)")
    p.add_argument("--max-server-pixels", type=int, default=50_000_000, metavar="N",
                   help="pixels decoded at once across all requests; images wait for budget (503 after the queue timeout)")
    p.set_defaults(func=_serve)

    k = subparsers.add_parser("keys", help="create, list and revoke API keys of a gallery's service")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = ks.add_parser("create", help="create a key and print it once (last line)")
    c.add_argument("--db", required=True)
    c.add_argument("--name", required=True, help="who or what uses the key")
    c.add_argument("--scope", choices=("read", "write", "admin"), default="read",
                   help="read: search and list; write: also enrol, rename, delete; admin: everything")
    c.add_argument("--create", action="store_true", help="create the gallery file if it does not exist")
    c.set_defaults(func=_keys_create)
    ls = ks.add_parser("list", help="list keys (never the secrets)")
    ls.add_argument("--db", required=True)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_keys_list)
    r = ks.add_parser("revoke", help="revoke a key by name or key id")
    r.add_argument("--db", required=True)
    r.add_argument("name", help="key name or key id")
    r.set_defaults(func=_keys_revoke)
