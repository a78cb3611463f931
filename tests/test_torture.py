"""The short form of benchmarks/torture.py: random SIGKILLs of library, HTTP and CLI processes and
the server on one gallery; every acknowledged operation must be there after each round."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from service_server import model_args

pytestmark = pytest.mark.timeout(300)
TORTURE = Path(__file__).resolve().parents[1] / "benchmarks" / "torture.py"


def _torture(out: Path, *extra: str) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, str(TORTURE), "--out", str(out), "--json", *model_args(), *extra],
                       capture_output=True, text=True, timeout=280)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines, r.stdout + r.stderr
    return r.returncode, json.loads(lines[-1])


def test_short_torture_loses_nothing_acknowledged(tmp_path):
    code, s = _torture(tmp_path / "t", "--rounds", "4", "--seconds", "1.0", "--server-kill", "0.5", "--seed", "3")
    assert s["round"] == 4 and s["kills"] >= 16 and s["writes"] >= 50, s
    assert (s["lost"], s["unexplained"], s["integrity_errors"]) == (0, 0, 0), s["failures"]
    assert code == 0


def test_the_checker_notices_a_change_no_client_acknowledged(tmp_path):
    """Not vacuous: an identity deleted behind the clients' backs is reported (and the run fails)."""
    out = tmp_path / "t"
    code, s = _torture(out, "--rounds", "2", "--seconds", "0.8", "--server-kill", "0", "--seed", "4")
    assert code == 0 and s["writes"] > 0
    with sqlite3.connect(out / "gallery.db") as con:
        # any library worker's identity (w0_..., w1_...): in a short round one worker may write none
        victim = con.execute("SELECT id FROM identities WHERE name LIKE 'w_\\_%' ESCAPE '\\' LIMIT 1").fetchone()
        assert victim is not None
        for table in ("templates", "codebooks", "blocks"):
            con.execute(f"DELETE FROM {table} WHERE identity_id = ?", victim)
        con.execute("DELETE FROM identities WHERE id = ?", victim)
    state = json.loads((out / "state.json").read_text())
    code, s = _torture(out, "--rounds", "1", "--seconds", "0.3", "--server-kill", "0", "--seed", "5")
    assert s["round"] == 3 and s["unexplained"] >= 1 and s["lost"] >= 1 and code == 1, (s, state["model"].get("w0"))
