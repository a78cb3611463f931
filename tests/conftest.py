"""Shared fixtures: paths to ../shared data (skipping cleanly when absent) and temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridface.config import shared_datasets_dir

REPO = Path(__file__).resolve().parents[1]
REFERENCE_NPZ = REPO.parent / "shared" / "reference" / "paper_compressed_vggface.npz"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    d = shared_datasets_dir()
    if d is None:
        pytest.skip("shared datasets not found (set HYBRIDFACE_DATASETS or provide ../shared/datasets)")
    return d


@pytest.fixture(scope="session")
def dataset(datasets_dir):
    """Factory: ``dataset("vidtimit14")`` -> path, or skip when that dataset is absent."""

    def _get(name: str) -> Path:
        p = datasets_dir / name
        if not p.is_dir():
            pytest.skip(f"shared dataset {name!r} not found under {datasets_dir}")
        return p

    return _get


@pytest.fixture(scope="session")
def reference_npz() -> Path:
    if not REFERENCE_NPZ.is_file():
        pytest.skip(f"paper reference weights not found at {REFERENCE_NPZ}")
    return REFERENCE_NPZ


@pytest.fixture(scope="session")
def resnet_teacher_spec():
    """The ported dlib ResNet's layout and weights (skips without the installed ``.dat`` file)."""
    from hybridface.errors import ModelFileError
    from hybridface.models.dlib_format import default_dat_path, read_dlib_net
    from hybridface.models.resnet import resnet_spec

    try:
        return resnet_spec(read_dlib_net(default_dat_path()))
    except ModelFileError as exc:
        pytest.skip(str(exc))
