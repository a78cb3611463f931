"""``hybridface train`` / ``export`` end to end on a small slice of real data, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from hybridface.cli import main  # noqa: E402
from hybridface.models.encoders import OnnxEncoder, TorchEncoder  # noqa: E402


@pytest.fixture(scope="module")
def orl_slice(dataset, tmp_path_factory) -> Path:
    """5 identities x 6 images of att_orl (symlinks) plus one corrupt file."""
    src = dataset("att_orl")
    root = tmp_path_factory.mktemp("orl")
    for ident in ("s1", "s2", "s3", "s4", "s5"):
        (root / ident).mkdir()
        for k in range(1, 7):
            os.symlink(src / ident / f"{k}.png", root / ident / f"{k}.png")
    (root / "s1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def trained(orl_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "orl"
    rc = main(["train", str(orl_slice), "--out", str(out), "--epochs", "3",
               "--lr", "1e-3", "--val-fraction", "0.34", "--no-progress", "--json", "--illumination", "hist_eq",
               "--augment", "--augment-prob", "0.5", "--threads", "1"])
    assert rc == 0
    return out


def test_train_writes_model_dir_and_reports_bad_file(orl_slice, tmp_path, capsys):
    out = tmp_path / "m"
    rc, stdout, _ = _run(capsys, "train", str(orl_slice), "--out", str(out), "--epochs", "2", "--lr", "1e-3",
                         "--no-progress", "--json")
    assert rc == 0
    lines = stdout.strip().splitlines()
    assert any("broken.png" in line for line in lines[:-1])  # the bad file is named, then skipped
    rep = json.loads(lines[-1])
    assert rep["skipped"] == 1 and rep["identities"] == 5 and rep["num_train"] + rep["num_val"] == 30
    assert rep["num_val"] == 5 * 1  # stratified: round(0.2 * 6) = 1 per identity
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx"]
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["identities"] == ["s1", "s2", "s3", "s4", "s5"]
    assert card["model_id"] == rep["model_id"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_trained_model_encoders_agree(trained, orl_slice):
    from hybridface.models.data import load_faces

    enc = OnnxEncoder(trained)
    assert enc.spec.illumination == "hist_eq" and enc.card_.training["augment_on_the_fly"] == 0.5
    imgs, _, _ = load_faces(sorted((orl_slice / "s2").glob("*.png")))
    feats = enc.encode(imgs)
    assert feats.shape == (6, 60)
    torch_enc = TorchEncoder.from_model_dir(trained)
    assert torch_enc.model_id == enc.model_id
    assert (torch_enc.encode(imgs) * feats).sum(1).min() >= 0.9999
    assert not np.allclose(feats, enc.encode(load_faces(sorted((orl_slice / "s3").glob("*.png")))[0]))


def test_export_fp32_and_int8(trained, orl_slice, tmp_path, capsys):
    rc, out, _ = _run(capsys, "export", str(trained), "--out", str(tmp_path / "copy.onnx"))
    assert rc == 0 and "bytes" in out and (tmp_path / "copy.json").is_file()
    assert OnnxEncoder(tmp_path / "copy.onnx").card_.onnx_file == "copy.onnx"
    rc, out, _ = _run(capsys, "export", str(trained), "--int8", "--calibration", str(orl_slice), "--json")
    assert rc == 0
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["int8_bytes"] <= 48_000 and rep["fp32_bytes"] <= 110_000
    assert rep["gallery"] == 15 and rep["probes"] == 15
    assert abs(rep["rank1_change_points"] - 100 * (rep["rank1_int8"] - rep["rank1_fp32"])) < 1e-9
    enc8 = OnnxEncoder(trained / "model.int8.onnx")
    assert enc8.card_.precision == "int8" and enc8.model_id != OnnxEncoder(trained).model_id


def test_cli_bad_input_is_one_error_line(tmp_path, capsys, trained):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _run(capsys, "train", str(empty), "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 2 and err.startswith("error:") and "empty" in err and "Traceback" not in err

    holes = tmp_path / "holes"
    (holes / "alice").mkdir(parents=True)
    (holes / "bob").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((60, 60), np.uint8)).save(holes / "alice" / "a.png")
    rc, _, err = _run(capsys, "train", str(holes), "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 2 and "bob" in err and "no images" in err
    assert not (tmp_path / "x").exists()

    (holes / "bob" / "b.txt").write_text("not an image")
    rc, _, err = _run(capsys, "train", str(holes), "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 2 and "bob" in err
    assert not (tmp_path / "x").exists()

    (holes / "bob" / "b.png").write_bytes(b"")  # the only image of bob is unreadable -> 1 identity left
    rc, _, err = _run(capsys, "train", str(holes), "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 2 and "at least 2 identities" in err
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    rc, _, err = _run(capsys, "export", str(tmp_path / "nomodel"))
    assert rc == 2 and "nomodel" in err
    rc, _, err = _run(capsys, "export", str(trained), "--int8")
    assert rc == 2 and "--calibration" in err
