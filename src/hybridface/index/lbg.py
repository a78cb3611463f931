"""Linde–Buzo–Gray vector quantization (IEEE Trans. Commun., 1980) on the unit sphere.

The paper indexes each identity by LBG codewords of its templates; a probe is first compared with
the codewords only (see :mod:`hybridface.search.strategies`). Here vectors are L2-normalised and the
distortion is the cosine distance ``1 - x·c``, so the Lloyd centroid step is the *normalised* mean
of a cell (spherical k-means). Starting from one codeword (the normalised centroid, the paper's
setting), the codebook is grown by splitting every codeword ``c`` into ``c ± eps·u`` (``u`` a fixed
direction orthogonal to ``c``: the
cell's principal direction, or a fixed pseudo-random one when the cell has no spread) followed by Lloyd iterations until the relative
distortion change falls below ``threshold``.

Guarantees: deterministic for a given ``seed``; codebook size ``min(n_codewords, number of
distinct vectors)``; no empty codeword (an empty cell is re-seeded with the vector farthest from
its codeword; a cell that still stays empty is dropped); distortion is non-increasing across the
Lloyd iterations of each stage (recorded in :attr:`Codebook.history`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridface.blas import single_threaded_blas
from hybridface.errors import ConfigError
from hybridface.vectors import l2_normalize

#: Codebook sizes supported per identity (1 is the paper's setting).
SUPPORTED_SIZES = (1, 2, 4, 8)
#: ``codewords="auto"``: about one codeword per this many templates (a supported size, at least 1)
AUTO_TEMPLATES_PER_CODEWORD = 8


def check_codewords(codewords: int | str) -> int | str:
    """``codewords`` as a supported size or ``"auto"``, else `ConfigError`."""
    if codewords == "auto":
        return "auto"
    if isinstance(codewords, bool) or str(codewords) not in {str(k) for k in SUPPORTED_SIZES}:
        raise ConfigError(f"codewords per identity must be one of {SUPPORTED_SIZES} or 'auto', got {codewords!r}")
    return int(codewords)


def auto_size(templates: int) -> int:
    """The ``codewords="auto"`` size of an identity with ``templates`` templates: the largest
    supported size <= ``templates / AUTO_TEMPLATES_PER_CODEWORD``, at least 1. An identity seen in
    many conditions (a person photographed under 64 lightings) is not one centroid; a handful of
    near-identical templates are."""
    want = int(templates) // AUTO_TEMPLATES_PER_CODEWORD
    return max([k for k in SUPPORTED_SIZES if k <= want], default=1)


@dataclass(frozen=True)
class Codebook:
    """Result of :func:`lbg_fit`.

    Attributes:
        codewords: ``(K, d)`` float32 unit vectors.
        assignments: ``(n,)`` int64 codeword index of each input vector.
        distortion: mean cosine distance of the vectors to their codewords.
        history: distortion after every Lloyd iteration, per stage (one tuple per codebook size).
    """

    codewords: np.ndarray
    assignments: np.ndarray
    distortion: float
    history: tuple[tuple[float, ...], ...]


def _check(vectors: np.ndarray, n_codewords: int) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"LBG needs a non-empty (n, d) array of vectors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("LBG input contains NaN or infinite values")
    if isinstance(n_codewords, bool) or int(n_codewords) != n_codewords or n_codewords < 1:
        raise ConfigError(f"n_codewords must be a positive integer, got {n_codewords!r}")
    return l2_normalize(x).astype(np.float64)


def _normalise(c: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return np.where(norms > 1e-12, c / np.maximum(norms, 1e-300), fallback)


def _assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sims = x @ c.T
    a = sims.argmax(axis=1)  # first maximum: ties go to the lower codeword index
    return a, 1.0 - sims[np.arange(len(x)), a]


def _centroids(x: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Normalised per-codeword sums of the assigned rows (rows added in index order, as
    ``np.add.at`` would, but one sorted pass instead of a scatter per row)."""
    sums = np.zeros_like(c)
    order = np.argsort(a, kind="stable")
    counts = np.bincount(a, minlength=len(c))
    have = np.flatnonzero(counts)
    if len(have):
        starts = (np.cumsum(counts) - counts)[have]
        sums[have] = np.add.reduceat(x[order].astype(c.dtype, copy=False), starts, axis=0)
    return _normalise(sums, c)


def _reseed_empty(x: np.ndarray, a: np.ndarray, dist: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Move each empty codeword onto the vector farthest from its codeword (deterministic)."""
    c = c.copy()
    counts = np.bincount(a, minlength=len(c))
    dist = dist.copy()
    for j in np.flatnonzero(counts == 0):
        shared = counts[a] >= 2
        if not shared.any():
            break
        far = int(np.argmax(np.where(shared, dist, -1.0)))
        if dist[far] <= 0.0:
            break
        c[j] = x[far]
        counts[a[far]] -= 1
        counts[j] = 1
        a = a.copy()
        a[far] = j
        dist[far] = 0.0
    return c


def _lloyd(
    x: np.ndarray, c: np.ndarray, *, threshold: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Lloyd iterations from ``c``: ``(codewords, assignment, distances, distortion history)``."""
    a, dist = _assign(x, c)
    history = [float(dist.mean())]
    for _ in range(max_iter):
        if (np.bincount(a, minlength=len(c)) == 0).any():
            c_new = _reseed_empty(x, a, dist, c)
            a_seeded, _ = _assign(x, c_new)
        else:  # nothing to reseed: the same codebook and assignment
            c_new, a_seeded = c, a
        c_new = _centroids(x, a_seeded, c_new)
        a_new, dist_new = _assign(x, c_new)
        d_new = float(dist_new.mean())
        if d_new > history[-1]:  # numerical noise only; keep the better codebook
            break
        c, a, dist = c_new, a_new, dist_new
        prev = history[-1]
        history.append(d_new)
        if prev <= 0.0 or (prev - d_new) / prev < threshold:
            break
    return c, a, dist, history


def _split_directions(x: np.ndarray, a: np.ndarray, c: np.ndarray, chosen: np.ndarray, rng) -> np.ndarray:
    """Unit split direction per chosen codeword: the cell's principal direction orthogonal to it.

    Falls back to a fixed pseudo-random direction when the cell has no spread.
    """
    out = rng.standard_normal((len(chosen), c.shape[1]))
    order = np.argsort(a, kind="stable")  # rows of each cell, in index order, without a mask per cell
    ends = np.cumsum(np.bincount(a, minlength=len(c)))
    for j, cw in enumerate(chosen):
        r = x[order[(ends[cw - 1] if cw else 0) : ends[cw]]] - c[cw]
        r -= (r @ c[cw])[:, None] * c[cw]
        if len(r) >= 2 and np.abs(r).max() > 1e-9:
            v = np.linalg.eigh(r.T @ r)[1][:, -1]  # top right singular vector of r, from d x d
            out[j] = v * (1.0 if v[np.argmax(np.abs(v))] > 0 else -1.0)  # sign fixed: deterministic
    cc = c[chosen]
    out -= (out * cc).sum(axis=1, keepdims=True) * cc
    fallback = np.roll(np.eye(c.shape[1]), 1, axis=1)[np.argmax(np.abs(cc), axis=1)]
    return _normalise(out, fallback)


def lbg_fit(
    vectors: np.ndarray,
    n_codewords: int,
    *,
    eps: float = 1e-2,
    threshold: float = 1e-4,
    max_iter: int = 50,
    seed: int = 0,
    split: str = "all",
) -> Codebook:
    """Fit an LBG codebook of up to ``n_codewords`` unit codewords to ``vectors`` (see module doc).

    ``split="all"`` doubles the codebook at each stage (classic LBG; the last stage splits only the
    most distorted cells when the target is not a power of two); ``split="worst"`` splits one
    cell at a time, always the most distorted (slower, avoids splitting an already tight cell).
    """
    if split not in ("all", "worst"):
        raise ConfigError(f"split must be 'all' or 'worst', got {split!r}")
    x = _check(vectors, n_codewords)
    with single_threaded_blas(refresh=True):  # one LAPACK call per split cell: threads only spin (up to 10x slower)
        return _fit(x, n_codewords, eps=eps, threshold=threshold, max_iter=max_iter, seed=seed, split=split)


def _fit(x: np.ndarray, n_codewords: int, *, eps: float, threshold: float, max_iter: int, seed: int,
         split: str) -> Codebook:
    n_distinct = len(np.unique(x.astype(np.float32), axis=0))
    target = min(int(n_codewords), n_distinct)
    rng = np.random.default_rng(seed)
    c = _normalise(x.sum(axis=0, keepdims=True), x[:1])
    a, dist = _assign(x, c)
    histories: list[tuple[float, ...]] = [(float(dist.mean()),)]
    while len(c) < target:
        # split every codeword, or (last step) only the most distorted ones to land on `target`
        n_split = min(len(c), target - len(c)) if split == "all" else 1
        cell_dist = np.bincount(a, weights=dist, minlength=len(c))
        chosen = np.sort(np.argsort(-cell_dist, kind="stable")[:n_split])
        u = _split_directions(x, a, c, chosen, rng)
        plus = _normalise(c[chosen] + eps * u, c[chosen])
        minus = _normalise(c[chosen] - eps * u, c[chosen])
        c = c.copy()
        c[chosen] = plus
        c = np.concatenate([c, minus])
        c, a, dist, hist = _lloyd(x, c, threshold=threshold, max_iter=max_iter)  # dist: of this c and a
        histories.append(tuple(hist))
        if len(c) >= target:
            break
    # drop codewords that own no vector (only possible with near-duplicate inputs)
    keep = np.flatnonzero(np.bincount(a, minlength=len(c)) > 0)
    if len(keep) < len(c):
        c = c[keep]
        a, dist = _assign(x, c)
    return Codebook(
        codewords=np.ascontiguousarray(c, dtype=np.float32),
        assignments=a.astype(np.int64),
        distortion=float(dist.mean()),
        history=tuple(histories),
    )


def lbg(vectors: np.ndarray, n_codewords: int, **options) -> np.ndarray:
    """``(K, d)`` float32 unit LBG codewords of ``vectors``; options as in :func:`lbg_fit`."""
    return lbg_fit(vectors, n_codewords, **options).codewords


def _check_size(codewords: int) -> None:
    if codewords not in SUPPORTED_SIZES:
        raise ConfigError(
            f"codewords per identity must be one of {SUPPORTED_SIZES}, got {codewords!r}"
        )


def quantize_identity(vectors: np.ndarray, *, codewords: int = 1, **options) -> np.ndarray:
    """Codewords of one identity's templates (call again for just that identity when it changes).

    Size 1 is the identity's normalised centroid (the paper's setting).
    """
    _check_size(codewords)
    return lbg(vectors, codewords, **options)


def build_codebooks(matrix, *, codewords: int | str = 1, **options):
    """Return ``matrix`` (a `TemplateMatrix`) with LBG codewords for every identity.

    Identities without templates get no codeword. ``codewords``: a supported size for every
    identity, or ``"auto"`` (:func:`auto_size` of each identity's template count). Size 1 is
    computed in one vectorised pass (normalised per-identity centroids), larger ones by LBG.
    """
    counts = np.diff(matrix.offsets)
    present = np.flatnonzero(counts > 0)
    if check_codewords(codewords) == "auto":
        sizes = np.array([auto_size(c) for c in counts[present]], np.int64)
    else:
        sizes = np.full(len(present), int(codewords), np.int64)
    x = matrix.vectors.astype(np.float64)
    one = present[sizes == 1]
    # reduceat sums from each start to the next: all present identities, then keep the size-1 ones
    sums = np.add.reduceat(x, matrix.offsets[present], axis=0)[sizes == 1] if len(present) else x[:0]
    first = x[matrix.offsets[one]] if len(one) else x[:0]
    cw = np.asarray(_normalise(sums, first), np.float32).reshape(-1, matrix.dim)
    labels = one
    more = present[sizes > 1]
    if len(more):
        with single_threaded_blas(refresh=True):  # one section for the whole loop, not one per identity
            fitted = [quantize_identity(matrix.vectors[matrix.rows(i)], codewords=int(k), **options)
                      for i, k in zip(more, sizes[sizes > 1])]
        cw = np.concatenate([cw] + [np.asarray(f, np.float32) for f in fitted])
        labels = np.concatenate([one, np.repeat(more, [len(f) for f in fitted])])
        order = np.argsort(labels, kind="stable")  # codewords identity after identity
        cw, labels = cw[order], labels[order]
    return matrix.with_codebooks(np.asarray(cw, np.float32).reshape(-1, matrix.dim), labels)
