"""Kernel building blocks against plain NumPy references: top-k selection, segment max, band."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hybridface.search import rerank as topk
from hybridface.search.rerank import band_tolerance
from hybridface.search.kernels import kernel_candidates
from hybridface.search.runtime import split_identities
from hybridface.search.rerank import GROUP, segment_max, select_topk


def reference_topk(scores: np.ndarray, k: int) -> np.ndarray:
    idx = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.lexsort((idx, -scores), axis=1)[:, :k]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([5, 70, 16 * GROUP, 16 * GROUP + 37, 3000]),
    st.sampled_from([1, 2, 5, 17]),
    st.sampled_from([3, 50, 10**6]),
)
def test_select_topk_matches_lexsort_including_ties(seed, c, k, levels):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(7, c)).astype(np.float32)  # few levels: many ties
    scores[0] = 1.0  # a row that is all one tie
    np.testing.assert_array_equal(select_topk(scores, k), reference_topk(scores, k))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40))
def test_segment_max_matches_reduceat(seed, m):
    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 1, 2, 5, topk.LONG_SEGMENT + 3], size=m)
    if rng.random() < 0.3:
        counts[:] = counts.max() or 1  # uniform: the reshape path
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    block = rng.standard_normal((int(counts.sum()), 3)).astype(np.float32)
    got = segment_max(block, starts, counts)
    for i in range(m):
        want = block[starts[i] : starts[i] + counts[i]].max(axis=0) if counts[i] else np.full(3, -np.inf)
        np.testing.assert_array_equal(got[i], want)


def test_band_keeps_every_identity_near_the_kth_best():
    """Near-ties closer than float32 rounding are all kept, so the exact re-rank decides."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(60)
    base /= np.linalg.norm(base)
    # 30 identities whose templates differ from `base` by ~1e-7: float32 order is arbitrary
    v = (base + 1e-7 * rng.standard_normal((30, 60))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    probe = base[None, :].astype(np.float32)
    for k in (1, 3):
        c = kernel_candidates(probe, v, np.arange(31), k)
        sims = (v.astype(np.float64) @ probe[0].astype(np.float64))
        exact_top = set(np.argsort(-sims, kind="stable")[:k].tolist())
        assert exact_top <= set(c.identity.tolist())
        assert c.evaluations == 30
    assert band_tolerance(60) < 1e-4


def test_split_identities_balances_rows():
    offsets = np.array([0, 10, 11, 12, 30, 31, 40])
    ranges = split_identities(offsets, 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 6
    assert all(a < b for a, b in ranges) and all(r1[1] == r2[0] for r1, r2 in zip(ranges, ranges[1:]))
    assert split_identities(np.array([0]), 4) == []
    many = split_identities(offsets, 100)
    assert many[0][0] == 0 and many[-1][1] == 6 and all(r1[1] == r2[0] for r1, r2 in zip(many, many[1:]))


@pytest.mark.parametrize("k", [1, 4])
def test_kernel_memory_is_bounded_by_block_bytes(monkeypatch, k):
    """The similarity buffer never exceeds the budget (MIN_CHUNK_ROWS rows at the least)."""
    seen = []
    real_empty = np.empty

    def spy(shape, dtype=float, *a, **kw):
        arr = real_empty(shape, dtype, *a, **kw)
        if np.dtype(dtype) == np.float32 and arr.ndim in (1, 2):  # 1-D: the reused scratch block
            seen.append(arr.nbytes)
        return arr

    from hybridface.search import runtime as threads

    monkeypatch.setattr(threads._LOCAL, "scratch", {}, raising=False)  # no block kept from earlier tests
    monkeypatch.setattr(np, "empty", spy)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5000, 8)).astype(np.float32)
    p = rng.standard_normal((300, 8)).astype(np.float32)
    kernel_candidates(p, v, np.arange(0, 5001, 5), k, block_bytes=300 * 4 * 512)
    assert seen and max(seen) <= 300 * 4 * 512


def test_blas_limit_is_restored_after_concurrent_searches():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.search.strategies import Parallel

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    rng = np.random.default_rng(1)
    matrix = TemplateMatrix.from_arrays(rng.standard_normal((400, 8)).astype(np.float32), np.repeat(np.arange(40), 10))
    probes = rng.standard_normal((30, 8)).astype(np.float32)
    ref = Parallel(matrix, workers=2).search(probes, 3)
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: Parallel(matrix, workers=2).search(probes, 3), range(6)))
    for out in outs:
        np.testing.assert_array_equal(out.identities, ref.identities)
    assert blas_threads() == before


def test_nested_thread_use_runs_inline_instead_of_deadlocking():
    from hybridface.search.runtime import run_in_threads

    def inner(x):
        return sum(run_in_threads(lambda y: x * y, [(1,), (2,), (3,)], 2))

    assert run_in_threads(inner, [(1,), (10,)], 2) == [6, 60]


def test_exact_scores_do_not_depend_on_a_pairs_position():
    """Bit-identical scores across strategies need each float64 dot to depend only on its pair."""
    from hybridface.search.rerank import exact_scores

    rng = np.random.default_rng(5)
    for d in (3, 60, 130):
        vectors = rng.normal(size=(300, d)).astype(np.float32)
        probes = rng.normal(size=(20, d)).astype(np.float32)
        offsets = np.arange(0, 301, 3)  # 100 identities of 3 rows
        cands = rng.integers(0, 100, size=(20, 7))
        sims, rows, _ = exact_scores(probes, vectors, offsets, cands)
        for i in (0, 7, 19):
            for j in (0, 3, 6):
                one, row1, _ = exact_scores(probes[i : i + 1], vectors, offsets, cands[i : i + 1, j : j + 1])
                assert one[0, 0] == sims[i, j] and row1[0, 0] == rows[i, j]
        want = np.multiply(vectors[rows], probes[:, None, :], dtype=np.float64).sum(axis=2)
        np.testing.assert_allclose(sims, want, rtol=0, atol=1e-12)
