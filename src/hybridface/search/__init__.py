"""Identification strategies behind one `Searcher` protocol (exhaustive, indexed, parallel, hybrid).

Use :func:`make_searcher`; the strategy modules are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridface.options import DEFAULTS, STRATEGIES, SearchOptions

if TYPE_CHECKING:  # pragma: no cover
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.search.base import Searcher


def make_searcher(
    strategy: str,
    matrix: TemplateMatrix,
    *,
    top_n: int = DEFAULTS.top_n,
    workers: int = DEFAULTS.workers,
    cells: int | None = DEFAULTS.cells,
    probe_cells: int = DEFAULTS.probe_cells,
    storage: str = DEFAULTS.storage,
) -> Searcher:
    """Build the named strategy over ``matrix`` (the options are used where they apply).

    ``exhaustive`` ignores ``top_n``, ``workers`` and the cells; ``indexed`` uses ``top_n`` and the
    cells; ``parallel`` uses ``workers``; ``hybrid`` all of them. ``indexed``/``hybrid`` build one
    codeword per identity if ``matrix`` has none. ``cells`` (default off): group the codewords into
    that many coarse LBG cells and compare each probe only with the codewords of its
    ``probe_cells`` nearest cells (:mod:`hybridface.search.shortlist`; for very large galleries).
    ``storage`` (``exhaustive`` only; the others ignore it): ``"int8"`` also keeps int8 codes of the
    templates and answers few-probe k = 1 searches from them, bit-identical to ``"float32"``
    (:mod:`hybridface.search.int8`; needs Numba). Every value is validated by
    :class:`~hybridface.options.SearchOptions` (a bad one is an `OptionError`).
    """
    return searcher_for(matrix, SearchOptions(strategy=strategy, top_n=top_n, workers=workers, cells=cells,
                                              probe_cells=probe_cells, storage=storage))


def searcher_for(matrix: TemplateMatrix, options: SearchOptions) -> Searcher:
    """The searcher ``options`` describe over ``matrix`` (``options`` is already validated)."""
    if options.strategy == "exhaustive":
        from hybridface.search.strategies import Exhaustive

        return Exhaustive(matrix, storage=options.storage)
    if options.strategy == "indexed":
        from hybridface.search.strategies import Indexed

        return Indexed(matrix, top_n=options.top_n, cells=options.cells, probe_cells=options.probe_cells)
    if options.strategy == "parallel":
        from hybridface.search.strategies import Parallel

        return Parallel(matrix, workers=options.workers)
    from hybridface.search.strategies import Hybrid

    return Hybrid(matrix, top_n=options.top_n, workers=options.workers, cells=options.cells,
                  probe_cells=options.probe_cells)


__all__ = ["STRATEGIES", "make_searcher", "searcher_for"]
