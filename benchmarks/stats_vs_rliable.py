"""hnca_env.stats against rliable on random score sets: the point estimates must agree exactly,
the stratified bootstrap intervals within Monte-Carlo error.

Usage: ``pip install rliable "pandas<3" && python benchmarks/stats_vs_rliable.py`` (arch 7.2, which
rliable 1.2 imports, fails on pandas 3) (prints a table, writes
``benchmarks/results/stats_vs_rliable.json``). rliable is not a dependency: it pulls in arch,
pandas and seaborn; this check is how our NumPy version is held to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, table, write_json  # noqa: E402

from hnca_env import stats  # noqa: E402


def main() -> int:
    from rliable import library as rly
    from rliable import metrics

    rng = np.random.default_rng(0)
    rows, record = [], []
    for n_tasks, n_seeds in ((1, 10), (5, 10), (11, 12)):
        x = rng.beta(2, 3, (n_seeds, n_tasks))  # rliable's layout: (runs, tasks)
        y = x + rng.normal(0.05, 0.1, x.shape)
        ours_x = {f"t{j}": x[:, j] for j in range(n_tasks)}
        ours_y = {f"t{j}": y[:, j] for j in range(n_tasks)}
        point, lo, hi = stats.stratified_bootstrap(ours_x, stats.iqm, reps=5000)
        est, ci = rly.get_interval_estimates(
            {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=5000
        )
        taus = np.linspace(0, 1, 11)
        prof_r, _ = rly.create_performance_profile({"x": x}, taus)
        poi_r = metrics.probability_of_improvement(y, x)
        r = {
            "tasks": n_tasks,
            "seeds": n_seeds,
            "iqm": [point, float(est["x"][0])],
            "iqm_ci_low": [lo, float(ci["x"][0, 0])],
            "iqm_ci_high": [hi, float(ci["x"][1, 0])],
            "profile_max_abs_diff": float(
                np.max(np.abs(stats.performance_profile(ours_x, taus) - prof_r["x"]))
            ),
            "p_improvement": [stats.probability_of_improvement(ours_y, ours_x), float(poi_r)],
        }
        record.append(r)
        rows.append([f"{n_tasks}x{n_seeds}", f"{r['iqm'][0]:.6f} / {r['iqm'][1]:.6f}",
                     f"[{lo:.4f}, {hi:.4f}] / [{r['iqm_ci_low'][1]:.4f}, {r['iqm_ci_high'][1]:.4f}]",
                     f"{r['profile_max_abs_diff']:.2g}",
                     f"{r['p_improvement'][0]:.6f} / {r['p_improvement'][1]:.6f}"])  # fmt: skip
    print(table(["tasks x seeds", "IQM ours / rliable", "95% CI ours / rliable", "profile |diff|",
                 "P(Y>X) ours / rliable"], rows))  # fmt: skip
    write_json(RESULTS / "stats_vs_rliable.json", {"results": record})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
