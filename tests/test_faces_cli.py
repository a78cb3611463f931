"""``hybridface faces`` and ``hybridface protocol`` through their argument parsers."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from PIL import Image

from hybridface.cli import faces as faces_cli
from hybridface.errors import ConfigError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridface")
    sub = parser.add_subparsers(dest="command")
    faces_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_faces_writes_crops_and_csv(dataset, tmp_path, capsys):
    vid = dataset("vidtimit14")
    src = tmp_path / "in" / "person"
    src.mkdir(parents=True)
    for name in ("faks0/faks0_1874.jpg", "fjas0/fjas0_2115.jpg"):
        (src / name.split("/")[1]).write_bytes((vid / name).read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # header only: truncated
    out = tmp_path / "crops"
    rc = _run(["faces", str(tmp_path / "in"), "--out", str(out), "--detector", "cascade"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "crops.csv", encoding="utf-8")))
    status = {r["file"].rsplit("/", 1)[-1]: r["status"] for r in rows}
    assert status == {"broken.png": "bad_image", "faks0_1874.jpg": "ok", "fjas0_2115.jpg": "no_face"}
    ok = next(r for r in rows if r["status"] == "ok")
    crop = np.asarray(Image.open(out / ok["crop"]))
    assert crop.shape == (60, 60, 3) and int(ok["w"]) > 40 and float(ok["score"]) > 0
    assert "1/3 files gave a face" in capsys.readouterr().out

    rc = _run(["faces", str(src / "faks0_1874.jpg"), "--out", str(out), "--detect", "never", "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert rc == 0 and line["status"] == "ok" and line["w"] == 192


def test_faces_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no image files"):
        _run(["faces", str(tmp_path), "--out", str(tmp_path / "o")])


def test_protocol_summary(dataset, capsys):
    root = dataset("extended_yale_b")
    assert _run(["protocol", "yale-augmented", "--data", str(root), "--seed", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("yale-augmented (seed 3") and "15 identities" in line
    assert _run(["protocol", "folder", "--data", str(dataset("att_orl")), "--gallery-per-identity", "3", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["gallery"] == 120 and obj["probes"] == 280 and obj["identities"] == 40


def test_registered_in_main_cli(tmp_path, capsys):
    from hybridface.cli import main

    root = tmp_path / "ds"
    for ident in ("a", "b"):
        (root / ident).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((30, 30), 40 * i, np.uint8)).save(root / ident / f"{i}.png")
    assert main(["protocol", "folder", "--data", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gallery"] == 4
    assert main(["protocol", "folder", "--data", str(tmp_path / "missing")]) == 2  # one-line error, exit 2
    assert "not found" in capsys.readouterr().err
