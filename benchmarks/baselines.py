"""RL baselines against the reference policies: IPPO and MAPPO vs random, do-nothing and the
pool-trained (gradient) policy, on the same env, with the same env budget, over several seeds.

For each task every policy is scored by the task's own success metrics
(:func:`hnca_env.evaluate.evaluate_worlds`, or :func:`agents.ppo.evaluate_policy` for PPO,
which rolls identically) on ``--worlds`` fresh worlds per seed; seed ``i`` trains with key
``i`` and is evaluated on the worlds of evaluation key ``i``, the same worlds for every policy.
The table gives the mean over seeds and the 95% interval of that mean (Student t over seeds).

Budget: PPO runs ``total_timesteps`` world steps (``--budget``); the pool trainer gets the same
number of world steps (iterations = budget / (batch × episode length), every rollout a full
episode). PPO seeds run vmapped in one program; the pool seeds one after the other.
Throughput: world steps and agent steps (cells + coordinators) per second of training, after
compilation.

Usage::

    python benchmarks/baselines.py                 # Density-v0 and Grow-v0 (small), 3 seeds (~40 min on 2 cores)
    python benchmarks/baselines.py --quick         # a tiny budget: checks that it all runs
    python benchmarks/baselines.py --tasks Density-v0 --seeds 5 --budget 131072
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment_info, print_header, table, write_json  # noqa: E402

from agents import ppo as ppo_lib  # noqa: E402
from agents.pool import PoolConfig, make_pool_trainer  # noqa: E402
from hnca_env.evaluate import evaluate_worlds, policy_from_apply, random_policy, zero_policy  # noqa: E402

#: Headline metrics per task (every metric is in the JSON).
HEADLINE = {
    "Density-v0": ["all_correct", "cell_accuracy"],
    "Density-Flat-v0": ["all_correct", "cell_accuracy"],
    "Grow-v0": ["mse"],
}
#: Two-sided 95% Student t quantiles by number of seeds.
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def interval(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    t = T95.get(len(v), 1.96)
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(len(v)))


def evaluation_keys(seeds: int) -> list:
    """Evaluation key of seed ``i``: every policy is scored on the same worlds per seed."""
    return [jax.random.fold_in(jax.random.key(10_000), s) for s in range(seeds)]


def ppo_scores(ppo, out: dict, eval_keys: list, worlds: int) -> list[dict[str, float]]:
    """The task metrics of each seed of a vmapped ``train`` output, on its evaluation worlds."""
    return [
        ppo_lib.evaluate_policy(
            ppo, jax.tree.map(lambda x, s=s: x[s], out["state"].params), k, n_worlds=worlds
        )
        for s, k in enumerate(eval_keys)
    ]


def shown(values) -> str:
    """``mean ± 95% interval`` of per-seed values."""
    m, ci = interval(values)
    return f"{m:.4g} ± {ci:.2g}"


def quick_settings(args) -> dict:
    """PPO batch settings of ``--quick`` (tiny, to check that everything runs)."""
    return dict(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1) if args.quick else {}


def mean_metrics(per_world: dict) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in per_world.items()}


def run_task(task: str, args) -> dict:
    cfg = ppo_lib.PPOConfig.for_task(task, total_timesteps=args.budget, **quick_settings(args))
    env, env_params = ppo_lib.make_env(cfg)
    episode = int(env_params.max_steps_in_episode)
    agents_per_world = sum(int(np.prod(env.grid_shape(lvl))) for lvl in env.agent_levels)
    eval_keys = evaluation_keys(args.seeds)
    rows: dict[str, dict] = {}

    def score(name, per_seed_metrics, extra=None):
        names = per_seed_metrics[0].keys()
        rows[name] = {
            "per_seed": per_seed_metrics,
            **{m: interval([r[m] for r in per_seed_metrics]) for m in names},
            **(extra or {}),
        }
        shown = ", ".join(f"{m} {rows[name][m][0]:.4g}±{rows[name][m][1]:.2g}" for m in HEADLINE[task])
        print(f"  {name:>10}: {shown}", flush=True)

    print(
        f"{task}: grid {env.grid}, {agents_per_world} agents/world, episode {episode}, budget {args.budget} world steps"
    )
    for name, make in (("random", random_policy), ("do-nothing", zero_policy)):
        pol = make(env)
        score(
            name,
            [mean_metrics(evaluate_worlds(env, pol, k, env_params, n_worlds=args.worlds)) for k in eval_keys],
        )

    # --- pool trainer, same budget
    batch = 8
    iters = max(1, args.budget // (batch * episode))
    pcfg = PoolConfig(
        pool_size=256,
        batch_size=batch,
        min_steps=episode,
        max_steps=episode,
        reseed=batch // 2,
        hidden={"cell": cfg.hidden, "parent": cfg.parent_hidden},
        lr=2e-3,
        lr_final=2e-4,
        lr_boundary=max(1, 2 * iters // 3),
    )
    init, iteration, p_apply = make_pool_trainer(env, env_params, pcfg)
    per_seed, seconds = [], 0.0
    for s in range(args.seeds):
        state = init(jax.random.key(s))
        state, _ = iteration(state)  # compile (its world steps are not counted: one extra iteration)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(iters - 1):
            state, m = iteration(state)
        jax.block_until_ready(state)
        seconds += time.perf_counter() - t0
        pol = policy_from_apply(p_apply, state.params)
        per_seed.append(
            mean_metrics(evaluate_worlds(env, pol, eval_keys[s], env_params, n_worlds=args.worlds))
        )
    steps = args.seeds * (iters - 1) * batch * episode
    score(
        "pool",
        per_seed,
        {
            "iterations": iters,
            "pool_config": {k: v for k, v in dataclasses.asdict(pcfg).items() if k != "mesh"},
            "train_s": seconds,
            "world_steps_per_s": steps / seconds if seconds else float("nan"),
            "agent_steps_per_s": steps * agents_per_world / seconds if seconds else float("nan"),
        },
    )

    # --- PPO, seeds vmapped in one program
    curves = {}
    for algo in ("ippo", "mappo"):
        acfg = cfg.replace(algo=algo)
        ppo = ppo_lib.make_ppo(acfg, env, env_params)
        keys = jax.random.split(jax.random.key(0), args.seeds)
        t0 = time.perf_counter()
        compiled = jax.jit(jax.vmap(ppo.train)).lower(keys).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(keys))
        seconds = time.perf_counter() - t0
        per_seed = ppo_scores(ppo, out, eval_keys, args.worlds)
        steps = args.seeds * acfg.num_updates * acfg.num_envs * acfg.num_steps
        curves[algo] = {
            k: np.asarray(v).mean(0).tolist()
            for k, v in out["metrics"].items()
            if k.startswith(("reward_", "episode_return_", "loss", "entropy_"))
        }
        score(
            algo,
            per_seed,
            {
                "config": acfg.to_dict(),
                "compile_s": compile_s,
                "train_s": seconds,
                "world_steps_per_s": steps / seconds,
                "agent_steps_per_s": steps * agents_per_world / seconds,
                "final_reward_cell": [float(x) for x in np.asarray(out["metrics"]["reward_cell"])[:, -1]],
            },
        )
    return {
        "task": task,
        "grid": env.grid,
        "episode": episode,
        "agents_per_world": agents_per_world,
        "budget_world_steps": args.budget,
        "seeds": args.seeds,
        "worlds_per_seed": args.worlds,
        "rows": rows,
        "curves": curves,
    }


def verdicts(res: dict) -> list[str]:
    """Does each PPO row beat random and do-nothing beyond the seeds' spread (intervals apart)?"""
    out = []
    for metric in HEADLINE[res["task"]]:
        lower_is_better = metric in ("mse",)
        for algo in ("ippo", "mappo"):
            m, ci = res["rows"][algo][metric]
            beats = []
            for base in ("random", "do-nothing"):
                bm, bci = res["rows"][base][metric]
                ok = (m + ci < bm - bci) if lower_is_better else (m - ci > bm + bci)
                beats.append(f"{base}: {'yes' if ok else 'no'}")
            out.append(f"{res['task']} {metric} {algo} beats {', '.join(beats)}")
    return out


def throughput(tasks, updates: int) -> str:
    """Seconds per PPO update (median of ``updates``, after compilation), one seed, the task's
    default config; beside it the env alone: the same world steps with a do-nothing policy."""
    import statistics

    rows = []
    for task in tasks:
        for algo in ("ippo", "mappo"):
            cfg = ppo_lib.PPOConfig.for_task(task, algo=algo)
            ppo = ppo_lib.make_ppo(cfg)
            update = jax.jit(ppo.update)
            state = jax.block_until_ready(update(jax.jit(ppo.init)(jax.random.key(0)))[0])
            times = []
            for _ in range(updates):
                t0 = time.perf_counter()
                state = jax.block_until_ready(update(state)[0])
                times.append(time.perf_counter() - t0)
            env, params = ppo.env, ppo.env_params
            act = zero_policy(env)

            def env_only(key, env=env, params=params, act=act, cfg=cfg):
                keys = jax.random.split(key, cfg.num_envs)
                obs, st = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

                def body(carry, k):
                    obs, st = carry
                    ks = jax.random.split(k, cfg.num_envs)
                    a = jax.vmap(act)(ks, obs)
                    obs, st, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(ks, st, a, params)
                    return (obs, st), None

                obs, st = jax.lax.scan(body, (obs, st), jax.random.split(key, cfg.num_steps))[0]
                return jax.tree.map(lambda x: x.sum(), (obs, st.grids))  # keeps the dynamics live

            run_env = jax.jit(env_only)
            jax.block_until_ready(run_env(jax.random.key(1)))
            env_times = []
            for i in range(updates):
                t0 = time.perf_counter()
                jax.block_until_ready(run_env(jax.random.key(i)))
                env_times.append(time.perf_counter() - t0)
            per = cfg.num_envs * cfg.num_steps
            agents = sum(int(np.prod(env.grid_shape(lvl))) for lvl in env.agent_levels)
            t, te = statistics.median(times), statistics.median(env_times)
            rows.append(
                [
                    task,
                    algo,
                    f"{t:.3f}",
                    f"{per / t:.0f}",
                    f"{per * agents / t:.3g}",
                    f"{per / te:.0f}",
                    f"{te / t:.1%}",
                ]
            )
            print("  ", *rows[-1], flush=True)
    header = [
        "task",
        "algo",
        "s/update",
        "world steps/s",
        "agent steps/s",
        "env alone: world steps/s",
        "env share",
    ]
    return table(header, rows, left=2)


def reward_sweep(task: str, args) -> tuple[str, dict]:
    """IPPO on ``task`` with each library reward (same seeds, budget and evaluation worlds)."""
    rows, per = [], {}
    eval_keys = evaluation_keys(args.seeds)
    for reward in ppo_lib.REWARDS:
        cfg = ppo_lib.PPOConfig.for_task(
            task, reward=reward, total_timesteps=args.budget, **quick_settings(args)
        )
        ppo = ppo_lib.make_ppo(cfg)
        out = jax.jit(jax.vmap(ppo.train))(jax.random.split(jax.random.key(0), args.seeds))
        scores = ppo_scores(ppo, out, eval_keys, args.worlds)
        per[reward] = scores
        cells = [shown([r[m] for r in scores]) for m in HEADLINE[task]]
        rows.append([reward, *cells])
        print("  ", *rows[-1], flush=True)
    return table(["reward", *HEADLINE[task]], rows), per


def plot(results: list[dict], path: str) -> None:
    """Training curves: mean reward per cell and step over updates (mean over seeds), per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        for algo, curve in res["curves"].items():
            ax.plot(curve["reward_cell"], label=algo)
        ax.set_title(f"{res['task']} {res['grid'][0]}x{res['grid'][1]}")
        ax.set_xlabel("update")
        ax.set_ylabel("reward per cell and step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["Density-v0", "Grow-v0"], choices=sorted(HEADLINE))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=65_536, help="world steps of training per seed")
    ap.add_argument("--worlds", type=int, default=64, help="evaluation worlds per seed")
    ap.add_argument("--quick", action="store_true", help="tiny budget and batches (smoke run)")
    ap.add_argument("--out", default=str(RESULTS / "baselines.json"))
    ap.add_argument(
        "--plot", default=None, help="training curves PNG (default: none; docs use docs/baselines.png)"
    )
    ap.add_argument("--replot", action="store_true", help="only redraw --plot from the JSON at --out")
    ap.add_argument(
        "--throughput",
        type=int,
        metavar="N",
        help="only time N PPO updates per task and algo (no training runs)",
    )
    ap.add_argument(
        "--reward-sweep", action="store_true", help="only IPPO with each library reward, per task"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.budget = min(args.budget, 256)
        args.worlds = min(args.worlds, 4)
        args.seeds = min(args.seeds, 2)
    if args.reward_sweep:
        info = environment_info()
        print_header(info)
        started = time.perf_counter()
        texts, per = [], {}
        for task in args.tasks:
            text, per[task] = reward_sweep(task, args)
            texts.append(
                f"{task}, IPPO, {args.seeds} seeds x {args.worlds} worlds, budget {args.budget}\n\n{text}"
            )
        text = "\n\n".join(texts)
        print()
        print(text)
        write_json(
            Path(args.out).with_name("reward_sweep.json"),
            {
                "environment": info,
                "config": vars(args),
                "command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
                "per_seed": per,
                "table_markdown": text,
                "total_s": time.perf_counter() - started,
            },
        )
        return 0
    if args.throughput:
        info = environment_info()
        print_header(info)
        started = time.perf_counter()
        text = throughput(args.tasks, args.throughput)
        print()
        print(text)
        out = Path(args.out).with_name("ppo_throughput.json")
        write_json(
            out,
            {
                "environment": info,
                "command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
                "table_markdown": text,
                "total_s": time.perf_counter() - started,
            },
        )
        return 0
    if args.replot:
        import json

        plot(json.loads(Path(args.out).read_text())["results"], args.plot or "docs/baselines.png")
        return 0
    info = environment_info()
    print_header(info)
    started = time.perf_counter()
    results = [run_task(t, args) for t in args.tasks]
    text_parts, notes = [], []
    for res in results:
        metrics = HEADLINE[res["task"]]
        header = ["policy", *metrics, "train s", "world steps/s", "agent steps/s"]
        body = []
        for name, row in res["rows"].items():
            cells = [f"{row[m][0]:.4g} ± {row[m][1]:.2g}" for m in metrics]
            speed = (
                [
                    f"{row['train_s']:.0f}",
                    f"{row['world_steps_per_s']:.0f}",
                    f"{row['agent_steps_per_s']:.3g}",
                ]
                if "train_s" in row
                else ["", "", ""]
            )
            body.append([name, *cells, *speed])
        text_parts.append(
            f"{res['task']} {res['grid'][0]}x{res['grid'][1]}, {res['seeds']} seeds x {res['worlds_per_seed']} "
            f"worlds, budget {res['budget_world_steps']} world steps\n\n" + table(header, body)
        )
        notes += verdicts(res)
    text = "\n\n".join(text_parts) + "\n\n" + "\n".join(notes)
    elapsed = time.perf_counter() - started
    if args.plot:
        plot(results, args.plot)
    print()
    print(text)
    print(f"\ntotal {elapsed:.0f} s")
    write_json(
        Path(args.out),
        {
            "environment": info,
            "config": vars(args),
            "command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
            "results": results,
            "verdicts": notes,
            "table_markdown": text,
            "total_s": elapsed,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
