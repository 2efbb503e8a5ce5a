"""Aggregate statistics for benchmark scores across tasks and seeds (rliable's recipe, in NumPy).

After Agarwal et al., "Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021) and
their ``rliable`` library: scores are first normalised per task (do-nothing = 0, a reference
solution = 1), then summarised with the interquartile mean over all (task, seed) runs, with 95%
*stratified* bootstrap intervals (seeds resampled with replacement within each task), score
distributions (performance profiles) and the probability of improvement of one algorithm over
another. Every function takes ``scores`` as ``{task: (n_seeds,) array}`` of normalised scores,
so tasks may have different numbers of seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

Scores = Mapping[str, Sequence[float]]


def normalise(score, do_nothing: float, reference: float):
    """``(score - do_nothing) / (reference - do_nothing)``: 0 for doing nothing, 1 for the
    reference, whichever direction is better (an MSE's reference is below its do-nothing)."""
    if reference == do_nothing:
        raise ValueError(f"normalise: the reference ({reference}) equals do-nothing; nothing to scale by")
    return (np.asarray(score, np.float64) - do_nothing) / (reference - do_nothing)


def _check(scores: Scores) -> dict[str, np.ndarray]:
    if not scores:
        raise ValueError("scores: no tasks")
    out = {}
    for task, v in scores.items():
        a = np.asarray(v, np.float64).reshape(-1)
        if a.size == 0:
            raise ValueError(f"scores[{task!r}] is empty")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"scores[{task!r}] holds non-finite values")
        out[task] = a
    return out


def iqm(scores: Scores) -> float:
    """Interquartile mean over all runs of all tasks: the mean of the middle 50 % of the pooled
    scores (``scipy.stats.trim_mean(x, 0.25)``: ``floor(0.25 n)`` dropped at each end)."""
    x = np.sort(np.concatenate(list(_check(scores).values())))
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def mean(scores: Scores) -> float:
    """Mean over all runs of all tasks."""
    return float(np.mean(np.concatenate(list(_check(scores).values()))))


def median(scores: Scores) -> float:
    """Median over all runs of all tasks."""
    return float(np.median(np.concatenate(list(_check(scores).values()))))


def stratified_bootstrap(
    scores: Scores,
    statistic: Callable[[Scores], float] = iqm,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(point, low, high)``: ``statistic`` of ``scores`` and its percentile interval over
    ``reps`` stratified bootstrap resamples (each task's seeds drawn with replacement, the
    tasks kept), as rliable's ``get_interval_estimates``. Deterministic per ``seed``."""
    s = _check(scores)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    stats = np.empty(reps)
    for i in range(reps):
        stats[i] = statistic({t: v[rng.integers(0, v.size, v.size)] for t, v in s.items()})
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(statistic(s)), float(low), float(high)


def performance_profile(scores: Scores, taus: Sequence[float]) -> np.ndarray:
    """Score distribution: for each ``tau``, the fraction of runs scoring above it, averaged
    over tasks (each task weighs the same whatever its number of seeds), ``(len(taus),)``."""
    s = _check(scores)
    taus = np.asarray(taus, np.float64)
    return np.mean([np.mean(v[None, :] > taus[:, None], axis=1) for v in s.values()], axis=0)


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y): for each task the probability that a run of ``x`` beats a run of ``y`` (ties
    count one half; the Mann–Whitney U statistic over ``n·m``), averaged over the tasks both
    have."""
    a, b = _check(x), _check(y)
    tasks = sorted(set(a) & set(b))
    if not tasks:
        raise ValueError("probability_of_improvement: the two have no task in common")
    per_task = []
    for t in tasks:
        diff = a[t][:, None] - b[t][None, :]
        per_task.append(np.mean((diff > 0) + 0.5 * (diff == 0)))
    return float(np.mean(per_task))
