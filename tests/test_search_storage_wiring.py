"""int8 template storage through the product: `make_searcher`, `Gallery.identify`, `hybridface
identify --storage`, `run_protocol`, the service (``hybridface serve --storage``) and the sharded
engines (local threads; Ray actors on a real cluster when ``HYBRIDFACE_RAY_ADDRESS`` is set, as in
tests/test_search_cells_wiring.py). Every answer must equal the float32 one exactly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hybridface.cli import main
from hybridface.engines.local import LocalEngine, make_engine
from hybridface.errors import ConfigError
from hybridface.search import STRATEGIES, make_searcher
from hybridface.search.tuning import FEW_PROBES
from search_data import assert_same, clustered, face_folders, vector_gallery

pytest.importorskip("numba")  # storage="int8" needs it (a core dependency)

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")
BAD = ["fp16", "INT8", "", None, 8]


@pytest.fixture(scope="module")
def gallery():
    return clustered(240, 3, 40, d=60, seed=7)


def _few(probes):
    return [probes[i:i + FEW_PROBES] for i in range(0, len(probes), FEW_PROBES)]


# ---------------------------------------------------------------------------- make_searcher
def test_make_searcher_int8_exhaustive_equals_float32(gallery):
    matrix, probes = gallery
    f32 = make_searcher("exhaustive", matrix)
    q8 = make_searcher("exhaustive", matrix, storage="int8")
    assert f32.int8_ is None and q8.storage == "int8" and q8.int8_ is not None
    for chunk in _few(probes):  # few-probe k = 1: the int8 path (its band costs extra evaluations)
        got, want = q8.search(chunk, 1), f32.search(chunk, 1)
        assert_same(got, want)
        assert got.distance_evaluations > want.distance_evaluations
    for n, k in ((len(probes), 1), (3, 4)):  # a batch, k > 1: the float32 path, unchanged
        got, want = q8.search(probes[:n], k), f32.search(probes[:n], k)
        assert_same(got, want)
        assert got.distance_evaluations == want.distance_evaluations


@pytest.mark.parametrize("strategy", ["indexed", "parallel", "hybrid"])
def test_other_strategies_ignore_storage(gallery, strategy):
    matrix, probes = gallery
    assert_same(make_searcher(strategy, matrix, top_n=6, workers=2, storage="int8").search(probes[:3], 1),
                make_searcher(strategy, matrix, top_n=6, workers=2).search(probes[:3], 1))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("storage", BAD)
def test_bad_storage_is_a_config_error_for_every_strategy(gallery, strategy, storage):
    matrix, _ = gallery
    with pytest.raises(ConfigError, match=r"^storage must be one of float32, int8 .*got "):
        make_searcher(strategy, matrix, storage=storage)


# ---------------------------------------------------------------------------- Gallery facade
@pytest.fixture()
def vec_gallery(tmp_path):
    g, probes = vector_gallery(tmp_path / "v.db", per=12)
    yield g, probes
    g.close()


def _answers(found):
    return [(a.identity, a.distance, a.candidates) for a in found]


def test_gallery_identify_with_int8_storage(vec_gallery):
    g, probes = vec_gallery
    for chunk in (probes[:1], probes[:FEW_PROBES], probes):
        for k in (1, 3):
            want = g.identify(chunk, strategy="exhaustive", k=k)
            assert _answers(g.identify(chunk, strategy="exhaustive", k=k, storage="int8")) == _answers(want)
            assert _answers(g.identify_vectors(chunk, strategy="exhaustive", k=k, storage="int8")) == _answers(want)
    # cached per storage value, for exhaustive only (the other strategies ignore it: one searcher)
    _, s8 = g.searcher("exhaustive", storage="int8")
    _, s32 = g.searcher("exhaustive")
    assert s8 is g.searcher("exhaustive", storage="int8")[1] and s8 is not s32
    assert s8.int8_ is not None and s32.int8_ is None
    assert g.searcher("hybrid", storage="int8")[1] is g.searcher("hybrid")[1]
    with pytest.raises(ConfigError, match="storage must be one of float32, int8"):
        g.identify(probes, strategy="exhaustive", storage="fp16")
    with pytest.raises(ConfigError, match="storage must be one of float32, int8"):
        g.identify(["missing.png"], strategy="hybrid", storage="fp16")  # before any image work


# ---------------------------------------------------------------------------- CLI and run_protocol
MODEL = "paper"  # the authors' weights when present, else its seeded init: plumbing only


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """4 identities x 2 gallery images in ``faces/<id>/`` and one probe each in ``probes/``."""
    root = tmp_path_factory.mktemp("storage")
    data, probes = face_folders(root)
    return root, data, probes


def test_cli_identify_with_int8_storage(faces, tmp_path, capsys):
    _, data, probes = faces
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", str(data), "--db", db, "--model", MODEL]) == 0
    capsys.readouterr()
    base = ["identify", str(probes), "--db", db, "--model", MODEL, "--strategy", "exhaustive", "--json"]
    for k in ("1", "3"):  # 4 probes, k = 1: the int8 path; k = 3: float32
        assert main([*base, "--k", k]) == 0
        want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert main([*base, "--k", k, "--storage", "int8"]) == 0
        got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert len(got) == 4 and got == want


@pytest.mark.parametrize("command", ["identify", "run-protocol"])
def test_cli_bad_storage_one_line_exit_2(faces, vec_gallery, tmp_path, capsys, command):
    root, _, probes = faces
    g, _ = vec_gallery
    argv = (["identify", str(probes), "--db", str(g.path)] if command == "identify" else
            ["run-protocol", "folder", "--data", str(root), "--db", str(tmp_path / "bad.db"), "--model", MODEL])
    rc = main([*argv, "--storage", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: storage must be one of float32, int8")
    assert not (tmp_path / "bad.db").exists()


def test_run_protocol_with_int8_storage(faces, tmp_path):
    from hybridface.runner import run_protocol

    _, data, _ = faces
    runs = [run_protocol("folder", data, db=tmp_path / f"{s}.db", model=MODEL, strategy="exhaustive",
                         detect="never", gallery_per_identity=2, k=1, storage=s) for s in ("float32", "int8")]
    assert [(r.rank1, r.templates, r.probes) for r in runs] == [(runs[0].rank1, 4, 4)] * 2
    with pytest.raises(ConfigError, match="storage must be one of"):
        run_protocol("folder", data, db=tmp_path / "bad.db", model=MODEL, storage="fp16")
    assert not (tmp_path / "bad.db").exists()


# ---------------------------------------------------------------------------- service
def test_service_int8_storage_setting_gives_the_float32_answers(tmp_path):
    from fastapi.testclient import TestClient

    from hybridface.gallery.keys import KeyStore
    from hybridface.service.app import create_app
    from hybridface.service.limits import ServiceSettings
    from service_server import model_path, png_bytes

    db = tmp_path / "s.db"
    apps = {s: create_app(db, settings=ServiceSettings(workers=1, storage=s), model=model_path())
            for s in ("float32", "int8")}
    _, key = KeyStore(db).create("t", scope="write")
    files = lambda *seeds: [("file", (f"i{s}.png", png_bytes(s), "image/png")) for s in seeds]  # noqa: E731
    answers = {}
    for storage, app in apps.items():
        with TestClient(app, headers={"X-API-Key": key}) as c:
            if storage == "float32":
                for name, seeds in (("alice", (1, 2, 3)), ("bob", (4, 5)), ("carl", (6, 7))):
                    r = c.post(f"/v1/identities/{name}/faces", params={"detect": "never"}, files=files(*seeds))
                    assert r.status_code == 201, r.text
            answers[storage] = [
                c.post("/v1/identify", params={"detect": "never", "strategy": "exhaustive", "k": k},
                       files=files(*seeds)).json()
                for k, seeds in ((1, (2,)), (1, (2, 5, 8)), (3, (5, 6)))
            ]
            svc = app.state.service  # the worker thread's gallery cached the searcher it built:

            def cached_int8(svc=svc):
                return [s.int8_ is not None for s in svc.gallery()._searchers._snapshot.searchers.values()]

            assert svc.pool._executor.submit(cached_int8).result() == [storage == "int8"]
    assert answers["int8"] == answers["float32"]
    assert [x["identity"] for x in answers["int8"][1]["results"]][:2] == ["alice", "bob"]
    with pytest.raises(ConfigError, match="storage must be one of float32, int8"):
        ServiceSettings(storage="fp16")


def test_serve_bad_storage_one_line_exit_2(tmp_path, capsys):
    rc = main(["serve", "--db", str(tmp_path / "x.db"), "--storage", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: storage must be one of float32, int8")


# ---------------------------------------------------------------------------- engines
def test_local_engine_int8_per_shard_and_after_updates(gallery):
    matrix, probes = gallery
    f32 = LocalEngine(matrix, strategy="exhaustive", shards=2)
    q8 = make_engine("local", matrix, strategy="exhaustive", shards=2, storage="int8")
    assert all(s.int8_ is not None for s in q8._searchers) and q8.storage == "int8"
    for chunk in (probes[:1], probes[:FEW_PROBES], probes):
        assert_same(q8.search(chunk, 1), f32.search(chunk, 1))
    shard = q8.add("newcomer", probes[:2])
    f32.add("newcomer", probes[:2])
    assert q8._searchers[shard].int8_ is not None
    assert_same(q8.search(probes[:2], 1), f32.search(probes[:2], 1))
    for e in (f32, q8):
        e.close()


def test_ray_shard_actor_passes_storage_to_its_searcher(gallery):
    from hybridface.engines.ray import ShardActor

    matrix, probes = gallery
    actor = ShardActor(matrix, "exhaustive", 6, 1, (), None, 16, "int8")  # the class a Ray actor runs
    assert actor.searcher.int8_ is not None
    actor.update("add", {"name": "newcomer", "vectors": probes[:2]})
    assert actor.searcher.int8_ is not None and actor.searcher.int8_.nbytes > 0
    assert_same(actor.search(probes[:2], 1), make_searcher("exhaustive", actor.matrix).search(probes[:2], 1))


def test_ray_engine_rejects_bad_storage_before_starting_ray(gallery):
    matrix, _ = gallery
    with pytest.raises(ConfigError, match="storage must be one of"):
        make_engine("ray", matrix, strategy="exhaustive", storage="fp16", address="127.0.0.1:1")


@pytest.mark.skipif(not ADDRESS, reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with "
                    "`eval $(scripts/ray_cluster.sh start)` to run the multi-node Ray tests")
def test_ray_engine_with_int8_storage_equals_float32(gallery):
    pytest.importorskip("ray")
    from hybridface.engines.ray import RaySearcher, connect

    matrix, probes = gallery
    connect(ADDRESS, timeout_s=30)
    with RaySearcher(matrix, strategy="exhaustive", shards=2) as f32, \
            RaySearcher(matrix, strategy="exhaustive", shards=2, storage="int8") as q8:
        for chunk in (probes[:1], probes[:FEW_PROBES]):
            got, want = q8.search(chunk, 1), f32.search(chunk, 1)
            np.testing.assert_array_equal(got.identities, want.identities)
            np.testing.assert_array_equal(got.distances, want.distances)
            # the int8 band's re-scoring adds evaluations: the storage reached the actors
            assert got.distance_evaluations > want.distance_evaluations
        assert_same(q8.search(probes, 3), f32.search(probes, 3))
