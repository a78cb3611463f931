"""`SearchOptions` through the product, table-driven: every bad option fails once, at construction,
with the same one line from Python (`ConfigError`), the CLI (exit 2) and REST (422); every good
option reaches the searcher wherever it runs (gallery cache, local shards, the Ray shard actor).

Replaces the per-option wiring tests (cells, storage): a new option adds rows here, not a file.
The search algorithms themselves are tested in test_search_cells.py / test_search_quantized.py.
"""

from __future__ import annotations

import json
import os

import pytest

from hybridface.cli import main
from hybridface.engines.local import LocalEngine, make_engine
from hybridface.errors import ConfigError, OptionError
from hybridface.options import DEFAULTS, STRATEGIES, SearchOptions
from search_data import assert_same, clustered, face_folders, vector_gallery

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")
MODEL = "paper"  # the authors' weights when present, else its seeded init: plumbing only

# (option, bad value, CLI flags giving that value or None, REST query value or None, start of the message)
BAD = [
    ("strategy", "quantum", ["--strategy", "quantum"], "quantum", "strategy='quantum' is not valid; use one of exhaustive, indexed"),
    ("strategy", None, None, None, "strategy=None is not valid"),
    ("top_n", 0, ["--top-n", "0"], 0, "top_n=0 is not valid; use an integer >= 1"),
    ("top_n", 2.5, None, None, "top_n=2.5 is not valid"),
    ("workers", 0, ["--workers", "0"], None, "workers=0 is not valid; use an integer >= 1"),
    ("k", 0, ["--k", "0"], 0, "k=0 is not valid; use an integer >= 1"),
    ("k", True, None, None, "k=True is not valid"),
    ("cells", 0, ["--cells", "0"], 0, "cells=0 is not valid; use an integer >= 1"),
    ("cells", -3, ["--cells", "-3"], -3, "cells=-3 is not valid"),
    ("cells", "8", None, None, "cells='8' is not valid"),
    ("probe_cells", 0, ["--cells", "4", "--probe-cells", "0"], 0, "probe_cells=0 is not valid; use an integer >= 1"),
    ("storage", "fp16", ["--storage", "fp16"], None, "storage='fp16' is not valid; use one of float32, int8"),
    ("storage", "INT8", ["--storage", "INT8"], None, "storage='INT8' is not valid"),
    ("engine", "spark", ["--engine", "spark"], None, "engine='spark' is not valid; use one of local, ray"),
    ("threshold", float("nan"), ["--threshold", "nan"], None, "threshold=nan is not valid; use a finite"),
    ("threshold", -0.5, ["--threshold", "-0.5"], -0.5, "threshold=-0.5 is not valid"),
    ("address", "127.0.0.1:1", ["--address", "127.0.0.1:1"], None, "address='127.0.0.1:1' is not valid; use it only with engine='ray'"),
]
IDS = [f"{row[0]}={row[1]!r}" for row in BAD]


@pytest.fixture(scope="module")
def gallery():
    return clustered(120, 3, 30, d=60, seed=4)


@pytest.fixture()
def vec_gallery(tmp_path):
    g, probes = vector_gallery(tmp_path / "v.db", per=20)
    yield g, probes
    g.close()


def test_defaults_are_the_one_table():
    opts = SearchOptions()
    assert (opts.strategy, opts.top_n, opts.workers, opts.k) == (DEFAULTS.strategy, DEFAULTS.top_n,
                                                                 DEFAULTS.workers, DEFAULTS.k)
    assert DEFAULTS.detect == "largest" and DEFAULTS.strategy == "hybrid" and opts.cells is None
    with pytest.raises(AttributeError):
        opts.k = 3  # frozen


def test_cli_rest_python_and_harness_share_the_defaults(rest):
    """One default per option everywhere: the CLI flags, the REST query, the Python facade and
    the evaluation harness all read `DEFAULTS`."""
    import inspect

    from hybridface import api
    from hybridface.cli import build_parser
    from hybridface.evaluation.harness import EvalConfig

    args = build_parser().parse_args(["identify", "p.png", "--db", "x.db"])
    assert (args.detect, args.detector, args.model) == (DEFAULTS.detect, DEFAULTS.detector, DEFAULTS.model)
    from hybridface.cli.gallery import search_options

    assert search_options(args) == SearchOptions()
    for command in (["enroll", "d"], ["calibrate", "d"], ["verify", "a", "b"]):
        assert build_parser().parse_args([*command, "--db", "x.db"]).detect == DEFAULTS.detect
    for fn in (api.Gallery.enroll, api.Gallery.enroll_folder, api.Gallery.identify, api.Gallery.calibrate,
               api.verify):
        assert inspect.signature(fn).parameters["detect"].default == DEFAULTS.detect, fn
    c, _, _ = rest
    route = c.get("/openapi.json").json()["paths"]["/v1/identify"]["post"]
    params = {p["name"]: p["schema"].get("default") for p in route["parameters"]}
    assert (params["strategy"], params["detect"], params["top_n"], params["k"], params["probe_cells"]) == (
        DEFAULTS.strategy, DEFAULTS.detect, DEFAULTS.top_n, DEFAULTS.k, DEFAULTS.probe_cells)
    cfg = EvalConfig(protocol="folder", data_dir=".", cache_dir=".")
    assert cfg.search == SearchOptions() and cfg.codewords == DEFAULTS.codewords


# ---------------------------------------------------------------------------- one line everywhere
@pytest.mark.parametrize("option, value, flags, query, message", BAD, ids=IDS)
def test_bad_option_is_one_line_from_python(gallery, vec_gallery, option, value, flags, query, message):
    matrix, _ = gallery
    g, probes = vec_gallery
    with pytest.raises(OptionError) as exc:
        SearchOptions(**{option: value})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert isinstance(exc.value, ConfigError)
    if option not in ("engine", "address", "threshold", "k"):
        from hybridface.search import make_searcher

        kw = {option: value}
        with pytest.raises(OptionError, match="^" + option):
            make_searcher(kw.pop("strategy", "hybrid"), matrix, **kw)
    with pytest.raises(OptionError) as again:
        g.identify(["missing.png"], **{option: value})  # before any image work
    assert str(again.value) == str(exc.value)


@pytest.mark.parametrize("option, value, flags, query, message", [r for r in BAD if r[2]],
                         ids=[i for i, r in zip(IDS, BAD) if r[2]])
def test_bad_option_is_the_same_line_from_the_cli(vec_gallery, tmp_path, capsys, option, value, flags, query,
                                                  message):
    g, _ = vec_gallery
    rc = main(["identify", "missing.png", "--db", str(g.path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: " + message)
    if option not in ("k", "threshold", "engine", "address"):  # run-protocol's search flags
        rc = main(["run-protocol", "folder", "--data", str(tmp_path), "--db", str(tmp_path / "bad.db"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: " + message)
        assert not (tmp_path / "bad.db").exists()


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    from fastapi.testclient import TestClient

    from hybridface.gallery.keys import KeyStore
    from hybridface.service.app import create_app
    from hybridface.service.limits import ServiceSettings
    from service_server import model_path, png_bytes

    db = tmp_path_factory.mktemp("rest") / "s.db"
    app = create_app(db, settings=ServiceSettings(workers=1), model=model_path())
    _, key = KeyStore(db).create("t", scope="write")
    with TestClient(app, headers={"X-API-Key": key}) as c:
        r = c.post("/v1/identities/alice/faces", params={"detect": "never"},
                   files=[("file", ("a.png", png_bytes(1), "image/png"))])
        assert r.status_code == 201, r.text
        yield c, app, png_bytes


@pytest.mark.parametrize("option, value, flags, query, message", [r for r in BAD if r[3] is not None],
                         ids=[i for i, r in zip(IDS, BAD) if r[3] is not None])
def test_bad_option_is_the_same_line_from_rest(rest, option, value, flags, query, message):
    c, _, png_bytes = rest
    r = c.post("/v1/identify", params={"detect": "never", option: query},
               files=[("file", ("p.png", png_bytes(1), "image/png"))])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_option" and r.json()["error"]["message"].startswith(message)


@pytest.mark.parametrize("setting, value, message", [("storage", "fp16", "storage='fp16'"),
                                                     ("engine", "spark", "engine='spark'"),
                                                     ("search_workers", 0, "workers=0")])
def test_bad_server_setting_fails_at_startup(tmp_path, capsys, setting, value, message):
    from hybridface.service.limits import ServiceSettings

    with pytest.raises(OptionError, match="^" + message):
        ServiceSettings(**{setting: value})
    if setting == "storage":
        assert main(["serve", "--db", str(tmp_path / "x.db"), "--storage", "fp16"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: storage='fp16' is not valid; use one of float32, int8")


def test_service_int8_storage_setting_gives_the_float32_answers(tmp_path):
    """The server-side options reach the searcher the worker thread builds; answers unchanged."""
    pytest.importorskip("numba")
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
                    assert c.post(f"/v1/identities/{name}/faces", params={"detect": "never"},
                                  files=files(*seeds)).status_code == 201
            answers[storage] = [c.post("/v1/identify", params={"detect": "never", "strategy": "exhaustive", "k": k},
                                       files=files(*seeds)).json() for k, seeds in ((1, (2,)), (1, (2, 5, 8)), (3, (5, 6)))]
            svc = app.state.service

            def cached_int8(svc=svc):
                return [s.int8_ is not None for s in svc.gallery()._searchers._snapshot.searchers.values()]

            assert svc.pool._executor.submit(cached_int8).result() == [storage == "int8"]
    assert answers["int8"] == answers["float32"]
    assert [x["identity"] for x in answers["int8"][1]["results"]][:2] == ["alice", "bob"]


def test_harness_and_engines_take_the_same_object(tmp_path, gallery):
    from hybridface.evaluation.harness import EvalConfig, run_evaluation

    matrix, _ = gallery
    with pytest.raises(OptionError, match="^strategy='quantum'"):
        run_evaluation(EvalConfig(protocol="folder", data_dir=tmp_path, cache_dir=tmp_path, strategies=("quantum",)))
    with pytest.raises(ConfigError, match="options must be a SearchOptions"):
        LocalEngine(matrix, options={"strategy": "hybrid"})
    with pytest.raises(ConfigError, match="only applies to the ray engine"):
        make_engine("local", matrix, options=SearchOptions(engine="ray", address="127.0.0.1:1"))


# ---------------------------------------------------------------------------- good options arrive
# (options, check on the searcher built for them); each row runs through every layer below
GOOD = [
    (dict(strategy="hybrid", top_n=6, workers=1, cells=8, probe_cells=3),
     lambda s: s._cells is not None and s._cells.num_cells == 8 and s.probe_cells == 3),
    (dict(strategy="indexed", top_n=4), lambda s: s._cells is None and s.top_n == 4),
    (dict(strategy="exhaustive", storage="int8"), lambda s: s.int8_ is not None),
    (dict(strategy="exhaustive"), lambda s: s.int8_ is None),
    (dict(strategy="parallel", workers=3), lambda s: s.workers == 3),
]


@pytest.mark.parametrize("opts, check", GOOD, ids=[str(o) for o, _ in GOOD])
def test_good_options_reach_the_searcher_everywhere(gallery, vec_gallery, opts, check):
    pytest.importorskip("numba")
    from hybridface.engines.ray import ShardActor

    matrix, probes = gallery
    options = SearchOptions(**opts)
    g, vprobes = vec_gallery
    _, s = g.searcher(options)  # the facade's cache
    assert check(s) and s is g.searcher(**opts)[1]  # keyed by value, however it was given
    local = LocalEngine(matrix, options=options, shards=2)  # every in-process shard
    assert all(check(x) for x in local._searchers)
    local.add("newcomer", probes[:2])  # and after a routed update
    assert all(check(x) for x in local._searchers)
    local.close()
    actor = ShardActor(matrix, options)  # the class a Ray actor runs, in-process
    actor.update("add", {"name": "newcomer", "vectors": probes[:2]})
    assert check(actor.searcher)
    from hybridface.cli import build_parser
    from hybridface.cli.gallery import search_options

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    assert search_options(build_parser().parse_args(["identify", "p.png", "--db", "x.db", *flags])) == options


def test_options_change_no_answer_where_they_are_exact(vec_gallery, tmp_path, capsys):
    """Visiting every cell equals the flat shortlist; int8 storage equals float32 (facade and CLI)."""
    pytest.importorskip("numba")
    g, probes = vec_gallery
    flat = g.identify(probes, strategy="hybrid", top_n=5, workers=1, k=3)
    celled = g.identify(probes, options=SearchOptions(top_n=5, workers=1, k=3, cells=6, probe_cells=6))
    assert [a.candidates for a in celled] == [a.candidates for a in flat]
    for chunk in (probes[:1], probes[:4], probes):
        for k in (1, 3):
            want = g.identify(chunk, strategy="exhaustive", k=k)
            assert g.identify(chunk, strategy="exhaustive", k=k, storage="int8") == want
    data, pdir = face_folders(tmp_path)
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", str(data), "--db", db, "--model", MODEL, "--detect", "never"]) == 0
    capsys.readouterr()
    base = ["identify", str(pdir), "--db", db, "--model", MODEL, "--detect", "never", "--json", "--k", "2"]
    answers = []
    for flags in (["--strategy", "exhaustive"], ["--strategy", "exhaustive", "--storage", "int8"],
                  ["--top-n", "4", "--cells", "2", "--probe-cells", "2"]):
        assert main([*base, *flags]) == 0
        answers.append([json.loads(x)["identity"] for x in capsys.readouterr().out.splitlines()])
    assert len(answers[0]) == 4 and answers[0] == answers[1] == answers[2]


@pytest.mark.skipif(not ADDRESS, reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with "
                    "`eval $(scripts/ray_cluster.sh start)` to run the multi-node Ray tests")
@pytest.mark.parametrize("opts", [dict(strategy="hybrid", top_n=6, workers=1, cells=8, probe_cells=1),
                                  dict(strategy="exhaustive", workers=1, storage="int8")])
def test_ray_engine_with_options_equals_the_local_sharded_engine(gallery, opts):
    pytest.importorskip("ray")
    from hybridface.engines.ray import RaySearcher, connect

    matrix, probes = gallery
    connect(ADDRESS, timeout_s=30)
    options = SearchOptions(**opts)
    local = LocalEngine(matrix, options=options, shards=2)
    with RaySearcher(matrix, options=options, shards=2) as rs:
        for k in (1, 3):
            got, want = rs.search(probes[:4], k), local.search(probes[:4], k)
            assert_same(got, want)
            assert got.distance_evaluations == want.distance_evaluations  # the options reached the actors
    local.close()


def test_every_strategy_is_listed_once():
    from hybridface import api, search
    from hybridface.evaluation import harness

    assert search.STRATEGIES is STRATEGIES and harness.STRATEGIES is STRATEGIES
    assert "STRATEGIES" not in api.__all__ and "ENGINES" not in api.__all__
