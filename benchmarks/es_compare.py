"""Evolution strategies against the pool trainer and PPO at equal env-step budgets.

Three tasks (small Grow-v0, Density-v0, and the two-level HNCA-Grow-v0), the same env settings
for every trainer, ``--seeds`` training seeds each. Every trainer is scored by the task's own
success metrics (:func:`hnca_env.evaluate.evaluate_worlds`) on ``--worlds`` fresh worlds;
seed ``i`` trains with key ``i`` and is evaluated on the worlds of evaluation key ``i``
(:func:`baselines.evaluation_keys`), the same worlds for every policy, random and do-nothing
included. Each run is scored at ``--points`` evenly spaced moments of its training too, which
gives the curves: score against env steps (world steps the trainer consumed) and against
wall-clock seconds of training (after compilation; the scoring itself is not counted).

Trainers, all at ``--budget`` world steps per seed:

- ``pool``: the gradient pool trainer (docs/training.md), batch 8 of full episodes, Adam
  2e-3 -> 2e-4 at two thirds of its iterations (benchmarks/baselines.py's settings);
- ``ippo``: PPO with shared parameters, ``PPOConfig.for_task`` (docs/rl.md);
- ``open_es`` and ``snes``: :mod:`agents.es` with the same policy networks as the pool trainer,
  fitness = the task's loss; a generation costs ``population x worlds x episode`` world steps
  (the mean's extra logging rollout is not counted: it does not steer the search);
- ``open_es x LONG``: OpenAI-ES again with ``--long`` times the budget, to show what ES needs.

Usage::

    python benchmarks/es_compare.py                   # 3 tasks x 3 seeds (about an hour on 2 cores)
    python benchmarks/es_compare.py --quick           # tiny budgets: checks that it all runs
    python benchmarks/es_compare.py --report          # re-render table and plot from the JSON

Results go to ``benchmarks/results/es_compare.json``, written after every (task, trainer), so a
stopped run continues where it stopped (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import evaluation_keys, interval  # noqa: E402
from common import RESULTS, environment_info, print_header, table, write_json  # noqa: E402

import hnca_env  # noqa: E402
from agents import ppo as ppo_lib  # noqa: E402
from agents.es import ESConfig, make_es  # noqa: E402
from agents.pool import PoolConfig, make_pool_trainer  # noqa: E402
from hnca_env.evaluate import evaluate_worlds, policy_from_apply, random_policy, zero_policy  # noqa: E402

#: Per task: the env settings every trainer uses, and the headline metrics.
TASKS: dict[str, dict] = {
    "Grow-v0": dict(
        env_kwargs={"grid": (24, 24), "target": "heart", "target_size": 14, "max_steps_in_episode": 32},
        headline=["mse"],
    ),
    "Density-v0": dict(env_kwargs={"grid": (16, 16), "clamp": True}, headline=["all_correct", "cell_accuracy"]),
    "HNCA-Grow-v0": dict(
        env_kwargs={
            "grid": (16, 16),
            "target": "heart",
            "target_size": 12,
            "tau_c": 8,
            "max_steps_in_episode": 32,
            "clamp": True,
        },
        headline=["mse"],
    ),
}
LOWER_IS_BETTER = {"mse"}
HIDDEN = {"cell": 64, "parent": 256}  # PPOConfig's defaults: every trainer gets the same widths
#: ES settings (one population, both strategies): sigma and lr after a short sweep on Density
ES = dict(population=32, worlds=2, sigma=0.05, lr=0.03)
TRAINERS = ("pool", "ippo", "open_es", "snes", "open_es_long")


def _mean_metrics(per_world: dict) -> dict[str, float]:
    return {k: float(np.mean(np.asarray(v))) for k, v in per_world.items()}


def _scorer(env, env_params, make_policy, worlds: int):
    """``score(params, key) -> {metric: mean over worlds}``, compiled once for every params."""

    @jax.jit
    def run(params, key):
        return evaluate_worlds(env, make_policy(params), key, env_params, n_worlds=worlds, world_chunk=None)

    return lambda params, key: _mean_metrics(run(params, key))


def _points(total: int, points: int) -> set[int]:
    """The iteration counts (1..total) after which a run is scored: ``points`` evenly spaced."""
    return {max(1, round(total * (i + 1) / points)) for i in range(points)}


def _train(init, step, params_of, score, iters: int, steps_per_iter: int, key, eval_key, points: int):
    """Run ``iters`` steps of one trainer from ``init(key)``; the curve of scores at
    ``points`` moments: ``[{"env_steps", "seconds", **metrics}]`` (seconds of training only)."""
    jax.block_until_ready(step(init(key)))  # compile, on a throw-away state
    state = init(key)
    score(params_of(state), eval_key)  # compile the scorer
    curve = [{"env_steps": 0, "seconds": 0.0, **score(params_of(state), eval_key)}]
    when = _points(iters, points)
    seconds = 0.0
    for i in range(1, iters + 1):
        t0 = time.perf_counter()
        state = step(state)
        if i in when:
            jax.block_until_ready(state)
            seconds += time.perf_counter() - t0
            curve.append({"env_steps": i * steps_per_iter, "seconds": seconds, **score(params_of(state), eval_key)})
        else:
            seconds += time.perf_counter() - t0
    return curve


def run_trainer(task: str, trainer: str, args) -> dict:
    """Every seed of one trainer on one task: per-seed curves and final scores."""
    spec = TASKS[task]
    eval_keys = evaluation_keys(args.seeds)
    budget = args.budget * (args.long if trainer == "open_es_long" else 1)
    seeds = []
    if trainer == "pool":
        env, env_params = hnca_env.make(task, **spec["env_kwargs"])
        episode = int(env_params.max_steps_in_episode)
        batch = 8
        iters = max(1, budget // (batch * episode))
        cfg = PoolConfig(
            pool_size=256, batch_size=batch, min_steps=episode, max_steps=episode, reseed=batch // 2,
            hidden=HIDDEN, lr=2e-3, lr_final=2e-4, lr_boundary=max(1, 2 * iters // 3),
        )  # fmt: skip
        init, iteration, apply = make_pool_trainer(env, env_params, cfg)
        score = _scorer(env, env_params, lambda p: policy_from_apply(apply, p), args.worlds)
        for s in range(args.seeds):
            curve = _train(
                init, lambda st: iteration(st)[0], lambda st: st.params, score, iters, batch * episode,
                jax.random.key(s), eval_keys[s], args.points,
            )  # fmt: skip
            seeds.append(curve)
        settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "mesh"}
    elif trainer == "ippo":
        cfg = ppo_lib.PPOConfig.for_task(
            task, algo="ippo", total_timesteps=budget, env_kwargs=spec["env_kwargs"],
            hidden=HIDDEN["cell"], parent_hidden=HIDDEN["parent"], **_ppo_quick(args),
        )  # fmt: skip
        ppo = ppo_lib.make_ppo(cfg)
        env, env_params = ppo.env, ppo.env_params
        update = jax.jit(lambda st: ppo.update(st)[0])
        score = _scorer(env, env_params, lambda p: ppo.policy(p, True), args.worlds)
        iters = cfg.num_updates
        for s in range(args.seeds):
            curve = _train(
                jax.jit(ppo.init), update, lambda st: st.params, score, iters, cfg.num_envs * cfg.num_steps,
                jax.random.key(s), eval_keys[s], args.points,
            )  # fmt: skip
            seeds.append(curve)
        settings = cfg.to_dict()
    else:
        algorithm = "open_es" if trainer == "open_es_long" else trainer
        ecfg = ESConfig(task=task, env_kwargs=spec["env_kwargs"], algorithm=algorithm, hidden=HIDDEN, **ES)
        if args.quick:
            ecfg = dataclasses.replace(ecfg, population=4, worlds=1)
        env, env_params, init, iteration, apply = make_es(ecfg)
        episode = int(env_params.max_steps_in_episode)
        per_gen = ecfg.population * ecfg.worlds * episode
        iters = max(1, budget // per_gen)
        score = _scorer(env, env_params, lambda p: policy_from_apply(apply, p), args.worlds)
        for s in range(args.seeds):
            curve = _train(
                init, lambda st: iteration(st)[0], lambda st: st.params, score, iters, per_gen,
                jax.random.key(s), eval_keys[s], args.points,
            )  # fmt: skip
            seeds.append(curve)
        settings = ecfg.to_dict()
    return {
        "trainer": trainer,
        "budget_world_steps": budget,
        "iterations": iters,
        "settings": settings,
        "curves": seeds,
        "final": [c[-1] for c in seeds],
    }


def _ppo_quick(args) -> dict:
    return dict(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1) if args.quick else {}


def reference_rows(task: str, args) -> dict:
    """Random and do-nothing on each seed's evaluation worlds (no training)."""
    env, env_params = hnca_env.make(task, **TASKS[task]["env_kwargs"])
    out = {}
    for name, make in (("random", random_policy), ("do-nothing", zero_policy)):
        pol = make(env)
        out[name] = [
            _mean_metrics(evaluate_worlds(env, pol, k, env_params, n_worlds=args.worlds))
            for k in evaluation_keys(args.seeds)
        ]
    return out


def at_budget(curve: list[dict], budget: int) -> dict:
    """The last score of a curve at or below ``budget`` world steps (the equal-budget figure)."""
    return [p for p in curve if p["env_steps"] <= budget][-1]


def _shown(values) -> str:
    m, ci = interval(values)
    return f"{m:.4g} ± {ci:.2g}"


def report(results: dict, budget: int) -> tuple[str, list[str]]:
    """The markdown tables (one per task) and the verdicts, from the JSON's ``tasks``."""
    parts, verdicts = [], []
    for task, res in results.items():
        metrics = TASKS[task]["headline"]
        rows, per_seed = [], {}
        for name, seeds in res.get("reference", {}).items():
            per_seed[name] = seeds
            rows.append([name, *[_shown([s[m] for s in seeds]) for m in metrics], "", "", ""])
        for trainer in TRAINERS:
            r = res.get("trainers", {}).get(trainer)
            if r is None:
                continue
            final = r["final"] if trainer == "open_es_long" else [at_budget(c, budget) for c in r["curves"]]
            per_seed[trainer] = final
            label = "open_es ×" + str(r["budget_world_steps"] // budget) if trainer == "open_es_long" else trainer
            rows.append(
                [
                    label,
                    *[_shown([s[m] for s in final]) for m in metrics],
                    f"{r['budget_world_steps']:,}",
                    f"{np.mean([s['seconds'] for s in final]):.0f}",
                    f"{np.mean([s['env_steps'] / max(s['seconds'], 1e-9) for s in final]):.0f}",
                ]
            )
        header = ["policy", *metrics, "world steps", "train s (per seed)", "world steps/s"]
        parts.append(f"{task} {tuple(TASKS[task]['env_kwargs']['grid'])}\n\n" + table(header, rows))
        for m in metrics:
            lower = m in LOWER_IS_BETTER
            for trainer in TRAINERS:
                if trainer not in per_seed:
                    continue
                tm, tci = interval([s[m] for s in per_seed[trainer]])
                beats = []
                for other in ("random", "do-nothing", "pool", "ippo", "open_es", "snes"):
                    if other == trainer or other not in per_seed or (trainer == "open_es_long" and other == "open_es"):
                        continue
                    om, oci = interval([s[m] for s in per_seed[other]])
                    if (tm + tci < om - oci) if lower else (tm - tci > om + oci):
                        beats.append(f"beats {other}")
                    elif (om + oci < tm - tci) if lower else (om - oci > tm + tci):
                        beats.append(f"loses to {other}")
                    else:
                        beats.append(f"overlaps {other}")
                verdicts.append(f"{task} {m} {trainer}: " + ", ".join(beats))
    return "\n\n".join(parts), verdicts


def plot(results: dict, path: str) -> None:
    """Per task: the first headline metric against env steps (top) and wall-clock (bottom),
    mean over seeds with the seeds' range shaded; random and do-nothing as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results)
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.6 * len(tasks), 6.4), squeeze=False)
    for j, task in enumerate(tasks):
        res, metric = results[task], TASKS[task]["headline"][0]
        for i, xkey in enumerate(("env_steps", "seconds")):
            ax = axes[i][j]
            for trainer in TRAINERS:
                r = res.get("trainers", {}).get(trainer)
                if r is None:
                    continue
                x = np.mean([[p[xkey] for p in c] for c in r["curves"]], 0)
                y = np.asarray([[p[metric] for p in c] for c in r["curves"]])
                line = ax.plot(x[1:], y.mean(0)[1:], marker=".", label=trainer)[0]
                ax.fill_between(x[1:], y.min(0)[1:], y.max(0)[1:], color=line.get_color(), alpha=0.2)
            for name, style in (("random", ":"), ("do-nothing", "--")):
                seeds = res.get("reference", {}).get(name)
                if seeds:
                    v = np.mean([s[metric] for s in seeds])
                    if np.isfinite(v) and (metric not in LOWER_IS_BETTER or v < 1.0):
                        ax.axhline(v, color="grey", ls=style, label=name)
            ax.set_xscale("log")
            if metric in LOWER_IS_BETTER:
                ax.set_yscale("log")
            ax.set_xlabel("world steps of training" if xkey == "env_steps" else "seconds of training")
            ax.set_ylabel(metric)
            ax.set_title(task)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=list(TRAINERS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=65_536, help="world steps of training per seed")
    ap.add_argument("--long", type=int, default=8, help="open_es_long's budget, in budgets")
    ap.add_argument("--worlds", type=int, default=64, help="evaluation worlds per seed")
    ap.add_argument("--points", type=int, default=8, help="scores along each training curve")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run)")
    ap.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    ap.add_argument("--report", action="store_true", help="only re-render from the JSON at --out")
    ap.add_argument("--out", default=str(RESULTS / "es_compare.json"))
    ap.add_argument("--plot", default=None, help="curves PNG (docs use docs/es_compare.png)")
    args = ap.parse_args(argv)
    if args.quick:
        args.budget, args.long, args.worlds, args.seeds, args.points = 512, 2, 4, 2, 2
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() and not args.fresh else {}
    if args.report:
        args.budget = record["config"]["budget"]
    else:
        config = {k: getattr(args, k) for k in ("seeds", "budget", "long", "worlds", "points", "quick")}
        if record and record.get("config") != config:
            raise SystemExit(f"{out} was made with {record.get('config')}, not {config}: pass --fresh or --out")
        record = {**record, "config": config, "es": ES, "hidden": HIDDEN, "environment": environment_info()}
        record["command"] = " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
        print_header(record["environment"])
        results = record.setdefault("tasks", {})
        for task in args.tasks:
            res = results.setdefault(task, {"env_kwargs": TASKS[task]["env_kwargs"], "trainers": {}})
            if "reference" not in res:
                res["reference"] = reference_rows(task, args)
                write_json(out, record)
            for trainer in args.trainers:
                if trainer in res["trainers"]:
                    print(f"{task} {trainer}: done already")
                    continue
                t0 = time.perf_counter()
                res["trainers"][trainer] = run_trainer(task, trainer, args)
                final = res["trainers"][trainer]["final"]
                shown = ", ".join(f"{m} {_shown([s[m] for s in final])}" for m in TASKS[task]["headline"])
                print(f"{task} {trainer}: {shown} ({time.perf_counter() - t0:.0f} s)", flush=True)
                write_json(out, record)
    text, verdicts = report(record["tasks"], args.budget)
    print()
    print(text)
    print()
    print("\n".join(verdicts))
    record["table_markdown"], record["verdicts"] = text, verdicts
    if not args.report:
        write_json(out, record)
    if args.plot:
        plot(record["tasks"], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
