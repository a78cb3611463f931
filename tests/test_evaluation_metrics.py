"""Rank-k / CMC / DIR@FAR / timing helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridface.errors import ConfigError
from hybridface.evaluation.metrics import (
    cmc,
    dir_at_far,
    rank_k,
    ranks_of_truth,
    threshold_at_far,
    time_calls,
    timing_from,
)


def test_ranks_and_cmc_by_hand():
    ranking = np.array([[2, 0, 1], [0, 1, 2], [1, 2, -1], [1, -1, -1]])
    truth = np.array([2, 1, 0, 1])
    ranks = ranks_of_truth(ranking, truth)
    assert ranks.tolist() == [1, 2, 0, 1]
    assert cmc(ranks, 3).tolist() == [0.5, 0.75, 0.75]
    assert rank_k(ranks, 1) == 0.5
    with pytest.raises(ConfigError):
        ranks_of_truth(ranking, truth[:2])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 25), min_size=1, max_size=40), st.integers(1, 25))
def test_cmc_is_monotone_and_bounded(ranks, max_rank):
    c = cmc(np.array(ranks), max_rank)
    assert c.shape == (max_rank,)
    assert np.all(np.diff(c) >= 0) and 0 <= c[0] and c[-1] <= 1
    expected = np.mean([(0 < r <= max_rank) for r in ranks])
    assert c[-1] == pytest.approx(expected)


def test_threshold_keeps_far_at_most_target():
    imp = np.linspace(0.0, 1.0, 1000)
    for far in (0.0, 0.001, 0.01, 0.1):
        t = threshold_at_far(imp, far)
        assert (imp <= t).mean() <= far + 1e-12
        # and it is the largest such threshold: one more impostor would break it
        assert (imp <= np.nextafter(t, np.inf) + 1e-3).mean() > far or far == 0.0
    # ties at the boundary stay rejected
    assert (np.array([0.1, 0.2, 0.2, 0.2]) <= threshold_at_far(np.array([0.1, 0.2, 0.2, 0.2]), 0.5)).mean() <= 0.5
    with pytest.raises(ConfigError):
        threshold_at_far(np.array([]), 0.01)


def test_dir_at_far_counts_only_correct_accepted_genuines():
    genuine = np.array([0.1, 0.2, 0.3, 0.9])
    correct = np.array([True, False, True, True])
    impostors = np.array([0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99])
    p = dir_at_far(genuine, correct, impostors, 0.1)  # one impostor (0.25) may pass
    assert p.far == pytest.approx(0.1) and p.threshold < 0.5
    assert p.dir == pytest.approx(0.5)  # 0.1 and 0.3 correct & accepted; 0.2 wrong; 0.9 rejected
    strict = dir_at_far(genuine, correct, impostors, 0.0)  # threshold below 0.25: 0.3 rejected too
    assert strict.far == 0.0 and strict.dir == pytest.approx(0.25)


def test_timing_helpers():
    t, out = time_calls(lambda i: i * i, 5)
    assert out == [0, 1, 4, 9, 16] and t.calls == 5 and t.mean_ms >= 0
    s = timing_from([0.001, 0.002, 0.003])
    assert s.median_ms == pytest.approx(2.0) and s.mean_ms == pytest.approx(2.0)
    assert timing_from([]).calls == 0
