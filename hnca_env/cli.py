"""The ``hnca`` command.

``hnca tasks``                 list the registered env ids
``hnca info ID``               print an env's card: levels, shapes, params
``hnca train [options]``       gradient pool training; with no options, the embedded quick
                               default (Grow-v0, 32×32 heart, a few minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

#: The embedded default run of ``hnca train``: a small target that visibly grows on a CPU.
QUICK = {
    "task": "Grow-v0",
    "grid": 32,
    "target": "heart",
    "target_size": 20,
    "iterations": 600,
    "pool_size": 256,
    "batch_size": 8,
    "min_steps": 32,
    "max_steps": 48,
    "hidden": 64,
    "lr": 2e-3,
    "seed": 0,
}


def _cmd_tasks(_args) -> int:
    import hnca_env

    for env_id in hnca_env.registered_envs():
        print(env_id)
    return 0


def _cmd_info(args) -> int:
    import hnca_env

    env, params = hnca_env.make(args.id)
    print(repr(env))
    for lvl in env.agent_levels:
        print(
            f"  level {lvl!r}: agents {env.grid_shape(lvl)}, obs {env.obs_dim(lvl)}, "
            f"action {env.action_dim(lvl)}"
        )
    for lvl in env.fixed_rules:
        print(f"  level {lvl!r}: fixed rule")
    print(
        f"  fire_rate={params.fire_rate} tau_c={int(params.tau_c)} max_steps={int(params.max_steps_in_episode)}"
    )
    print(f"  reward={env.reward!r}")
    return 0


def _atomic_write(path: str, data: bytes) -> None:
    """Write to a temporary file then rename, so an interruption never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _cmd_train(args) -> int:
    import jax
    import numpy as np
    from flax import serialization
    from tqdm import tqdm

    import hnca_env
    from agents.pool import PoolConfig, make_pool_trainer
    from hnca_env import render
    from hnca_env.rollout import rollout

    if args.agent != "pool":
        print(f"hnca train: agent {args.agent!r} is not available yet (only 'pool')", file=sys.stderr)
        return 2
    cfg: dict[str, Any] = dict(QUICK)
    cfg.update({k: v for k, v in vars(args).items() if k in QUICK and v is not None})
    os.makedirs(args.out, exist_ok=True)
    env_kwargs = {"grid": (cfg["grid"], cfg["grid"]), "target": cfg["target"]}
    if cfg["task"] in ("Grow-v0", "HNCA-Grow-v0"):
        env_kwargs["target_size"] = cfg["target_size"]
    env, env_params = hnca_env.make(cfg["task"], **env_kwargs)
    hidden = {lvl: cfg["hidden"] if lvl == "cell" else 4 * cfg["hidden"] for lvl in env.agent_levels}
    pool_cfg = PoolConfig(
        pool_size=cfg["pool_size"],
        batch_size=cfg["batch_size"],
        min_steps=cfg["min_steps"],
        max_steps=cfg["max_steps"],
        lr=cfg["lr"],
        lr_final=cfg["lr"] / 10,
        lr_boundary=max(1, cfg["iterations"] * 2 // 3),
        hidden=hidden,
    )
    init, iteration, policy = make_pool_trainer(env, env_params, pool_cfg)
    _atomic_write(os.path.join(args.out, "config.json"), json.dumps(cfg, indent=2).encode())

    print(
        f"training {cfg['task']} on {env.grid[0]}x{env.grid[1]} ({jax.default_backend()}), "
        f"{cfg['iterations']} iterations -> {args.out}"
    )
    state = init(jax.random.key(cfg["seed"]))
    metrics_path = os.path.join(args.out, "metrics.jsonl")
    t0 = time.perf_counter()
    history = []
    with open(metrics_path, "w") as mf, tqdm(total=cfg["iterations"], desc="pool", unit="it") as bar:
        for i in range(cfg["iterations"]):
            state, m = iteration(state)
            if i % args.log_every == 0 or i == cfg["iterations"] - 1:
                row = {
                    "iteration": i,
                    "loss": float(m["loss"]),
                    "steps": int(m["steps"]),
                    "lr": float(m["lr"]),
                    "time": round(time.perf_counter() - t0, 3),
                }
                history.append(row)
                mf.write(json.dumps(row) + "\n")
                mf.flush()
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            bar.update(1)
    _atomic_write(os.path.join(args.out, "params.msgpack"), serialization.to_bytes(state.params))

    def act(key, obs):
        del key
        return policy(state.params, obs)

    steps = 2 * cfg["max_steps"]
    frames = render.rollout_frames(env, act, jax.random.key(1), env_params, steps=steps, scale=4, target=True)
    gif = render.write_gif(np.asarray(frames), os.path.join(args.out, "rollout.gif"), fps=20)
    _, final_state, _ = jax.jit(lambda k: rollout(env, act, k, env_params, steps))(jax.random.key(2))
    final_loss = float(env.loss(final_state, env_params))
    summary = {
        "final_loss": final_loss,
        "iterations": cfg["iterations"],
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    _atomic_write(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=2).encode())
    _plot_loss(history, os.path.join(args.out, "loss.png"))
    print(f"done: loss after {steps} steps from the seed = {final_loss:.4f}; wrote {metrics_path}, {gif}")
    return 0


def _plot_loss(history, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy([r["iteration"] for r in history], [r["loss"] for r in history])
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (MSE)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnca", description="H-NCA multi-agent environments")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered env ids").set_defaults(func=_cmd_tasks)
    info = sub.add_parser("info", help="describe an env id")
    info.add_argument("id")
    info.set_defaults(func=_cmd_info)
    tr = sub.add_parser("train", help="train agents (default: the embedded quick Grow run)")
    tr.add_argument("--task", help=f"env id (default {QUICK['task']})")
    tr.add_argument("--agent", default="pool", help="training method: pool")
    tr.add_argument("--iterations", type=int)
    tr.add_argument("--out", default="runs/quickstart")
    tr.add_argument("--grid", type=int, help="grid side in cells")
    tr.add_argument("--target", help="target shape name or RGBA PNG path")
    tr.add_argument("--target-size", dest="target_size", type=int)
    tr.add_argument("--pool-size", dest="pool_size", type=int)
    tr.add_argument("--batch-size", dest="batch_size", type=int)
    tr.add_argument("--min-steps", dest="min_steps", type=int)
    tr.add_argument("--max-steps", dest="max_steps", type=int)
    tr.add_argument("--hidden", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--log-every", dest="log_every", type=int, default=10)
    tr.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"hnca: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
