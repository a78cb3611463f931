"""Coarse LBG cells through the product: `make_searcher`, `Gallery.identify`, `hybridface identify
--cells`, and the sharded engines (local threads; Ray actors on a real cluster when
``HYBRIDFACE_RAY_ADDRESS`` is set, as in tests/test_engine_ray.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hybridface.cli import main
from hybridface.engines.local import LocalEngine, make_engine
from hybridface.errors import ConfigError
from hybridface.search import make_searcher
from search_data import assert_same, clustered, face_folders, vector_gallery

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")


@pytest.fixture(scope="module")
def gallery():
    return clustered(240, 3, 60, seed=4)


# ---------------------------------------------------------------------------- make_searcher
@pytest.mark.parametrize("strategy", ["indexed", "hybrid"])
def test_make_searcher_visiting_every_cell_equals_the_flat_shortlist(gallery, strategy):
    matrix, probes = gallery
    flat = make_searcher(strategy, matrix, top_n=6, workers=2)
    for probe_cells in (8, 100):  # probe_cells > cells: every cell
        celled = make_searcher(strategy, matrix, top_n=6, workers=2, cells=8, probe_cells=probe_cells)
        assert celled._cells is not None and celled._cells.num_cells == 8
        for k in (1, 4):
            got, want = celled.search(probes, k), flat.search(probes, k)
            assert_same(got, want)
            # 8 centres per probe on top of the flat search's evaluations
            assert got.distance_evaluations == want.distance_evaluations + 8 * len(probes)


def test_make_searcher_few_cells_visited_cut_the_codeword_stage(gallery):
    matrix, probes = gallery
    flat = make_searcher("hybrid", matrix, top_n=6, workers=1).search(probes, 1)
    exact = make_searcher("exhaustive", matrix).search(probes, 1)
    few = make_searcher("hybrid", matrix, top_n=6, workers=1, cells=16, probe_cells=4).search(probes, 1)
    assert few.distance_evaluations < 0.6 * flat.distance_evaluations
    assert (few.identities[:, 0] == exact.identities[:, 0]).mean() >= 0.9
    assert (few.distances[:, 0] >= exact.distances[:, 0]).all()  # never better than exact


@pytest.mark.parametrize("strategy", ["exhaustive", "parallel"])
def test_exact_strategies_ignore_cells(gallery, strategy):
    matrix, probes = gallery
    assert_same(make_searcher(strategy, matrix, workers=2, cells=4, probe_cells=1).search(probes, 3),
                make_searcher(strategy, matrix, workers=2).search(probes, 3))


@pytest.mark.parametrize("strategy", ["exhaustive", "indexed", "parallel", "hybrid"])
@pytest.mark.parametrize("cells, probe_cells, name", [
    (0, 16, "cells"), (-3, 16, "cells"), (2.5, 16, "cells"), (True, 16, "cells"), ("8", 16, "cells"),
    (None, 0, "probe_cells"), (8, 0, "probe_cells"), (8, -1, "probe_cells"),
])
def test_bad_cells_are_config_errors(gallery, strategy, cells, probe_cells, name):
    matrix, _ = gallery
    with pytest.raises(ConfigError, match=f"^{name} must be a positive integer"):
        make_searcher(strategy, matrix, cells=cells, probe_cells=probe_cells)


# ---------------------------------------------------------------------------- Gallery facade
@pytest.fixture()
def vec_gallery(tmp_path):
    g, probes = vector_gallery(tmp_path / "v.db", per=30)
    yield g, probes
    g.close()


def _answers(found):
    return [(a.identity, [n for n, _ in a.candidates]) for a in found]


def test_gallery_identify_with_cells(vec_gallery):
    g, probes = vec_gallery
    exact = g.identify(probes, strategy="exhaustive", k=3)
    flat = g.identify(probes, strategy="hybrid", top_n=5, workers=1, k=3)
    celled = g.identify(probes, strategy="hybrid", top_n=5, workers=1, k=3, cells=6, probe_cells=6)
    assert [a.identity for a in celled] == [a.identity for a in exact]
    assert _answers(celled) == _answers(flat)
    # the cached searcher is keyed by the cell options too
    _, s1 = g.searcher("hybrid", top_n=5, workers=1, cells=6, probe_cells=6)
    _, s2 = g.searcher("hybrid", top_n=5, workers=1, cells=6, probe_cells=2)
    _, s0 = g.searcher("hybrid", top_n=5, workers=1)
    assert s1 is g.searcher("hybrid", top_n=5, workers=1, cells=6, probe_cells=6)[1]
    assert len({id(s0), id(s1), id(s2)}) == 3
    assert s0._cells is None and s1._cells.num_cells == 6 and s2.probe_cells == 2
    one = g.identify(probes, strategy="indexed", top_n=5, k=1, cells=6, probe_cells=1)
    assert all(a.distance >= e.distance - 1e-6 for a, e in zip(one, exact))
    with pytest.raises(ConfigError, match="cells must be a positive integer"):
        g.identify(probes, strategy="hybrid", cells=0)
    with pytest.raises(ConfigError, match="probe_cells must be a positive integer"):
        g.identify(["missing.png"], strategy="hybrid", cells=4, probe_cells=0)  # before any image work


# ---------------------------------------------------------------------------- CLI
MODEL = "paper"  # the authors' weights when present, else its seeded init: plumbing only


def test_cli_identify_with_cells(tmp_path, capsys):
    data, probes = face_folders(tmp_path)
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", str(data), "--db", db, "--model", MODEL]) == 0
    capsys.readouterr()
    base = ["identify", str(probes), "--db", db, "--model", MODEL, "--k", "2", "--json"]
    assert main([*base, "--strategy", "exhaustive"]) == 0
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main([*base, "--strategy", "hybrid", "--top-n", "2", "--cells", "2", "--probe-cells", "2"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(got) == 4 and [r["identity"] for r in got] == [r["identity"] for r in want]
    assert main(["identify", str(probes), "--db", db, "--model", MODEL, "--cells", "2"]) == 0  # table
    assert "identity" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--cells", "0"], "error: cells must be a positive integer"),
    (["--cells", "-2"], "error: cells must be a positive integer"),
    (["--cells", "4", "--probe-cells", "0"], "error: probe_cells must be a positive integer"),
])
def test_cli_bad_cells_one_line_exit_2(vec_gallery, capsys, flags, message):
    g, _ = vec_gallery
    rc = main(["identify", "missing.png", "--db", str(g.path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(message)


# ---------------------------------------------------------------------------- engines
def test_local_engine_builds_cells_per_shard_and_keeps_them_after_updates(gallery):
    matrix, probes = gallery
    flat = LocalEngine(matrix, strategy="hybrid", top_n=6, workers=1, shards=2)
    every = LocalEngine(matrix, strategy="hybrid", top_n=6, workers=1, shards=2, cells=8, probe_cells=8)
    for s, part in zip(every._searchers, every._parts):  # cells over the shard's own identities
        assert s._cells.num_cells == 8 and s._cells.identity.max() < part.num_identities
    got, want = every.search(probes, 3), flat.search(probes, 3)
    np.testing.assert_array_equal(got.identities, want.identities)
    np.testing.assert_array_equal(got.distances, want.distances)
    assert got.distance_evaluations == want.distance_evaluations + 2 * 8 * len(probes)
    shard = every.add("newcomer", probes[:2])
    assert every._searchers[shard]._cells.num_cells == 8 and every._searchers[shard].probe_cells == 8
    few = make_engine("local", matrix, strategy="hybrid", top_n=6, workers=1, shards=2, cells=8, probe_cells=1)
    assert few.search(probes, 1).distance_evaluations < want.distance_evaluations
    for e in (flat, every, few):
        e.close()


def test_ray_shard_actor_passes_cells_to_its_searcher(gallery):
    from hybridface.engines.ray import ShardActor

    matrix, probes = gallery
    actor = ShardActor(matrix, "hybrid", 6, 1, (), 8, 3)  # the class a Ray actor runs, in-process
    assert actor.searcher._cells.num_cells == 8 and actor.searcher.probe_cells == 3
    actor.update("add", {"name": "newcomer", "vectors": probes[:2]})
    assert actor.searcher._cells.num_cells == 8 and actor.searcher.probe_cells == 3
    assert_same(actor.search(probes, 2),
                make_searcher("hybrid", actor.matrix, top_n=6, workers=1, cells=8, probe_cells=3).search(probes, 2))


def test_ray_engine_rejects_bad_cells_before_starting_ray(gallery):
    matrix, _ = gallery
    with pytest.raises(ConfigError, match="cells must be a positive integer"):
        make_engine("ray", matrix, strategy="hybrid", cells=0, address="127.0.0.1:1")


@pytest.mark.skipif(not ADDRESS, reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with "
                    "`eval $(scripts/ray_cluster.sh start)` to run the multi-node Ray tests")
def test_ray_engine_with_cells_equals_the_local_sharded_engine(gallery):
    pytest.importorskip("ray")
    from hybridface.engines.ray import RaySearcher, connect

    matrix, probes = gallery
    connect(ADDRESS, timeout_s=30)
    for probe_cells in (8, 1):
        local = LocalEngine(matrix, strategy="hybrid", top_n=6, workers=1, shards=2, cells=8, probe_cells=probe_cells)
        want = local.search(probes, 3)
        with RaySearcher(matrix, strategy="hybrid", top_n=6, workers=1, shards=2, cells=8,
                         probe_cells=probe_cells) as rs:
            got = rs.search(probes, 3)
        local.close()
        np.testing.assert_array_equal(got.identities, want.identities)
        np.testing.assert_array_equal(got.distances, want.distances)
        # the evaluation count shows the cells reached the actors (cells change it)
        assert got.distance_evaluations == want.distance_evaluations
