"""The four strategies agree with each other and with a float64 brute force (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, HealthCheck, settings, strategies as st

from hybridface.errors import ConfigError, EmptyGalleryError, ModelMismatchError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.index.lbg import build_codebooks
from hybridface.search import STRATEGIES, make_searcher, runtime as tuning, strategies as hybrid_module
from hybridface.search.base import Searcher
from hybridface.search.strategies import Exhaustive, Hybrid, Indexed, Parallel

SETTINGS = settings(max_examples=int(__import__("os").environ.get("HF_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def galleries(draw):
    """A random gallery (small-integer vectors: many exact ties) plus probes and k."""
    d = draw(st.integers(2, 5))
    m = draw(st.integers(1, 7))
    counts = draw(st.lists(st.integers(1, 4), min_size=m, max_size=m))
    ints = st.integers(-2, 2)
    rows = []
    for c in counts:
        rows.extend(draw(st.lists(st.lists(ints, min_size=d, max_size=d), min_size=c, max_size=c)))
    vec = np.array(rows, np.float32)
    if draw(st.booleans()) and m > 1:  # an identity duplicating another one's templates
        a, b = draw(st.integers(0, m - 1)), draw(st.integers(0, m - 1))
        ia, ib = np.cumsum([0, *counts])[[a, b]]
        n_copy = min(counts[a], counts[b])
        vec[ib : ib + n_copy] = vec[ia : ia + n_copy]
    vec[np.abs(vec).sum(axis=1) == 0, 0] = 1.0
    names = [f"id{i}" for i, c in enumerate(counts) for _ in range(c)]
    n = draw(st.integers(1, 4))
    probes = np.array(draw(st.lists(st.lists(ints, min_size=d, max_size=d), min_size=n, max_size=n)), np.float32)
    probes[np.abs(probes).sum(axis=1) == 0, -1] = 1.0
    k = draw(st.integers(1, m + 2))
    return TemplateMatrix.from_arrays(vec, names), probes, k


def brute_force(matrix: TemplateMatrix, probes: np.ndarray, k: int):
    """Float64 reference: per-identity best similarity, ranked by (distance, identity)."""
    p = matrix.check_probes(probes).astype(np.float64)
    sims = p @ matrix.vectors.astype(np.float64).T
    per_id = np.maximum.reduceat(sims, matrix.offsets[:-1], axis=1)
    order = np.lexsort((np.broadcast_to(np.arange(per_id.shape[1]), per_id.shape), -per_id), axis=1)[:, :k]
    return order, 1.0 - np.take_along_axis(per_id, order, axis=1)


def assert_same(a, b):
    np.testing.assert_array_equal(a.identities, b.identities)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.template_ids, b.template_ids)


@SETTINGS
@given(galleries(), st.integers(1, 5))
def test_parallel_equals_exhaustive(case, workers):
    matrix, probes, k = case
    assert_same(Parallel(matrix, workers=workers).search(probes, k), Exhaustive(matrix).search(probes, k))
    assert_same(Exhaustive(matrix, threads=workers).search(probes, k), Exhaustive(matrix).search(probes, k))


@SETTINGS
@given(galleries(), st.integers(0, 3), st.integers(1, 4))
def test_indexed_and_hybrid_equal_exhaustive_with_full_shortlist(case, extra, workers):
    matrix, probes, k = case
    ref = Exhaustive(matrix).search(probes, k)
    top_n = matrix.num_identities + extra
    assert_same(Indexed(matrix, top_n=top_n).search(probes, k), ref)
    assert_same(Hybrid(matrix, top_n=top_n, workers=workers).search(probes, k), ref)


@SETTINGS
@given(galleries())
def test_exhaustive_matches_float64_brute_force(case):
    matrix, probes, k = case
    res = Exhaustive(matrix).search(probes, k)
    m = matrix.num_identities
    ids, dist = brute_force(matrix, probes, k)
    w = min(k, m)
    np.testing.assert_allclose(res.distances[:, :w], dist, atol=1e-6)
    np.testing.assert_array_equal(res.identities[:, :w], ids)
    assert (res.identities[:, w:] == -1).all() and np.isinf(res.distances[:, w:]).all()
    assert (res.template_ids[:, w:] == -1).all()
    # the reported template belongs to the identity and attains the distance
    p = matrix.check_probes(probes).astype(np.float64)
    row_of = {int(t): r for r, t in enumerate(matrix.template_ids)}
    for i in range(len(p)):
        for j in range(w):
            r = row_of[int(res.template_ids[i, j])]
            assert matrix.labels[r] == res.identities[i, j]
            assert abs((1 - matrix.vectors[r] @ p[i]) - res.distances[i, j]) < 1e-6


@SETTINGS
@given(galleries(), st.integers(1, 3), st.sampled_from([0, tuning.GATHER_RATIO, 10**12]))
def test_hybrid_equals_indexed_for_any_top_n(case, top_n, gather_ratio):
    matrix, probes, k = case
    saved = tuning.GATHER_RATIO
    tuning.GATHER_RATIO = gather_ratio  # 0: a BLAS call per identity; huge: gathered scoring
    try:
        indexed = Indexed(matrix, top_n=top_n)
        res = indexed.search(probes, k)
        assert_same(Hybrid(matrix, top_n=top_n, workers=3).search(probes, k), res)
    finally:
        tuning.GATHER_RATIO = saved
    # indexed == brute force restricted to each probe's shortlist
    p = matrix.check_probes(probes)
    shortlist, _ = indexed.shortlist(p, max(top_n, k))
    per_id = np.maximum.reduceat(p.astype(np.float64) @ matrix.vectors.astype(np.float64).T, matrix.offsets[:-1], axis=1)
    masked = np.full_like(per_id, -np.inf)
    rows = np.arange(len(p))[:, None]
    masked[rows, shortlist] = per_id[rows, shortlist]
    w = min(k, shortlist.shape[1])
    want = np.lexsort((np.broadcast_to(np.arange(masked.shape[1]), masked.shape), -masked), axis=1)[:, :w]
    np.testing.assert_array_equal(res.identities[:, :w], want)
    np.testing.assert_allclose(res.distances[:, :w], 1 - np.take_along_axis(masked, want, axis=1), atol=1e-6)


def test_ties_go_to_the_lower_identity_index():
    v = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]], np.float32)
    matrix = TemplateMatrix.from_arrays(v, ["a", "b", "c", "c"], template_ids=np.array([10, 11, 12, 13]))
    for strategy in STRATEGIES:
        res = make_searcher(strategy, matrix, top_n=3, workers=2).search(np.array([[1, 0, 0]], np.float32), k=3)
        assert res.identities.tolist() == [[0, 2, 1]], strategy
        assert res.template_ids.tolist() == [[10, 12, 11]], strategy
        assert res.distances[0, 0] == 0.0 and res.distances[0, 2] == pytest.approx(1.0)


def test_single_identity_and_k_beyond_gallery():
    matrix = TemplateMatrix.from_arrays(np.eye(3, dtype=np.float32), ["x", "x", "x"])
    for strategy in STRATEGIES:
        res = make_searcher(strategy, matrix).search(np.array([[0, 1, 0.1]], np.float32), k=4)
        assert isinstance(make_searcher(strategy, matrix), Searcher)
        assert res.identities.tolist() == [[0, -1, -1, -1]]
        assert res.template_ids.tolist() == [[1, -1, -1, -1]]
        assert np.isinf(res.distances[0, 1:]).all() and res.distances.dtype == np.float32


def test_chunked_kernel_with_identities_spanning_chunks(monkeypatch):
    """Tiny blocks force identities across chunk boundaries and several probe blocks."""
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 9, size=40)
    v = rng.standard_normal((counts.sum(), 6)).astype(np.float32)
    names = np.repeat([f"i{j}" for j in range(40)], counts)
    matrix = TemplateMatrix.from_arrays(v, names)
    probes = rng.standard_normal((13, 6)).astype(np.float32)
    ref = {k: Exhaustive(matrix).search(probes, k) for k in (1, 4)}
    monkeypatch.setattr(tuning, "MIN_CHUNK_ROWS", 3)
    monkeypatch.setattr(tuning, "PROBE_BLOCK", 4)
    monkeypatch.setattr(tuning, "RERANK_BYTES", 5 * 8 * 6)
    monkeypatch.setattr(hybrid_module, "PARALLEL_MIN_ROWS", 0)
    for ratio in (0, 10**12):  # BLAS per identity / gathered scoring
        monkeypatch.setattr(tuning, "GATHER_RATIO", ratio)
        for k in (1, 4):  # threaded shortlist + threaded re-rank == sequential indexed
            assert_same(Hybrid(matrix, top_n=5, workers=3).search(probes, k), Indexed(matrix, top_n=5).search(probes, k))
    for k in (1, 4):
        assert_same(Exhaustive(matrix, block_bytes=1).search(probes, k), ref[k])
        assert_same(Parallel(matrix, workers=3, block_bytes=1).search(probes, k), ref[k])
        assert_same(Hybrid(matrix, top_n=40, workers=2, block_bytes=1).search(probes, k), ref[k])
        ids, _ = brute_force(matrix, probes, k)
        np.testing.assert_array_equal(ref[k].identities, ids)


def test_indexed_shortlist_uses_codewords_and_counts_evaluations():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 8))
    v = np.repeat(centers, 6, axis=0) + 0.05 * rng.standard_normal((300, 8))
    matrix = build_codebooks(TemplateMatrix.from_arrays(v.astype(np.float32), np.repeat(np.arange(50), 6)), codewords=2)
    probes = (centers[:20] + 0.05 * rng.standard_normal((20, 8))).astype(np.float32)
    ex = Exhaustive(matrix).search(probes)
    ix = Indexed(matrix, top_n=3).search(probes)
    np.testing.assert_array_equal(ix.identities[:, 0], np.arange(20))
    np.testing.assert_array_equal(ix.identities, ex.identities)
    # per probe: 100 codewords + 3 identities x 6 templates (+ 6 exact re-rank), vs 300 + the
    # band rows re-ranked (k = 1 re-scores only rows within the float32 band: 1..6 here)
    assert ix.distance_evaluations == 20 * (100 + 18 + 6)
    assert 20 * (300 + 1) <= ex.distance_evaluations <= 20 * (300 + 6)


def test_indexed_builds_centroid_codebook_when_missing():
    matrix = TemplateMatrix.from_arrays(np.eye(4, dtype=np.float32), ["a", "a", "b", "b"])
    idx = Indexed(matrix, top_n=1)
    assert idx.matrix.codewords.shape == (2, 4)
    assert idx.search(np.array([[0, 0, 1, 0.9]], np.float32)).identities.tolist() == [[1]]


def test_empty_gallery_and_bad_input():
    empty = TemplateMatrix.from_arrays(np.zeros((0, 4), np.float32), [])
    matrix = TemplateMatrix.from_arrays(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    for strategy in STRATEGIES:
        with pytest.raises(EmptyGalleryError):
            make_searcher(strategy, empty).search(np.ones((1, 4), np.float32))
        s = make_searcher(strategy, matrix)
        with pytest.raises(ModelMismatchError):
            s.search(np.ones((2, 5), np.float32))
        with pytest.raises(ConfigError):
            s.search(np.array([[np.nan, 0, 0, 1]], np.float32))
        with pytest.raises(ConfigError):
            s.search(np.ones((1, 4), np.float32), k=0)
        assert len(s.search(np.zeros((0, 4), np.float32), k=2)) == 0
    with pytest.raises(ConfigError):
        make_searcher("brute", matrix)
    with pytest.raises(ConfigError):
        make_searcher("indexed", matrix, top_n=0)
    with pytest.raises(ConfigError):
        make_searcher("parallel", matrix, workers=0)


@pytest.mark.parametrize("n_probes", [1, 3, 40])
def test_top1_paths_keep_exact_duplicates_across_identities(n_probes, monkeypatch):
    """k = 1 (argmax + masked second max; template-major path for <= FEW_PROBES probes): a probe
    equal to a template shared by several identities goes to the lowest identity index, like the
    float64 brute force, in every chunking."""
    rng = np.random.default_rng(n_probes)
    x = rng.normal(size=(60, 12)).astype(np.float32)
    x[[7, 23, 41]] = x[50]  # one template in four identities (rows 7, 23, 41, 50)
    x[11] = x[3] + np.float32(1e-7)  # a near-duplicate within float32 rounding
    matrix = TemplateMatrix.from_arrays(x, [f"id{i // 4:02d}" for i in range(60)], model_id="t")
    probes = np.concatenate([x[[50, 3]], rng.normal(size=(max(n_probes - 2, 0), 12))])[:n_probes]
    ids, _ = brute_force(matrix, probes, 1)
    monkeypatch.setattr(tuning, "DIRECT_BYTES", 0)  # the chunked kernel, not the direct path
    for rows in (5, 8, 64):  # chunks of `rows` templates (identities span chunks at 5)
        monkeypatch.setattr(tuning, "MIN_CHUNK_ROWS", rows)
        monkeypatch.setattr(tuning, "FEW_BLOCK_BYTES", 4 * rows)
        res = Exhaustive(matrix, block_bytes=4 * rows).search(probes, 1)
        np.testing.assert_array_equal(res.identities[:, :1], ids)
    monkeypatch.undo()
    direct = Exhaustive(matrix).search(probes, 1)  # one product for <= FEW_PROBES probes
    np.testing.assert_array_equal(direct.identities[:, :1], ids)
    if n_probes <= tuning.FEW_PROBES:
        assert 60 * n_probes < direct.distance_evaluations <= 66 * n_probes  # + the few band rows
    assert res.identities[0, 0] == 1  # row 7 -> identity 1, the lowest of 1, 5, 10, 12


@SETTINGS
@given(galleries(), st.integers(1, 3))
def test_direct_top1_path_equals_chunked_kernel(case, workers):
    """The one-product k = 1 path for a few probes is bit-identical to the chunked kernel."""
    matrix, probes, _ = case
    direct = Exhaustive(matrix).search(probes, 1)
    assert_same(Parallel(matrix, workers=workers).search(probes, 1), direct)
    saved = tuning.DIRECT_BYTES
    tuning.DIRECT_BYTES = 0
    try:
        assert_same(Exhaustive(matrix).search(probes, 1), direct)
    finally:
        tuning.DIRECT_BYTES = saved


def test_probe_normalisation_one_probe_shortcut_equals_the_batch_rows():
    """`l2_normalize`'s one-probe shortcut gives exactly the rows the batch line gives; a NaN or an
    infinite value anywhere (also a float64 value past float32's range) is refused, while finite
    values whose squared norm overflows are not."""
    from hybridface.vectors import l2_normalize

    x = np.random.default_rng(3).standard_normal((50, 60)).astype(np.float32)
    whole = l2_normalize(x)
    for i in range(len(x)):
        one = l2_normalize(x[i : i + 1], check_finite=True)
        assert one.flags.c_contiguous and one.dtype == np.float32
        assert np.array_equal(one, whole[i : i + 1])
    assert np.array_equal(l2_normalize(np.zeros((1, 60))), np.zeros((1, 60), np.float32))
    matrix = TemplateMatrix.from_arrays(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    for bad in ([[np.inf, 0, 0, 1]], [[0, 0, -np.inf, 0]], [[1e39, 0, 0, 0]], [[np.nan, 0, 0, 1]],
                [[1, 0, 0, 0], [0, np.nan, 0, 0]], [[1, 0, 0, 0], [0, 0, np.inf, 0]]):  # one row, then batches
        with pytest.raises(ConfigError, match="NaN or infinite"), np.errstate(over="ignore"):
            matrix.check_probes(np.array(bad, np.float64))
    with np.errstate(over="ignore"):
        assert np.isfinite(matrix.check_probes(np.array([[1e30, 0, 0, 0]], np.float32))).all()
