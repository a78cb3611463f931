"""A gallery's in-memory view and the searchers built on it, cached per store revision.

The store is the truth: the `TemplateMatrix` and its searchers are rebuilt whenever the store's
revision counter moved (a write from this or any other process). Live Ray engines are kept in
step with routed updates instead of being rebuilt; every other dropped searcher is closed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from hybridface.errors import ConfigError, EmptyGalleryError, HybridFaceError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.gallery.store import GalleryStore
from hybridface.options import SearchOptions

log = logging.getLogger(__name__)


def build_searcher(matrix: TemplateMatrix, options: SearchOptions):
    """A fresh searcher over ``matrix`` as ``options`` say: in-process (``engine="local"``) or
    sharded over Ray actors (``engine="ray"``; cells and int8 storage built per shard)."""
    if options.engine == "local":
        from hybridface.search import searcher_for

        return searcher_for(matrix, options)
    import importlib.util

    if importlib.util.find_spec("hybridface.engines.ray") is None:
        raise ConfigError("engine 'ray' not available (hybridface.engines.ray is not installed); use engine='local'")
    from hybridface.engines.local import make_engine

    return make_engine("ray", matrix, options=options)


@dataclass
class _Snapshot:
    revision: int = -1
    matrix: TemplateMatrix | None = None
    searchers: dict = field(default_factory=dict)


class SearcherCache:
    """The matrix of one `GalleryStore` and its searchers keyed by `SearchOptions.searcher_key`."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self._snapshot = _Snapshot()
        self.lock = threading.RLock()

    def _close_searchers(self, searchers: dict | None = None) -> None:
        """Release searchers that hold resources (thread pools, Ray actors) before they are dropped."""
        searchers = self._snapshot.searchers if searchers is None else searchers
        for searcher in searchers.values():
            close = getattr(searcher, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # a failing shutdown must not hide the caller's result
                    log.warning("closing searcher %r failed: %s", searcher, exc)
        searchers.clear()

    def close(self) -> None:
        """Close every cached searcher (the store stays open)."""
        with self.lock:
            self._close_searchers()

    def matrix(self) -> TemplateMatrix:
        """The cached in-memory view, reloaded when the store changed."""
        with self.lock:
            rev = self.store.revision()
            if self._snapshot.matrix is None or rev != self._snapshot.revision:
                old = self._snapshot
                self._snapshot = _Snapshot(*self.store.snapshot())
                self._snapshot.searchers = self._carry_engines(old, self._snapshot.matrix)
            return self._snapshot.matrix  # type: ignore[return-value]

    def _carry_engines(self, old: _Snapshot, new: TemplateMatrix | None) -> dict:
        """Keep live Ray engines in step with the store (routed add/remove); close every other searcher.

        Local searchers are rebuilt on demand (cheap); a Ray engine would re-ship every shard and
        restart every actor, so only the changed identities are sent to their owning shards.
        """
        kept: dict = {}
        if old.matrix is not None and new is not None:
            from hybridface.engines.sync import sync_engine

            for key, searcher in list(old.searchers.items()):
                if key[3] != "ray":
                    continue
                try:
                    if sync_engine(searcher, old.matrix, new):
                        kept[key] = old.searchers.pop(key)
                except HybridFaceError as exc:  # fall back to a rebuild on next use
                    log.warning("could not update the Ray engine in place (%s); rebuilding it", exc)
        self._close_searchers(old.searchers)
        return kept

    def searcher(self, options: SearchOptions) -> tuple[TemplateMatrix, Any]:
        """``(matrix, searcher)``: the cached searcher ``options`` describe over the current matrix."""
        if not isinstance(options, SearchOptions):
            raise ConfigError(f"options must be a SearchOptions, got {type(options).__name__}")
        with self.lock:
            m = self.matrix()
            if m.num_templates == 0:
                raise EmptyGalleryError(f"gallery {self.store.path} has no templates; enrol some first (hybridface enroll)")
            key = options.searcher_key()  # key[3] is the engine (see _carry_engines)
            if key not in self._snapshot.searchers:
                self._snapshot.searchers[key] = build_searcher(m, options)
            return m, self._snapshot.searchers[key]
