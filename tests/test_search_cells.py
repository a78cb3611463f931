"""Coarse LBG cells over the identity codewords (`Indexed`/`Hybrid` with ``cells=``)."""

from __future__ import annotations

import pytest

from hybridface.errors import ConfigError
from hybridface.index.lbg import build_codebooks
from hybridface.search.strategies import Exhaustive, Hybrid, Indexed
from search_data import assert_same, clustered


@pytest.mark.parametrize("codewords", [1, 2])
def test_visiting_every_cell_equals_the_flat_shortlist(codewords):
    matrix, probes = clustered(60, 4, 25)
    matrix = build_codebooks(matrix, codewords=codewords)
    flat = Indexed(matrix, top_n=5)
    celled = Indexed(matrix, top_n=5, cells=6, probe_cells=6)
    assert celled._cells is not None and celled._cells.num_cells == 6
    for k in (1, 3):
        assert_same(celled.search(probes, k), flat.search(probes, k))
        assert_same(Hybrid(matrix, top_n=5, workers=2, cells=6, probe_cells=6).search(probes, k), flat.search(probes, k))
    short, _ = celled.shortlist(matrix.check_probes(probes), 5)
    for row in short:  # identities are unique in a shortlist, also with several codewords each
        assert len(set(row[row >= 0].tolist())) == len(row[row >= 0])


def test_few_cells_cut_evaluations_and_keep_recall():
    matrix, probes = clustered(2000, 3, 200, d=24, seed=1)
    exact = Exhaustive(matrix).search(probes, 1).identities[:, 0]
    flat = Hybrid(matrix, top_n=10, workers=1).search(probes, 1)
    celled = Hybrid(matrix, top_n=10, workers=1, cells=64, probe_cells=8).search(probes, 1)
    assert (flat.identities[:, 0] == exact).mean() == 1.0
    assert (celled.identities[:, 0] == exact).mean() >= 0.95
    # flat: 2000 codewords + 10 x 3 templates per probe (+ the few band rows re-scored in float64);
    # celled: 64 centres + the codewords of 8 of the 64 cells + the same templates
    assert 200 * (2000 + 30) <= flat.distance_evaluations <= 200 * (2000 + 40)
    assert celled.distance_evaluations < 0.3 * flat.distance_evaluations


def test_cells_bad_input_and_fallback_to_flat():
    matrix, probes = clustered(10, 2, 3)
    with pytest.raises(ConfigError):
        Indexed(matrix, cells=0)
    with pytest.raises(ConfigError):
        Hybrid(matrix, cells=4, probe_cells=0)
    flat = Indexed(matrix, top_n=3)
    big = Indexed(matrix, top_n=3, cells=10)  # as many cells as codewords: no coarse level
    assert big._cells is None
    assert_same(big.search(probes, 2), flat.search(probes, 2))


def test_few_probe_gather_path_shortlists_the_same_identities(monkeypatch):
    from hybridface.search import shortlist as cells_module

    matrix, probes = clustered(300, 3, 3, seed=2)
    idx = Indexed(matrix, top_n=7, cells=12, probe_cells=4)
    p = matrix.check_probes(probes)
    gathered, ev1 = idx.shortlist(p, 7)  # 3 probes: one gathered product per probe
    monkeypatch.setattr(cells_module, "FEW_PROBES", 0)  # a product per visited cell instead
    looped, ev2 = idx.shortlist(p, 7)
    assert ev1 == ev2
    for a, b in zip(gathered, looped):
        assert sorted(a.tolist()) == sorted(b.tolist())
