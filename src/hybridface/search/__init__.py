"""Identification strategies behind one `Searcher` protocol (exhaustive, indexed, parallel, hybrid).

Use :func:`make_searcher`; the strategy modules are imported lazily.
"""

from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING

from hybridface.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.search.base import Searcher

#: Strategy names accepted by :func:`make_searcher`.
STRATEGIES = ("exhaustive", "indexed", "parallel", "hybrid")


def check_cells(cells: int | None, probe_cells: int) -> tuple[int | None, int]:
    """Validate the coarse-cell options; return them as ``(int | None, int)``.

    ``cells=None`` switches the cells off; ``probe_cells`` larger than ``cells`` means every cell.
    """
    def bad(v) -> bool:
        return isinstance(v, bool) or not isinstance(v, Integral) or v < 1

    if cells is not None and bad(cells):
        raise ConfigError(
            f"cells must be a positive integer (coarse LBG cells over the identity codewords, e.g. 1024 "
            f"for ~1M templates) or None to switch them off, got {cells!r}"
        )
    if bad(probe_cells):
        raise ConfigError(
            f"probe_cells must be a positive integer (cells visited per probe; more = higher recall, "
            f"a value >= cells visits every cell), got {probe_cells!r}"
        )
    return (None if cells is None else int(cells)), int(probe_cells)


def check_storage(storage: str) -> str:
    """Validate the template storage option (``"float32"`` | ``"int8"``, see `Exhaustive`); return it."""
    from hybridface.search.exhaustive import STORAGES

    if not isinstance(storage, str) or storage not in STORAGES:
        raise ConfigError(
            f"storage must be one of {', '.join(STORAGES)} (int8: exhaustive keeps int8 codes of the "
            f"templates for exact, faster few-probe k = 1 searches, +27 % memory), got {storage!r}"
        )
    return storage


def make_searcher(
    strategy: str,
    matrix: TemplateMatrix,
    *,
    top_n: int = 5,
    workers: int = 4,
    cells: int | None = None,
    probe_cells: int = 16,
    storage: str = "float32",
) -> Searcher:
    """Build the named strategy over ``matrix`` (the options are used where they apply).

    ``exhaustive`` ignores ``top_n``, ``workers`` and the cells; ``indexed`` uses ``top_n`` and the
    cells; ``parallel`` uses ``workers``; ``hybrid`` all of them. ``indexed``/``hybrid`` build one
    codeword per identity if ``matrix`` has none. ``cells`` (default off): group the codewords into
    that many coarse LBG cells and compare each probe only with the codewords of its
    ``probe_cells`` nearest cells (:mod:`hybridface.search.cells`; for very large galleries).
    ``storage`` (``exhaustive`` only; the others ignore it): ``"int8"`` also keeps int8 codes of the
    templates and answers few-probe k = 1 searches from them, bit-identical to ``"float32"``
    (:mod:`hybridface.search.quantized`; needs Numba). Bad ``cells``/``probe_cells``/``storage``
    are a `ConfigError` for every strategy.
    """
    cells, probe_cells = check_cells(cells, probe_cells)
    storage = check_storage(storage)
    if strategy == "exhaustive":
        from hybridface.search.exhaustive import Exhaustive

        return Exhaustive(matrix, storage=storage)
    if strategy == "indexed":
        from hybridface.search.indexed import Indexed

        return Indexed(matrix, top_n=top_n, cells=cells, probe_cells=probe_cells)
    if strategy == "parallel":
        from hybridface.search.parallel import Parallel

        return Parallel(matrix, workers=workers)
    if strategy == "hybrid":
        from hybridface.search.hybrid import Hybrid

        return Hybrid(matrix, top_n=top_n, workers=workers, cells=cells, probe_cells=probe_cells)
    raise ConfigError(f"unknown search strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "check_cells", "check_storage", "make_searcher"]
