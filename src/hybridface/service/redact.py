"""Keep secrets and internals out of what the service writes and answers.

* `RedactKeysFilter` rewrites log records (uvicorn's access log included) so that an API key sent
  where it does not belong (a query string, a path) is logged as ``hfk_<key id>_***``.
* `client_message` turns a library error message into one safe to send to a client: the
  gallery's file path is replaced by "the gallery" and object reprs are dropped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

_KEY = re.compile(r"(hfk_[0-9a-fA-F]{8}_)[A-Za-z0-9_\-%]+")
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def redact(text: str) -> str:
    """``text`` with the secret part of every API key replaced by ``***``."""
    return _KEY.sub(r"\1***", text)


class RedactKeysFilter(logging.Filter):
    """A logging filter that redacts API keys in the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "hfk_" in record.msg:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "hfk_" in a else a for a in record.args)
        return True


def install_log_redaction(names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error", "uvicorn",
                                                     "hybridface.service.app", "hybridface.service.auth")) -> None:
    """Add one `RedactKeysFilter` to each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeysFilter) for f in logger.filters):
            logger.addFilter(RedactKeysFilter())


def client_message(message: str, db_path: Path) -> str:
    """A 4xx message without the server's file paths, object reprs or keys."""
    for p in {str(db_path), str(db_path.resolve()), str(db_path.absolute())}:
        message = message.replace(f" (see: hybridface list --db {p})", "")
        message = message.replace(f"gallery {p} ", "the gallery ").replace(p, "the gallery")
    return redact(_REPR.sub("the data", message))
