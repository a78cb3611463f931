"""Package-level contracts: no import-time side effects, the CLI entry point, the error hierarchy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hybridface
from hybridface import errors
from hybridface.gallery.matrix import TemplateMatrix


def test_import_has_no_side_effects(tmp_path):
    code = "import hybridface, sys; print(sorted(m for m in sys.modules if m.startswith(('torch','onnxruntime','ray','cv2'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


def test_cli_version():
    out = subprocess.run([sys.executable, "-m", "hybridface", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and hybridface.__version__ in out.stdout


def test_errors_share_one_base():
    for name in ("ConfigError", "ImageDecodeError", "NoFaceError", "ModelMismatchError", "GalleryError",
                 "EmptyGalleryError", "UnknownIdentityError", "EngineError", "DatasetError", "ModelFileError"):
        assert issubclass(getattr(errors, name), errors.HybridFaceError)
    assert str(errors.UnknownIdentityError("no identity 'bob'")) == "no identity 'bob'"


def test_template_matrix_groups_rows_by_identity():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 4)).astype(np.float32)
    m = TemplateMatrix.from_arrays(v, ["b", "a", "b", "c", "a", "b", "c"])
    assert m.names == ("b", "a", "c")
    assert m.offsets.tolist() == [0, 3, 5, 7]
    assert np.allclose(np.linalg.norm(m.vectors, axis=1), 1, atol=1e-6)
    assert m.template_ids[m.rows(1)].tolist() == [1, 4]
    assert m.index_of("c") == 2
    with pytest.raises(errors.ModelMismatchError):
        m.check_probes(np.ones((2, 5), np.float32))
    with pytest.raises(errors.ConfigError):
        TemplateMatrix.from_arrays(np.full((1, 4), np.nan), ["a"])
