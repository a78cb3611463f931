"""Defaults in one place, so the CLI, the service and the evaluation agree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Defaults:
    """Library-wide default values (override per call with explicit keywords)."""

    input_size: int = 60
    embedding_dim: int = 60
    batch_size: int = 100
    learning_rate: float = 1e-4
    top_n: int = 5
    workers: int = 4
    codewords: int = 1
    k: int = 5


DEFAULTS = Defaults()


def shared_datasets_dir() -> Path | None:
    """``$HYBRIDFACE_DATASETS`` or ``../shared/datasets`` relative to the repo, if it exists."""
    env = os.environ.get("HYBRIDFACE_DATASETS")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "datasets")
    for c in candidates:
        if c.is_dir():
            return c
    return None
