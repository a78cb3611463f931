"""Where the shared datasets and reference weights live. The defaults table is :mod:`hybridface.options` (``DEFAULTS``,
re-exported here for older imports)."""

from __future__ import annotations

import os
from pathlib import Path

from hybridface.options import DEFAULTS, Defaults

__all__ = ["DEFAULTS", "Defaults", "shared_datasets_dir", "SHARED_DIR"]

#: ``../shared`` beside the repository (datasets, the authors' reference weights)
SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"


def shared_datasets_dir() -> Path | None:
    """``$HYBRIDFACE_DATASETS`` or ``../shared/datasets`` relative to the repo, if it exists."""
    env = os.environ.get("HYBRIDFACE_DATASETS")
    candidates = [Path(env)] if env else []
    candidates.append(SHARED_DIR / "datasets")
    for c in candidates:
        if c.is_dir():
            return c
    return None
