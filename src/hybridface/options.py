"""The one defaults table and the `SearchOptions` value object every front end uses.

The CLI, the REST service, the Python facade and the evaluation harness all take their default
values from :data:`DEFAULTS` and pass search settings down to the engines as one validated
:class:`SearchOptions`. A bad option fails once, at construction, with one line that names the
option and its valid values (`OptionError`: a `ConfigError`; CLI exit 2, REST 422).

Bottom layer: imports only :mod:`hybridface.errors`. Every default change is listed in
``CHANGELOG.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from hybridface.errors import OptionError

#: Search strategies (paper Figs. 3-5).
STRATEGIES = ("exhaustive", "indexed", "parallel", "hybrid")
#: Where the searchers run: in this process, or sharded over Ray actors.
ENGINES = ("local", "ray")
#: Template storage of the ``exhaustive`` strategy.
STORAGES = ("float32", "int8")
#: Face-detection policies of the facade (``never``: inputs are face crops already).
DETECT = ("never", "always", "largest")


@dataclass(frozen=True)
class Defaults:
    """The one table of default values; front ends read it instead of writing literals."""

    # faces
    detect: str = "largest"  # photos in, faces detected (``never`` treats a whole photo as a crop)
    detector: str = "cascade"
    service_detector: str = "cascade-fast"  # REST: no seconds-long CNN pass on an upload without a face
    # model (``None`` = the shipped default model, see hybridface.models.encoders)
    model: str | None = None
    # search
    strategy: str = "hybrid"  # bit-exact with exhaustive when top_n >= identities
    top_n: int = 5
    workers: int = 4
    k: int = 5
    cells: int | None = None  # coarse LBG cells: off
    probe_cells: int = 16
    storage: str = "float32"
    engine: str = "local"
    threshold: float | None = None  # None: the gallery's calibrated threshold
    # enrolment, calibration
    codewords: int = 1
    far: float = 0.01
    # network and training
    input_size: int = 60
    embedding_dim: int = 60
    batch_size: int = 100
    learning_rate: float = 1e-4


DEFAULTS = Defaults()


def _bad(name: str, value: Any, valid: str) -> OptionError:
    return OptionError(f"{name}={value!r} is not valid; use {valid}")


def _positive_int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise _bad(name, value, f"an integer >= 1 ({what})")
    return int(value)


def _choice(name: str, value: Any, valid: tuple[str, ...], note: str = "") -> str:
    if not isinstance(value, str) or value not in valid:
        raise _bad(name, value, f"one of {', '.join(valid)}{note}")
    return value


def check_threshold(value: Any) -> float | None:
    """``None`` or a finite distance >= 0 (as float); otherwise an `OptionError`."""
    if value is None:
        return None
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise _bad("threshold", value, "a finite cosine distance >= 0, or None for the gallery's calibrated one")
    return float(value)


@dataclass(frozen=True)
class SearchOptions:
    """How a 1:N search runs; validated once, at construction (see the module docstring).

    Args:
        strategy: ``exhaustive`` | ``indexed`` | ``parallel`` | ``hybrid``.
        top_n: identities kept by the LBG shortlist (``indexed``/``hybrid``).
        workers: threads of ``parallel``/``hybrid``.
        k: candidates returned per probe.
        cells: coarse LBG cells over the identity codewords (``indexed``/``hybrid``, very large
            galleries); ``None`` = off.
        probe_cells: cells visited per probe when ``cells`` is on (>= ``cells`` visits all).
        storage: ``float32`` | ``int8`` template storage (``exhaustive`` only; others ignore it).
        engine: ``local`` | ``ray`` (sharded over Ray actors; same answers).
        threshold: open-set distance threshold; ``None`` = the gallery's calibrated one.
        address: ``host:port`` of a running Ray cluster (``engine="ray"`` only; ``None`` = local Ray).
    """

    strategy: str = DEFAULTS.strategy
    top_n: int = DEFAULTS.top_n
    workers: int = DEFAULTS.workers
    k: int = DEFAULTS.k
    cells: int | None = DEFAULTS.cells
    probe_cells: int = DEFAULTS.probe_cells
    storage: str = DEFAULTS.storage
    engine: str = DEFAULTS.engine
    threshold: float | None = DEFAULTS.threshold
    address: str | None = None

    def __post_init__(self) -> None:
        norm = {
            "strategy": _choice("strategy", self.strategy, STRATEGIES),
            "top_n": _positive_int("top_n", self.top_n, "identities kept by the LBG shortlist"),
            "workers": _positive_int("workers", self.workers, "search threads"),
            "k": _positive_int("k", self.k, "candidates per probe"),
            "cells": None if self.cells is None else _positive_int(
                "cells", self.cells, "coarse LBG cells, e.g. 1024 for ~1M templates; or None for off"),
            "probe_cells": _positive_int("probe_cells", self.probe_cells,
                                         "cells visited per probe; >= cells visits every cell"),
            "storage": _choice("storage", self.storage, STORAGES,
                               " (int8: exhaustive also keeps int8 codes, exact answers, +27 % memory)"),
            "engine": _choice("engine", self.engine, ENGINES),
            "threshold": check_threshold(self.threshold),
        }
        if self.address is not None and (norm["engine"] != "ray" or not isinstance(self.address, str)):
            raise _bad("address", self.address, "it only with engine='ray' (a Ray cluster's host:port)")
        for name, value in norm.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> SearchOptions:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SearchOptions:
        """Build from a mapping (argparse namespace vars, query parameters); other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: v for key, v in values.items() if key in names})

    def searcher_key(self) -> tuple:
        """What makes two searchers over one matrix different (``probe_cells`` only with cells,
        ``storage`` only for ``exhaustive``; ``k`` and ``threshold`` are per query)."""
        return (self.strategy, self.top_n, self.workers, self.engine, self.address, self.cells,
                self.probe_cells if self.cells else None,
                self.storage if self.strategy == "exhaustive" else "float32")


def search_options(options: SearchOptions | None = None, **changes: Any) -> SearchOptions:
    """``options`` (default: :data:`DEFAULTS`) with the keyword ``changes`` applied, validated."""
    base = options if options is not None else SearchOptions()
    return base.replace(**changes) if changes else base


__all__ = ["DEFAULTS", "DETECT", "Defaults", "ENGINES", "STORAGES", "STRATEGIES", "SearchOptions",
           "check_threshold", "search_options"]
