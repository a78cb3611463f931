"""int8 template storage (`Exhaustive(storage="int8")`): certified band, bit-identical answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from test_search_strategies import SETTINGS, assert_same, galleries

from hybridface.errors import ConfigError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search import int8, runtime
from hybridface.search.strategies import Exhaustive
from hybridface.search.int8 import int8_band, quantize_int8


def clustered(n_ids: int, per: int, d: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_ids, d)).astype(np.float32)
    x = np.repeat(c, per, axis=0) + 0.08 * rng.standard_normal((n_ids * per, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@SETTINGS
@given(galleries(), st.integers(1, 4))
def test_int8_equals_float32_on_tied_galleries(case, n_probes):
    matrix, probes, k = case
    probes = np.resize(probes, (n_probes, probes.shape[1]))
    q8, f32 = Exhaustive(matrix, storage="int8"), Exhaustive(matrix)
    assert_same(q8.search(probes, 1), f32.search(probes, 1))
    assert_same(q8.search(probes, k), f32.search(probes, k))  # k > 1: float32 path


def test_int8_equals_float32_clustered_with_shared_templates():
    x = clustered(700, 6)
    x[600:606] = x[0:6]  # identity 100 duplicates identity 0
    x[3000:3006] = x[0:6]  # ... and identity 500 too
    names = [f"id{i}" for i in range(700) for _ in range(6)]
    matrix = TemplateMatrix.from_arrays(x, names)
    q8, f32 = Exhaustive(matrix, storage="int8"), Exhaustive(matrix)
    rng = np.random.default_rng(1)
    probes = x[rng.choice(len(x), 30)] + 0.1 * rng.standard_normal((30, 60)).astype(np.float32)
    for a in range(0, 30, 3):
        assert_same(q8.search(probes[a : a + 3], 1), f32.search(probes[a : a + 3], 1))
    shared = q8.search(x[[2, 601, 3004, 7]], 1)  # a template shared by identities 0, 100, 500
    assert_same(shared, f32.search(x[[2, 601, 3004, 7]], 1))
    assert shared.identities[:3, 0].tolist() == [0, 0, 0]  # tie -> lowest identity
    assert q8.int8_ is not None and f32.int8_ is None


@pytest.mark.parametrize("d", [60, 200])
def test_error_bound_is_true_and_band_holds_every_exact_best(d):
    rng = np.random.default_rng(2)
    x = clustered(400, 5, d, seed=3)
    x[:, 7] = 0.0  # an all-zero column (scale guard)
    q8 = quantize_int8(x)
    xhat = q8.codes.astype(np.float64) * q8.scale.astype(np.float64)
    assert q8.codes.shape == x.shape and q8.codes.dtype == np.int8 and q8.scale[7] == 1.0
    assert (q8.err.astype(np.float64) >= np.linalg.norm(x - xhat, axis=1)).all()
    assert q8.err.max() < 0.05  # int8 codes are a useful approximation
    probes = np.concatenate([x[rng.choice(len(x), 6)], rng.standard_normal((6, d)).astype(np.float32)])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    for p in probes.reshape(3, 4, d):
        pr, rows = int8_band(p, q8)
        exact = p.astype(np.float64) @ x.astype(np.float64).T
        for j in range(4):
            best = np.flatnonzero(exact[j] == exact[j].max())
            assert set(best) <= set(rows[pr == j].tolist())
            assert len(rows[pr == j]) < 0.05 * len(x)  # the band is a small shortlist


def test_band_growth_with_many_identical_rows(monkeypatch):
    monkeypatch.setattr(int8, "BAND_CAPACITY", 4)
    rng = np.random.default_rng(4)
    x = np.repeat(clustered(1, 1), 3000, axis=0)  # 3000 identical templates: all in the band
    x[1500] = clustered(1, 1, seed=9)[0]
    names = [f"id{i}" for i in range(1000) for _ in range(3)]
    matrix = TemplateMatrix.from_arrays(x, names)
    q8, f32 = Exhaustive(matrix, storage="int8"), Exhaustive(matrix)
    probes = np.concatenate([x[:1], rng.standard_normal((3, 60)).astype(np.float32)])
    got = q8.search(probes, 1)
    assert_same(got, f32.search(probes, 1))
    assert got.identities[0, 0] == 0 and got.distance_evaluations > len(x) + 2000


def test_bad_storage_and_bad_input():
    matrix = TemplateMatrix.from_arrays(clustered(3, 2), [f"id{i}" for i in range(3) for _ in range(2)])
    with pytest.raises(ConfigError, match="storage"):
        Exhaustive(matrix, storage="float16")
    with pytest.raises(ConfigError, match="shape"):
        quantize_int8(np.zeros(5, np.float32))
    with pytest.raises(ConfigError, match="NaN"):
        quantize_int8(np.full((2, 3), np.nan, np.float32))
    empty = quantize_int8(np.zeros((0, 4), np.float32))
    assert empty.codes.shape == (0, 4) and empty.err.shape == (0,)


def test_missing_numba_is_a_clear_config_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_numba(name, *args, **kwargs):
        if name == "numba":
            raise ImportError("no numba")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(runtime, "_KERNELS", {})  # no kernel loaded yet in this test
    monkeypatch.setattr(builtins, "__import__", no_numba)
    matrix = TemplateMatrix.from_arrays(clustered(2, 2), ["a", "a", "b", "b"])
    with pytest.raises(ConfigError, match="numba"):
        Exhaustive(matrix, storage="int8")
