"""The compiled k = 1 scan (search/scan.py) against the NumPy scan and a float64 brute force."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search import runtime, scan
from hybridface.search.rerank import band_tolerance
from hybridface.search.strategies import Exhaustive, Parallel
from hybridface.search.scan import band_top1

pytest.importorskip("numba", reason="numba is a core dependency (requirements.lock); the NumPy scan is tested alone without it")


def tied_gallery(seed: int, n_rows: int, d: int, levels: int):
    """Small-integer rows (many exact ties and duplicate templates) and probes drawn from them."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-levels, levels + 1, size=(n_rows, d)).astype(np.float32)
    x[np.abs(x).sum(axis=1) == 0, 0] = 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dup = rng.choice(n_rows, size=n_rows // 5, replace=False)
    x[dup] = x[rng.integers(0, n_rows, size=len(dup))]  # exact duplicates across identities
    probes = x[rng.integers(0, n_rows, size=37)] + rng.normal(0, 0.05, size=(37, d)).astype(np.float32) * (seed % 2)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return x, probes.astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([7, 64, 300]), st.sampled_from([1, 3, 60]), st.sampled_from([3, 16]))
def test_fused_band_holds_every_row_near_the_best(seed, n_rows, rc, d):
    x, p = tied_gallery(seed, n_rows, d, levels=1 if seed % 3 else 3)
    tol = band_tolerance(d)
    pr, rows, sc = scan.band_top1_fused(p, x, rc, tol, scan.top2_kernel())
    exact = p.astype(np.float64) @ x.astype(np.float64).T
    best = exact.max(axis=1)
    must = exact >= best[:, None] - tol / 4  # far inside the float32 band: always returned
    got = np.zeros_like(must)
    got[pr, rows] = True
    assert (got | ~must).all(), "a row within the band is missing"
    assert len(set(zip(pr.tolist(), rows.tolist()))) == len(pr), "a (probe, row) pair is repeated"
    f32 = (p @ x.T)[pr, rows]
    assert np.all(np.abs(f32 - sc) <= tol) and np.all(sc >= best[pr] - 2 * tol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [5, 64, 4096])
def test_fused_and_numpy_scans_give_bit_identical_searches(monkeypatch, threads, rows):
    x, p = tied_gallery(7, 400, 12, levels=1)
    names = [f"id{i // 3:03d}" for i in range(len(x))]
    matrix = TemplateMatrix.from_arrays(x, names, model_id="t")
    monkeypatch.setattr(runtime, "MIN_CHUNK_ROWS", rows)
    monkeypatch.setattr(runtime, "TOP1_BLOCK_BYTES", 4 * rows * len(p))
    monkeypatch.setattr(runtime, "FUSED_MIN_PRODUCTS", 0)  # small test gallery: use the kernel anyway
    res = {}
    for on in (True, False):
        monkeypatch.setattr(runtime, "FUSED_TOP1", on)
        res[on] = Exhaustive(matrix, threads=threads).search(p, 1)
        assert (scan.top2_kernel() is not None) is on
    monkeypatch.setattr(runtime, "FUSED_MIN_PRODUCTS", 10**9)  # below the threshold: the NumPy scan
    assert_same(Exhaustive(matrix, threads=threads).search(p, 1), res[True])
    assert_same(res[True], res[False])
    np.testing.assert_array_equal(Parallel(matrix, workers=threads).search(p, 1).identities, res[True].identities)
    exact = np.maximum.reduceat(p.astype(np.float64) @ x.astype(np.float64).T, matrix.offsets[:-1], axis=1)
    want = np.argmax(exact, axis=1)  # first maximum: ties go to the lower identity index
    np.testing.assert_array_equal(res[True].identities[:, 0], want)


def assert_same(a, b):
    for field in ("identities", "distances", "template_ids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_without_numba_the_numpy_scan_is_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.setattr(runtime, "_KERNELS", {})  # no kernel loaded yet in this test
    assert scan.top2_kernel() is None
    x, p = tied_gallery(3, 200, 8, levels=2)
    monkeypatch.setattr(runtime, "FUSED_MIN_PRODUCTS", 0)
    pr, rows, _ = band_top1(p, x, 50, band_tolerance(8))
    assert set(pr.tolist()) == set(range(len(p)))
