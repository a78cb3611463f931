"""Shallow and resized ResNet students (``resnet-tiny``): kept blocks, a Resize inside the graph,
weight-only int8, their distillation, and the shipped students in the zoo."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError, ModelFileError

TINY_BLOCKS = (0, 1, 3, 4, 7, 10, 13)


@pytest.fixture(scope="module")
def spec(resnet_teacher_spec):
    return resnet_teacher_spec


def _chips(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 150, 150, 3), dtype=np.uint8)


def _centred_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------ kept blocks, input side


def test_shallow_student_keeps_the_named_blocks_and_side(spec):
    from hybridface.models.resnet import block_shapes
    from hybridface.training.resnet_student import count_parameters, prune_spec

    st = prune_spec(spec, width=0.25, stream_width=0.5, blocks=TINY_BLOCKS, input_side=112)
    assert len(st.blocks) == len(TINY_BLOCKS) and st.input_side == 112
    assert [b.down for b in st.blocks] == [spec.blocks[i].down for i in TINY_BLOCKS]
    for b, i in zip(st.blocks, TINY_BLOCKS):
        assert b.conv1.weight.shape[0] == round(spec.blocks[i].conv1.weight.shape[0] * 0.25)
    assert st.fc.shape == (128, 128)
    assert block_shapes(st, 112)[0][1] == 26 and block_shapes(st, 150)[0][1] == 35  # stage-1 grid
    assert count_parameters(st) < 0.07 * count_parameters(spec)


@pytest.mark.parametrize("kw, match", [
    ({"blocks": (0, 1, 2, 4, 7, 10, 13)}, "down-sampling"),   # block 3 down-samples
    ({"blocks": (1, 3, 7, 10, 13)}, "first"),
    ({"blocks": (0, 3, 7, 10, 13, 14)}, "0..13"),
    ({"input_side": 16}, "input_side"), ({"input_side": 200}, "input_side")])
def test_bad_blocks_or_side_are_config_errors(spec, kw, match):
    from hybridface.training.resnet_student import prune_spec

    with pytest.raises(ConfigError, match=match):
        prune_spec(spec, width=0.25, **kw)


@pytest.mark.parametrize("side", [150, 112])
def test_shallow_resized_student_torch_and_onnx_agree(tmp_path, spec, side):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from hybridface.models.resnet import build_onnx, build_torch, preprocess_chips
    from hybridface.training.resnet_student import prune_spec, spec_from_onnx, spec_from_torch

    st = prune_spec(spec, width=0.25, stream_width=0.5, blocks=TINY_BLOCKS, input_side=side)
    net = build_torch(st)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
        ref = net(torch.from_numpy(preprocess_chips(_chips(), st.mean_rgb))).numpy()
    back = spec_from_torch(net, st)
    assert back.input_side == side and len(back.blocks) == len(TINY_BLOCKS)
    for fold in (False, True):
        proto = build_onnx(back, fold_affine=fold)
        out = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"chips": _chips()})[0]
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    # the unfolded graph reads back into the same spec (the side from the graph, blocks from ``like``)
    f = tmp_path / "s.onnx"
    f.write_bytes(build_onnx(back).SerializeToString())
    again = spec_from_onnx(f, st)
    assert again.input_side == side and np.array_equal(again.fc, back.fc)


def test_the_resize_is_what_the_smaller_side_computes(spec):
    """A side-112 student is the same weights run on the chip resized bilinearly (half-pixel) to 112."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    from hybridface.models.resnet import build_torch, preprocess_chips
    from hybridface.training.resnet_student import prune_spec

    st150 = prune_spec(spec, width=0.25, blocks=TINY_BLOCKS)
    st112 = prune_spec(spec, width=0.25, blocks=TINY_BLOCKS, input_side=112)
    x = torch.from_numpy(preprocess_chips(_chips(), st150.mean_rgb))
    with torch.no_grad():
        small = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
        a = build_torch(st112)(x).numpy()
        b = build_torch(st150)(small).numpy()  # 150 px network on a 112 px input: same ops
    assert np.allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------ weight-only int8


def test_weight_only_int8_is_small_marked_and_close(tmp_path, spec):
    pytest.importorskip("onnx")
    import onnx

    from hybridface.models.ort import WEIGHT_ONLY_KEY
    from hybridface.models.resnet import build_onnx
    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.resnet_int8 import quantize_weights
    from hybridface.training.resnet_student import prune_spec

    st = prune_spec(spec, width=0.25, stream_width=0.5, blocks=TINY_BLOCKS, input_side=112)
    fp32, int8 = tmp_path / "s.onnx", tmp_path / "s.int8.onnx"
    fp32.write_bytes(build_onnx(st, fold_affine=True).SerializeToString())
    nbytes = quantize_weights(fp32, int8)
    assert nbytes == int8.stat().st_size < fp32.stat().st_size / 3
    model = onnx.load(str(int8))
    assert {p.key: p.value for p in model.metadata_props}[WEIGHT_ONLY_KEY] == "weights"
    assert not any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # activations stay float
    chips = _chips(16, seed=1)
    a, b = ResNetEncoder(fp32, threads=1).descriptors(chips), ResNetEncoder(int8, threads=1).descriptors(chips)
    assert b.dtype == np.float32 and b.shape == (16, 128)
    assert (a * b).sum(1).min() / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).max() > 0.98


# ------------------------------------------------------------------ distillation


def test_shallow_resized_distillation_runs_resumes_and_exports(tmp_path, dataset, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import json

    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.resnet_int8 import calibration_files
    from hybridface.training.resnet_distill import distill

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(tmp_path / "cache"))
    files = calibration_files(dataset("unlabeled_faces/utkface"), n=8)
    run = tmp_path / "run"
    kw = dict(files=files, width=0.25, stream_width=0.5, blocks=TINY_BLOCKS, input_side=112, hint=1.0, steps=2,
              batch=4, save_every=1, quantize="weights")
    assert distill(run, time_limit_s=0.0, **kw) == {"step": 1, "done": False}
    with pytest.raises(ConfigError, match="new run directory"):
        distill(run, **{**kw, "blocks": (0, 3, 7, 10, 13)})
    out = distill(run, **kw)
    assert out["done"] and out["step"] == 2
    card = json.loads((run / "card.json").read_text())
    assert card["recipe"]["blocks"] == list(TINY_BLOCKS) and card["recipe"]["input_side"] == 112
    assert card["working_side"] == 112 and card["blocks"] == 7 and card["int8"]["quantized_ops"] == "weights"
    d = ResNetEncoder(run / "student.int8.onnx", threads=1).descriptors(_chips(2))
    assert d.shape == (2, 128) and np.isfinite(d).all()
    with pytest.raises(ConfigError, match="refit"):
        distill(tmp_path / "other", **{**kw, "stream_width": 1.0, "refit": 4})


# ------------------------------------------------------------------ the shipped students


def test_zoo_names_the_students():
    from hybridface.models.zoo import MODEL_NAMES, RESNET_STUDENTS

    assert set(RESNET_STUDENTS) <= set(MODEL_NAMES) and {"resnet-small", "resnet-tiny"} <= set(RESNET_STUDENTS)


def test_resnet_tiny_is_shipped_small_and_encodes_real_chips(dataset):
    import json

    from hybridface.faces.io import load_image
    from hybridface.models.encoders import WEIGHTS_DIR
    from hybridface.models.zoo import load_encoder

    path = WEIGHTS_DIR / "resnet-tiny.int8.onnx"
    card = json.loads((WEIGHTS_DIR / "resnet-tiny.json").read_text())
    assert path.stat().st_size <= 500_000 and card["int8"]["bytes"] == path.stat().st_size
    enc = load_encoder("resnet-tiny", threads=1)
    folder = dataset("att_orl")
    images = [load_image(p) for p in sorted(folder.glob("*/*"))[:6]]
    chips = enc.chips(images)
    assert chips.shape == (6, 150, 150, 3) and chips.dtype == np.uint8
    t = enc.embed_chips(chips)
    assert t.shape == (6, 128) and t.dtype == np.float32 and np.isfinite(t).all()
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    e = enc.encode(images)
    assert e.shape == (6, 128) and np.allclose(e, t, atol=1e-6)
    assert enc.model_id == card["model_id"]
    from hybridface.models.default import encoder_for_gallery
    from hybridface.models.naming import model_label

    assert model_label(enc.model_id) == "the shipped 'resnet-tiny' model"  # errors name it
    assert encoder_for_gallery(enc.model_id).model_id == enc.model_id  # a gallery of it reopens with it


def test_resnet_tiny_wrong_chip_size_is_a_config_error():
    from hybridface.models.zoo import load_encoder

    enc = load_encoder("resnet-tiny", threads=1)
    with pytest.raises(ConfigError, match="150, 150, 3"):
        enc.descriptors(np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        enc.descriptors(np.zeros((2, 150, 150, 3), np.float32))


@pytest.mark.parametrize("name", ["resnet-small", "resnet-tiny"])
def test_missing_student_file_is_an_actionable_model_file_error(tmp_path, monkeypatch, name):
    import hybridface.models.encoders as encoders
    from hybridface.models.zoo import load_encoder

    monkeypatch.setattr(encoders, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match=f"the {name} model file is missing: .*{name}.int8.onnx.*weights="):
        load_encoder(name)


def test_a_student_file_that_is_not_its_cards_is_refused(tmp_path, monkeypatch):
    import json

    import hybridface.models.encoders as encoders
    from hybridface.models.zoo import load_encoder

    real = encoders.WEIGHTS_DIR
    monkeypatch.setattr(encoders, "WEIGHTS_DIR", tmp_path)
    data = bytearray((real / "resnet-tiny.int8.onnx").read_bytes())
    (tmp_path / "resnet-tiny.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="card .* missing or malformed"):
        load_encoder("resnet-tiny")
    (tmp_path / "resnet-tiny.json").write_text((real / "resnet-tiny.json").read_text())
    assert load_encoder("resnet-tiny", threads=1).dim == 128  # the intact copy loads
    data[-1] ^= 1
    (tmp_path / "resnet-tiny.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its card"):
        load_encoder("resnet-tiny")
    card = json.loads((real / "resnet-tiny.json").read_text())
    assert card["name"] == "resnet-tiny"


def test_resnet_small_missing_or_shipped():
    """Until its file is added, ``resnet-small`` says the file is missing; once added it loads."""
    from hybridface.models.encoders import WEIGHTS_DIR
    from hybridface.models.zoo import load_encoder

    if (WEIGHTS_DIR / "resnet-small.int8.onnx").is_file():
        assert load_encoder("resnet-small", threads=1).dim == 128
    else:
        with pytest.raises(ModelFileError, match="resnet-small model file is missing"):
            load_encoder("resnet-small")


def test_cli_enrols_and_identifies_with_resnet_tiny(dataset, tmp_path, capsys):
    """``--model resnet-tiny`` through the CLI; the gallery then reopens with its own model."""
    import json
    import shutil

    from hybridface.cli import main

    src = dataset("att_orl")
    people = sorted(p for p in src.iterdir() if p.is_dir())[:3]
    gallery, probes = tmp_path / "g", tmp_path / "p"
    for person in people:
        imgs = sorted(person.iterdir())
        (gallery / person.name).mkdir(parents=True)
        for f in imgs[:2]:
            shutil.copy(f, gallery / person.name / f.name)
        probes.mkdir(exist_ok=True)
        shutil.copy(imgs[5], probes / f"{person.name}{imgs[5].suffix}")
    db = str(tmp_path / "g.db")
    assert main(["enroll", "--detect", "never", str(gallery), "--db", db, "--model", "resnet-tiny", "--json"]) == 0
    assert sum(json.loads(line)["added"] for line in capsys.readouterr().out.strip().splitlines()) == 6
    assert main(["identify", "--detect", "never", str(probes), "--db", db, "--strategy", "exhaustive", "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(answers) == 3 and all(a["status"] == "ok" for a in answers)
    assert sum(a["identity"] == a["probe"].rsplit("/", 1)[-1].split(".")[0] for a in answers) >= 2


def test_cli_missing_student_is_one_line_exit_2(dataset, tmp_path, monkeypatch, capsys):
    import shutil

    import hybridface.models.encoders as encoders
    from hybridface.cli import main

    monkeypatch.setattr(encoders, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "faces" / "a").mkdir(parents=True)
    face = sorted(dataset("att_orl").glob("*/*"))[0]
    shutil.copy(face, tmp_path / "faces" / "a" / face.name)
    assert main(["enroll", "--detect", "never", str(tmp_path / "faces"), "--db", str(tmp_path / "g.db"),
                 "--model", "resnet-small"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet-small model file is missing" in err[0]


def test_resnet_teacher_shares_dlibs_id_and_descriptors(dataset, tmp_path, monkeypatch):
    """``--teacher resnet``: the ported network as distillation teacher (no dlib at run time); it is
    dlib's network, so it carries dlib's id and fills the same descriptor cache."""
    from hybridface.training.teacher import TEACHERS, _dlib_teacher_id, load_teacher, teacher_descriptors

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(tmp_path / "cache"))
    assert "resnet" in TEACHERS
    t = load_teacher("resnet")
    assert t.model_id == _dlib_teacher_id()
    files = sorted(dataset("att_orl").glob("*/*"))[:2]
    d, found = teacher_descriptors(files, cache_dir=tmp_path / "teacher", name="resnet")
    assert found.all() and d.shape == (2, 128) and np.isfinite(d).all()
    again, found2 = teacher_descriptors(files, cache_dir=tmp_path / "teacher", compute=False)  # dlib's id: cached
    assert found2.all() and np.array_equal(again, d)
    with pytest.raises(ConfigError, match="unknown teacher"):
        teacher_descriptors(files, cache_dir=tmp_path / "other", name="resnet-tiny")


def test_distill_init_without_a_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    """``--init`` of a folder that holds no run: one line, exit 2, before any face is prepared."""
    import cv2

    from hybridface.training.resnet_distill import main

    (tmp_path / "faces").mkdir()
    cv2.imwrite(str(tmp_path / "faces" / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "run"), "--data", str(tmp_path / "faces"), "--init", str(tmp_path / "nope"),
              "--width", "0.3"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "holds no student checkpoint" in err and "\n" not in err
    assert not (tmp_path / "run" / "data").exists()
