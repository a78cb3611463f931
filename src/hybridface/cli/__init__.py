"""The ``hybridface`` command line: argument parsing and printing only.

Each command group lives in its own module (``cli/<group>.py``) that exposes
``register(subparsers)``; the module adds its sub-commands with ``set_defaults(func=...)`` where
``func(args) -> int`` returns the exit code. Library errors (:class:`HybridFaceError`) become one
``error: ...`` line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hybridface import __version__
from hybridface.errors import HybridFaceError

#: Modules under ``hybridface.cli`` that register sub-commands, in help order.
COMMAND_MODULES: tuple[str, ...] = ("serve", "gallery", "fit", "watch", "maintenance", "evaluate", "train", "faces")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridface",
        description="1:N face identification: compressed CNN, LBG indexing, parallel search.",
    )
    parser.add_argument("--version", action="version", version=f"hybridface {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"hybridface.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except HybridFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
