"""The Ray engine: a gallery sharded by identity over Ray actors, one shard per actor.

Each actor holds its shard (a `TemplateMatrix` with its codebooks) and runs the ordinary local
searcher from `hybridface.search.make_searcher` on it. A query puts the probe chunk in the object
store once (broadcast), asks every actor for its top-k and merges the lists (`engines.shards`).
Updates are routed to the owning shard and logged, so a shard whose actor or node dies is rebuilt
on a surviving node (initial shard + replayed log) and the query retried there; when that is not
possible the query fails with `EngineError`, never with a partial answer.

Only this module imports Ray (lazily, via `hybridface.errors.require`).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from hybridface.engines import shards as sh
from hybridface.engines.base import ShardedEngine, apply_update, build_searcher, search_shard
from hybridface.errors import ConfigError, EngineError, HybridFaceError, require
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.options import SearchOptions
from hybridface.search.base import SearchResult

log = logging.getLogger(__name__)

#: The Ray engine's default: ``exhaustive``, one search thread per actor.
RAY_OPTIONS = SearchOptions(strategy="exhaustive", workers=1)

_connected_to: list[str | None] = []  # the address this process connected to (one entry)


# ---------------------------------------------------------------------------- connection
def _split_address(address: str) -> tuple[str, int]:
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port (e.g. 127.0.0.1:6379)")
    return host, int(port)


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast (``EngineError``) unless a Ray GCS answers at ``address`` within ``timeout_s``."""
    host, port = _split_address(address)
    hint = ("start one with scripts/ray_cluster.sh start (or `ray start --head`), "
            "or omit --address to run a local Ray instance")
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 5.0)):
            pass
    except OSError as exc:
        raise EngineError(f"Ray address {address} does not answer ({exc}); {hint}") from exc
    if address.startswith("ray://"):
        return
    # Something listens; make sure it is a Ray GCS, in a child process we can kill on timeout
    # (ray.init would otherwise wait for a GCS for minutes).
    check = "import sys, ray._raylet as r; r.GcsClient(address=sys.argv[1])"
    try:
        proc = subprocess.run([sys.executable, "-c", check, f"{host}:{port}"],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(
            f"{address} accepts connections but no Ray GCS answered within {timeout_s:g} s; {hint}"
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        raise EngineError(f"{address} is not a reachable Ray cluster ({tail[0]}); {hint}")


def connect(
    address: str | None = None,
    *,
    timeout_s: float = 30.0,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
) -> str | None:
    """Connect this process to Ray once; return the address (``None`` = embedded local instance).

    ``address=None`` starts a local Ray (``num_cpus`` default: all cores, no dashboard);
    ``"host:port"`` joins that cluster (``$RAY_ADDRESS`` is used when ``address`` is ``None``, as
    Ray itself does). An address that does not answer raises `EngineError`
    within about ``timeout_s`` seconds. Calling again with the same (or no) address is a no-op;
    a different address while connected is an `EngineError` (call `disconnect` first).
    """
    ray = require("ray", "ray")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        if not _connected_to:  # initialised by the application itself: use that connection
            log.info("Ray is already initialised by the caller; using that connection")
            _connected_to.append(address)
            return address
        current = _connected_to[0]
        if address is None or address == current:
            return current
        _probe(address, timeout_s)
        raise EngineError(
            f"this process is already connected to Ray at {current or 'a local instance'}; "
            f"call hybridface.engines.ray.disconnect() before connecting to {address}"
        )
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=object_store_memory, logging_level="WARNING",
                     log_to_driver=False)
        else:
            _probe(address, timeout_s)
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except HybridFaceError:
        raise
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise EngineError(f"could not start or join Ray at {address or 'local'}: {exc}") from exc
    _connected_to[:] = [address]
    log.info("connected to Ray at %s", address or "a local instance")
    return address


def disconnect() -> None:
    """Leave the Ray cluster (or stop the embedded instance)."""
    ray = require("ray", "ray")
    if ray.is_initialized():
        ray.shutdown()
    _connected_to.clear()


def alive_nodes() -> list[str]:
    """Ids of the alive Ray nodes, the driver's own node first."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    ids = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    return sorted(ids, key=lambda n: (n != me, n))


# ---------------------------------------------------------------------------- the actor
class ShardActor:
    """Holds one shard and its local searcher (runs inside a Ray actor)."""

    def __init__(self, matrix: TemplateMatrix, options: SearchOptions,
                 updates: Sequence[tuple[str, dict]] = ()) -> None:
        for op, args in updates:
            matrix = apply_update(matrix, op, args)
        self.matrix = matrix
        self.options = options
        self.searcher = build_searcher(matrix, options)

    def ready(self) -> tuple[str, int]:
        """(node id, templates held) once the shard is loaded."""
        import ray

        return ray.get_runtime_context().get_node_id(), self.matrix.num_templates

    def search(self, probes: np.ndarray, k: int) -> SearchResult:
        return search_shard(self.searcher, self.matrix, probes, k)

    def update(self, op: str, args: dict) -> int:
        self.matrix = apply_update(self.matrix, op, args)
        self.searcher = build_searcher(self.matrix, self.options)
        return self.matrix.num_templates


_REMOTE: list = []


def _actor_class():
    if not _REMOTE:
        ray = require("ray", "ray")
        _REMOTE.append(ray.remote(max_restarts=0, max_task_retries=0)(ShardActor))
    return _REMOTE[0]


# ---------------------------------------------------------------------------- the engine
class RaySearcher(ShardedEngine):
    """`Searcher` over a gallery sharded by identity across Ray actors.

    Args:
        gallery: a `TemplateMatrix` (split into ``shards``) or a sequence of shard matrices
            (used as given; they must share one model id).
        options: how every shard is searched (`SearchOptions`; ``cells``: coarse LBG cells fitted
            per shard over that shard's identity codewords; ``storage="int8"``: each actor
            quantizes its own shard). Default: ``exhaustive`` with one worker per actor.
        shards: number of shards (default: one per node in ``nodes``).
        nodes: Ray node ids to place shards on, round robin (default: every alive node).
        placement: shard of a *new* identity: ``hash`` (CRC-32 of its name) or ``least-loaded``.
        batch_bytes: probe chunk budget in bytes; larger batches are searched chunk by chunk.
        actor_cpus: CPUs reserved per actor (small but non-zero: Ray ignores soft node
            affinity for zero-resource actors, so 0 would pile every shard on one node).
        query_timeout_s: a shard that does not answer in this time fails the query.
        retries: rebuilds of a failed shard on another node per call before giving up.

    Call `connect` first (or use ``make_engine("ray", ...)``). ``close()`` releases the actors.
    """

    def __init__(
        self,
        gallery: TemplateMatrix | Sequence[TemplateMatrix],
        *,
        options: SearchOptions = RAY_OPTIONS,
        shards: int | None = None,
        nodes: Sequence[str] | None = None,
        placement: str = "hash",
        batch_bytes: int = sh.DEFAULT_BATCH_BYTES,
        actor_cpus: float = 0.01,
        query_timeout_s: float = 120.0,
        retries: int = 1,
    ) -> None:
        ray = require("ray", "ray")
        if not ray.is_initialized():
            raise EngineError("Ray is not connected; call hybridface.engines.ray.connect() first")
        self._nodes = list(nodes) if nodes else alive_nodes()
        if not self._nodes:
            raise EngineError("the Ray cluster has no alive node")
        if isinstance(gallery, TemplateMatrix):
            if gallery.num_identities == 0:
                raise ConfigError("cannot shard an empty gallery")
            parts = sh.split(gallery, shards or len(self._nodes))
            names: list[str] = list(gallery.names)
        else:
            parts = list(gallery)
            names = [n for p in parts for n in p.names]
            if len(set(names)) != len(names):
                raise ConfigError("an identity appears in more than one shard")
        super().__init__(parts, names, options=options, placement=placement, batch_bytes=batch_bytes)
        self.actor_cpus = float(actor_cpus)
        self.query_timeout_s = float(query_timeout_s)
        self.retries = int(retries)
        self._base = [ray.put(p) for p in parts]
        self._log: list[list[tuple[str, dict]]] = [[] for _ in parts]
        self._bad_nodes: set[str] = set()
        self._actors: list = [None] * len(parts)
        self._node_of: list[str] = [""] * len(parts)
        for i in range(len(parts)):
            self._actors[i] = self._spawn(i, self._nodes[i % len(self._nodes)], wait=False)
        self._await_ready(range(len(parts)))

    # ------------------------------------------------------------------ actors
    def _spawn(self, i: int, node: str, *, wait: bool = True):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = _actor_class().options(
            num_cpus=self.actor_cpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=True),
        ).remote(self._base[i], self.options, tuple(self._log[i]))
        self._actors[i] = actor
        if wait:
            self._await_ready([i])
        return actor

    def _await_ready(self, which) -> None:
        import ray

        which = list(which)
        try:
            answers = ray.get([self._actors[i].ready.remote() for i in which],
                              timeout=self.query_timeout_s)
        except Exception as exc:
            raise EngineError(f"shard actors did not start on the Ray cluster: {_why(exc)}") from exc
        for i, (node, _) in zip(which, answers):
            self._node_of[i] = node

    def _respawn(self, i: int, cause: BaseException) -> None:
        """Rebuild shard ``i`` on a surviving node (initial shard + replayed updates)."""
        import ray

        dead = self._node_of[i]
        self._bad_nodes.add(dead)
        try:
            ray.kill(self._actors[i], no_restart=True)
        except Exception:  # the actor is already gone
            pass
        candidates = [n for n in alive_nodes() if n not in self._bad_nodes]
        if not candidates:
            raise EngineError(
                f"shard {i} failed on node {dead[:12]} ({_why(cause)}) and no other Ray node is alive"
            ) from cause
        load = {n: self._node_of.count(n) for n in candidates}
        target = min(candidates, key=lambda n: (load[n], candidates.index(n)))
        log.warning("shard %d lost on node %s (%s); rebuilding it on node %s",
                    i, dead[:12], _why(cause), target[:12])
        self._spawn(i, target)

    def _call(self, make_call, which: list[int]) -> dict[int, object]:
        """Run ``make_call(actor)`` on shards ``which``; rebuild-and-retry dead ones; all or error."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        pending = {make_call(self._actors[i]): i for i in which}
        attempts = dict.fromkeys(which, 0)
        out: dict[int, object] = {}
        deadline = time.monotonic() + self.query_timeout_s
        while pending:
            left = deadline - time.monotonic()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(left, 0.0))
            if not done:
                slow = sorted(pending.values())
                raise EngineError(f"shards {slow} did not answer within {self.query_timeout_s:g} s "
                                  "(raise query_timeout_s or check the cluster with `ray status`)")
            ref = done[0]
            i = pending.pop(ref)
            try:
                out[i] = ray.get(ref, timeout=max(left, 0.1))
            except RayTaskError as exc:  # the shard's own code raised: pass our errors through
                cause = getattr(exc, "cause", None)
                if isinstance(cause, HybridFaceError):
                    raise cause from None
                raise EngineError(f"shard {i} failed: {_why(exc)}") from exc
            except (RayActorError, GetTimeoutError) as exc:
                if attempts[i] >= self.retries:
                    raise EngineError(
                        f"shard {i} (node {self._node_of[i][:12]}) failed and was not recovered "
                        f"after {attempts[i]} rebuild(s): {_why(exc)}; no partial answer returned"
                    ) from exc
                attempts[i] += 1
                self._respawn(i, exc)
                pending[make_call(self._actors[i])] = i
        return out

    # ------------------------------------------------------------------ backend hooks
    def _run_search(self, probes: np.ndarray, k: int) -> list[SearchResult]:
        import ray

        ref = ray.put(probes)  # broadcast once; every actor reads the same object
        out = self._call(lambda a: a.search.remote(ref, k), list(range(self.num_shards)))
        return [out[i] for i in range(self.num_shards)]  # type: ignore[misc]

    def _run_update(self, shard: int, op: str, args: dict) -> int:
        out = self._call(lambda a: a.update.remote(op, args), [shard])
        self._log[shard].append((op, args))
        return int(out[shard])  # type: ignore[arg-type]

    # ------------------------------------------------------------------ introspection
    def shard_nodes(self) -> list[str]:
        """Node id hosting each shard's actor."""
        return list(self._node_of)

    def close(self) -> None:
        """Kill the shard actors and release the stored shards."""
        import ray

        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors = []
        self._base = []

    def __enter__(self) -> RaySearcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
