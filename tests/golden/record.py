"""Golden outputs: what the env and the trainers compute today, to check a refactor against.

``python tests/golden/record.py`` writes ``tests/golden/goldens.npz`` and, beside it,
``goldens.json`` (the machine and versions that wrote it). ``tests/test_golden.py`` recomputes
every entry with :func:`compute` and compares: bit for bit on the machine and versions that
recorded them (same processor, versions and number of usable cores: recorded under
``taskset -c 0``, one core), to float32 round-off elsewhere (XLA's CPU code differs between
processors and splits its work by thread count: PPO's parameters differ by ~1e-11 on 2 cores).

Entries (small grids, a few steps; every registered id from ``SMOKE_SETTINGS``):

- ``rollout/<id>/...``: 8 steps (past the 6-step episode, so auto-reset runs) of a fixed
  pseudo-random policy from ``reset(key(0))``: the last observation, state and reward of every
  level, the per-step team rewards, ``terminated``/``truncated``, and ``env.loss``;
- ``grad/<id>``: the gradient of the loss after 4 steps with respect to a scale on the actions;
- ``pool/<id>``: 3 pool-trainer iterations (Grow-v0, HNCA-Grow-v0): parameters and losses;
- ``two_stage``: 2 child + 2 parent iterations of ``agents.two_stage.train_two_stage``;
- ``ppo``: 2 PPO updates (IPPO on Grow-v0, MAPPO on HNCA-Grow-v0): parameters and metrics.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hnca_env  # noqa: E402
from hnca_env.tasks import SMOKE_SETTINGS  # noqa: E402

GOLDENS = HERE / "goldens.npz"
MACHINE = HERE / "goldens.json"
ROLLOUT_STEPS = 8


def _flat(prefix: str, tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix}/{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves}


def _action(env, key, t: int) -> dict:
    space = env.action_space(env.default_params)
    return {
        lvl: 0.1 * jax.random.normal(jax.random.fold_in(key, 100 * t + i), space.spaces[lvl].shape)
        for i, lvl in enumerate(env.agent_levels)
    }


def rollout_entries(env_id: str) -> dict[str, np.ndarray]:
    env, params = hnca_env.make(env_id, **SMOKE_SETTINGS[env_id])
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    team, term, trunc = [], [], []
    for t in range(ROLLOUT_STEPS):
        obs, state, reward, terminated, truncated, info = env.step(
            jax.random.fold_in(key, t), state, _action(env, key, t), params
        )
        team.append([float(info["team_reward"][lvl]) for lvl in env.agent_levels])
        term.append(bool(terminated))
        trunc.append(bool(truncated))
    out = {
        **_flat(f"rollout/{env_id}/obs", obs),
        **_flat(f"rollout/{env_id}/grids", state.grids),
        **_flat(f"rollout/{env_id}/reward", reward),
        f"rollout/{env_id}/team_reward": np.asarray(team, np.float32),
        f"rollout/{env_id}/terminated": np.asarray(term),
        f"rollout/{env_id}/truncated": np.asarray(trunc),
        f"rollout/{env_id}/loss": np.asarray(env.loss(state, params)),
    }
    return out


def grad_entry(env_id: str) -> dict[str, np.ndarray]:
    env, params = hnca_env.make(env_id, **SMOKE_SETTINGS[env_id])
    key = jax.random.key(1)

    def loss(scale):
        _, state = env.reset_env(key, params)
        for t in range(4):
            act = jax.tree.map(lambda a: scale * a, _action(env, key, t))
            _, state, *_ = env.step_env(jax.random.fold_in(key, t), state, act, params)
        return env.loss(state, params)

    return {f"grad/{env_id}": np.asarray(jax.grad(loss)(jnp.float32(1.0)))}


def pool_entries(env_id: str) -> dict[str, np.ndarray]:
    from agents.pool import PoolConfig, make_pool_trainer

    env, params = hnca_env.make(env_id, **{**SMOKE_SETTINGS[env_id], "max_steps_in_episode": 96})
    cfg = PoolConfig(pool_size=16, batch_size=4, min_steps=4, max_steps=6, lr=2e-3, lr_final=2e-4,
                     lr_boundary=2, damage=1, hidden={lvl: 16 for lvl in env.agent_levels},
                     warmup_steps=int(params.tau_c) if env.has_parent else 0)  # fmt: skip
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(2))
    step = jax.jit(iteration)
    losses = []
    for _ in range(3):
        state, metrics = step(state)
        losses.append(np.asarray(metrics["loss"]))
    return {**_flat(f"pool/{env_id}/params", state.params), f"pool/{env_id}/losses": np.stack(losses)}


def two_stage_entries() -> dict[str, np.ndarray]:
    from agents.pool import PoolConfig
    from agents.two_stage import train_two_stage

    cfg_child = PoolConfig(pool_size=16, batch_size=4, min_steps=3, max_steps=4, hidden={"cell": 16})
    cfg_parent = PoolConfig(pool_size=16, batch_size=4, min_steps=3, max_steps=4, hidden={"parent": 32})
    out = train_two_stage(
        "HNCA-Grow-v0", jax.random.key(3), child=cfg_child, parent=cfg_parent, child_iterations=2,
        parent_iterations=2, overrides=dict(SMOKE_SETTINGS["HNCA-Grow-v0"], max_steps_in_episode=96),
    )  # fmt: skip
    return {
        **_flat("two_stage/child", out["child_params"]),
        **_flat("two_stage/parent", out["parent_state"].params),
        "two_stage/child_losses": np.asarray([h["loss"] for h in out["child_history"]]),
        "two_stage/parent_losses": np.asarray([h["loss"] for h in out["parent_history"]]),
    }


def ppo_entries() -> dict[str, np.ndarray]:
    from agents.ppo import PPOConfig, make_ppo

    out = {}
    for algo, task in (("ippo", "Grow-v0"), ("mappo", "HNCA-Grow-v0")):
        kw = {k: v for k, v in SMOKE_SETTINGS[task].items()}
        cfg = PPOConfig(task=task, algo=algo, env_kwargs=kw, num_envs=2, num_steps=4,
                        total_timesteps=2 * 2 * 4, update_epochs=1, num_minibatches=1, hidden=8,
                        parent_hidden=16, critic_hidden=8, world_embed=8)  # fmt: skip
        ppo = make_ppo(cfg)
        res = jax.jit(ppo.train)(jax.random.key(4))
        out.update(_flat(f"ppo/{algo}/params", res["state"].params))
        out.update(_flat(f"ppo/{algo}/metrics", res["metrics"]))
    return out


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for env_id in sorted(SMOKE_SETTINGS):
        out.update(rollout_entries(env_id))
        out.update(grad_entry(env_id))
    for env_id in ("Grow-v0", "HNCA-Grow-v0"):
        out.update(pool_entries(env_id))
    out.update(two_stage_entries())
    out.update(ppo_entries())
    return out


def machine() -> dict[str, str]:
    import flax
    import optax

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # XLA's CPU kernels split work by thread count: bits match only with the same cores
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpus": cpus, "machine": platform.machine(), "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
            "flax": flax.__version__, "optax": optax.__version__,
            "backend": jax.default_backend()}  # fmt: skip


def main() -> None:
    out = compute()
    np.savez_compressed(GOLDENS, **out)
    MACHINE.write_text(json.dumps(machine(), indent=2) + "\n")
    print(f"wrote {len(out)} arrays to {GOLDENS} ({GOLDENS.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
