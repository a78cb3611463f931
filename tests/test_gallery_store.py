"""GalleryStore: round trips, duplicates, edits, concurrency, crashes and bad files."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hybridface.errors import ConfigError, GalleryError, ModelMismatchError, UnknownIdentityError
from hybridface.gallery import snapshot
from hybridface.gallery.store import APPLICATION_ID, GalleryStore


def _vecs(n, d=60, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    with GalleryStore(tmp_path / "g.db", create=True) as s:
        yield s


def test_round_trip_matrix_and_codebooks(store):
    a, b = _vecs(3, seed=1), _vecs(2, seed=2)
    ra = store.add_templates("alice", a, ["a1", "a2", "a3"], model_id="m", sources=["x1", "x2", "x3"])
    rb = store.add_templates("bob", b, ["b1", "b2"], model_id="m")
    m = store.load_matrix()
    assert m.names == ("alice", "bob") and m.offsets.tolist() == [0, 3, 5] and m.model_id == "m"
    assert np.allclose(m.vectors, _unit(np.concatenate([a, b])), atol=1e-6)
    assert m.template_ids.tolist() == [*ra.template_ids, *rb.template_ids]
    assert m.codewords.shape == (2, 60) and m.codeword_labels.tolist() == [0, 1]
    assert np.allclose(m.codewords[0], _unit(_unit(a).mean(0, keepdims=True))[0], atol=1e-5)
    assert store.identities() == [("alice", 3), ("bob", 2)]
    assert [s for _, s, _ in store.templates("alice")] == ["x1", "x2", "x3"]
    with sqlite3.connect(store.path) as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_image_twice_is_a_noop_and_codewords_follow(store):
    v = _vecs(4)
    store.add_templates("a", v, ["h1", "h2", "h3", "h4"], model_id="m")
    again = store.add_templates("a", v[:2], ["h1", "h2"], model_id="m")
    assert again.template_ids == () and again.duplicates == 2
    assert store.identities() == [("a", 4)]
    store.add_templates("a", _vecs(1, seed=9), ["h5"], model_id="m", codewords=2)
    m = store.load_matrix()
    assert m.codewords.shape == (2, 60) and m.codeword_labels.tolist() == [0, 0]
    with pytest.raises(ConfigError):
        store.add_templates("a", v[:1], ["z"], model_id="m", codewords=3)


def test_auto_codewords_follow_the_template_count_and_survive_salvage(store, tmp_path):
    """``codewords="auto"`` is stored once and re-sized at every change: 1 codeword under 16
    templates, 2 from 16; the CLI refuses other words with argparse's error line; salvage reads the
    stored value back as "auto"."""
    store.add_templates("a", _vecs(10, seed=1), [f"h{i}" for i in range(10)], model_id="m", codewords="auto")
    assert store.load_matrix().codewords.shape == (1, 60)
    store.add_templates("a", _vecs(6, seed=2), [f"g{i}" for i in range(6)], model_id="m")  # 16 templates now
    assert store.load_matrix().codewords.shape == (2, 60)
    for bad in ("lots", 3, True):
        with pytest.raises(ConfigError, match="or 'auto'"):
            store.add_templates("a", _vecs(1, seed=3), ["z"], model_id="m", codewords=bad)
    from hybridface.gallery.salvage import _codewords

    assert [_codewords(v) for v in (0, 1, 8, 3, "x", None)] == ["auto", 1, 8, None, None, None]
    r = subprocess.run([sys.executable, "-m", "hybridface", "enroll", str(tmp_path), "--db", str(tmp_path / "x.db"),
                        "--codewords", "lots"], capture_output=True, text=True)
    assert r.returncode == 2 and "or 'auto'" in r.stderr.strip().splitlines()[-1], r.stderr  # argparse's error line


def test_rename_remove_and_remove_template(store):
    store.add_templates("a", _vecs(2, seed=1), ["1", "2"], model_id="m")
    store.add_templates("b", _vecs(3, seed=2), ["1", "2", "3"], model_id="m")
    cb_b = store.load_matrix().codewords[1].copy()
    store.rename_identity("a", "anna")
    assert [n for n, _ in store.identities()] == ["anna", "b"]
    with pytest.raises(GalleryError, match="already has an identity 'b'"):
        store.rename_identity("anna", "b")
    with pytest.raises(UnknownIdentityError, match="no identity 'zoe'"):
        store.remove_identity("zoe")
    tid = store.templates("b")[0][0]
    assert store.remove_template(tid) == "b"
    m = store.load_matrix()
    assert m.num_templates == 4 and tid not in m.template_ids.tolist()
    assert not np.allclose(m.codewords[1], cb_b)  # only b was re-quantized
    with pytest.raises(UnknownIdentityError):
        store.remove_template(tid)
    assert store.remove_identity("anna") == 2
    assert store.identities() == [("b", 2)] and store.load_matrix().names == ("b",)


def test_bad_vectors_and_model_mismatch(store):
    store.add_templates("a", _vecs(1), ["1"], model_id="m")
    bad = _vecs(2)
    bad[1, 3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        store.add_templates("b", bad, ["1", "2"], model_id="m")
    bad[1, 3] = np.inf
    with pytest.raises(ConfigError):
        store.add_templates("b", bad, ["1", "2"], model_id="m")
    with pytest.raises(ModelMismatchError, match="60-D"):
        store.add_templates("b", _vecs(1, d=128), ["1"], model_id="m")
    with pytest.raises(ModelMismatchError, match="model 'm'"):
        store.add_templates("b", _vecs(1), ["1"], model_id="other")
    assert store.identities() == [("a", 1)]  # nothing half-written


def _enrol_many(path, prefix, n_ids, q=None):
    with GalleryStore(path, create=True, timeout=60) as s:
        for i in range(n_ids):
            s.add_templates(f"{prefix}{i}", _vecs(5, seed=i), [f"{j}" for j in range(5)], model_id="m")
            if q is not None:
                print(f"{prefix}{i}", flush=True)


def test_two_processes_enrolling_at_once(tmp_path):
    path = tmp_path / "shared.db"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_enrol_many, args=(path, p, 30)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with GalleryStore(path) as s:
        ids = dict(s.identities())
        assert len(ids) == 60 and set(ids.values()) == {5}
        assert s.integrity_check() == "ok"


def test_creating_a_gallery_another_process_is_creating_waits_for_it(tmp_path):
    """Switching a new file to WAL while another connection holds the write lock gets "database is
    locked" at once, without SQLite's busy handler (the race `test_two_processes_enrolling_at_once`
    hit): the open retries until the lock is released, within its timeout, and fails cleanly past it."""
    import threading
    import time

    path = tmp_path / "racing.db"
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    t = time.perf_counter()
    with GalleryStore(path, create=True, timeout=10) as s:
        assert s.identities() == [] and time.perf_counter() - t >= 0.4
    other.close()
    held = sqlite3.connect(str(tmp_path / "held.db"), isolation_level=None)
    held.execute("BEGIN IMMEDIATE")  # never released while the gallery opens
    try:
        t = time.perf_counter()
        with pytest.raises(GalleryError, match="locked by another process"):
            GalleryStore(tmp_path / "held.db", create=True, timeout=0.3)
        assert time.perf_counter() - t >= 0.3  # it did wait for its timeout
    finally:
        held.execute("ROLLBACK")
        held.close()


def test_sigkill_mid_enrolment_loses_nothing_committed(tmp_path):
    path = tmp_path / "k.db"
    code = textwrap.dedent(f"""
        import numpy as np
        from hybridface.gallery.store import GalleryStore
        rng = np.random.default_rng(0)
        with GalleryStore({str(path)!r}, create=True) as s:
            for i in range(100000):
                s.add_templates(f"id{{i}}", rng.normal(size=(40, 60)), [str(j) for j in range(40)], model_id="m")
                print(f"id{{i}}", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    done = [proc.stdout.readline().strip() for _ in range(8)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with GalleryStore(path) as s:
        assert s.integrity_check() == "ok"
        ids = dict(s.identities())
        assert all(ids.get(name) == 40 for name in done)
        assert set(ids.values()) == {40}  # no half-enrolled identity
        assert s.load_matrix().num_templates == 40 * len(ids)


def test_not_a_gallery(tmp_path):
    txt = tmp_path / "notes.db"
    txt.write_text("hello")
    with pytest.raises(GalleryError, match="notes.db is not a hybridface gallery"):
        GalleryStore(txt, create=True)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    with pytest.raises(GalleryError, match="other.sqlite is not a hybridface gallery"):
        GalleryStore(other, create=True)
    with pytest.raises(GalleryError, match="is a directory"):
        GalleryStore(tmp_path)
    with pytest.raises(GalleryError, match="no gallery at"):
        GalleryStore(tmp_path / "missing.db")
    with pytest.raises(GalleryError, match="does not exist"):
        GalleryStore(tmp_path / "nope" / "g.db", create=True)


def test_read_only_file_and_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "g.db"
    with GalleryStore(path, create=True) as s:
        s.add_templates("a", _vecs(2), ["1", "2"], model_id="m")
    os.chmod(path, 0o444)
    try:
        with pytest.raises(GalleryError, match="read-only"):
            GalleryStore(path)
        with GalleryStore(path, readonly=True) as s:
            assert s.identities() == [("a", 2)]
            with pytest.raises(GalleryError, match="opened read-only"):
                s.remove_identity("a")
        os.chmod(path, 0o644)
        os.chmod(folder, 0o555)
        with pytest.raises(GalleryError, match="read-only folder"):
            GalleryStore(path)
        with GalleryStore(path, readonly=True) as s:
            assert s.load_matrix().num_templates == 2
    finally:
        os.chmod(folder, 0o755)
        os.chmod(path, 0o644)


def test_locked_gallery_gives_clear_error(tmp_path):
    path = tmp_path / "g.db"
    with GalleryStore(path, create=True) as s:
        s.add_templates("a", _vecs(1), ["1"], model_id="m")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with GalleryStore(path, timeout=0.2) as s:
            with pytest.raises(GalleryError, match="locked by another process"):
                s.add_templates("b", _vecs(1), ["1"], model_id="m")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with GalleryStore(path) as s:
        s.add_templates("b", _vecs(1), ["1"], model_id="m")
        assert len(s.identities()) == 2


# ---------------------------------------------------------------------------- model-based property test
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abcd"), st.lists(st.integers(0, 6), min_size=1, max_size=4)),
        st.tuples(st.just("remove"), st.sampled_from("abcd")),
        st.tuples(st.just("rename"), st.sampled_from("abcd"), st.sampled_from("abcd")),
        st.tuples(st.just("drop"), st.integers(0, 30)),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_store_matches_a_dict_model(tmp_path_factory, ops):
    """Any sequence of enrol/remove/rename/remove-template leaves exactly what a dict model predicts."""
    pool = _unit(_vecs(7, seed=3))
    model: dict[str, dict[int, int]] = {}  # identity -> {template id: pool row}
    with GalleryStore(tmp_path_factory.mktemp("prop") / "p.db", create=True) as s:
        for op in ops:
            if op[0] == "add":
                _, name, rows = op
                res = s.add_templates(name, pool[rows], [f"h{r}" for r in rows], model_id="m")
                have = set(model.get(name, {}).values())
                fresh = list(dict.fromkeys(r for r in rows if r not in have))
                assert len(res.template_ids) == len(fresh)
                model.setdefault(name, {}).update(zip(res.template_ids, fresh))
            elif op[0] == "remove":
                if op[1] in model:
                    assert s.remove_identity(op[1]) == len(model.pop(op[1]))
                else:
                    with pytest.raises(UnknownIdentityError):
                        s.remove_identity(op[1])
            elif op[0] == "rename":
                _, old, new = op
                if old in model and new not in model:
                    s.rename_identity(old, new)
                    model[new] = model.pop(old)
                else:
                    with pytest.raises(GalleryError):
                        s.rename_identity(old, new)
            else:
                owner = next((n for n, t in model.items() if op[1] in t), None)
                if owner is None:
                    with pytest.raises(UnknownIdentityError):
                        s.remove_template(op[1])
                else:
                    assert s.remove_template(op[1]) == owner
                    del model[owner][op[1]]
                    if not model[owner]:  # the last template takes its identity with it (issue 15)
                        del model[owner]
                        assert owner not in {n for n, _ in s.identities()}
        m = s.load_matrix()
        expect = {n: t for n, t in model.items() if t}
        assert sorted(m.names) == sorted(expect)
        for i, name in enumerate(m.names):
            rows = m.rows(i)
            ids = m.template_ids[rows].tolist()
            assert ids == sorted(expect[name])
            assert np.allclose(m.vectors[rows], pool[[expect[name][t] for t in ids]], atol=1e-6)
        if m.num_identities:
            assert m.codewords.shape == (m.num_identities, 60)
        # the packed per-identity blocks and the template rows say the same thing
        for a, b in zip(snapshot._read_blocks(s.conn, 60), snapshot._read_rows(s.conn, 60)):
            assert np.array_equal(a, b)
        assert s.integrity_check() == "ok"


def test_template_and_identity_ids_are_never_reused(store):
    r1 = store.add_templates("a", _vecs(2), ["1", "2"], model_id="m")
    store.remove_template(r1.template_ids[-1])
    store.remove_identity("a")
    r2 = store.add_templates("a", _vecs(2), ["1", "2"], model_id="m")
    assert min(r2.template_ids) > max(r1.template_ids)


def test_gallery_without_blocks_loads_from_template_rows(tmp_path):
    path = tmp_path / "legacy.db"
    with GalleryStore(path, create=True) as s:
        s.add_templates("b", _vecs(3, seed=1), ["1", "2", "3"], model_id="m")
        s.add_templates("a", _vecs(2, seed=2), ["1", "2"], model_id="m")
        fast = s.load_matrix()
    with sqlite3.connect(path) as c:  # a gallery written before the packed blocks existed
        c.execute("DELETE FROM meta WHERE key = 'blocks'")
        c.execute("DELETE FROM blocks")
    with GalleryStore(path) as s:
        slow = s.load_matrix()
        s.add_templates("c", _vecs(1, seed=3), ["1"], model_id="m")  # keeps working without blocks
        assert s.load_matrix().num_templates == 6
    assert slow.names == fast.names and np.array_equal(slow.template_ids, fast.template_ids)
    assert np.array_equal(slow.vectors, fast.vectors) and np.array_equal(slow.codewords, fast.codewords)
