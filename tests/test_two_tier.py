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
