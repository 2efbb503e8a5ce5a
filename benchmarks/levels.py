"""Does a third level matter? The same task three, two and one level deep, at equal budget.

``HNCA3-Layout-v0``: grow a shape in one of four quadrants, the quadrant drawn per world and
seen only by the top level (``depth=3``: the 4×4 grandparents, each over 8×8 children;
``depth=2``: the 8×8 coordinators; ``depth=1``: nobody, so the children can only guess).
Each depth trains with ``hnca train`` (the pool trainer) on the same settings and iterations,
then ``hnca eval``'s measure over the same 32 pinned worlds; beside it do-nothing and the best
constant answer that does not know the quadrant (the mean of the four layouts)::

    python benchmarks/levels.py            # writes benchmarks/results/levels.json
    python benchmarks/levels.py --quick    # seconds (tests), into the run directory

Resumable: each depth's run lives in ``--runs DIR/layout_d<depth>`` and is resumed if stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hnca_env  # noqa: E402
from hnca_env import baselines  # noqa: E402

TASK = "HNCA3-Layout-v0"
RESULTS = ROOT / "benchmarks" / "results" / "levels.json"


def train_args(depth: int, quick: bool) -> list[str]:
    common = ["--task", TASK, "--set", f"env_kwargs.depth={depth}", "--lr", "1e-3", "--reseed", "1"]
    if quick:
        return [*common, "--grid", "16", "--hidden", "8", "--pool-size", "8", "--batch-size", "2",
                "--min-steps", "2", "--max-steps", "3", "--iterations", "2", "--checkpoint-every", "2",
                "--log-every", "1"]  # fmt: skip
    return [*common, "--grid", "32", "--hidden", "32", "--pool-size", "256", "--batch-size", "8",
            "--min-steps", "32", "--max-steps", "48", "--iterations", "500", "--lr-boundary", "400",
            "--checkpoint-every", "100", "--log-every", "10"]  # fmt: skip


def run_depth(depth: int, runs: Path, quick: bool) -> dict:
    from agents.cli import main as cli

    run = runs / f"layout_d{depth}"
    args = train_args(depth, quick)
    iterations = int(args[args.index("--iterations") + 1])
    summary = run / "summary.json"
    if (run / "config.json").exists():
        if not (summary.exists() and json.loads(summary.read_text()).get("iterations") == iterations):
            if cli(["train", "--resume", str(run), "--iterations", str(iterations)]):
                raise SystemExit(f"hnca train --resume {run} failed")
    elif cli(["train", *args, "--out", str(run)]):
        raise SystemExit(f"hnca train {' '.join(args)} failed")
    s = json.loads(summary.read_text())
    return {"depth": depth, "command": "hnca train " + " ".join(args), "iterations": s["iterations"],
            "train_seconds": s.get("train_seconds"), "metrics": s["eval_metrics"]}  # fmt: skip


def trivial_rows(grid: int, n_worlds: int) -> dict[str, dict[str, float]]:
    """Do-nothing (the children keep their noise: no actions) and the mean of the four layouts."""
    env, params = hnca_env.make(TASK, grid=(grid, grid), depth=1)
    key = jax.random.key(0)
    layouts = params.task_params["targets"]
    rows = {"mean of the four layouts (constant)": baselines.evaluate_answer(
        env, baselines.image_answer(jnp.mean(layouts, axis=0)), key, params, n_worlds=n_worlds)}  # fmt: skip

    def nothing(k, obs):
        del k
        return {lvl: jnp.zeros(o.shape[:-1] + (env.action_dim(lvl),)) for lvl, o in obs.items()}

    from hnca_env.evaluate import evaluate

    rows["do-nothing"] = {k: float(v) for k, v in evaluate(env, nothing, key, params, n_worlds=n_worlds).items()}
    return rows


def constant_answers(suite: str = "cpu-small", seeds: int | None = None) -> dict[str, dict]:
    """The best answer that does not know the goal, on ``suite``'s HNCA3 tasks: the mean of the
    task's targets, shown by every child. Layout: its final ``mse`` over the suite's evaluation
    worlds (10 seeds x 32); GoalSwitch: its expected ``mse_after_switch``, the mean over the
    goals of the mean image's MSE against each (after the switch every goal is equally likely:
    the first is uniform, the new one uniform over the others), the same for every world.
    ``seeds``: score Layout on the first ``seeds`` evaluation seeds only (tests)."""
    from agents import benchmark

    s = benchmark.get_suite(suite)
    out = {}
    for task in ("HNCA3-Layout-v0", "HNCA3-GoalSwitch-v0"):
        spec = s.task(task)
        env, params = spec.make(evaluation=True)
        targets = jnp.asarray(params.task_params["targets"], jnp.float32)
        image = jnp.mean(targets, axis=0)
        if task == "HNCA3-Layout-v0":
            per_seed = [baselines.evaluate_answer(env, baselines.image_answer(image), s.eval_key(i), params,
                                                  n_worlds=s.eval_worlds)["mse"]
                        for i in range(s.seeds if seeds is None else seeds)]  # fmt: skip
            out[task] = {"metric": "mse", "mean of the targets (constant)": float(np.mean(per_seed))}
        else:
            per_goal = jnp.mean((image[None] - targets) ** 2, axis=(1, 2, 3))
            out[task] = {"metric": "mse_after_switch", "mean of the targets (constant)": float(jnp.mean(per_goal)),
                         "per goal": [float(v) for v in per_goal]}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=str(ROOT / "runs" / "levels"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--depths", default="3,2,1")
    ap.add_argument("--constant", metavar="SUITE", help="only the constant answers on SUITE's HNCA3 tasks "
                    "(benchmarks/results/levels_constant.json; the scoreboard's depth table stands beside them)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.constant:
        record = {"suite": args.constant, "command": f"python benchmarks/levels.py --constant {args.constant}",
                  "tasks": constant_answers(args.constant)}  # fmt: skip
        path = RESULTS.with_name("levels_constant.json")
        path.write_text(json.dumps(record, indent=2))
        print(json.dumps(record, indent=2))
        print(f"wrote {path}")
        return 0
    runs = Path(args.runs)
    t0, load = time.perf_counter(), os.getloadavg()
    rows = [run_depth(int(d), runs, args.quick) for d in args.depths.split(",")]
    grid = 16 if args.quick else 32
    record = {
        "task": TASK,
        "command": "python benchmarks/levels.py" + (" --quick" if args.quick else ""),
        "eval": {"worlds": 32, "seed": 0, "steps": "episode (128)"},
        "load_before": load,
        "seconds": round(time.perf_counter() - t0, 1),
        "runs": rows,
        "baselines": trivial_rows(grid, 32),
    }
    out = runs / "levels.json" if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=float))
    print("| depth | mse | trained in |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['depth']} | {r['metrics']['mse']:.5f} | {r['train_seconds']:.0f} s |")
    for name, m in record["baselines"].items():
        print(f"| {name} | {m['mse']:.5f} | |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=5)
    sys.exit(main())
