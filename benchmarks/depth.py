"""Does a third level matter? Two tasks where only the top of three levels knows what to do,
trained three, two and one level deep with the pool trainer and with IPPO (MAPPO on request) at
equal budget, with the tasks' coupling (H-NCA's adders) or another (``--multiplexer replace``).

- ``HNCA3-Mosaic-v0``: paint a random two-colour mosaic of 8×8 tiles; only the top level sees
  the layout (one bit per top agent). Metrics: ``mse`` and ``tiles_right`` (chance 0.5).
- ``HNCA3-MosaicSwitch-v0``: the same, with a new layout drawn at step 64 of 128 (goal
  switching): ``mse`` and ``tiles_right`` after the switch, ``mse_before_switch``.

``depth=3``: the top level (2×2 at 16×16 children) sees the layout; ``depth=2``: the
coordinators see it (one link from the children); ``depth=1``: nobody does (the best answer is
the mean of the two colours). Each run trains with ``hnca train`` (same settings and iterations
at every depth), then is scored with the library's :func:`hnca_env.evaluate.evaluate` over 128
pinned worlds (key 0). The three-level policies are also scored with the top level silenced (its
actions zeroed: no update, no broadcast), which shows whether the trained rule *uses* it.
Beside them, by the same code: do-nothing and the best answer that does not know the layout::

    python benchmarks/depth.py                      # everything -> benchmarks/results/depth.json
    python benchmarks/depth.py --tasks HNCA3-Mosaic-v0 --trainers pool --seeds 0,1,2
    python benchmarks/depth.py --report             # the table from the runs done so far
    python benchmarks/depth.py --quick              # seconds (tests), into --runs
    python benchmarks/depth.py --runs runs/depth_replace --multiplexer replace   # the replace coupling
                                                    # -> benchmarks/results/depth_replace.json
    python benchmarks/depth.py --runs runs/depth_g32 --grid 32 --trainers pool --seeds 0
                                                    # 32x32 children -> benchmarks/results/depth_g32.json

Resumable: each run lives in ``--runs DIR/<task>/<trainer>_d<depth>_s<seed>``; a finished run
(its ``depth_eval.json``) is not redone, an unfinished one is resumed from its checkpoint.
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
from hnca_env.evaluate import evaluate, policy_from_apply, zero_policy  # noqa: E402
from hnca_env.rollout import CarryPolicy, as_carry_policy  # noqa: E402

TASKS = {"HNCA3-Mosaic-v0": ("mse", "tiles_right"),
         "HNCA3-MosaicSwitch-v0": ("mse", "tiles_right", "mse_before_switch")}
TRAINERS = ("pool", "ippo", "mappo")
DEPTHS = (3, 2, 1)
EVAL_WORLDS = 128
RESULTS = ROOT / "benchmarks" / "results" / "depth.json"
GRID = 16


def train_args(task: str, trainer: str, depth: int, seed: int, quick: bool, ppo_updates: int | None = None,
               multiplexer: str | None = None, grid: int = GRID) -> list[str]:
    """``hnca train`` arguments of one run: the same at every depth (``ppo_updates``: PPO's
    length instead of :data:`PPO_UPDATES`; ``multiplexer``: the env's coupling instead of the
    task's, e.g. ``"replace"``; ``grid``: the children's grid side)."""
    mux = [] if multiplexer is None else ["--set", f"env_kwargs.multiplexer={multiplexer}"]
    if trainer == "pool":
        args = ["--task", task, "--set", f"env_kwargs.depth={depth}", *mux, "--grid", str(grid), "--seed", str(seed),
                "--reseed", "1", "--lr", "3e-4"]  # fmt: skip
        if quick:
            return [*args, "--hidden", "8", "--pool-size", "8", "--batch-size", "2", "--min-steps", "2",
                    "--max-steps", "3", "--iterations", "2", "--checkpoint-every", "2", "--log-every", "1"]  # fmt: skip
        return [*args, "--hidden", "32", "--pool-size", "256", "--batch-size", "8", "--min-steps", "32",
                "--max-steps", "48", "--iterations", "1500", "--lr-boundary", "1000", "--checkpoint-every", "250",
                "--log-every", "10"]  # fmt: skip
    args = ["--task", task, "--agent", trainer, "--seed", str(seed), "--set", f"env_kwargs.depth={depth}", *mux,
            "--set", f"env_kwargs.grid=[{grid},{grid}]"]  # fmt: skip
    if quick:
        return [*args, "--set", "num_envs=2", "--set", "num_steps=4", "--set", "update_epochs=1",
                "--set", "num_minibatches=1", "--set", "hidden=8", "--set", "parent_hidden=8",
                "--set", "critic_hidden=8", "--iterations", "2", "--checkpoint-every", "2"]  # fmt: skip
    return [*args, *PPO_SETTINGS, "--iterations", str(ppo_updates or PPO_UPDATES), "--checkpoint-every", "50"]


#: IPPO's settings here (the rest: PPOConfig's defaults): 16 worlds x 32 steps per update.
PPO_SETTINGS = ["--set", "hidden=32", "--set", "parent_hidden=128", "--set", "lr=1e-3"]
PPO_UPDATES = 250


def run_dir(runs: Path, task: str, trainer: str, depth: int, seed: int) -> Path:
    return runs / task / f"{trainer}_d{depth}_s{seed}"


def silenced(policy, levels) -> CarryPolicy:
    """``policy`` with the actions of ``levels`` zeroed (those agents neither update nor broadcast)."""
    pol = as_carry_policy(policy)

    def step(key, obs, carry, state):
        action, carry = pol.step(key, obs, carry, state)
        return {lvl: jnp.zeros_like(a) if lvl in levels else a for lvl, a in action.items()}, carry

    return CarryPolicy(init=pol.init, step=step)


def trained_policy(run: Path):
    """``(env, env_params, policy)`` of a finished ``hnca train`` run (pool or PPO)."""
    from agents.cli import _build_ppo, _build_run, _load_run_params
    from agents.pool import make_pool_trainer
    from agents.rundir import load_json

    cfg = load_json(str(run / "config.json"))
    if cfg.get("agent", "pool") == "pool":
        env, env_params, pool_cfg, (_, apply) = _build_run(cfg)
        init, _, _ = make_pool_trainer(env, env_params, pool_cfg)
        params, _ = _load_run_params(str(run), init)
        return env, env_params, policy_from_apply(apply, params)
    ppo = _build_ppo(cfg)
    params, _ = _load_run_params(str(run), ppo.init)
    return ppo.env, ppo.env_params, ppo.policy(params, True)


def one_run(runs: Path, task: str, trainer: str, depth: int, seed: int, quick: bool, ppo_updates=None,
            multiplexer=None, grid: int = GRID) -> dict:
    """Train (or resume) one run and score it; the record is cached in ``depth_eval.json``."""
    from agents.cli import main as cli

    run = run_dir(runs, task, trainer, depth, seed)
    done = run / "depth_eval.json"
    if done.exists():
        return json.loads(done.read_text())
    args = train_args(task, trainer, depth, seed, quick, ppo_updates, multiplexer, grid)
    iterations = args[args.index("--iterations") + 1]
    t0 = time.perf_counter()
    if (run / "config.json").exists():
        code = cli(["train", "--resume", str(run), "--iterations", iterations])
    else:
        code = cli(["train", *args, "--out", str(run)])
    if code:
        raise SystemExit(f"hnca train for {run} failed")
    env, env_params, policy = trained_policy(run)
    key, n = jax.random.key(0), 8 if quick else EVAL_WORLDS
    record = {
        "task": task, "trainer": trainer, "depth": depth, "seed": seed, "grid": grid,
        "command": "hnca train " + " ".join(args) + f" --out {run}",
        "train_seconds": json.loads((run / "summary.json").read_text()).get("train_seconds")
        if (run / "summary.json").exists() else None,
        "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
        "metrics": evaluate(env, policy, key, env_params, n_worlds=n),
    }  # fmt: skip
    if depth == 3:
        record["top_silenced"] = evaluate(env, silenced(policy, [env.levels[-1]]), key, env_params, n_worlds=n)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, done)
    return record


def diagnose(run: Path, worlds: int = 32, times=(4, 16, 64)) -> dict:
    """:func:`diagnose_policy` of a finished three-level run's trained rule."""
    env, params, policy = trained_policy(run)
    return diagnose_policy(env, params, policy, worlds, times)


def diagnose_policy(env, params, policy, worlds: int = 32, times=(4, 16, 64)) -> dict:
    """How a Mosaic rule's coordinators carry the layout, over ``worlds`` evaluation worlds
    (key 0): per coordinator level and step, the fraction of its state values at the clamp
    (``|x| >= 0.999 * clamp_max``), and ``layout_gap``: the largest difference, over channels,
    between the mean state of the first coordinators over tiles of the two layout bits."""
    from hnca_env.rollout import rollout_worlds

    keys = jax.random.split(jax.random.key(0), worlds)
    ups = list(env.levels[1:])

    def rec(s):
        return {lv: s.grids[lv] for lv in ups}, s.task["layout"]

    steps = max(times)
    _, _, (grids, layout) = jax.jit(lambda: rollout_worlds(env, policy, keys, params, steps=steps, record=rec))()
    bound = 0.999 * float(params.clamp_max)
    out = {"at_clamp": {lv: {t: float(np.mean(np.abs(np.asarray(grids[lv][:, t])) >= bound)) for t in times}
                        for lv in ups}}  # fmt: skip
    first = np.asarray(grids[ups[0]])  # (worlds, T+1, h, w, C)
    rep = first.shape[2] // layout.shape[2]
    gap = {}
    for t in times:
        bit = np.repeat(np.repeat(np.asarray(layout[:, t]), rep, 1), rep, 2)
        x = first[:, t]
        gap[t] = float(np.max(np.abs(x[bit == 1].mean(0) - x[bit == 0].mean(0))))
    out["layout_gap"] = {ups[0]: gap}
    return out


def trivial_rows(task: str, quick: bool, grid: int = GRID) -> dict[str, dict[str, float]]:
    """Do-nothing and the best answer that does not know the layout (every child showing the
    mean of the two colours), by the same evaluation code over the same worlds."""
    env, params = hnca_env.make(task, grid=(grid, grid), depth=1)
    key, n = jax.random.key(0), 8 if quick else EVAL_WORLDS
    rows = {"do-nothing": evaluate(env, zero_policy(env), key, params, n_worlds=n)}
    image = jnp.broadcast_to(jnp.mean(params.task_params["colours"], axis=0), (grid, grid, 3))
    rows["constant: the mean colour"] = baselines.evaluate_answer(env, baselines.image_answer(image), key, params,
                                                                  n_worlds=n)  # fmt: skip
    rows["chance (tiles_right)"] = {"tiles_right": 0.5}
    return rows


def gather(runs: Path, quick: bool, command: str = "python benchmarks/depth.py", grid: int = GRID) -> dict:
    """Every finished run under ``runs`` with the trivial rows: the JSON record."""
    found = [json.loads(p.read_text()) for p in sorted(runs.glob("*/*/depth_eval.json"))]
    return {
        "command": command,
        "grid": grid, "eval_worlds": 8 if quick else EVAL_WORLDS, "eval_key": 0,
        "runs": found,
        "baselines": {t: trivial_rows(t, quick, grid) for t in TASKS if any(r["task"] == t for r in found)},
    }  # fmt: skip


def _ms(values) -> str:
    v = np.asarray(values, np.float64)
    if len(v) == 1:
        return f"{v[0]:.4g}"
    return f"{v.mean():.4g} ± {1.96 * v.std(ddof=1) / np.sqrt(len(v)):.2g}"


def report(record: dict) -> str:
    """Markdown: per task and trainer, the metric at each depth (mean over seeds ± 1.96 s.e.),
    the three-level policy with its top level silenced, and the trivial answers."""
    lines = []
    for task, metrics in TASKS.items():
        runs = [r for r in record["runs"] if r["task"] == task]
        if not runs:
            continue
        for metric in metrics:
            lines += [f"**{task}**, `{metric}` ({'higher' if metric == 'tiles_right' else 'lower'} is better; "
                      f"{record['eval_worlds']} worlds per seed, mean over seeds ± 1.96 s.e.)", "",
                      "| trainer | three levels | top level silenced | two levels | flat | seeds |",
                      "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
            for trainer in TRAINERS:
                cells, seeds = [], set()
                for depth in DEPTHS:
                    rs = [r for r in runs if r["trainer"] == trainer and r["depth"] == depth]
                    seeds |= {r["seed"] for r in rs}
                    cells.append(_ms([r["metrics"][metric] for r in rs]) if rs else "")
                    if depth == 3:
                        cells.append(_ms([r["top_silenced"][metric] for r in rs]) if rs else "")
                if any(cells):
                    lines.append(f"| {trainer} | " + " | ".join(cells) + f" | {len(seeds)} |")
            for name, row in record["baselines"].get(task, {}).items():
                if metric in row:
                    lines.append(f"| {name} | {row[metric]:.4g} | | | | |")
            lines.append("")
    return "\n".join(lines)


def write_gif(runs: Path, task: str, path: Path, worlds: int = 3, scale: int = 6, every: int = 2,
              trainer: str = "pool") -> Path:
    """A GIF of the seed-0 three-level ``trainer`` policy over its episode in ``worlds`` evaluation
    worlds: per row, the children intact | with the top level silenced | the target (every
    level's grid overlaid, coarser borders darker); every ``every``-th step and the last."""
    from hnca_env.render import render
    from hnca_env.render import write_gif as save
    from hnca_env.rollout import rollout_worlds

    env, params, policy = trained_policy(run_dir(runs, task, trainer, 3, 0))
    keys = jax.random.split(jax.random.key(0), worlds)
    steps = int(params.max_steps_in_episode)

    def frames(pol):
        def rec(s):
            return render(env, s, params, scale=scale, parent_grid=True, target=True)
        return rollout_worlds(env, pol, keys, params, steps=steps, record=rec)[2]  # (worlds, T+1, H, 2W, 3)

    intact = np.asarray(jax.jit(lambda: frames(policy))())
    quiet = np.asarray(jax.jit(lambda: frames(silenced(policy, [env.levels[-1]])))())
    w = intact.shape[3] // 2
    gap = np.full((*intact.shape[:3], scale, 3), 255, np.uint8)
    rows = np.concatenate([intact[..., :w, :], gap, quiet[..., :w, :], gap, intact[..., w:, :]], axis=3)
    rows = np.swapaxes(rows, 0, 1)  # (T+1, worlds, H, W', 3)
    rows = np.concatenate([rows, np.full((*rows.shape[:2], scale, *rows.shape[3:]), 255, np.uint8)], axis=2)
    grid = rows.reshape(rows.shape[0], -1, *rows.shape[3:])  # the worlds one under another
    path.parent.mkdir(parents=True, exist_ok=True)
    save(grid[sorted({*range(0, len(grid), every), len(grid) - 1})], str(path), fps=8)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=str(ROOT / "runs" / "depth"))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--trainers", default="pool,ippo", help=f"of {TRAINERS}")
    ap.add_argument("--depths", default="3,2,1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ppo-updates", type=int, help=f"IPPO's updates per run (default {PPO_UPDATES}); "
                    "use another --runs for another budget (the record goes there, not to results/)")  # fmt: skip
    ap.add_argument("--multiplexer", help="the env's coupling (e.g. replace) instead of the task's adder; use "
                    "another --runs; the record goes to results/depth_<multiplexer>.json")  # fmt: skip
    ap.add_argument("--diagnose", metavar="FILE", help="only: for each finished three-level run of --tasks, "
                    "--trainers and --seeds, how its coordinators carry the layout (diagnose()), into FILE (JSON)")  # fmt: skip
    ap.add_argument("--grid", type=int, default=GRID, help=f"the children's grid side (default {GRID}); "
                    "use another --runs; the record goes to results/depth[_<multiplexer>]_g<grid>.json")  # fmt: skip
    ap.add_argument("--report", action="store_true", help="only gather the finished runs and print the table")
    ap.add_argument("--gif", metavar="DIR", help="with --report: a GIF per task of its seed-0 three-level "
                    "policy (of --gif-trainer), intact | top level silenced | target, into DIR")  # fmt: skip
    ap.add_argument("--gif-trainer", default="pool", help=f"whose policy the GIFs show, of {TRAINERS}")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    tasks, trainers = args.tasks.split(","), args.trainers.split(",")
    bad = [t for t in tasks if t not in TASKS] + [t for t in trainers if t not in TRAINERS]
    if bad:
        raise SystemExit(f"unknown task or trainer {bad}; tasks {list(TASKS)}, trainers {list(TRAINERS)}")
    if args.diagnose:
        found = {}
        for task in tasks:
            for trainer in trainers:
                for seed in (int(x) for x in args.seeds.split(",")):
                    run = run_dir(runs, task, trainer, 3, seed)
                    if (run / "depth_eval.json").exists():
                        found[str(run)] = diagnose(run)
                        print(run, json.dumps(found[str(run)]))
        path = Path(args.diagnose)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **found}, indent=2))
        print(f"wrote {path}")
        return 0
    if not args.report:
        for task in tasks:
            for trainer in trainers:
                for depth in (int(d) for d in args.depths.split(",")):
                    for seed in (int(s) for s in args.seeds.split(",")):
                        one_run(runs, task, trainer, depth, seed, args.quick, args.ppo_updates, args.multiplexer,
                                args.grid)
    if args.gif:
        suffix = "" if args.gif_trainer == "pool" and not args.multiplexer else f"_{args.gif_trainer}"
        suffix += f"_{args.multiplexer}" if args.multiplexer else ""
        suffix += f"_g{args.grid}" if args.grid != GRID else ""
        for task in tasks:
            if (run_dir(runs, task, args.gif_trainer, 3, 0) / "depth_eval.json").exists():
                gif = write_gif(runs, task, Path(args.gif) / f"{task}{suffix}.gif", trainer=args.gif_trainer,
                                scale=max(2, 96 // args.grid))  # 16x16 children at 6 px a cell, 32x32 at 3
                print("wrote", gif)
    command = " ".join(["python benchmarks/depth.py", *(sys.argv[1:] if argv is None else argv)])
    record = gather(runs, args.quick, command, args.grid)
    out = runs / "depth.json" if args.quick or args.ppo_updates else RESULTS
    if args.multiplexer and out == RESULTS:
        out = RESULTS.with_name(f"depth_{args.multiplexer}.json")
    if args.grid != GRID and out.parent == RESULTS.parent:
        out = out.with_name(f"{out.stem}_g{args.grid}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=float))
    print(report(record))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
