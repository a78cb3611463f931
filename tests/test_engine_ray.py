"""Ray engine against a real multi-node Ray cluster on loopback.

The cluster comes from ``scripts/ray_cluster.sh start`` (CI runs it and exports
``HYBRIDFACE_RAY_ADDRESS``); cluster tests skip with a reason when the variable is unset. The
bad-address tests and the embedded (no address) test need no cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from hybridface.errors import EngineError, ModelMismatchError  # noqa: E402
from hybridface.gallery.matrix import TemplateMatrix  # noqa: E402
from hybridface.search import make_searcher  # noqa: E402
from hybridface.options import SearchOptions  # noqa: E402

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")
needs_cluster = pytest.mark.skipif(
    not ADDRESS,
    reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with "
    "`eval $(scripts/ray_cluster.sh start)` to run the multi-node Ray tests",
)


def clustered(m: int, per: int, *, d: int = 60, seed: int = 0, model_id: str = "m1", probes: int = 40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(m, d))
    x = np.repeat(centres, per, axis=0) + 0.3 * rng.normal(size=(m * per, d))
    names = [f"id{i:05d}" for i in np.repeat(np.arange(m), per)]
    matrix = TemplateMatrix.from_arrays(x.astype(np.float32), names, model_id=model_id)
    q = rng.integers(0, m, size=probes)
    return matrix, (centres[q] + 0.3 * rng.normal(size=(probes, d))).astype(np.float32)


def assert_same(a, b):
    np.testing.assert_array_equal(a.identities, b.identities)
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-6)
    np.testing.assert_array_equal(a.template_ids, b.template_ids)


# ---------------------------------------------------------------------------- no cluster needed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_is_an_engine_error_quickly():
    from hybridface.engines.ray import connect

    t = time.monotonic()
    with pytest.raises(EngineError, match="does not answer"):
        connect(f"127.0.0.1:{_free_port()}", timeout_s=5)
    assert time.monotonic() - t < 5


def test_listening_non_ray_port_is_an_engine_error_within_timeout():
    from hybridface.engines.ray import connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        t = time.monotonic()
        with pytest.raises(EngineError, match="Ray"):
            connect(f"127.0.0.1:{port}", timeout_s=3)
        assert time.monotonic() - t < 10
    finally:
        server.close()


def test_ray_address_env_is_honoured_and_checked(monkeypatch):
    from hybridface.engines.ray import connect

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    with pytest.raises(EngineError, match="does not answer"):
        connect(timeout_s=3)


def test_malformed_address_is_a_config_error():
    from hybridface.engines.ray import connect
    from hybridface.errors import ConfigError

    with pytest.raises(ConfigError, match="host:port"):
        connect("not-an-address", timeout_s=1)


EMBEDDED = """
import numpy as np
from hybridface.engines.local import make_engine
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search import make_searcher
from hybridface.options import SearchOptions
rng = np.random.default_rng(0)
m = TemplateMatrix.from_arrays(rng.normal(size=(40, 60)).astype(np.float32), [f"i{j % 10}" for j in range(40)])
p = rng.normal(size=(5, 60)).astype(np.float32)
eng = make_engine("ray", m, shards=2, options=SearchOptions(strategy="exhaustive"))
import ray
assert len(ray.nodes()) == 1, ray.nodes()
got, ref = eng.search(p, 3), make_searcher("exhaustive", m).search(p, 3)
assert (got.identities == ref.identities).all() and np.allclose(got.distances, ref.distances, atol=1e-6)
print("EMBEDDED-OK")
"""


def test_no_address_starts_an_embedded_local_ray():
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    # no token file written to ~/.ray (Ray's default for a local instance); it would switch
    # later `ray start --head` runs on this machine to token auth
    env.setdefault("RAY_AUTH_MODE", "disabled")
    out = subprocess.run([sys.executable, "-c", EMBEDDED], capture_output=True, text=True,
                         timeout=120, env=env)
    assert "EMBEDDED-OK" in out.stdout, out.stderr[-2000:]


# ---------------------------------------------------------------------------- cluster tests
@pytest.fixture(scope="module")
def cluster():
    """Connect once per test session; yields the alive node ids (at least two)."""
    from hybridface.engines.ray import alive_nodes, connect

    connect(ADDRESS, timeout_s=30)
    nodes = alive_nodes()
    if len(nodes) < 2:
        pytest.fail(f"the Ray cluster at {ADDRESS} has {len(nodes)} alive node(s); expected 2")
    return nodes


@pytest.fixture(scope="module")
def gallery():
    return clustered(400, 4, seed=0)


@needs_cluster
def test_connecting_again_reuses_and_other_address_is_refused(cluster):
    from hybridface.engines.ray import connect

    assert connect(ADDRESS) == ADDRESS
    assert connect() == ADDRESS
    with pytest.raises(EngineError):
        connect(f"127.0.0.1:{_free_port()}", timeout_s=2)


@needs_cluster
def test_sharded_over_both_nodes_and_identical_to_local(cluster, gallery):
    from hybridface.engines.ray import RaySearcher

    matrix, probes = gallery
    with RaySearcher(matrix, shards=4, options=SearchOptions(strategy="exhaustive", workers=1)) as rs:
        # round robin over the alive nodes: both nodes of the cluster hold shards
        assert set(rs.shard_nodes()) <= set(cluster)
        assert len(set(rs.shard_nodes())) == min(4, len(cluster)), rs.shard_nodes()
        assert_same(rs.search(probes, 5), make_searcher("exhaustive", matrix).search(probes, 5))
        # a batch over the memory budget is chunked (8 probes per chunk), same answer
        rs.batch_bytes = 8 * 4 * matrix.dim
        assert_same(rs.search(probes, 5), make_searcher("exhaustive", matrix).search(probes, 5))


@needs_cluster
def test_hybrid_on_ray_matches_local_hybrid(cluster, gallery):
    from hybridface.engines.ray import RaySearcher

    matrix, probes = gallery
    ref = make_searcher("hybrid", matrix, top_n=8, workers=1).search(probes, 3)
    exact = make_searcher("exhaustive", matrix).search(probes, 3)
    with RaySearcher(matrix, shards=2, options=SearchOptions(strategy="hybrid", top_n=8, workers=1)) as rs:
        got = rs.search(probes, 3)
    np.testing.assert_array_equal(got.identities[:, 0], ref.identities[:, 0])
    np.testing.assert_allclose(got.distances[:, 0], ref.distances[:, 0], atol=1e-6)
    # sharded shortlists are a superset of the single-machine one: never worse, never below exact
    assert (got.distances <= ref.distances + 1e-6).all()
    assert (got.distances >= exact.distances - 1e-6).all()


@needs_cluster
def test_add_remove_routed_to_owning_shard(cluster):
    from hybridface.engines.ray import RaySearcher

    matrix, probes = clustered(50, 3, seed=2)
    with RaySearcher(matrix, shards=2, placement="least-loaded", options=SearchOptions(strategy="hybrid", top_n=5, workers=1)) as rs:
        sizes = rs.shard_sizes()
        shard = rs.add("newcomer", probes[:2] * 1.001)
        assert shard == int(np.argmin(sizes))
        assert rs.shard_sizes()[shard] == sizes[shard] + 2
        assert rs.names[rs.search(probes[:1], 1).identities[0, 0]] == "newcomer"
        rs.remove("newcomer")
        assert "newcomer" not in rs.names
        got = rs.search(probes, 1)
        ref = make_searcher("exhaustive", matrix).search(probes, 1)
        np.testing.assert_array_equal(got.identities, ref.identities)


@needs_cluster
def test_shards_of_different_models_are_rejected(cluster):
    from hybridface.engines.ray import RaySearcher

    a, _ = clustered(10, 2, seed=1, model_id="model-a")
    b, _ = clustered(10, 2, seed=2, model_id="model-b")
    b = TemplateMatrix.from_arrays(b.vectors, [f"b{n}" for n in np.array(b.names)[b.labels]],
                                   model_id="model-b")
    with pytest.raises(ModelMismatchError, match="model-b"):
        RaySearcher([a, b])


def _start_extra_node(address: str, tmp: Path) -> int:
    """Start one more raylet in its own session; return that session id."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    proc = subprocess.Popen(
        [ray_bin, "start", "--address", address, "--num-cpus", "1", "--node-ip-address",
         "127.0.0.1", "--temp-dir", str(tmp), "--object-store-memory", "100000000",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
             "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")},  # as ray_cluster.sh
    )
    assert proc.wait(timeout=60) == 0, "ray start of the extra node failed"
    return proc.pid


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (the extra node this test started)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: session id
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@needs_cluster
def test_killing_a_worker_node_mid_query_never_gives_a_wrong_answer(cluster):
    from hybridface.engines.ray import RaySearcher, alive_nodes

    matrix, probes = clustered(1500, 4, seed=5, probes=2000)
    ref = make_searcher("exhaustive", matrix).search(probes, 2)
    tmp = Path(tempfile.mkdtemp(prefix="hf-raykill-", dir="/tmp"))
    sid = _start_extra_node(ADDRESS, tmp)
    try:
        deadline = time.monotonic() + 30
        while len(extra := [n for n in alive_nodes() if n not in cluster]) < 1:
            assert time.monotonic() < deadline, "the extra node did not join"
            time.sleep(0.3)
        doomed = extra[0]
        layout = [cluster[0], doomed]
        retrying = RaySearcher(matrix, shards=2, nodes=layout, retries=1, query_timeout_s=60)
        strict = RaySearcher(matrix, shards=2, nodes=layout, retries=0, query_timeout_s=60)
        assert retrying.shard_nodes()[1] == doomed and strict.shard_nodes()[1] == doomed
        retrying.batch_bytes = strict.batch_bytes = 40 * 4 * matrix.dim  # 50 chunks: a long query
        outcome: dict = {}

        def query():
            try:
                outcome["result"] = retrying.search(probes, 2)
            except EngineError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=query)
        worker.start()
        time.sleep(0.3)
        _kill_session(sid)
        worker.join(90)
        assert not worker.is_alive()
        if "result" in outcome:  # retried on the surviving node: must be exactly right
            assert_same(outcome["result"], ref)
        else:
            assert "no partial answer" in str(outcome["error"])
        # the lost shard is rebuilt elsewhere and answers correctly
        assert_same(retrying.search(probes, 2), ref)
        assert doomed not in retrying.shard_nodes()
        # without retries the query fails loudly instead of answering from one shard
        with pytest.raises(EngineError, match="no partial answer"):
            strict.search(probes[:10], 2)
        retrying.close()
        strict.close()
    finally:
        _kill_session(sid)
        shutil.rmtree(tmp, ignore_errors=True)
