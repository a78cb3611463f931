"""The in-process engine: shards searched by the local searchers on a thread pool, and `make_engine`.

With ``shards=1`` it is a thin wrapper over `hybridface.search.make_searcher`; with more shards
it exercises exactly the routing and merging the Ray engine uses, without a cluster.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hybridface.engines import shards as sh
from hybridface.engines.base import ShardedEngine, apply_update, build_searcher, search_shard
from hybridface.errors import ConfigError, EmptyGalleryError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.options import ENGINES, SearchOptions
from hybridface.search.base import SearchResult

#: Engines search with ``exhaustive`` unless told otherwise (the reference answers).
ENGINE_OPTIONS = SearchOptions(strategy="exhaustive")


class LocalEngine(ShardedEngine):
    """Gallery split into ``shards`` in-process shards, each searched by ``make_searcher``.

    Args:
        matrix: the whole gallery.
        options: how every shard is searched (`SearchOptions`; ``cells`` are fitted per shard over
            its own identity codewords, ``storage="int8"`` quantizes each shard).
        shards: number of shards (1 = no sharding).
        placement: where a *new* identity goes: ``hash`` (CRC-32 of its name) or ``least-loaded``.
        batch_bytes: probe chunk budget (bytes of float32 probes per chunk).
    """

    def __init__(
        self,
        matrix: TemplateMatrix,
        *,
        options: SearchOptions = ENGINE_OPTIONS,
        shards: int = 1,
        placement: str = "hash",
        batch_bytes: int = sh.DEFAULT_BATCH_BYTES,
    ) -> None:
        if matrix.num_identities == 0:
            raise EmptyGalleryError("cannot build a search engine over an empty gallery")
        parts = sh.split(matrix, shards)
        super().__init__(parts, matrix.names, options=options, placement=placement, batch_bytes=batch_bytes)
        self._parts = parts
        self._searchers = [self._build(p) for p in parts]
        self._pool = ThreadPoolExecutor(max_workers=len(parts)) if len(parts) > 1 else None

    def _run_search(self, probes: np.ndarray, k: int) -> list[SearchResult]:
        jobs = list(zip(self._searchers, self._parts))
        if self._pool is None:
            return [search_shard(s, p, probes, k) for s, p in jobs]
        return list(self._pool.map(lambda sp: search_shard(sp[0], sp[1], probes, k), jobs))

    def _run_update(self, shard: int, op: str, args: dict) -> int:
        part = apply_update(self._parts[shard], op, args)
        self._searchers[shard] = self._build(part)
        self._parts[shard] = part
        return part.num_templates

    def _build(self, part: TemplateMatrix):
        return build_searcher(part, self.options)

    def close(self) -> None:
        """Release the thread pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def make_engine(
    name: str,
    matrix: TemplateMatrix,
    *,
    options: SearchOptions = ENGINE_OPTIONS,
    shards: int | None = None,
    **engine_options,
) -> ShardedEngine:
    """The engine called ``name`` (``local`` | ``ray``) over ``matrix``; both are `Searcher`s.

    ``shards`` defaults to 1 for ``local`` and to the number of alive Ray nodes for ``ray``.
    ``options``: how every shard is searched (`SearchOptions`, validated when it was built, so a
    bad value never starts Ray; ``options.address``: an existing Ray cluster's ``host:port``,
    ``None`` starts a local Ray). ``options.engine`` is ignored: ``name`` picks the engine.
    Extra ``engine_options`` go to the engine class (``placement``, ``batch_bytes``, ...).
    """
    if name == "local":
        if options.address is not None:
            raise ConfigError("--address only applies to the ray engine")
        return LocalEngine(matrix, options=options, shards=shards or 1, **engine_options)
    if name == "ray":
        from hybridface.engines.ray import RaySearcher, connect

        connect(options.address, timeout_s=engine_options.pop("timeout_s", 30.0))
        return RaySearcher(matrix, options=options, shards=shards, **engine_options)
    raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
