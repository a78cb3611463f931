"""Identification strategies behind one `Searcher` protocol (exhaustive, indexed, parallel, hybrid).

Use :func:`make_searcher`; the strategy modules are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridface.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.search.base import Searcher

#: Strategy names accepted by :func:`make_searcher`.
STRATEGIES = ("exhaustive", "indexed", "parallel", "hybrid")


def make_searcher(strategy: str, matrix: TemplateMatrix, *, top_n: int = 5, workers: int = 4) -> Searcher:
    """Build the named strategy over ``matrix`` (``top_n``/``workers`` are used where they apply).

    ``exhaustive`` ignores both; ``indexed`` uses ``top_n``; ``parallel`` uses ``workers``;
    ``hybrid`` both. ``indexed``/``hybrid`` build one codeword per identity if ``matrix`` has none.
    """
    if strategy == "exhaustive":
        from hybridface.search.exhaustive import Exhaustive

        return Exhaustive(matrix)
    if strategy == "indexed":
        from hybridface.search.indexed import Indexed

        return Indexed(matrix, top_n=top_n)
    if strategy == "parallel":
        from hybridface.search.parallel import Parallel

        return Parallel(matrix, workers=workers)
    if strategy == "hybrid":
        from hybridface.search.hybrid import Hybrid

        return Hybrid(matrix, top_n=top_n, workers=workers)
    raise ConfigError(f"unknown search strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "make_searcher"]
