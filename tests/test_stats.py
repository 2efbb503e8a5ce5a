"""hnca_env.stats against hand computations."""

import numpy as np
import pytest

from hnca_env import stats


def test_normalise_both_directions():
    assert stats.normalise(0.5, 0.0, 1.0) == pytest.approx(0.5)
    # an MSE: do-nothing 0.08, reference 0.002; 0.041 is half way
    assert stats.normalise(0.041, 0.08, 0.002) == pytest.approx(0.5)
    assert stats.normalise(0.08, 0.08, 0.002) == 0.0 and stats.normalise(0.002, 0.08, 0.002) == 1.0
    with pytest.raises(ValueError, match="equals do-nothing"):
        stats.normalise(1.0, 0.3, 0.3)


def test_iqm_by_hand():
    # pooled: 1..8 -> drop floor(0.25*8)=2 at each end -> mean(3,4,5,6) = 4.5
    assert stats.iqm({"a": [1, 8, 3, 6], "b": [2, 7, 4, 5]}) == pytest.approx(4.5)
    # n = 10: drop 2 at each end of 0..9 -> mean(2..7) = 4.5; an outlier does not move it
    assert stats.iqm({"a": list(range(9)) + [1e9]}) == pytest.approx(np.mean([2, 3, 4, 5, 6, 7]))
    assert stats.mean({"a": [1, 2], "b": [3]}) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="non-finite"):
        stats.iqm({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="no tasks"):
        stats.iqm({})


def test_stratified_bootstrap_on_a_known_sample():
    # one task whose seeds all score 1.0: every resample is 1.0
    assert stats.stratified_bootstrap({"a": [1.0] * 5}, reps=50) == (1.0, 1.0, 1.0)
    # mean of 0/1 runs: the interval matches the binomial normal interval roughly, contains p
    rng = np.random.default_rng(1)
    s = {"a": rng.integers(0, 2, 400).astype(float)}
    point, lo, hi = stats.stratified_bootstrap(s, stats.mean, reps=2000, seed=0)
    se = np.sqrt(point * (1 - point) / 400)
    assert lo < point < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    # stratified: tasks are never mixed, so a task's runs keep their own scale
    s2 = {"low": [0.0, 0.0, 0.0], "high": [1.0, 1.0, 1.0]}
    assert stats.stratified_bootstrap(s2, stats.mean, reps=200) == (0.5, 0.5, 0.5)
    # deterministic per seed
    assert stats.stratified_bootstrap(s, reps=100, seed=3) == stats.stratified_bootstrap(s, reps=100, seed=3)


def test_performance_profile_and_probability_of_improvement():
    prof = stats.performance_profile({"a": [0.1, 0.5, 0.9], "b": [0.6]}, [0.0, 0.5, 1.0])
    # tau 0: a 3/3, b 1 -> 1; tau 0.5: a 1/3, b 1 -> 2/3; tau 1: 0
    np.testing.assert_allclose(prof, [1.0, 2 / 3, 0.0])
    x, y = {"a": [1.0, 3.0], "b": [5.0]}, {"a": [2.0, 2.0], "b": [5.0]}
    # a: pairs (1>2 no, 1>2 no, 3>2 yes, 3>2 yes) = 0.5; b: a tie = 0.5
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.5)
    assert stats.probability_of_improvement({"a": [3.0]}, {"a": [1.0, 2.0]}) == 1.0
    with pytest.raises(ValueError, match="no task in common"):
        stats.probability_of_improvement({"a": [1.0]}, {"b": [1.0]})
