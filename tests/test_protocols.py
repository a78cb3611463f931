"""Protocols: determinism, disjoint sides, and the counts on the real shared datasets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols import Sample, Split, get_protocol
from hybridface.protocols.dataset import scan_dataset


def _files(samples):
    return {s.path for s in samples}


def _check_disjoint(split: Split):
    assert not (_files(split.gallery) & _files(split.probes))
    assert not (_files(split.distractors) & _files(split.probes))
    probe_ids = {s.identity for s in split.probes}
    assert probe_ids <= {s.identity for s in split.gallery}  # every probe identity is enrolled


@pytest.fixture
def tiny_folder(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for ident, n in (("alice", 6), ("bob", 4), ("carol", 1)):
        (root / ident).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(root / ident / f"{i}.png")
    (root / "bob" / "broken.jpg").write_bytes(b"")
    (root / "bob" / "notes.txt").write_text("x")
    (root / "README").write_text("x")
    return root


def test_scan_dataset_reports_problems(tiny_folder):
    scan = scan_dataset(tiny_folder, min_images=2)
    assert sorted(scan.identities) == ["alice", "bob", "carol"]
    assert len(scan.identities["bob"]) == 4
    assert [p.name for p, _ in scan.unreadable] == ["broken.jpg"]
    assert "empty" in scan.unreadable[0][1]
    assert scan.too_few == ("carol",)
    assert [p.name for p in scan.ignored] == ["notes.txt"]
    rep = scan.report()
    assert "broken.jpg" in rep and "carol" in rep


def test_scan_dataset_missing_or_empty(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        scan_dataset(tmp_path)


def test_folder_protocol(tiny_folder):
    a = get_protocol("folder", tiny_folder, seed=1)
    b = get_protocol("folder", tiny_folder, seed=1)
    c = get_protocol("folder", tiny_folder, seed=2)
    assert a == b
    assert a.gallery != c.gallery or a.probes != c.probes
    _check_disjoint(a)
    assert a.counts() == {"alice": 3, "bob": 2}
    assert [s.identity for s in a.distractors] == ["carol"]
    k2 = get_protocol("folder", tiny_folder, gallery_per_identity=5)
    assert k2.counts() == {"alice": 5, "bob": 3}  # always leaves one probe
    assert "3 identities" in a.summary()
    with pytest.raises(ConfigError):
        get_protocol("folder", tiny_folder, detect="sometimes")
    with pytest.raises(ConfigError, match="unknown protocol"):
        get_protocol("nope", tiny_folder)


def test_yale_augmented(dataset):
    root = dataset("extended_yale_b")
    a = get_protocol("yale-augmented", root, seed=0)
    assert a == get_protocol("yale-augmented", root.parent, seed=0)
    _check_disjoint(a)
    ids = sorted({s.identity for s in a.gallery})
    assert len(ids) == 15 and ids == sorted(p.name for p in root.iterdir() if p.is_dir())[:15]
    assert {s.variant for s in a.gallery} == set(range(18)) == {s.variant for s in a.probes}
    assert 11_000 < len(a.gallery) < 11_700 and 5_400 < len(a.probes) < 5_900
    g_files = len(_files(a.gallery))
    assert len(a.gallery) == 18 * g_files
    assert a.detect == "never"
    # per subject ~2/3 of its files on the gallery side
    per = {}
    for s in a.gallery:
        per.setdefault(s.identity, set()).add(s.path)
    assert all(len(v) in (39, 40, 41, 42, 43) for v in per.values())
    c = get_protocol("yale-augmented", root, seed=1)
    assert _files(c.gallery) != _files(a.gallery)
    # augmentation seed: same file → same seed across variants, derivable from the sample
    seeds = {(s.path, s.seed) for s in a.gallery}
    assert len(seeds) == g_files
    assert "15 identities" in a.summary() and "18 variant" in a.summary()


def test_vidtimit(dataset):
    root = dataset("vidtimit14")
    a = get_protocol("vidtimit", root)
    assert a == get_protocol("vidtimit", root)
    _check_disjoint(a)
    assert a.detect == "largest"
    assert {s.identity for s in a.distractors} == {"fadg0"}
    assert "fadg0" not in {s.identity for s in a.probes}
    for ident in {s.identity for s in a.gallery}:
        g = [s for s in a.gallery if s.identity == ident]
        p = [s for s in a.probes if s.identity == ident]
        n = len(g) + len(p)
        assert len(g) == -(-n * 6 // 10)
        num = lambda s: int(s.path.stem.split("_")[-1])  # noqa: E731
        assert max(map(num, g)) < min(map(num, p))  # temporal: gallery strictly before probes
        assert [num(s) for s in g] == sorted(num(s) for s in g)
    assert len(a.gallery) + len(a.probes) + len(a.distractors) == sum(
        1 for _ in root.glob("*/*.jpg")
    )


def test_sample_defaults():
    s = Sample(path=__import__("pathlib").Path("x.png"), identity="a")
    assert s.variant == 0 and s.seed == 0


def test_vidtimit_paper(dataset):
    """The paper's split: per identity a seeded random 1,700 : 672 (71.7 %) gallery/probe split."""
    root = dataset("vidtimit14")
    a = get_protocol("vidtimit-paper", root)
    assert a == get_protocol("vidtimit-paper", root)
    assert a.name == "vidtimit-paper" and a.detect == "largest"
    _check_disjoint(a)
    assert {s.identity for s in a.distractors} == {"fadg0"}  # 3 frames: enrolled, never probed
    temporal = get_protocol("vidtimit", root)
    assert {s.path for s in (*a.gallery, *a.probes)} == {s.path for s in (*temporal.gallery, *temporal.probes)}
    num = lambda s: int(s.path.stem.split("_")[-1])  # noqa: E731
    interleaved = 0
    for ident in {s.identity for s in a.gallery}:
        g = [s for s in a.gallery if s.identity == ident]
        p = [s for s in a.probes if s.identity == ident]
        assert len(g) == round((len(g) + len(p)) * 1700 / 2372)
        interleaved += max(map(num, g)) > min(map(num, p))  # random, not temporal
    assert interleaved == len({s.identity for s in a.gallery})
    other = get_protocol("vidtimit-paper", root, seed=1)
    assert {s.path for s in other.gallery} != {s.path for s in a.gallery}
    assert len(other.gallery) == len(a.gallery)


def test_vidtimit_paper_too_few_frames_is_one_line(tmp_path, capsys):
    from hybridface.cli import main

    root = tmp_path / "vid"
    rng = np.random.default_rng(0)
    for ident in ("a", "b"):
        (root / ident).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(root / ident / f"{i}.png")
    with pytest.raises(DatasetError, match="no identity .* has at least 10 frames \\(the most is 3\\)"):
        get_protocol("vidtimit-paper", root)
    assert main(["protocol", "vidtimit-paper", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "at least 10 frames" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match="gallery_fraction"):
        get_protocol("vidtimit-paper", root, gallery_fraction=1.5)


def test_folder_order_first_and_unknown_protocol_options(tmp_path):
    from hybridface.errors import ConfigError
    from hybridface.protocols import get_protocol

    for person in ("a", "b"):
        (tmp_path / person).mkdir()
        for i in range(1, 5):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / person / f"{i}.png")
    split = get_protocol("folder", tmp_path, gallery_per_identity=1, order="first", detect="never")
    assert sorted(s.path.name for s in split.gallery) == ["1.png", "1.png"]
    assert len(split.probes) == 6
    with pytest.raises(ConfigError, match="order='shuffle'"):
        get_protocol("folder", tmp_path, order="shuffle")
    with pytest.raises(ConfigError, match=r"no option 'holdout'.*gallery_per_identity"):
        get_protocol("folder", tmp_path, holdout="x")
