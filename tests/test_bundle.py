"""Device bundles: ``hybridface export G2 --bundle DIR`` and ``hybridface identify --bundle DIR``,
also in a real virtual environment holding only numpy, onnxruntime and opencv."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from hybridface.cli import main
from synthetic_faces import shifted_people

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[1]
MODEL = "general"


@pytest.fixture(scope="module")
def g2(tmp_path_factory):
    from hybridface.training.fit import fit_gallery

    root = tmp_path_factory.mktemp("bundle")
    data = shifted_people(root / "data", ("ann", "bob", "cid"), per=5)
    assert main(["-q", "enroll", str(data), "--db", str(root / "g.db"), "--model", MODEL, "--detect", "never"]) == 0
    rep = fit_gallery(root / "g.db", root / "g2.db", epochs=2, force=True, int8=True, progress=False, threads=1)
    return root, data, rep


def _answers(capsys) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]


def test_export_and_identify_a_bundle(g2, capsys):
    root, data, rep = g2
    bundle = root / "dev"
    assert main(["export", str(root / "g2.db"), "--bundle", str(bundle), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["templates"] == 15 and m["identities"] == 3 and m["model_id"] == rep.model_id
    assert {"model.onnx", "model.json", "model.int8.onnx", "gallery.npz"} <= set(m["files"])
    core = sum((bundle / f).stat().st_size for f in ("model.onnx", "model.json", "gallery.npz", "bundle.json"))
    assert core <= 1_000_000 + 256 * m["templates"]  # the size bound (fp32 model and templates)
    probes = [str(data / "bob" / "04.png"), str(data / "ann" / "00.png"), str(root / "missing.png")]
    assert main(["identify", *probes, "--bundle", str(bundle), "--json", "--k", "3", "--detect", "never"]) == 0
    got = _answers(capsys)
    assert main(["identify", *probes, "--db", str(root / "g2.db"), "--json", "--k", "3", "--detect", "never"]) == 0
    want = _answers(capsys)
    assert [(a["identity"], a["status"]) for a in got] == [(a["identity"], a["status"]) for a in want]
    assert got[2]["status"] == "error"
    for a, b in zip(got[:2], want[:2]):
        assert a["distance"] == pytest.approx(b["distance"], abs=1e-5)
    assert main(["export", str(root / "g2.db"), "--bundle", str(bundle)]) == 0  # replaced in place
    assert "bundle" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["identify", "x.png", "--bundle", "{root}/nowhere"], "not a hybridface bundle"),
    (["identify", "x.png"], "exactly one of --db"),
    (["identify", "x.png", "--db", "{root}/g2.db", "--bundle", "{root}/dev"], "exactly one of --db"),
    (["export", "{root}/g2.db", "--bundle", "{root}/data"], "not a hybridface bundle"),
    (["export", "{root}/g2.db", "--bundle", "{root}/no/such/dir"], "does not exist"),
])
def test_bundle_bad_input_one_line_exit_2(g2, capsys, argv, message):
    root = g2[0]
    capsys.readouterr()
    assert main([a.replace("{root}", str(root)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _core_venv(where: Path) -> Path:
    """A real venv with only the pinned core wheels (numpy, onnxruntime, opencv); skip when pip cannot."""
    pins = [line.strip() for line in (REPO / "requirements.lock").read_text().splitlines()
            if line.split("==")[0].strip().lower() in ("numpy", "onnxruntime", "opencv-python-headless")]
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    py = where / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot install the core wheels {pins} into a fresh venv (offline?): {r.stderr[-300:]}")
    return py


def test_bundle_runs_with_core_dependencies_only(g2, tmp_path_factory, capsys):
    root, data, _ = g2
    bundle = root / "core"
    assert main(["export", str(root / "g2.db"), "--bundle", str(bundle)]) == 0
    capsys.readouterr()
    probes = [str(data / "cid" / "03.png"), str(data / "ann" / "01.png")]
    assert main(["identify", *probes, "--bundle", str(bundle), "--json", "--detect", "never"]) == 0
    want = [(a["identity"], round(a["distance"], 4)) for a in _answers(capsys)]
    py = _core_venv(tmp_path_factory.mktemp("corevenv") / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO / "src")
    absent = subprocess.run([str(py), "-c", "import importlib.util as u; print([m for m in "
                             "('torch', 'dlib', 'PIL', 'tqdm', 'numba', 'fastapi') if u.find_spec(m)])"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    r = subprocess.run([str(py), "-m", "hybridface", "identify", *probes, "--bundle", str(bundle), "--json", "--detect", "never"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = [(a["identity"], round(a["distance"], 4)) for a in map(json.loads, r.stdout.strip().splitlines())]
    assert got == want
    # the int8 model and templates too (no numba there: the re-scoring is plain numpy)
    assert main(["identify", *probes, "--bundle", str(bundle), "--json", "--detect", "never", "--storage", "int8"]) == 0
    want8 = [(a["identity"], round(a["distance"], 4)) for a in _answers(capsys)]
    r = subprocess.run([str(py), "-m", "hybridface", "identify", *probes, "--bundle", str(bundle), "--json",
                        "--detect", "never", "--storage", "int8"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [(a["identity"], round(a["distance"], 4)) for a in map(json.loads, r.stdout.strip().splitlines())] == want8


def test_int8_bundle_templates_and_model(g2, capsys):
    """``export --bundle`` also writes int8 templates; ``identify --bundle --storage int8`` uses the
    int8 model and templates and re-scores its candidates against the float32 templates."""
    import numpy as np

    root, data, _ = g2
    bundle = root / "dev8"
    assert main(["export", str(root / "g2.db"), "--bundle", str(bundle), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert "gallery.int8.npz" in m["files"]
    with np.load(bundle / "gallery.int8.npz") as z, np.load(bundle / "gallery.npz") as f:
        assert z["codes"].dtype == np.int8 and z["codes"].shape == f["templates"].shape
        approx = z["codes"] * z["scale"][None, :]
        assert np.abs(approx - f["templates"]).max() <= z["scale"].max()  # at most one step per dimension
    sizes = m["sizes"]
    assert sizes["int8_bytes"] < sizes["fp32_bytes"] <= sizes["budget_bytes"] == 1_000_000 + 256 * 15
    assert (bundle / "model.int8.onnx").stat().st_size < (bundle / "model.onnx").stat().st_size
    probes = [str(data / p / f"{i:02d}.png") for p in ("ann", "bob", "cid") for i in (1, 3)]
    assert main(["identify", *probes, "--bundle", str(bundle), "--json", "--k", "2", "--detect", "never",
                 "--storage", "int8"]) == 0
    got = _answers(capsys)
    assert len(got) == 6 and all(a["identity"] is not None for a in got)
    # the distances are float32 ones: the int8 model's probes against the float32 templates
    from hybridface.bundle import load_bundle
    from hybridface.faces.io import load_image
    from hybridface.prepare import encode_crops

    b = load_bundle(bundle, precision="int8")
    assert b.precision == "int8" and b.exact is not None and b.encoder.path_.name == "model.int8.onnx"
    vec = encode_crops(b.encoder, [load_image(probes[0])])[0]
    best = b.exact.vectors[b.exact.rows(b.exact.index_of(got[0]["identity"]))] @ vec
    assert got[0]["distance"] == pytest.approx(1 - best.max(), abs=1e-5)
    # an old bundle without int8 templates: one clear line, exit 2
    (bundle / "gallery.int8.npz").unlink()
    capsys.readouterr()
    assert main(["identify", probes[0], "--bundle", str(bundle), "--detect", "never", "--storage", "int8"]) == 2
    assert "no int8 templates" in capsys.readouterr().err
