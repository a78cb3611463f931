"""CLI gallery commands through ``hybridface.cli.main``: tables, JSON lines, one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hybridface.cli import main
from hybridface.errors import ConfigError
from hybridface.options import SearchOptions
from synthetic_faces import noisy_faces, vidtimit_slice

MODEL = "paper"  # the authors' weights from ../shared when present, else its seeded init: plumbing only


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = noisy_faces(tmp_path_factory.mktemp("faces"))
    (root / "cid" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def test_enroll_list_identify_rename_remove(data_dir, tmp_path, capsys):
    db = str(tmp_path / "g.db")
    assert main(["enroll", "--detect", "never", str(data_dir), "--db", db, "--model", MODEL, "--json"]) == 0
    rows = {r["identity"]: r for r in _json_lines(capsys.readouterr().out)}
    assert {k: v["added"] for k, v in rows.items()} == {"ann": 3, "bob": 3, "cid": 3}
    assert "broken.jpg" in rows["cid"]["skipped"][0][0]
    assert main(["enroll", "--detect", "never", str(data_dir), "--db", db, "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert "enrolled 0 templates" in out and "9 already enrolled" in out and "broken.jpg" in out

    probes = tmp_path / "probes"
    probes.mkdir()
    shutil.copy(data_dir / "bob" / "1.png", probes / "p1.png")
    (probes / "p2.png").write_bytes(b"")
    assert main(["identify", "--detect", "never", str(probes), "--db", db, "--model", MODEL, "--strategy", "exhaustive",
                 "--k", "2", "--json"]) == 0
    answers = _json_lines(capsys.readouterr().out)
    assert [list(a) for a in answers] == [["probe", "identity", "distance", "candidates", "status", "error"]] * 2
    assert answers[0]["identity"] == "bob" and answers[0]["distance"] < 1e-4 and answers[0]["status"] == "ok"
    assert len(answers[0]["candidates"]) == 2 and answers[0]["candidates"][0][0] == "bob"
    assert answers[1]["status"] == "error" and answers[1]["identity"] is None and answers[1]["error"]
    assert main(["identify", "--detect", "never", str(probes / "p1.png"), "--db", db, "--model", MODEL, "--strategy", "hybrid"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["probe", "identity", "distance"] and table[1].split()[1] == "bob"

    assert main(["rename", "bob", "robert", "--db", db]) == 0
    assert main(["remove", "ann", "--db", db]) == 0
    capsys.readouterr()
    assert main(["list", "--db", db, "--json"]) == 0
    assert _json_lines(capsys.readouterr().out) == [{"identity": "cid", "templates": 3},
                                                    {"identity": "robert", "templates": 3}]
    assert main(["list", "--db", db]) == 0
    assert "robert" in capsys.readouterr().out


def test_calibrate_and_verify(data_dir, tmp_path, capsys):
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", "--detect", "never", str(data_dir), "--db", db, "--model", MODEL]) == 0
    assert main(["calibrate", "--detect", "never", str(data_dir), "--db", db, "--model", MODEL, "--far", "0.2", "--json"]) == 0
    cal = _json_lines(capsys.readouterr().out.splitlines()[-1])[0]
    assert cal["genuine_pairs"] == 9 and cal["impostor_pairs"] == 27 and cal["far"] <= 0.2
    a, b = data_dir / "ann" / "0.png", data_dir / "ann" / "0.png"
    assert main(["verify", "--detect", "never", str(a), str(b), "--model", MODEL, "--db", db, "--json"]) == 0
    v = _json_lines(capsys.readouterr().out)[0]
    assert v["same"] is True and v["distance"] < 1e-4 and v["threshold"] == pytest.approx(cal["threshold"])


@pytest.mark.parametrize("argv, message", [
    (["list", "--db", "{tmp}/missing.db"], "no gallery at"),
    (["list", "--db", "{tmp}/text.db"], "is not a hybridface gallery"),
    (["remove", "nobody", "--db", "{tmp}/v.db"], "no identity 'nobody'"),
    (["rename", "nobody", "x", "--db", "{tmp}/v.db"], "no identity 'nobody'"),
    (["identify", "--detect", "never", "{tmp}/text.db", "--db", "{tmp}/empty.db"], "has no templates"),
    (["identify", "--detect", "never", "{tmp}/a.png", "--db", "{tmp}/v.db", "--top-n", "0"], "top_n=0 is not valid; use an integer >= 1"),
    (["verify", "--detect", "never", "{tmp}/a.png", "{tmp}/a.png", "--model", MODEL], "needs a threshold"),
])
def test_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    from hybridface.api import open_gallery

    (tmp_path / "text.db").write_text("not a gallery")
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(tmp_path / "a.png")
    open_gallery(tmp_path / "empty.db", create=True).close()
    with open_gallery(tmp_path / "v.db", create=True) as g:
        g.enroll_vectors("a", np.ones((1, 60)), model_id="vec")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_run_protocol_folder_counts_and_rank1(data_dir, tmp_path):
    from hybridface.evaluation.runner import run_protocol

    r = run_protocol("folder", data_dir, db=tmp_path / "p.db", model=MODEL,
                     search=SearchOptions(strategy="exhaustive"), detect="never", gallery_per_identity=2)
    assert (r.identities, r.templates, r.probes) == (3, 6, 3)
    assert r.skipped == ()  # the protocol's scan already left out the unreadable file
    assert 0.0 <= r.rank1 <= 1.0 and r.ms_per_probe > 0
    # coarse LBG cells visiting every cell: the same answers as the flat hybrid shortlist
    runs = [run_protocol("folder", data_dir, db=tmp_path / f"c{c}.db", model=MODEL,
                         search=SearchOptions(strategy="hybrid", top_n=3, cells=c, probe_cells=2),
                         detect="never", gallery_per_identity=2) for c in (None, 2)]
    assert runs[0].rank1 == runs[1].rank1 and runs[1].templates == 6
    with pytest.raises(ConfigError, match="cells=0 is not valid"):
        run_protocol("folder", data_dir, db=tmp_path / "bad.db", model=MODEL, search=SearchOptions(cells=0))
    assert not (tmp_path / "bad.db").exists()


def test_main_job_on_a_vidtimit_slice(dataset, tmp_path, capsys):
    """`hybridface run-protocol vidtimit` (what scripts/main.sh runs) on 3 identities x 12 real frames."""
    src = dataset("vidtimit14")
    vidtimit_slice(src, tmp_path)
    db = tmp_path / "main.db"
    assert main(["run-protocol", "vidtimit", "--data", str(tmp_path), "--db", str(db), "--model", MODEL,
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["protocol"] == "vidtimit" and row["strategy"] == "hybrid" and row["identities"] == 3
    assert row["probes"] == 3 * 4 and row["templates"] + row["skipped"] >= 3 * 8
    assert 0 <= row["rank1"] <= 1 and row["ms_per_probe"] > 0
    assert main(["list", "--db", str(db), "--json"]) == 0
    capsys.readouterr()
    again = ["run-protocol", "vidtimit", "--data", str(tmp_path), "--db", str(db), "--model", MODEL, "--json"]
    assert main(again) == 2 and "--overwrite" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("precious")
    assert main([*again[:5], str(tmp_path / "notes.txt"), *again[6:], "--overwrite"]) == 2
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_identify_probe_without_face_and_calibrate_errors(data_dir, tmp_path, capsys):
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", "--detect", "never", str(data_dir), "--db", db, "--model", MODEL]) == 0
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(blank)
    capsys.readouterr()
    assert main(["identify", "--detect", "never", str(blank), str(data_dir / "ann" / "0.png"), "--db", db, "--model", MODEL,
                 "--detect", "always", "--json"]) == 0
    first = _json_lines(capsys.readouterr().out)[0]
    assert first["status"] == "no_face" and first["identity"] is None and "no face" in first["error"]
    one = tmp_path / "one"
    (one / "solo").mkdir(parents=True)
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(one / "solo" / "x.png")
    Image.fromarray(np.ones((60, 60, 3), np.uint8)).save(one / "solo" / "y.png")
    assert main(["calibrate", "--detect", "never", str(one), "--db", db, "--model", MODEL]) == 2
    assert "at least 2 identities" in capsys.readouterr().err
    assert main(["identify", "--detect", "never", str(blank), "--db", db, "--model", "compressed-but-missing"]) == 2
