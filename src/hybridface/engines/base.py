"""`ShardedEngine`: the driver-side half every engine shares (routing, chunking, merging).

An engine holds a gallery split by identity into shards; each shard is searched by the
ordinary local searcher (`hybridface.search.make_searcher`) wherever the shard lives (a thread,
a Ray actor). Subclasses only say how to run one operation on every shard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from hybridface.engines import shards as sh
from hybridface.errors import ConfigError, EmptyGalleryError, UnknownIdentityError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.options import SearchOptions
from hybridface.search.base import SearchResult

log = logging.getLogger(__name__)



def search_shard(searcher, matrix: TemplateMatrix, probes: np.ndarray, k: int) -> SearchResult:
    """Run ``searcher`` on one shard, answering an empty shard with an empty result."""
    n = probes.shape[0]
    if matrix.num_identities == 0 or searcher is None:
        return SearchResult(
            identities=np.full((n, 0), -1, np.int64),
            distances=np.full((n, 0), np.inf, np.float32),
            template_ids=np.full((n, 0), -1, np.int64),
        )
    return searcher.search(probes, min(k, matrix.num_identities))


def build_searcher(matrix: TemplateMatrix, options: SearchOptions):
    """The local searcher ``options`` describe for one shard (``None`` for an empty shard).

    ``cells`` are fitted over this shard's own identity codewords (a shard with no more codewords
    than ``cells`` uses the flat shortlist); ``storage="int8"`` quantizes this shard's templates.
    """
    if matrix.num_identities == 0:
        return None
    from hybridface.search import searcher_for

    return searcher_for(matrix, options)


class ShardedEngine:
    """Common state: global identity names, shard ownership, per-shard name lists.

    ``SearchResult.identities`` index into :attr:`names`. Initially ``names`` equals the
    gallery matrix's names; :meth:`add` appends new identities and :meth:`remove` drops one
    (later indices shift down by one), matching a matrix rebuilt from the store.
    """

    def __init__(
        self,
        parts: Sequence[TemplateMatrix],
        names: Sequence[str],
        *,
        options: SearchOptions,
        placement: str = "hash",
        batch_bytes: int = sh.DEFAULT_BATCH_BYTES,
    ) -> None:
        if placement not in ("hash", "least-loaded"):
            raise ConfigError(f"placement must be 'hash' or 'least-loaded', got {placement!r}")
        if batch_bytes <= 0:
            raise ConfigError(f"batch_bytes must be positive, got {batch_bytes}")
        self.model_id_, self.dim_ = sh.check_same_model(parts)
        if not isinstance(options, SearchOptions):
            raise ConfigError(f"options must be a SearchOptions, got {type(options).__name__}")
        #: How every shard is searched (one validated value object).
        self.options = options
        self.placement = placement
        self.batch_bytes = int(batch_bytes)
        self._shard_names: list[list[str]] = [list(p.names) for p in parts]
        self._shard_templates: list[int] = [p.num_templates for p in parts]
        self._names: list[str] = list(names)
        #: Held by every search and update: a query never sees a half-applied update. Callers
        #: that map result indices through :attr:`names` hold it across search + read.
        self.lock = threading.RLock()
        self._reindex()

    # ------------------------------------------------------------------ bookkeeping
    def _reindex(self) -> None:
        self._index = {n: i for i, n in enumerate(self._names)}
        self._owner = {n: s for s, names in enumerate(self._shard_names) for n in names}
        self._maps = [sh.local_to_global(names, self._index) for names in self._shard_names]

    @property
    def names(self) -> tuple[str, ...]:
        """Global identity names; result identity ``i`` is ``names[i]``."""
        return tuple(self._names)

    @property
    def num_shards(self) -> int:
        return len(self._shard_names)

    def shard_sizes(self) -> list[int]:
        """Templates held per shard."""
        return list(self._shard_templates)

    def owner(self, name: str) -> int:
        """The shard that holds (or would receive) identity ``name``."""
        if name in self._owner:
            return self._owner[name]
        if self.placement == "hash":
            return sh.owner_by_hash(name, self.num_shards)
        return int(np.argmin(self._shard_templates))

    # ------------------------------------------------------------------ backend hooks
    def _run_search(self, probes: np.ndarray, k: int) -> list[SearchResult]:  # pragma: no cover
        raise NotImplementedError

    def _run_update(self, shard: int, op: str, args: dict) -> int:  # pragma: no cover
        """Apply ``op`` ("add" | "remove") on one shard; return its new template count."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Searcher protocol
    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        """Global top-k identities per probe, merged from every shard (probes chunked by budget)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if not self._names:
            raise EmptyGalleryError("the gallery has no identities; enrol some before searching")
        probes = TemplateMatrix.check_probes(_DimOnly(self.dim_), probes)  # type: ignore[arg-type]
        with self.lock:
            return self._search(probes, k)

    def _search(self, probes: np.ndarray, k: int) -> SearchResult:
        outs = []
        for rows in sh.probe_chunks(probes.shape[0], self.dim_, self.batch_bytes):
            chunk = np.ascontiguousarray(probes[rows])
            parts = self._run_search(chunk, k)
            outs.append(sh.merge(list(zip(parts, self._maps)), chunk.shape[0], k))
        if len(outs) == 1:
            return outs[0]
        return SearchResult(
            identities=np.concatenate([o.identities for o in outs]),
            distances=np.concatenate([o.distances for o in outs]),
            template_ids=np.concatenate([o.template_ids for o in outs]),
            distance_evaluations=sum(o.distance_evaluations for o in outs),
        )

    # ------------------------------------------------------------------ updates
    def add(self, name: str, vectors: np.ndarray, *, template_ids: np.ndarray | None = None,
            codewords: np.ndarray | None = None, normalized: bool = False) -> int:
        """Append templates of ``name`` (new or existing) on its owning shard; return that shard.

        ``normalized=True`` stores already unit-length vectors as given (bit for bit).
        """
        with self.lock:
            return self._add(name, vectors, template_ids, codewords, normalized)

    def _add(self, name, vectors, template_ids, codewords, normalized) -> int:
        shard = self.owner(name)
        args = {"name": name, "vectors": np.asarray(vectors, np.float32),
                "template_ids": template_ids, "codewords": codewords, "normalized": normalized}
        self._shard_templates[shard] = self._run_update(shard, "add", args)
        if name not in self._index:
            self._names.append(name)
            self._shard_names[shard].append(name)
            self._reindex()
        log.debug("added %d templates of %r to shard %d", len(args["vectors"]), name, shard)
        return shard

    def remove(self, name: str) -> int:
        """Drop identity ``name`` from its shard; return that shard."""
        with self.lock:
            return self._remove(name)

    def _remove(self, name: str) -> int:
        if name not in self._owner:
            raise UnknownIdentityError(f"identity {name!r} is not in the sharded gallery")
        shard = self._owner[name]
        self._shard_templates[shard] = self._run_update(shard, "remove", {"name": name})
        self._names.remove(name)
        self._shard_names[shard].remove(name)
        self._reindex()
        return shard


class _DimOnly:
    """Minimal stand-in so `TemplateMatrix.check_probes` validates against a dimension."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


def apply_update(matrix: TemplateMatrix, op: str, args: dict) -> TemplateMatrix:
    """Apply a routed update to one shard's matrix (run where the shard lives)."""
    if op == "add":
        return sh.add_templates(
            matrix, args["name"], args["vectors"],
            template_ids=args.get("template_ids"), codewords=args.get("codewords"),
            normalized=bool(args.get("normalized", False)),
        )
    if op == "remove":
        return sh.remove_identity(matrix, args["name"])
    raise ConfigError(f"unknown shard update {op!r}")
