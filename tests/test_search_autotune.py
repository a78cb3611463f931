"""The compiled k = 1 cell kernel, auto-tuned cells for a target recall, and the benchmark's
one-line refusals (bad --recall, a --sizes that will not fit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybridface.errors import OptionError
from hybridface.search.autotune import SMALL_TOP_N, TOP_N_GRID, check_recall, default_cells, tune_cells
from hybridface.search.strategies import Exhaustive, Hybrid, Indexed
from search_data import assert_same, clustered

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spill", [1, 2])
def test_compiled_cells_equal_the_numpy_cells_path(monkeypatch, spill):
    pytest.importorskip("numba")
    from hybridface.search import cellscan

    matrix, probes = clustered(400, 5, 300, d=32, seed=3)
    fast = [Indexed(matrix, top_n=8, cells=16, probe_cells=4, spill=spill),
            Hybrid(matrix, top_n=8, workers=2, cells=16, probe_cells=4, spill=spill)]
    got = [s.search(probes, 1) for s in fast] + [fast[0].search(probes[:1], 1)]
    monkeypatch.setattr(cellscan, "cell_kernel", lambda: None)  # force the NumPy shortlist path
    want = [s.search(probes, 1) for s in fast] + [fast[0].search(probes[:1], 1)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.identities, w.identities)
        np.testing.assert_array_equal(g.distances, w.distances)  # the same float64 re-scoring
        np.testing.assert_array_equal(g.template_ids, w.template_ids)


def test_compiled_cells_visiting_every_cell_is_exhaustive():
    pytest.importorskip("numba")
    matrix, probes = clustered(300, 4, 200, d=24, seed=4)
    full = Hybrid(matrix, top_n=299, workers=1, cells=8, probe_cells=8)
    assert_same(full.search(probes, 1), Exhaustive(matrix).search(probes, 1))


def test_int8_cell_codes_keep_the_answer_an_exact_rerank(monkeypatch):
    """Past INT8_SCAN_BYTES the kernel scans int8 codeword and centre codes: the shortlist's scores are
    approximate, but every answer is still the exact float64 re-score of a shortlisted template,
    one probe alone answers as in a batch, and the answers match the float32 scan's."""
    pytest.importorskip("numba")
    from hybridface.search import shortlist

    matrix, probes = clustered(600, 5, 400, d=60, seed=7)
    flt = Hybrid(matrix, top_n=6, workers=1, cells=32, probe_cells=6)
    monkeypatch.setattr(shortlist, "INT8_SCAN_BYTES", 0)  # every gallery gets codes
    i8 = Hybrid(matrix, top_n=6, workers=1, cells=32, probe_cells=6)
    assert i8._cells.scan8.dtype == np.int8 and i8._cells.scan8.shape[0] == len(i8._cells.identity)
    assert i8._cells.scan.shape[0] == 0 and flt._cells.scan8.shape[0] == 0  # one copy each
    c = i8._cells  # the centres too: int8 codes (read by the one-probe kernel), float32 = code * scale
    assert c.centres8_t.shape == (60, 32) and c.centres_t.shape == (60, 0) and flt._cells.centres8_t.shape == (60, 0)
    assert np.array_equal(c.centres, (c.centres8_t.T * c.centre_scale[:, None]).astype(np.float32))
    got, want = i8.search(probes, 1), flt.search(probes, 1)
    assert (got.identities == want.identities).mean() >= 0.99
    pos = np.searchsorted(matrix.template_ids, got.template_ids[:, 0])
    unit = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    dots = np.einsum("ij,ij->i", matrix.vectors[pos], unit.astype(np.float32), dtype=np.float64)
    np.testing.assert_allclose(got.distances[:, 0], (1 - dots).astype(np.float32), atol=1e-6)
    for i in range(0, 400, 37):  # the single-probe path answers as the batch does
        one = i8.search(probes[i:i + 1], 1)
        assert one.identities[0, 0] == got.identities[i, 0] and one.template_ids[0, 0] == got.template_ids[i, 0]


def test_spilled_codewords_are_found_in_fewer_cells():
    """Filing each codeword in its 2 nearest cells: the scan holds 2 copies, and the same cells
    visited find the exact answer at least as often (here: strictly more often)."""
    pytest.importorskip("numba")
    matrix, probes = clustered(3000, 4, 600, d=24, seed=5, noise=0.35)
    exact = Exhaustive(matrix).search(probes, 1).identities[:, 0]
    one, two = (Hybrid(matrix, top_n=5, workers=1, cells=64, probe_cells=2, spill=s) for s in (1, 2))
    assert two._cells.identity.shape[0] == 2 * one._cells.identity.shape[0]
    r1, r2 = ((s.search(probes, 1).identities[:, 0] == exact).mean() for s in (one, two))
    assert r2 > r1
    with pytest.raises(Exception, match="spill"):
        Hybrid(matrix, cells=64, spill=0)


def test_tuning_reaches_the_target_recall_on_held_out_queries():
    pytest.importorskip("numba")
    matrix, probes = clustered(2000, 4, 800, d=24, seed=1, noise=0.35)
    tune, test = probes[:400], probes[400:]
    t = tune_cells(matrix, tune, recall=0.97, cells=32)
    assert t.recall >= 0.97 and t.cells == 32 and 1 <= t.probe_cells <= 32 and t.top_n in TOP_N_GRID + SMALL_TOP_N
    s = Hybrid(matrix, top_n=t.top_n, workers=1, cells=t.cells, probe_cells=t.probe_cells)
    exact = Exhaustive(matrix).search(test, 1).identities[:, 0]
    assert (s.search(test, 1).identities[:, 0] == exact).mean() >= 0.94  # held out: close to target
    assert t.probe_cells < 32  # it did not just visit everything


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, float("nan"), "x", None])
def test_recall_outside_zero_one_is_one_line(bad):
    with pytest.raises(OptionError) as e:
        check_recall(bad)
    assert "(0, 1]" in str(e.value) and "\n" not in str(e.value)
    assert check_recall(1) == 1.0


def test_default_cells():
    assert default_cells(10) == 1 and default_cells(10_000) == 512 and default_cells(100_000) == 2048


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search.py"), *args, "--out", "/nonexistent"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_benchmark_refuses_bad_recall_and_sizes_that_do_not_fit_in_one_line():
    pytest.importorskip("faiss")
    r = _bench("--recall", "1.5", "--sizes", "1000")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "recall=1.5" in r.stderr
    r = _bench("--sizes", "100000000000", "--data", "clustered", "--threads", "1", "--methods", "exhaustive")
    assert r.returncode != 0 and "will not fit" not in r.stdout
    last = r.stderr.strip().splitlines()
    assert len(last) == 1 and "GiB" in last[0] and "available" in last[0], r.stderr


def test_single_probe_lean_path_equals_the_batch_answer(monkeypatch):
    """One probe takes `cellscan.SingleTop1`; its answers match the batch path's, and the
    NumPy cell path's, probe by probe (identity, float64-rescored distance, template id)."""
    pytest.importorskip("numba")
    from hybridface.search import cellscan

    matrix, probes = clustered(400, 5, 60, d=32, seed=5)
    s = Hybrid(matrix, top_n=8, workers=1, cells=16, probe_cells=4)
    batch = s.search(probes, 1)
    calls = []
    real = cellscan.SingleTop1.__call__
    monkeypatch.setattr(cellscan.SingleTop1, "__call__", lambda *a: calls.append(1) or real(*a))
    alone = [s.search(probes[i : i + 1], 1) for i in range(len(probes))]
    assert len(calls) == len(probes)
    monkeypatch.setattr(cellscan, "cell_kernel", lambda: None)  # the NumPy cell path
    numpy_alone = [s.search(probes[i : i + 1], 1) for i in range(len(probes))]
    for i, (a, w) in enumerate(zip(alone, numpy_alone)):
        for got in (a, w):
            assert got.identities[0, 0] == batch.identities[i, 0]
            assert got.distances[0, 0] == batch.distances[i, 0]
            assert got.template_ids[0, 0] == batch.template_ids[i, 0]
            assert got.identities.dtype == np.int64 and got.distances.dtype == np.float32


def test_reaching_a_recall_needs_confidence_not_a_touch():
    from hybridface.search.autotune import reaches

    assert not reaches(0.99, 500, 0.99)  # touching the target on 500 queries is not enough
    assert reaches(0.998, 2000, 0.99) and not reaches(0.992, 2000, 0.99)
    assert reaches(1.0, 10, 1.0) and not reaches(0.999, 100000, 1.0)


def test_recall_curve_benchmark_compares_both_methods_at_equal_recall(tmp_path):
    """`benchmarks/search_curve.py` sweeps hybrid-cells' probe_cells and IVF's nprobe around their
    tuned values and names, for each, the fastest point whose recall on the timed probes reaches
    the target; a bad --recall, --size, --batch or --single is one line, exit 2."""
    pytest.importorskip("faiss")
    script = str(ROOT / "benchmarks" / "search_curve.py")
    r = subprocess.run([sys.executable, script, "--size", "6000", "--recall", "0.95", "--batch", "200",
                        "--single", "5", "--repeats", "1", "--name", "c", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    points = json.loads((tmp_path / "c.json").read_text())
    for method in ("hybrid-cells", "faiss-ivf"):
        mine = [p for p in points if p["method"] == method]
        assert len(mine) >= 3 and sum(p["tuned"] for p in mine) == 1
        assert all(0.0 <= p["recall"] <= 1.0 and p["qps_batch"] > 0 and p["qps_1"] > 0 for p in mine)
    text = (tmp_path / "c.md").read_text()
    assert "At recall@1 >= 0.95" in text and (tmp_path / "c.png").stat().st_size > 0
    assert text.count("×**") == 2 or "reached no point" in text
    r = subprocess.run([sys.executable, script, "--recall", "0"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].count("recall=0") == 1
    for bad, name in ((["--size", "0"], "--size"), (["--batch", "0"], "--batch"), (["--single", "-1"], "--single")):
        r = subprocess.run([sys.executable, script, *bad], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 2 and "Traceback" not in r.stderr and name in r.stderr.strip().splitlines()[-1]
