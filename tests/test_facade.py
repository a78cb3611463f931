"""The facade a newcomer guesses: ``import hybridface as hf`` (issue 16's snippet, run for real on
VidTIMIT photos with the shipped model), lazy exports, one input -> one result."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import hybridface as hf


@pytest.fixture(scope="module")
def people(dataset, tmp_path_factory):
    """3 VidTIMIT people x 4 frames in ``people/<id>/`` and a later frame of the first as the probe."""
    src = dataset("vidtimit14")
    root = tmp_path_factory.mktemp("facade")
    names = sorted(p.name for p in src.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 50)[:3]
    for name in names:
        frames = sorted((src / name).iterdir())
        (root / "people" / name).mkdir(parents=True)
        for f in frames[:40:10]:
            shutil.copy(f, root / "people" / name / f.name)
    probe = sorted((src / names[0]).iterdir())[45]
    shutil.copy(probe, root / "probe.jpg")
    return root, names


def test_the_readme_snippet(people, monkeypatch):
    root, names = people
    monkeypatch.chdir(root)
    # --- the snippet, verbatim
    import hybridface as hf
    g = hf.open_gallery("people.db", create=True)
    g.enroll_folder("people/")                 # <identity>/<images>, faces detected
    r = g.identify("probe.jpg")                # one input -> one result; a list -> a list
    print(r.identity, r.distance)
    # ---
    assert isinstance(r, hf.Identification) and r.status == "ok"
    assert r.identity == names[0] and 0 <= r.distance < 1
    assert sorted(n for n, _ in g.identities()) == names
    both = g.identify(["probe.jpg", "people/" + names[1]])  # a list -> a list (a folder is not an image)
    assert [a.identity for a in both[:1]] == [names[0]] and both[1].status == "error"
    g.close()


def test_enroll_folder_reports_per_identity(people, tmp_path):
    root, names = people
    with hf.open_gallery(tmp_path / "g.db", create=True) as g:
        reports = g.enroll_folder(root / "people")
        assert [r.identity for r in reports] == names and all(r.added >= 3 for r in reports)
        again = g.enroll_folder(root / "people")  # idempotent: every face is already enrolled
        assert [(r.added, r.duplicates) for r in again] == [(0, r.added) for r in reports]
    with hf.open_gallery(tmp_path / "g2.db", create=True) as g, pytest.raises(hf.HybridFaceError):
        g.enroll_folder(tmp_path / "no-such-folder")


def test_one_vector_one_result(tmp_path):
    from search_data import vector_gallery

    g, probes = vector_gallery(tmp_path / "v.db", per=3)
    one = g.identify(probes[0])
    many = g.identify(probes)
    assert isinstance(one, hf.Identification) and isinstance(many, list) and len(many) == 3
    assert one.identity == many[0].identity and one.distance == many[0].distance
    matrix, searcher = g.searcher()  # Gallery.searcher returns (matrix, searcher), as documented
    assert matrix.num_templates == 120 and searcher.search(probes, 1).identities.shape == (3, 1)
    g.close()


def test_package_exports_the_facade_lazily():
    code = ("import sys, hybridface as hf; assert 'hybridface.api' not in sys.modules; "
            "hf.open_gallery; assert 'hybridface.api' in sys.modules; print(sorted(hf.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("open_gallery", "load_encoder", "verify", "Identification", "EnrollReport", "Verification",
                 "HybridFaceError", "ConfigError", "SearchOptions"):
        assert f"'{name}'" in out
    with pytest.raises(AttributeError):
        hf.not_a_thing  # noqa: B018
    from hybridface import api

    assert set(api.__all__) == {"Gallery", "SearchOptions", "load_encoder", "open_gallery", "verify"}
