"""Crash-and-concurrency torture of one gallery file: nothing acknowledged is ever lost.

Each round runs, on one gallery file:

* ``hybridface serve`` (a real server process; restarted when a round killed it),
* ``--workers`` library processes that enrol, remove, rename and identify at random through
  ``hybridface.api``, each on identities of its own (``w<slot>_*``),
* one HTTP client process doing the same through the server (identities ``h_*``),
* one process running real CLI commands ``hybridface keys create/revoke/list`` one after another,

then SIGKILLs every client (and, with ``--server-kill`` probability, the server) at random
moments. Every client writes an intent line before each operation and an ack line once it was
acknowledged (return / HTTP 2xx / exit 0) to its own log (unbuffered ``O_APPEND`` writes, which
survive SIGKILL). After the round, with no client alive, the gallery must pass
``PRAGMA integrity_check`` and hold exactly what the acknowledged operations say, give or take the
one operation each client had in flight (applied whole or not at all: never half). The state is
kept in ``--out`` so a run can be resumed, round numbers continuing.

    python benchmarks/torture.py --out /tmp/torture --rounds 200          # the benchmark
    python benchmarks/torture.py --out /tmp/t --rounds 4 --seconds 0.6 --json   # the CI form
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
DIM = 60


# ----------------------------------------------------------------------------- the clients
class Log:
    """Intent/ack lines, each one ``os.write`` to an ``O_APPEND`` file (kept by the kernel on SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.seq = 0

    def intent(self, op: dict) -> int:
        self.seq += 1
        os.write(self.fd, (json.dumps({"i": self.seq, **op}) + "\n").encode())
        return self.seq

    def ack(self, seq: int, **result) -> None:
        os.write(self.fd, (json.dumps({"a": seq, **result}) + "\n").encode())


def _pick_op(rnd: random.Random, names: set[str], prefix: str) -> dict:
    r = rnd.random()
    if r < 0.45 or not names:
        pool = sorted(names) + [f"{prefix}{rnd.randrange(1000)}"]
        return {"op": "enrol", "name": rnd.choice(pool), "n": rnd.randint(1, 3)}
    if r < 0.55:
        return {"op": "remove", "name": rnd.choice(sorted(names))}
    if r < 0.70:
        new = f"{prefix}{rnd.randrange(1000)}"
        return {"op": "rename", "name": rnd.choice(sorted(names)), "new": new} if new not in names else {"op": "identify"}
    return {"op": "identify"}


def library_worker(db: str, slot: str, model_id: str, log_path: Path, seed: int) -> None:
    """Random operations through the facade on identities ``<slot>_*`` until killed."""
    from hybridface import api
    from hybridface.errors import EmptyGalleryError

    log, rnd, prefix = Log(log_path), random.Random(seed), f"{slot}_"
    rng = np.random.default_rng(seed)
    g = api.open_gallery(db)
    names = {n for n, _ in g.identities() if n.startswith(prefix)}
    while True:
        op = _pick_op(rnd, names, prefix)
        seq = log.intent(op)
        try:
            if op["op"] == "enrol":
                rep = g.enroll_vectors(op["name"], rng.standard_normal((op["n"], DIM)).astype(np.float32),
                                       model_id=model_id)
                names.add(op["name"])
                log.ack(seq, ids=list(rep.template_ids))
            elif op["op"] == "remove":
                g.remove(op["name"])
                names.discard(op["name"])
                log.ack(seq)
            elif op["op"] == "rename":
                g.rename(op["name"], op["new"])
                names.discard(op["name"])
                names.add(op["new"])
                log.ack(seq)
            else:
                try:
                    g.identify_vectors(rng.standard_normal((1, DIM)).astype(np.float32), strategy="hybrid", k=3)
                except EmptyGalleryError:
                    pass
                log.ack(seq)
        except Exception as exc:  # in doubt: stop writing, so at most one operation is in flight
            log.ack(seq, failed=f"{type(exc).__name__}: {exc}"[:300])
            while True:
                time.sleep(1)


def png_bytes(seed: int) -> bytes:
    """A distinct small RGB PNG (smooth random blobs), enrolled with ``detect=never``."""
    import io

    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def http_worker(url: str, key: str, log_path: Path, seed: int) -> None:
    """Random operations through the REST service on identities ``h_*`` until killed."""
    import httpx

    log, rnd = Log(log_path), random.Random(seed)
    c = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
    while True:
        try:
            names = {i["name"] for i in c.get("/v1/identities").json()["identities"] if i["name"].startswith("h_")}
            break
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.1)
    while True:
        op = _pick_op(rnd, names, "h_")
        if op["op"] == "enrol":
            op["n"] = 1
        seq = log.intent(op)
        try:
            if op["op"] == "enrol":
                r = c.post(f"/v1/identities/{op['name']}/faces", params={"detect": "never"},
                           files=[("file", ("f.png", png_bytes(rnd.randrange(1 << 30)), "image/png"))])
            elif op["op"] == "remove":
                r = c.delete(f"/v1/identities/{op['name']}")
            elif op["op"] == "rename":
                r = c.patch(f"/v1/identities/{op['name']}", json={"name": op["new"]})
            else:
                r = c.post("/v1/identify", params={"detect": "never", "strategy": "hybrid"},
                           files=[("file", ("p.png", png_bytes(rnd.randrange(1 << 30)), "image/png"))])
        except httpx.HTTPError as exc:
            log.ack(seq, failed=f"{type(exc).__name__}")
            while True:
                time.sleep(1)
        if r.status_code >= 500 or (r.status_code >= 400 and op["op"] != "identify"):
            log.ack(seq, failed=f"HTTP {r.status_code}: {r.text[:200]}")
            while True:
                time.sleep(1)
        if op["op"] == "enrol":
            names.add(op["name"])
            log.ack(seq, ids=r.json()["template_ids"])
        else:
            if op["op"] == "remove":
                names.discard(op["name"])
            elif op["op"] == "rename":
                names.discard(op["name"])
                names.add(op["new"])
            log.ack(seq)


def keys_worker(db: str, log_path: Path, seed: int, round_no: int) -> None:
    """Real ``hybridface keys`` CLI processes, one after another, until killed."""
    log, rnd = Log(log_path), random.Random(seed)
    from hybridface.gallery.keys import KeyStore

    active = [k.name for k in KeyStore(db).list() if k.active and k.name.startswith("k")]
    i = 0
    while True:
        r = rnd.random()
        if r < 0.5 or not active:
            i += 1
            op, argv = {"op": "create", "name": f"k{round_no}_{i}"}, ["create", "--name", f"k{round_no}_{i}"]
        elif r < 0.75:
            name = rnd.choice(active)
            op, argv = {"op": "revoke", "name": name}, ["revoke", name]
        else:
            op, argv = {"op": "list"}, ["list"]
        seq = log.intent(op)
        out = subprocess.run([sys.executable, "-m", "hybridface", "-q", "keys", *argv[:1], "--db", db, *argv[1:]],
                             capture_output=True, text=True)
        if out.returncode != 0:
            log.ack(seq, failed=out.stderr[-300:])
            while True:
                time.sleep(1)
        if op["op"] == "create":
            active.append(op["name"])
        elif op["op"] == "revoke":
            active.remove(op["name"])
        log.ack(seq)


# ----------------------------------------------------------------------------- checking
def read_log(path: Path) -> tuple[list[tuple[dict, dict]], dict | None, bool]:
    """``(acknowledged (intent, ack) pairs in order, the op in flight or None, failed)``."""
    if not path.exists():
        return [], None, False
    intents, acked, failed = {}, [], False
    last = None
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by SIGKILL cannot be an ack that was written whole
        if "i" in rec:
            intents[rec["i"]] = rec
            last = rec["i"]
        elif "a" in rec:
            if "failed" in rec:
                failed = True
                continue  # "in doubt": treated like an op in flight
            acked.append((intents[rec["a"]], rec))
            if last == rec["a"]:
                last = None
    pending = intents[last] if last is not None else None
    return acked, pending, failed


def apply(state: dict[str, list[int]], op: dict, ids: list[int] | None) -> dict[str, list[int]]:
    s = {k: list(v) for k, v in state.items()}
    if op["op"] == "enrol":
        s[op["name"]] = sorted(s.get(op["name"], []) + list(ids or []))
    elif op["op"] == "remove":
        s.pop(op["name"], None)
    elif op["op"] == "rename":
        s[op["new"]] = s.pop(op["name"])
    return s


def explained(actual: dict, expect: dict, pending: dict | None) -> bool:
    """True when ``actual`` is ``expect``, or ``expect`` with the pending op applied whole."""
    if actual == expect:
        return True
    if pending is None or pending["op"] == "identify":
        return False
    if pending["op"] == "enrol":
        name = pending["name"]
        if {k: v for k, v in actual.items() if k != name} != {k: v for k, v in expect.items() if k != name}:
            return False
        have, had = set(actual.get(name, [])), set(expect.get(name, []))
        return had <= have and len(have - had) == pending["n"]
    try:
        return actual == apply(expect, pending, None)
    except KeyError:
        return False


def gallery_state(db: Path) -> dict[str, dict[str, list[int]]]:
    from hybridface.gallery.store import GalleryStore

    out: dict[str, dict[str, list[int]]] = {}
    with GalleryStore(db, readonly=True) as store:
        for name, _ in store.identities():
            slot = name.split("_", 1)[0]
            out.setdefault(slot, {})[name] = sorted(t[0] for t in store.templates(name))
    return out


# ----------------------------------------------------------------------------- the driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _fork(target, *args) -> int:
    pid = os.fork()
    if pid == 0:  # child: its own process group, so a kill also takes its CLI children
        os.setsid()
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - a child must never return into the driver
            code = 1
        os._exit(code)
    return pid


class ServerProc:
    def __init__(self, db: Path, model: str | None, log: Path) -> None:
        import httpx

        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "hybridface", "serve", "--db", str(db), "--host", HOST,
               "--port", str(self.port), "--workers-pool", "2"] + (["--model", model] if model else [])
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        for _ in range(600):
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit("server did not start")

    def drain(self, key: str, timeout: float = 60.0) -> None:
        """Wait until the server's worker pool is empty twice in a row (50 ms apart)."""
        import httpx

        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 2 and time.monotonic() < deadline:
            text = httpx.get(self.url + "/metrics", headers={"X-API-Key": key}, timeout=10).text
            jobs = next((float(x.split()[-1]) for x in text.splitlines() if x.startswith("hybridface_worker_jobs")), 0.0)
            quiet = quiet + 1 if jobs == 0 else 0
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="state folder (gallery, logs, state.json); reused to resume")
    p.add_argument("--rounds", type=int, default=200, help="kill rounds to run (in addition to earlier ones)")
    p.add_argument("--seconds", type=float, default=1.5, help="longest time a client lives in a round")
    p.add_argument("--workers", type=int, default=2, help="library worker processes")
    p.add_argument("--server-kill", type=float, default=0.3, help="probability that a round SIGKILLs the server")
    p.add_argument("--model", default=None, help="model the server encodes with (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)

    from hybridface.gallery.salvage import full_check
    from hybridface.gallery.keys import KeyStore

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db, state_path = out / "gallery.db", out / "state.json"
    if state_path.exists():
        state = json.loads(state_path.read_text())
    else:
        key = KeyStore(db, create=True).create("torture", scope="write")[1]
        state = {"round": 0, "writes": 0, "reads": 0, "kills": 0, "server_kills": 0, "lost": 0,
                 "unexplained": 0, "integrity_errors": 0, "in_doubt": 0, "key": key, "model": {}, "keys": {},
                 "seconds": 0.0, "failures": []}
    # the model id, read in a child process: no ONNX Runtime threads in this process, which forks
    model_id = subprocess.run([sys.executable, "-c", "import sys; from hybridface import api; "
                               "print(api.load_encoder(sys.argv[1] or None).model_id)", args.model or ""],
                              capture_output=True, text=True, check=True).stdout.strip()
    rnd = random.Random(args.seed * 1_000_003 + state["round"])
    server: ServerProc | None = None
    t_start = time.perf_counter()
    try:
        for _ in range(args.rounds):
            r = state["round"] = state["round"] + 1
            logs = out / f"round{r}"
            logs.mkdir(exist_ok=True)
            if server is None:
                server = ServerProc(db, args.model, out / "server.log")
            pids = {f"w{i}": _fork(library_worker, str(db), f"w{i}", model_id, logs / f"w{i}.log", rnd.randrange(1 << 30))
                    for i in range(args.workers)}
            pids["h"] = _fork(http_worker, server.url, state["key"], logs / "h.log", rnd.randrange(1 << 30))
            pids["k"] = _fork(keys_worker, str(db), logs / "k.log", rnd.randrange(1 << 30), r)
            # SIGKILL each client (and maybe the server) at its own random moment
            events = sorted([(rnd.uniform(0.3, args.seconds), name) for name in pids]
                            + ([(rnd.uniform(0.3, args.seconds), "server")] if rnd.random() < args.server_kill else []))
            t0 = time.monotonic()
            for at, name in events:
                time.sleep(max(0.0, at - (time.monotonic() - t0)))
                if name == "server":
                    server.kill()
                    server = None
                    state["server_kills"] += 1
                else:
                    os.killpg(pids[name], signal.SIGKILL)
                state["kills"] += 1
            for pid in pids.values():
                os.waitpid(pid, 0)
            if server is not None:  # a request whose client was killed may still be running: let it end
                server.drain(state["key"])
            # ---- check: integrity, then every slot against its acknowledged operations
            rep = full_check(db)
            if not rep.ok:
                state["integrity_errors"] += 1
                state["failures"].append({"round": r, "integrity": list(rep.problems)})
            actual = gallery_state(db)
            for slot in [f"w{i}" for i in range(args.workers)] + ["h"]:
                acked, pending, failed = read_log(logs / f"{slot}.log")
                expect = state["model"].get(slot, {})
                for op, ack in acked:
                    expect = apply(expect, op, ack.get("ids"))
                    state["writes" if op["op"] != "identify" else "reads"] += 1
                state["in_doubt"] += int(pending is not None)
                got = actual.get(slot, {})
                if not explained(got, expect, pending):
                    missing = sum(len(set(v) - set(got.get(k, []))) for k, v in expect.items())
                    state["lost"] += missing
                    state["unexplained"] += 1
                    state["failures"].append({"round": r, "slot": slot, "expected": expect, "actual": got,
                                              "pending": pending, "failed": failed})
                state["model"][slot] = got
            acked, pending, _ = read_log(logs / "k.log")
            keys = dict(state["keys"])
            for op, _ in acked:
                if op["op"] == "create":
                    keys[op["name"]] = False
                elif op["op"] == "revoke":
                    keys[op["name"]] = True
                state["writes" if op["op"] != "list" else "reads"] += 1
            have = {k.name: not k.active for k in KeyStore(db).list() if k.name != "torture"}
            alt = dict(keys)
            if pending and pending["op"] == "create":
                alt[pending["name"]] = False
            elif pending and pending["op"] == "revoke":
                alt[pending["name"]] = True
            if have not in (keys, alt):
                state["lost"] += sum(1 for k in keys if k not in have)
                state["unexplained"] += 1
                state["failures"].append({"round": r, "slot": "keys", "expected": keys, "actual": have})
            state["keys"] = have
            for f in logs.iterdir():
                f.unlink()
            logs.rmdir()
            state_path.write_text(json.dumps(state))
    finally:
        if server is not None:
            server.kill()
    state["seconds"] += time.perf_counter() - t_start
    state_path.write_text(json.dumps(state))
    summary = {k: state[k] for k in ("round", "writes", "reads", "kills", "server_kills", "in_doubt", "lost",
                                     "unexplained", "integrity_errors", "seconds")}
    summary["failures"] = state["failures"][:3]
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"rounds {state['round']}, acknowledged writes {state['writes']:,}, reads {state['reads']:,}, "
              f"SIGKILLs {state['kills']:,} (server {state['server_kills']}), ops in flight at a kill "
              f"{state['in_doubt']:,}; lost {state['lost']}, unexplained states {state['unexplained']}, "
              f"integrity errors {state['integrity_errors']} ({state['seconds']:.0f} s)")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    return 0 if not (state["lost"] or state["unexplained"] or state["integrity_errors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
