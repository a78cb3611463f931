"""LBG codebooks: centroid at size 1, determinism, monotone distortion, no empty codewords."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridface.errors import ConfigError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.index.lbg import build_codebooks, lbg, lbg_fit, quantize_identity

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def vector_sets(draw):
    d = draw(st.integers(2, 6))
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if draw(st.booleans()):  # clustered, with duplicates
        x = np.repeat(x[: max(1, n // 4)], 4 + n % 4, axis=0)[:n] + 0.01 * draw(st.integers(0, 1)) * rng.standard_normal((n, d)).astype(np.float32)
    return x


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@SETTINGS
@given(vector_sets(), st.sampled_from([1, 2, 3, 4, 8]), st.sampled_from(["all", "worst"]))
def test_lbg_properties(x, size, split):
    cb = lbg_fit(x, size, split=split)
    n_distinct = len(np.unique(_unit(x.astype(np.float64)).astype(np.float32), axis=0))
    assert 1 <= len(cb.codewords) <= min(size, n_distinct)
    assert np.allclose(np.linalg.norm(cb.codewords, axis=1), 1.0, atol=1e-5)
    # every codeword owns at least one vector, and assignments are the nearest codewords
    assert (np.bincount(cb.assignments, minlength=len(cb.codewords)) > 0).all()
    sims = _unit(x.astype(np.float64)) @ cb.codewords.T.astype(np.float64)
    assert np.allclose(sims.max(axis=1), sims[np.arange(len(x)), cb.assignments], atol=1e-6)
    for stage in cb.history:  # Lloyd iterations never increase the distortion
        assert all(b <= a + 1e-12 for a, b in zip(stage, stage[1:]))
    assert cb.distortion <= cb.history[0][0] + 1e-3  # a larger codebook does not do worse than 1
    again = lbg_fit(x, size, split=split)
    np.testing.assert_array_equal(again.codewords, cb.codewords)


@SETTINGS
@given(vector_sets())
def test_size_one_is_the_normalised_centroid(x):
    c = lbg(x, 1)
    mean = _unit(x.astype(np.float64)).mean(axis=0)
    if np.linalg.norm(mean) > 1e-3:
        np.testing.assert_allclose(c[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_well_separated_clusters_are_found():
    rng = np.random.default_rng(1)
    centers = np.eye(8)[:4] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((20, 8)) for c in centers]).astype(np.float32)
    two = lbg_fit(x[:40], 2)  # classic splitting separates two clusters
    assert sorted(np.argmax(two.codewords, axis=1).tolist()) == [0, 1]
    cb = lbg_fit(x, 4, split="worst")
    assert len(cb.codewords) == 4
    assert sorted(np.argmax(cb.codewords, axis=1).tolist()) == [0, 1, 2, 3]
    assert cb.distortion < lbg_fit(x, 2, split="worst").distortion < lbg_fit(x, 1).distortion


def test_fewer_templates_than_codewords():
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32)
    assert quantize_identity(x, codewords=8).shape == (2, 3)
    assert quantize_identity(x[:1], codewords=4).shape == (1, 3)


def test_build_codebooks_per_identity_and_matches_quantize_identity():
    rng = np.random.default_rng(2)
    v = rng.standard_normal((30, 5)).astype(np.float32)
    names = np.repeat(["a", "b", "c"], [1, 9, 20])
    m = TemplateMatrix.from_arrays(v, names)
    one = build_codebooks(m, codewords=1)
    assert one.codewords.shape == (3, 5) and one.codeword_labels.tolist() == [0, 1, 2]
    np.testing.assert_allclose(one.codewords[2], lbg(m.vectors[m.rows(2)], 1)[0], atol=1e-6)
    four = build_codebooks(m, codewords=4)
    assert np.bincount(four.codeword_labels).tolist() == [1, 4, 4]
    np.testing.assert_array_equal(four.codewords[four.codeword_labels == 1], quantize_identity(m.vectors[m.rows(1)], codewords=4))
    empty = build_codebooks(TemplateMatrix.from_arrays(np.zeros((0, 5), np.float32), []))
    assert empty.codewords.shape == (0, 5)


def test_bad_input():
    with pytest.raises(ConfigError):
        lbg(np.zeros((0, 3), np.float32), 1)
    with pytest.raises(ConfigError):
        lbg(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ConfigError):
        lbg(np.ones((3, 2)), 0)
    with pytest.raises(ConfigError):
        quantize_identity(np.ones((3, 2)), codewords=3)
    with pytest.raises(ConfigError):
        lbg(np.ones((3, 2)), 2, split="some")
    with pytest.raises(ConfigError):
        build_codebooks(TemplateMatrix.from_arrays(np.eye(2, dtype=np.float32), ["a", "b"]), codewords=16)


def test_lbg_fit_runs_blas_single_threaded_and_restores_it(monkeypatch):
    """Each split solves a small LAPACK problem per cell; with OpenBLAS threads on a busy machine
    these ran up to 10x slower (docs/search.md), so the fit holds BLAS at one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from hybridface.index import lbg as lbg_module

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    seen = []
    real = lbg_module._split_directions

    def spy(*args):
        seen.append(blas_threads())
        return real(*args)

    monkeypatch.setattr(lbg_module, "_split_directions", spy)
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    cb = lbg_module.lbg_fit(x, 8)
    assert len(cb.codewords) == 8 and seen
    assert all(t == [1] * len(t) for t in seen)
    assert blas_threads() == before


def test_auto_codebooks_give_many_templates_more_codewords():
    """``codewords="auto"``: about one codeword per 8 templates (a supported size, at least 1);
    small identities keep the vectorised centroid, large ones get their own LBG codebook, and the
    codewords stay grouped identity after identity."""
    from hybridface.index.lbg import auto_size

    assert [auto_size(n) for n in (0, 1, 15, 16, 31, 32, 63, 64, 1000)] == [1, 1, 1, 2, 2, 4, 4, 8, 8]
    rng = np.random.default_rng(4)
    sizes = [3, 70, 1, 20, 40]
    names = [f"p{i}" for i, n in enumerate(sizes) for _ in range(n)]
    x = rng.standard_normal((sum(sizes), 16)).astype(np.float32)
    m = TemplateMatrix.from_arrays(x, names)
    auto = build_codebooks(m, codewords="auto")
    one = build_codebooks(m, codewords=1)
    assert np.bincount(auto.codeword_labels).tolist() == [1, 8, 1, 2, 4]
    assert (np.diff(auto.codeword_labels) >= 0).all()
    for i, n in enumerate(sizes):
        got = auto.codewords[auto.codeword_labels == i]
        if n < 16:
            assert np.array_equal(got, one.codewords[one.codeword_labels == i])
        else:
            want = quantize_identity(m.vectors[m.rows(i)], codewords=auto_size(n))
            assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(ConfigError, match="one of"):
        build_codebooks(m, codewords="many")
