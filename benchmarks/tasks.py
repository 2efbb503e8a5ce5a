"""Evaluate policies on every task of the suite and print one table (random and do-nothing first).

Each task's named success metrics come from :func:`hnca_env.evaluate.evaluate_worlds` (its
``trace``/``summarize``), over ``--worlds`` rollouts of one full episode, at the registered
default sizes. Rows are policies, columns the headline metric(s) of each task (mean over
worlds, with the 95% interval of the mean in the JSON); the JSON holds every metric.

Variants evaluated beside the registered defaults: Digits on the held-out split, and Density
with ρ drawn uniformly in [0, 1] (the default) and with ρ = 0.5 exactly (the unbiased case).

Policies:
- ``random``: uniform actions in the action box [-1, 1] at every step (a state update of that
  size every step: the state runs away, which is what a random agent does here);
- ``zero``: the do-nothing policy (all updates and broadcasts zero).

Trivial answers (:mod:`hnca_env.baselines`) are scored beside them by the same metric code on the
same worlds: a same-area disc and the target's silhouette in its mean colour (Grow family), the
mean colour (HNCA-Grow), A itself and B's mean colour (Metamorphosis), random and constant
labels (Digits), all-0 and all-1 (Density). Digits is evaluated over 512 worlds.

Later issues add trained policies (pool-trained, PPO) as extra rows: ``POLICIES`` maps a
name to ``make(env) -> policy(key, obs)``.

Usage::

    python benchmarks/tasks.py                 # all tasks, 32 worlds, full episodes (~10 min on 2 cores)
    python benchmarks/tasks.py --quick         # small grids, short episodes, 4 worlds
    python benchmarks/tasks.py --ids Density-v0 Digits-v0 --worlds 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment_info, print_header, table, write_json  # noqa: E402

import hnca_env  # noqa: E402
from hnca_env import baselines  # noqa: E402
from hnca_env.evaluate import evaluate_worlds, random_policy, zero_policy  # noqa: E402

#: Rows of the table: name -> (env -> policy).
POLICIES = {"random": random_policy, "zero": zero_policy}

#: (label, env id, overrides, headline metrics)
TASKS = [
    ("Grow", "Grow-v0", {}, ["mse"]),
    ("Persist", "Persist-v0", {}, ["mse"]),
    ("Regenerate", "Regenerate-v0", {}, ["mse_after_damage"]),
    ("HNCA-Grow", "HNCA-Grow-v0", {}, ["mse"]),
    ("Metamorphosis", "HNCA-Metamorphosis-v0", {}, ["mse_255"]),
    ("Metamorphosis-Fixed", "HNCA-Metamorphosis-Fixed-v0", {}, ["mse_255"]),
    ("Metamorphosis-Motifs", "HNCA-Metamorphosis-Motifs-v0", {}, ["mse_255"]),
    ("GoalSwitch", "HNCA-GoalSwitch-v0", {}, ["mse_after_switch", "steps_to_recover"]),
    ("Digits (test)", "Digits-v0", {"split": "test"}, ["cell_accuracy", "all_right", "all_agree"]),
    ("Density ρ~U[0,1]", "Density-v0", {}, ["all_correct"]),
    ("Density ρ=0.5", "Density-v0", {"rho": (0.5, 0.5)}, ["all_correct"]),
    ("Density-Flat ρ~U[0,1]", "Density-Flat-v0", {}, ["all_correct"]),
    ("Locomotion", "HNCA-Locomotion-v0", {}, ["centre_error"]),
    ("GoalSwitch, 3 levels", "HNCA3-GoalSwitch-v0", {}, ["mse_after_switch", "steps_to_recover"]),
    ("Layout, 3 levels", "HNCA3-Layout-v0", {}, ["mse"]),
    ("Mosaic, 3 levels", "HNCA3-Mosaic-v0", {}, ["mse", "tiles_right"]),
    ("MosaicSwitch, 3 levels", "HNCA3-MosaicSwitch-v0", {}, ["mse", "tiles_right"]),
]

def _answers(env_id: str, params, env=None) -> dict:
    """Trivial answers (hnca_env.baselines) scored beside the policies: images the children could
    show, scored by the task's own metric code on the same worlds."""
    from hnca_env import baselines as b
    from hnca_env.tasks import density, digits

    if env_id in ("Grow-v0", "Persist-v0", "Regenerate-v0"):
        return {"same-area disc": b.disc_answer, "silhouette": b.silhouette_answer}
    if env_id == "HNCA-Grow-v0":
        return {"mean colour": b.mean_colour_answer}
    if env_id.startswith("HNCA-Metamorphosis"):
        # pattern A: the Motifs task's own (its children start from noise), else the start state
        a = getattr(env, "motif_a", None)
        start = np.asarray(params.seed_state)[..., :3] if a is None else a
        return {"A itself": b.image_answer(start), "mean colour of B": b.mean_colour_answer}
    if env_id == "Digits-v0":
        return {"chance (random labels)": digits.random_label_answer, "always 1": digits.constant_label_answer(1)}
    if env_id.startswith("Density"):
        return {"all 0": density.constant_colour_answer(0.0), "all 1": density.constant_colour_answer(1.0)}
    if env_id.startswith("HNCA3-Mosaic"):  # every child showing the mean of the two colours
        image = np.broadcast_to(np.mean(np.asarray(params.task_params["colours"]), axis=0), (*env.grid, 3))
        return {"the mean colour": b.image_answer(image)}
    # the best constant image that does not know the goal; GoalSwitch's metrics are about the
    # time after a switch, which one shown image (scored as one state) does not have
    if env_id.startswith("HNCA3-") and "GoalSwitch" not in env_id:
        return {"mean of the goals": b.image_answer(np.mean(np.asarray(params.task_params["targets"]), axis=0))}
    return {}


#: Worlds of a task where a few dozen mislead (Digits: 32 digits may hold no 0, the one
#: label the do-nothing policy's zero scores name).
MIN_WORLDS = {"Digits-v0": 512}

#: Small settings for --quick (the ones the conformance test uses).
QUICK = hnca_env.tasks.SMOKE_SETTINGS


def _interval(v: np.ndarray) -> float:
    """Half-width of the 95% normal interval of the mean (0 for one world)."""
    v = v[np.isfinite(v)]
    return float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=32)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ids", nargs="*", help="only these env ids")
    ap.add_argument("--policies", nargs="*", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-answers", action="store_true", help="skip the trivial answers")
    ap.add_argument("--out", default=str(RESULTS / "tasks.json"))
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep --out's rows of the tasks not run now (with --ids: add or refresh those ids' rows)",
    )
    args = ap.parse_args(argv)
    worlds = 4 if args.quick and args.worlds == 32 else args.worlds
    info = environment_info()
    print_header(info)

    results = []
    for label, env_id, overrides, headline in TASKS:
        if args.ids and env_id not in args.ids:
            continue
        opts = {**(QUICK[env_id] if args.quick else {}), **overrides}
        env, params = hnca_env.make(env_id, **opts)
        n = worlds if args.quick else max(worlds, MIN_WORLDS.get(env_id, 0))
        answers = {} if args.no_answers else _answers(env_id, params, env)
        for name in [*args.policies, *answers]:
            t0 = time.perf_counter()
            key = jax.random.key(args.seed)
            if name in answers:
                per_world = baselines.answer_worlds(env, answers[name], key, params, n_worlds=n)
            else:
                per_world = evaluate_worlds(env, POLICIES[name](env), key, params, n_worlds=n)
            per_world = {k: np.asarray(v, np.float64) for k, v in per_world.items()}
            seconds = time.perf_counter() - t0
            metrics = {k: float(np.nanmean(v)) for k, v in per_world.items()}
            results.append(
                {
                    "task": label,
                    "env_id": env_id,
                    "overrides": {k: str(v) for k, v in opts.items()},
                    "policy": name,
                    "kind": "answer" if name in answers else "policy",
                    "worlds": n,
                    "steps": int(params.max_steps_in_episode),
                    "metrics": metrics,
                    "interval95": {k: _interval(v) for k, v in per_world.items()},
                    "headline": headline,
                    "seconds": seconds,
                }
            )
            shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in headline)
            print(f"{label:24s} {name:8s} {shown}   ({seconds:.1f} s incl. compile)", flush=True)

    columns = [(r["task"], m) for r in results if r["policy"] == args.policies[0] for m in r["headline"]]
    rows = []
    for name in args.policies:
        by_task = {r["task"]: r for r in results if r["policy"] == name}
        rows.append([name] + [f"{by_task[t]['metrics'][m]:.4g}" for t, m in columns])
    print()
    print(table(["policy"] + [f"{t}: {m}" for t, m in columns], rows))
    record = {
        "environment": info,
        "config": {"worlds": worlds, "quick": args.quick, "seed": args.seed},
        "results": results,
    }
    if args.merge and Path(args.out).exists():
        record = merge(json.loads(Path(args.out).read_text()), record)
    write_json(Path(args.out), record)
    return 0


def merge(old: dict, new: dict) -> dict:
    """``new``'s rows, and ``old``'s rows of every task ``new`` did not run, in ``TASKS`` order.
    The runs those rows come from are listed in ``earlier_runs`` (environment and config), and a
    kept row names its run by index (``earlier_run``)."""
    ran = {r["task"] for r in new["results"]}
    earlier = [*old.get("earlier_runs", []), {"environment": old["environment"], "config": old["config"]}]
    kept = [{"earlier_run": len(earlier) - 1, **r} for r in old["results"] if r["task"] not in ran]
    order = {label: i for i, (label, *_) in enumerate(TASKS)}
    rows = sorted(kept + new["results"], key=lambda r: order.get(r["task"], len(order)))
    return {**new, "results": rows, "earlier_runs": earlier}


if __name__ == "__main__":
    raise SystemExit(main())
