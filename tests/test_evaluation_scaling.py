"""Scaling section of `hybridface evaluate`: replicated galleries, per-size timings, crossover."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError
from hybridface.evaluation.scaling import ScalingPoint, overtakes, replicate, run_scaling
from hybridface.options import SearchOptions


def _gallery(n_ids=4, per=5, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, d))
    x = np.repeat(centres, per, axis=0) + 0.05 * rng.standard_normal((n_ids * per, d))
    return x.astype(np.float32), [f"p{i}" for i in range(n_ids) for _ in range(per)]


def test_replicate_grows_with_new_identities_and_shrinks_evenly():
    x, ids = _gallery()
    big, names = replicate(x, ids, 50, noise=0.01, seed=0)
    assert big.shape == (50, 8) and big.dtype == np.float32 and len(names) == 50
    np.testing.assert_array_equal(big[:20], x)  # the real gallery first
    assert names[20] == "p0~1" and len(set(names)) == 4 + 4 + 2  # copy 2 is cut after 10 rows
    assert 0 < np.abs(big[20:40] - x).max() < 0.1  # small noise
    again, _ = replicate(x, ids, 50, noise=0.01, seed=0)
    np.testing.assert_array_equal(big, again)  # seeded
    small, snames = replicate(x, ids, 4, noise=0.01, seed=0)
    assert small.shape == (4, 8) and set(snames) == {"p0", "p1", "p2", "p3"}
    for bad in (dict(size=0, noise=0.0), dict(size=10, noise=-1.0)):
        with pytest.raises(ConfigError):
            replicate(x, ids, bad["size"], noise=bad["noise"], seed=0)


def test_run_scaling_times_every_strategy_at_every_size():
    x, ids = _gallery()
    pts = run_scaling(x, ids, x[::3], sizes=(40, 20), strategies=("exhaustive", "indexed", "parallel", "hybrid"),
                      search=SearchOptions(top_n=2, workers=2), codewords=2, probes_timed=5)
    assert [p.templates for p in pts] == [20, 40] and [p.identities for p in pts] == [4, 8]
    for p in pts:
        assert set(p.ms_per_probe) == {"exhaustive", "indexed", "parallel", "hybrid"} and p.probes_timed == 5
        assert all(v > 0 for v in p.ms_per_probe.values()) and p.index_build_s["codebooks"] >= 0
        assert p.speedup("exhaustive") == 1.0


def test_overtakes_is_the_size_from_which_it_stays_faster():
    def pt(n, exh, hyb):
        return ScalingPoint(templates=n, identities=1, probes_timed=1, ms_per_probe={"exhaustive": exh, "hybrid": hyb},
                            index_build_s={})

    assert overtakes([pt(10, 1, 2), pt(100, 2, 1), pt(1000, 9, 3)], "hybrid") == 100
    assert overtakes([pt(10, 1, 0.5), pt(100, 2, 3), pt(1000, 9, 3)], "hybrid") == 1000
    assert overtakes([pt(10, 1, 2), pt(100, 2, 3)], "hybrid") is None
    assert overtakes([pt(10, 1.0, 0.99), pt(100, 2, 1)], "hybrid") == 100  # 1.01x is noise, not a win
