"""Enrolment spread over Ray (`hybridface enroll --engine ray`): identical to local enrolment, a
killed worker loses nothing, an address that does not answer is one line.

Cluster tests need the loopback cluster of ``scripts/ray_cluster.sh start``
(``HYBRIDFACE_RAY_ADDRESS``) and skip with that reason otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ray")

from hybridface.errors import EngineError  # noqa: E402
from search_data import face_folders  # noqa: E402

ADDRESS = os.environ.get("HYBRIDFACE_RAY_ADDRESS")
needs_cluster = pytest.mark.skipif(
    not ADDRESS, reason="HYBRIDFACE_RAY_ADDRESS is unset: start a cluster with `eval $(scripts/ray_cluster.sh start)`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _contents(g):
    m = g.matrix()
    rows = g.store.identities()
    return m.names, m.vectors, m.template_ids, rows


@needs_cluster
def test_ray_enrolment_equals_local_and_a_killed_worker_loses_nothing(tmp_path):
    from hybridface import api
    from hybridface.enroll import enroll_folder_ray

    data, _ = face_folders(tmp_path)
    with api.open_gallery(tmp_path / "local.db", create=True) as g1:
        local = g1.enroll_folder(data, detect="never")
        want = _contents(g1)
        want_faces = g1.store.num_faces()
    marker = tmp_path / "crashed-once"
    with api.open_gallery(tmp_path / "ray.db", create=True) as g2:
        # the first identity's task kills its worker process once; Ray re-runs it
        reports = enroll_folder_ray(g2, data, address=ADDRESS, detect="never", detector="cascade",
                                    crash_marker=str(marker), keep_faces=True)
        got = _contents(g2)
        assert g2.store.num_faces() == want_faces > 0  # face crops kept for `fit`, made on the workers
    assert marker.exists(), "the fault was not injected"
    assert [(r.identity, r.added, r.duplicates) for r in reports] == [(r.identity, r.added, r.duplicates) for r in local]
    assert got[0] == want[0] and got[3] == want[3]  # identities and template counts
    np.testing.assert_array_equal(got[1], want[1])  # the same templates, bit for bit
    np.testing.assert_array_equal(got[2], want[2])  # the same template ids: no duplicate, none lost
    # enrolling again over Ray adds nothing (content hashes)
    with api.open_gallery(tmp_path / "ray.db") as g2:
        again = g2.enroll_folder(data, detect="never", engine="ray", address=ADDRESS)
        assert sum(r.added for r in again) == 0 and sum(r.duplicates for r in again) == 8


def test_unreachable_ray_address_is_an_engine_error(tmp_path):
    from hybridface import api

    data, _ = face_folders(tmp_path)
    with api.open_gallery(tmp_path / "g.db", create=True) as g:
        with pytest.raises(EngineError, match="does not answer"):
            g.enroll_folder(data, detect="never", engine="ray", address=f"127.0.0.1:{_free_port()}")
        assert g.identities() == []  # nothing written
        with pytest.raises(Exception, match="engine='nope' is not valid"):
            g.enroll_folder(data, detect="never", engine="nope")


def test_cli_unreachable_address_is_one_line_and_exit_2(tmp_path):
    data, _ = face_folders(tmp_path)
    env = dict(os.environ, RAY_ADDRESS="")
    r = subprocess.run([sys.executable, "-m", "hybridface", "enroll", str(data), "--db", str(tmp_path / "g.db"),
                        "--detect", "never", "--engine", "ray", "--address", f"127.0.0.1:{_free_port()}"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0], r.stderr
