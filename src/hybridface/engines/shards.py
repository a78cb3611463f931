"""Sharding a `TemplateMatrix` by identity, and merging per-shard top-k lists.

Pure NumPy, shared by the in-process and the Ray engine so both shard, route and merge the same
way. An identity lives in exactly one shard, so the global top-k identities are the k best of
the shards' top-k lists (identity distance = min over its templates, computed inside one shard).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from hybridface.errors import ConfigError, ModelMismatchError, UnknownIdentityError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.vectors import l2_normalize
from hybridface.search.base import SearchResult

#: Default probe-batch budget per broadcast chunk (bytes of float32 probes).
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024


def subset(matrix: TemplateMatrix, identities: Sequence[int] | np.ndarray) -> TemplateMatrix:
    """The sub-matrix holding only identity indices ``identities`` (in that order), with codebooks."""
    idx = np.asarray(identities, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= matrix.num_identities):
        raise ConfigError(f"identity indices out of range 0..{matrix.num_identities - 1}")
    counts = (matrix.offsets[idx + 1] - matrix.offsets[idx]) if idx.size else np.zeros(0, np.int64)
    rows = (
        np.concatenate([np.arange(matrix.offsets[i], matrix.offsets[i + 1]) for i in idx])
        if idx.size
        else np.zeros(0, np.int64)
    )
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sub = TemplateMatrix(
        vectors=np.ascontiguousarray(matrix.vectors[rows], dtype=np.float32).reshape(-1, matrix.dim),
        labels=np.repeat(np.arange(len(idx), dtype=np.int64), counts),
        template_ids=matrix.template_ids[rows].astype(np.int64),
        names=tuple(matrix.names[i] for i in idx),
        offsets=offsets,
        model_id=matrix.model_id,
    )
    if matrix.codewords is None or matrix.codeword_labels is None:
        return sub
    remap = np.full(matrix.num_identities, -1, dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    keep = remap[matrix.codeword_labels] >= 0
    return sub.with_codebooks(matrix.codewords[keep], remap[matrix.codeword_labels[keep]])


def split(matrix: TemplateMatrix, shards: int) -> list[TemplateMatrix]:
    """Split by identity into ``shards`` sub-matrices, balancing template counts (greedy, largest first)."""
    if shards < 1:
        raise ConfigError(f"shards must be >= 1, got {shards}")
    counts = np.diff(matrix.offsets)
    load = np.zeros(shards, dtype=np.int64)
    members: list[list[int]] = [[] for _ in range(shards)]
    for i in np.argsort(-counts, kind="stable"):
        s = int(np.argmin(load))
        members[s].append(int(i))
        load[s] += counts[i]
    return [subset(matrix, sorted(m)) for m in members]


def owner_by_hash(name: str, shards: int) -> int:
    """Stable shard of identity ``name`` (CRC-32, the same on every machine and run)."""
    return zlib.crc32(name.encode("utf-8")) % shards


def add_templates(matrix: TemplateMatrix, name: str, vectors: np.ndarray, *, template_ids: np.ndarray | None = None,
                  codewords: np.ndarray | None = None, normalized: bool = False) -> TemplateMatrix:
    """A copy of ``matrix`` with ``vectors`` appended to identity ``name`` (new identity if absent).

    ``normalized=True``: the vectors are already L2-normalised (rows of another `TemplateMatrix`)
    and are stored bit for bit (normalising again can move the last float32 bit).

    When the matrix is indexed, ``codewords`` replace that identity's codewords; by default they
    are recomputed with `hybridface.index.lbg.lbg` over all its templates (same codebook size).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2 or vectors.shape[1] != matrix.dim or vectors.shape[0] == 0:
        raise ModelMismatchError(
            f"templates for {name!r} have shape {vectors.shape}, expected (n>0, {matrix.dim})"
        )
    if not np.isfinite(vectors).all():
        raise ConfigError(f"templates for {name!r} contain NaN or infinite values")
    if template_ids is None:
        start = int(matrix.template_ids.max()) + 1 if matrix.num_templates else 0
        template_ids = np.arange(start, start + len(vectors), dtype=np.int64)
    template_ids = np.asarray(template_ids, dtype=np.int64)
    if template_ids.shape != (len(vectors),):
        raise ConfigError("template_ids must have one id per added template")
    names = list(matrix.names)
    if name in names:
        ident = names.index(name)
        at = int(matrix.offsets[ident + 1])
    else:
        ident, at = len(names), matrix.num_templates
        names.append(name)
    counts = np.diff(matrix.offsets).tolist() + ([0] if ident == len(matrix.names) else [])
    counts[ident] += len(vectors)
    out = TemplateMatrix(
        vectors=np.ascontiguousarray(np.insert(matrix.vectors, at, vectors if normalized else l2_normalize(vectors), axis=0)),
        labels=np.repeat(np.arange(len(names), dtype=np.int64), counts),
        template_ids=np.insert(matrix.template_ids, at, template_ids),
        names=tuple(names),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        model_id=matrix.model_id,
    )
    if matrix.codewords is None or matrix.codeword_labels is None:
        return out
    if codewords is None:  # index the identity like its neighbours: same codebook size
        from hybridface.index.lbg import lbg

        sizes = np.bincount(matrix.codeword_labels, minlength=matrix.num_identities)
        size = int(sizes[ident]) if ident < len(sizes) and sizes[ident] else int(max(sizes.max(initial=1), 1))
        codewords = lbg(out.vectors[out.rows(ident)], size)
    codewords = np.asarray(codewords, dtype=np.float32).reshape(-1, matrix.dim)
    keep = matrix.codeword_labels != ident
    return out.with_codebooks(
        np.concatenate([matrix.codewords[keep], codewords]),
        np.concatenate([matrix.codeword_labels[keep], np.full(len(codewords), ident, np.int64)]),
    )


def remove_identity(matrix: TemplateMatrix, name: str) -> TemplateMatrix:
    """A copy of ``matrix`` without identity ``name`` (``UnknownIdentityError`` if absent)."""
    if name not in matrix.names:
        raise UnknownIdentityError(f"identity {name!r} is not in this gallery shard")
    drop = matrix.names.index(name)
    return subset(matrix, [i for i in range(matrix.num_identities) if i != drop])


def check_same_model(shards: Sequence[TemplateMatrix]) -> tuple[str, int]:
    """The common ``(model_id, dim)`` of ``shards``; ``ModelMismatchError`` when they differ."""
    if not shards:
        raise ConfigError("no shards given")
    ids = {s.model_id for s in shards}
    dims = {s.dim for s in shards}
    if len(ids) > 1 or len(dims) > 1:
        raise ModelMismatchError(
            f"shards come from different models (model ids {sorted(ids)}, dims {sorted(dims)}); "
            "re-encode every shard with the same encoder"
        )
    return ids.pop(), dims.pop()


def probe_chunks(n: int, dim: int, batch_bytes: int) -> list[slice]:
    """Row slices of a probe batch so each chunk's float32 probes fit in ``batch_bytes``."""
    if batch_bytes <= 0:
        raise ConfigError(f"batch_bytes must be positive, got {batch_bytes}")
    rows = max(1, int(batch_bytes) // (4 * max(dim, 1)))
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def local_to_global(names: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """Map a shard's local identity indices to global ones (``index``: name -> global index)."""
    return np.array([index[n] for n in names], dtype=np.int64)


def merge(parts: Sequence[tuple[SearchResult, np.ndarray]], n: int, k: int) -> SearchResult:
    """Merge per-shard results (each with its local->global identity map) into the global top-k.

    Ties in distance are broken by global identity index, so the order is deterministic.
    """
    ids = [np.full((n, 0), -1, np.int64)]
    dist = [np.full((n, 0), np.inf, np.float32)]
    tids = [np.full((n, 0), -1, np.int64)]
    evals = 0
    for res, mapping in parts:
        evals += int(res.distance_evaluations)
        local = np.asarray(res.identities, dtype=np.int64)
        valid = local >= 0
        ids.append(np.where(valid, mapping[np.where(valid, local, 0)] if len(mapping) else -1, -1))
        dist.append(np.where(valid, np.asarray(res.distances, np.float32), np.float32(np.inf)))
        tids.append(np.where(valid, np.asarray(res.template_ids, np.int64), -1))
    all_ids = np.concatenate(ids, axis=1)
    all_d = np.concatenate(dist, axis=1)
    all_t = np.concatenate(tids, axis=1)
    big = np.iinfo(np.int64).max
    order = np.lexsort((np.where(all_ids >= 0, all_ids, big), all_d), axis=1)[:, :k]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    out_ids, out_d, out_t = take(all_ids), take(all_d), take(all_t)
    if out_ids.shape[1] < k:
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
        out_d = np.pad(out_d, ((0, 0), (0, pad)), constant_values=np.inf)
        out_t = np.pad(out_t, ((0, 0), (0, pad)), constant_values=-1)
    return SearchResult(
        identities=out_ids, distances=out_d.astype(np.float32), template_ids=out_t,
        distance_evaluations=evals,
    )
