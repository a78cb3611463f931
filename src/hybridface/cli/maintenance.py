"""``hybridface check`` (full integrity check, ``--salvage``) and ``hybridface backup`` (online copy)."""

from __future__ import annotations

import argparse
import json


def _check(args: argparse.Namespace) -> int:
    from hybridface.errors import GalleryError
    from hybridface.gallery.integrity import corrupt_error
    from hybridface.gallery.salvage import full_check, salvage

    if args.salvage:
        rep = salvage(args.db, args.salvage)
        line = (f"salvaged {rep.identities} identities ({rep.templates} templates, {rep.keys} API keys) "
                f"from {rep.source} into {rep.target}")
        if rep.lost:
            shown = ", ".join(repr(n) for n in rep.lost[:10]) + (" ..." if len(rep.lost) > 10 else "")
            line += f"; {len(rep.lost)} unreadable: {shown}"
        print(json.dumps({"identities": rep.identities, "templates": rep.templates, "keys": rep.keys,
                          "lost": list(rep.lost), "target": str(rep.target)}) if args.json else line)
        return 0
    from pathlib import Path

    if not Path(args.db).is_file():
        raise GalleryError(f"no gallery at {args.db}")
    rep = full_check(args.db)
    if not rep.ok:
        raise corrupt_error(Path(args.db), "; ".join(rep.problems[:3]))
    print(json.dumps({"db": str(rep.path), "ok": True}) if args.json else f"gallery {rep.path}: ok")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from hybridface.gallery.salvage import backup

    rep = backup(args.db, args.out)
    print(f"backed up {args.db} to {args.out} (integrity check: {'ok' if rep.ok else 'FAILED'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    c = subparsers.add_parser("check", help="full integrity check of a gallery file (exit 2 when damaged)")
    c.add_argument("--db", required=True)
    c.add_argument("--salvage", default=None, metavar="NEW.db",
                   help="copy every readable identity (and the API keys) into the new file NEW.db")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.set_defaults(func=_check)
    b = subparsers.add_parser("backup", help="consistent copy of a gallery with SQLite's online backup API "
                                             "(safe while a server or enrolment runs)")
    b.add_argument("--db", required=True)
    b.add_argument("out", help="new file to write (never overwritten)")
    b.set_defaults(func=_backup)
