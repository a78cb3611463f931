"""In-process sharded engine: same answers as the local searchers, routing, chunking, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.engines import shards as sh
from hybridface.engines.local import LocalEngine, make_engine
from hybridface.errors import (
    ConfigError,
    EmptyGalleryError,
    ModelMismatchError,
    UnknownIdentityError,
)
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search import make_searcher
from hybridface.options import SearchOptions


def clustered(m: int = 120, per: int = 4, d: int = 60, seed: int = 0, model_id: str = "m1"):
    """Identities with ``per`` noisy templates around a centre each, plus probes near them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(m, d))
    x = np.repeat(centres, per, axis=0) + 0.3 * rng.normal(size=(m * per, d))
    names = [f"id{i:04d}" for i in np.repeat(np.arange(m), per)]
    matrix = TemplateMatrix.from_arrays(x.astype(np.float32), names, model_id=model_id)
    q = min(m, 40)
    probes = (centres[:q] + 0.3 * rng.normal(size=(q, d))).astype(np.float32)
    return matrix, probes


@pytest.fixture(scope="module")
def gallery():
    return clustered()


def assert_same(a, b):
    np.testing.assert_array_equal(a.identities, b.identities)
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-6)
    np.testing.assert_array_equal(a.template_ids, b.template_ids)


@pytest.mark.parametrize("strategy", ["exhaustive", "parallel"])
@pytest.mark.parametrize("shards", [1, 3, 7])
def test_sharded_exact_strategies_equal_local(gallery, strategy, shards):
    matrix, probes = gallery
    ref = make_searcher(strategy, matrix, top_n=5, workers=2).search(probes, 5)
    eng = make_engine("local", matrix, shards=shards, options=SearchOptions(strategy=strategy, top_n=5, workers=2))
    assert_same(eng.search(probes, 5), ref)
    assert eng.names == matrix.names


@pytest.mark.parametrize("strategy", ["indexed", "hybrid"])
def test_sharded_index_strategies_never_worse_than_local(gallery, strategy):
    """Per-shard shortlists form a superset of the single-machine shortlist."""
    matrix, probes = gallery
    ref = make_searcher(strategy, matrix, top_n=5, workers=2).search(probes, 5)
    exact = make_searcher("exhaustive", matrix).search(probes, 5)
    got = make_engine("local", matrix, shards=3, options=SearchOptions(strategy=strategy, top_n=5, workers=2)).search(probes, 5)
    np.testing.assert_array_equal(got.identities[:, 0], ref.identities[:, 0])
    assert (got.distances <= ref.distances + 1e-6).all()
    assert (got.distances >= exact.distances - 1e-6).all()


def test_chunked_batches_give_the_same_answer(gallery):
    matrix, probes = gallery
    whole = make_engine("local", matrix, shards=2).search(probes, 3)
    # 7 probes per chunk -> 6 chunks
    tiny = LocalEngine(matrix, shards=2, batch_bytes=7 * 4 * matrix.dim).search(probes, 3)
    assert len(sh.probe_chunks(len(probes), matrix.dim, 7 * 4 * matrix.dim)) == 6
    assert_same(tiny, whole)


def test_k_larger_than_gallery_pads(gallery):
    matrix, probes = clustered(m=5, per=2)
    got = make_engine("local", matrix, shards=3).search(probes[:2], 8)
    assert got.identities.shape == (2, 8)
    assert (got.identities[:, 5:] == -1).all() and np.isinf(got.distances[:, 5:]).all()
    assert sorted(got.identities[0, :5]) == list(range(5))


def test_split_balances_and_keeps_codebooks(gallery):
    from hybridface.index.lbg import build_codebooks

    matrix, _ = gallery
    indexed = build_codebooks(matrix, codewords=2)
    parts = sh.split(indexed, 4)
    assert sum(p.num_templates for p in parts) == matrix.num_templates
    assert max(p.num_templates for p in parts) - min(p.num_templates for p in parts) <= 4
    assert sorted(n for p in parts for n in p.names) == sorted(matrix.names)
    assert sum(len(p.codewords) for p in parts) == len(indexed.codewords)
    for p in parts:  # every codeword still belongs to the identity whose templates it summarises
        name = p.names[int(p.codeword_labels[0])]
        i = indexed.names.index(name)
        assert any(np.allclose(p.codewords[0], c) for c in indexed.codewords[indexed.codeword_labels == i])


@pytest.mark.parametrize("placement", ["hash", "least-loaded"])
def test_add_and_remove_are_routed_and_match_a_rebuilt_gallery(placement):
    matrix, probes = clustered(m=30, per=3, seed=1)
    eng = LocalEngine(matrix, shards=3, placement=placement, options=SearchOptions(strategy="hybrid", top_n=4, workers=1))
    sizes = eng.shard_sizes()
    new = probes[:2] + 0.01
    expected_shard = (sh.owner_by_hash("newcomer", 3) if placement == "hash"
                      else int(np.argmin(sizes)))
    assert eng.add("newcomer", new) == expected_shard
    assert eng.shard_sizes()[expected_shard] == sizes[expected_shard] + 2
    res = eng.search(probes[:1], 1)
    assert eng.names[res.identities[0, 0]] == "newcomer"
    # more templates for an existing identity go to its owner
    owner = eng.owner("id0005")
    assert eng.add("id0005", probes[5:6]) == owner
    owner3, before = eng.owner("id0003"), eng.shard_sizes()
    assert eng.remove("id0003") == owner3
    assert eng.shard_sizes()[owner3] == before[owner3] - 3
    assert "id0003" not in eng.names
    # the engine now equals a gallery rebuilt from scratch with the same content
    vecs = np.concatenate([matrix.vectors, new, probes[5:6]])
    names = list(np.array(matrix.names)[matrix.labels]) + ["newcomer"] * 2 + ["id0005"]
    keep = np.array([n != "id0003" for n in names])
    rebuilt = TemplateMatrix.from_arrays(vecs[keep], np.array(names)[keep], model_id="m1")
    assert eng.names == rebuilt.names
    ref = make_searcher("exhaustive", rebuilt).search(probes, 3)
    got = LocalEngine(rebuilt, shards=1).search(probes, 3)
    assert_same(got, ref)
    ranked = eng.search(probes, 1)
    np.testing.assert_array_equal(ranked.identities[:, 0], ref.identities[:, 0])
    np.testing.assert_allclose(ranked.distances[:, 0], ref.distances[:, 0], atol=1e-6)


def test_bad_input_has_defined_errors(gallery):
    matrix, probes = gallery
    eng = LocalEngine(matrix, shards=2)
    with pytest.raises(UnknownIdentityError):
        eng.remove("nobody")
    with pytest.raises(ModelMismatchError):
        eng.add("x", np.ones((2, 10), np.float32))
    with pytest.raises(ModelMismatchError):
        eng.search(np.ones((2, 10), np.float32))
    with pytest.raises(ConfigError):
        eng.search(probes, 0)
    with pytest.raises(ConfigError):
        eng.search(np.full((1, matrix.dim), np.nan, np.float32))
    with pytest.raises(ConfigError):
        make_engine("spark", matrix)
    with pytest.raises(ConfigError):
        make_engine("local", matrix, options=SearchOptions(address="127.0.0.1:1"))
    with pytest.raises(ConfigError):
        make_engine("local", matrix, options=SearchOptions(strategy="quantum"))
    with pytest.raises(ConfigError):
        LocalEngine(matrix, shards=0)
    with pytest.raises(ConfigError):
        LocalEngine(matrix, batch_bytes=0)
    empty = TemplateMatrix.from_arrays(np.zeros((0, 60), np.float32), [])
    with pytest.raises(EmptyGalleryError):
        LocalEngine(empty)


def test_shards_of_different_models_are_rejected(gallery):
    a, _ = gallery
    b, _ = clustered(m=4, seed=3, model_id="other-model")
    with pytest.raises(ModelMismatchError, match="other-model"):
        sh.check_same_model([a, b])
    c = TemplateMatrix.from_arrays(np.ones((2, 8), np.float32), ["p", "q"], model_id="m1")
    with pytest.raises(ModelMismatchError):
        sh.check_same_model([a, c])
