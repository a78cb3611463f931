"""The main job (`scripts/main.sh` → ``hybridface two-tier``) on a small real VidTIMIT slice."""

from __future__ import annotations

import json

import pytest

from hybridface.cli import main
from synthetic_faces import vidtimit_slice

pytest.importorskip("torch")


def test_two_tier_on_a_vidtimit_slice(dataset, tmp_path, capsys):
    """3 identities x 12 real frames, enrolled with the fast `general` model (dlib: ~85 ms/face)."""
    src = dataset("vidtimit14")
    vidtimit_slice(src, tmp_path)
    assert main(["-q", "two-tier", "vidtimit", "--data", str(tmp_path), "--workdir", str(tmp_path / "w"),
                 "--model", "general", "--epochs", "2", "--workers", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    enrol, fitted = out["rows"]
    assert fitted["parameters"] == 24_798 and fitted["file_bytes"] < 110_000
    for row in (enrol, fitted):
        assert 0 <= row["rank1"] <= 1 and row["encode_ms_per_face"] > 0 and row["search_ms_per_probe"] > 0
    assert (tmp_path / "w" / "vidtimit.db").is_file() and (tmp_path / "w" / "vidtimit-fit.db").is_file()
    assert "held-out Rank-1" in out["fit_check"]


def test_two_tier_takes_a_protocol_and_its_options(dataset, tmp_path, capsys):
    """``two-tier folder`` with a one-photo-per-person gallery (first file of each identity):
    the fit cannot be checked and says so; a wrong option is one line and exit 2."""
    src = dataset("vidtimit14")
    data = vidtimit_slice(src, tmp_path, frames=6)
    assert main(["-q", "two-tier", "folder", "--data", str(data), "--workdir", str(tmp_path / "w"),
                 "--protocol-option", "gallery_per_identity=1", "--protocol-option", "order=first",
                 "--model", "general", "--epochs", "1", "--workers", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "gallery 3 samples" in out["summary"] and "probes 15 samples" in out["summary"]
    assert "no face could be held out" in out["fit_check"]
    import sqlite3

    with sqlite3.connect(tmp_path / "w" / "folder.db") as db:
        sources = [r[0] for r in db.execute("SELECT source FROM templates ORDER BY source")]
    firsts = sorted(str(sorted((data / p).iterdir())[0]) for p in sorted(x.name for x in data.iterdir()))
    assert sources == firsts  # order=first: each identity's first file, not a seeded pick

    capsys.readouterr()
    assert main(["-q", "two-tier", "folder", "--data", str(data), "--workdir", str(tmp_path / "w2"),
                 "--protocol-option", "holdout=att_orl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no option 'holdout'" in err[0] and "gallery_per_identity" in err[0]
    assert main(["-q", "two-tier", "folder", "--data", str(data), "--workdir", str(tmp_path / "w2"),
                 "--protocol-option", "order=random"]) == 2
    assert "order='random'" in capsys.readouterr().err
    assert not (tmp_path / "w2" / "folder.db").exists()


def test_two_tier_unseen_rotation_with_dataset_prefixed_identities(dataset, tmp_path, capsys):
    """``unseen`` names identities ``<dataset>/<person>``; the galleries store them as ``<dataset>:<person>``
    and the probes are scored against those names."""
    src = dataset("vidtimit14")
    vidtimit_slice(src, tmp_path, people=2, frames=8)
    other = tmp_path / "att_orl" / "s1"  # a stand-in training side: unseen needs a second dataset
    other.mkdir(parents=True)
    for f in sorted((src / "fcft0").iterdir())[:2]:
        (other / f.name).symlink_to(f)
    assert main(["-q", "two-tier", "unseen", "--data", str(tmp_path), "--workdir", str(tmp_path / "w"),
                 "--protocol-option", "holdout=vidtimit14", "--protocol-option", "gallery_per_identity=3",
                 "--model", "general", "--epochs", "1", "--workers", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "gallery 6 samples" in out["summary"] and "probes 10 samples" in out["summary"]
    import sqlite3

    with sqlite3.connect(tmp_path / "w" / "unseen.db") as db:
        names = sorted(r[0] for r in db.execute("SELECT name FROM identities"))
    assert names == ["vidtimit14:faks0", "vidtimit14:fcft0"]
    assert out["rows"][0]["rank1"] > 0  # probes are matched to the stored names
