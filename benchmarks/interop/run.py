"""Run other people's training files, as published, on hnca-env tasks; write the numbers.

Each client is a third-party file that this script loads with exactly one line changed: the
one that builds the env. Nothing is downloaded; pass the path of your local copy:

- ``jaxmarl-ippo``: JaxMARL's ``baselines/IPPO/ippo_ff_mabrax.py`` (FLAIROx/JaxMARL at
  commit c793d095618c6d3edfb5632802348f57b70a4b94, the jaxmarl 0.2.0 release line):
  ``env = jaxmarl.make(config["ENV_NAME"], **config["ENV_KWARGS"])`` becomes
  ``from hnca_env import marl; env = marl.make(config["ENV_NAME"], **config["ENV_KWARGS"])``.
  Its module imports ``wandb``, ``hydra`` and ``omegaconf`` at the top; only ``main()`` uses
  hydra/omegaconf (not called here) and ``make_train`` sends each update's metrics to
  ``wandb.log``: the driver puts stand-ins for the three in ``sys.modules`` (its ``wandb.log``
  records the metrics). The file's ``make_train(config, rng)`` is then called with a short
  config, jitted as its ``main()`` does.
- ``purejaxrl-ppo``: PureJaxRL's ``purejaxrl/ppo_continuous_action.py`` (luchris429/purejaxrl
  at commit 31756b197773a52db763fdbe6d635e4b46522a73), with its ``wrappers.py`` next to it:
  ``env, env_params = BraxGymnaxWrapper(config["ENV_NAME"]), None`` becomes
  ``env, env_params = SingleAgentView(hnca_env.make(config["ENV_NAME"],
  **config["ENV_KWARGS"])[0]), None`` (its imports on the same line). ``wrappers.py`` imports
  brax and navix at the top for its Brax/Navix adapters: where they are not installed the
  driver guards those imports with empty stand-in modules (the adapters are never built).

Get the files (pinned)::

    git clone https://github.com/FLAIROx/JaxMARL && git -C JaxMARL checkout c793d09
    git clone https://github.com/luchris429/purejaxrl && git -C purejaxrl checkout 31756b1

and run, e.g. (on 2 CPU cores each run takes a few minutes)::

    python benchmarks/interop/run.py jaxmarl-ippo JaxMARL/baselines/IPPO/ippo_ff_mabrax.py \\
        --task Grow-v0 --env '{"grid": [8, 8], "max_steps_in_episode": 32}'
    python benchmarks/interop/run.py purejaxrl-ppo purejaxrl/purejaxrl/ppo_continuous_action.py \\
        --task Grow-v0 --env '{"grid": [8, 8], "max_steps_in_episode": 32}'

``rejax-ppo`` needs no file: it is rejax's ``PPO`` from the package (rejax 0.1.3), on
``SingleAgentView`` with its default hyper-parameters and the same short budget::

    python benchmarks/interop/run.py rejax-ppo --task Grow-v0

Each run adds (or replaces) its entry in ``benchmarks/results/interop.json``: the patched
line, the file's sha256, the config, the return of every update, the do-nothing return on the
same task, wall-clock and whether everything stayed finite. docs/interop.md reports them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "interop.json"
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import hnca_env  # noqa: E402

CLIENTS = {
    "jaxmarl-ippo": {
        "commit": "FLAIROx/JaxMARL@c793d095618c6d3edfb5632802348f57b70a4b94",
        "path": "baselines/IPPO/ippo_ff_mabrax.py",
        "old": 'env = jaxmarl.make(config["ENV_NAME"], **config["ENV_KWARGS"])',
        "new": 'from hnca_env import marl; env = marl.make(config["ENV_NAME"], **config["ENV_KWARGS"])',
    },
    "purejaxrl-ppo": {
        "commit": "luchris429/purejaxrl@31756b197773a52db763fdbe6d635e4b46522a73",
        "path": "purejaxrl/ppo_continuous_action.py",
        "old": 'env, env_params = BraxGymnaxWrapper(config["ENV_NAME"]), None',
        "new": (
            "import hnca_env; from hnca_env.wrappers import SingleAgentView; "
            'env, env_params = SingleAgentView(hnca_env.make(config["ENV_NAME"], '
            '**config["ENV_KWARGS"])[0]), None'
        ),
    },
}

REJAX = {"commit": "rejax (PyPI)", "path": "rejax.PPO"}

# The published configs (JaxMARL: baselines/IPPO/config/ippo_ff_mabrax.yaml; PureJaxRL: the
# file's __main__), with only the budget (envs, steps, timesteps) shortened for 2 CPU cores.
IPPO_CONFIG = {
    "LR": 1e-3,
    "NUM_ENVS": 16,
    "NUM_STEPS": 32,
    "TOTAL_TIMESTEPS": 16 * 32 * 60,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 2e-6,
    "VF_COEF": 4.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "SEED": 30,
    "ANNEAL_LR": True,
}
PPO_CONFIG = {
    "LR": 3e-4,
    "NUM_ENVS": 64,
    "NUM_STEPS": 32,
    "TOTAL_TIMESTEPS": 64 * 32 * 60,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 32,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.0,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ANNEAL_LR": False,
    "NORMALIZE_ENV": True,
    "DEBUG": False,
    "SEED": 30,
}


def load_patched(path: Path, client: str, stubs: dict[str, types.ModuleType]) -> types.ModuleType:
    """Load ``path`` as a module with the client's env-construction line replaced (only it)."""
    spec = CLIENTS[client]
    src = path.read_text()
    lines = src.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == spec["old"]]
    if len(hits) != 1:
        raise SystemExit(
            f"{path}: expected the line {spec['old']!r} exactly once, found {len(hits)}; "
            f"is this {spec['path']} at {spec['commit']}?"
        )
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = indent + spec["new"] + "\n"
    for name, mod in stubs.items():
        sys.modules.setdefault(name, mod)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # PureJaxRL's `from wrappers import ...`
    module = types.ModuleType(f"interop_{client.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # flax looks a Module's module up there
    exec(compile("".join(lines), str(path), "exec"), module.__dict__)
    return module


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__interop_stub__ = True
    return mod


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def ippo_stubs(log: list) -> dict[str, types.ModuleType]:
    """Stand-ins for the IPPO file's wandb / hydra / omegaconf imports."""

    def wandb_log(metric, step=None):
        log.append({k: float(np.asarray(v)) for k, v in metric.items()})

    return {
        "wandb": _module("wandb", log=wandb_log, init=lambda **kw: None),
        "hydra": _module("hydra", main=lambda **kw: (lambda f: f)),
        "omegaconf": _module("omegaconf", OmegaConf=types.SimpleNamespace(to_container=lambda c: c)),
    }


def purejaxrl_stubs() -> tuple[dict[str, types.ModuleType], list[str]]:
    """Empty brax / navix modules where they are not installed (wrappers.py imports them)."""
    stubs, guarded = {}, []
    if not _installed("brax"):
        training = _module("brax.envs.wrappers.training", EpisodeWrapper=None, AutoResetWrapper=None)
        wrappers = _module("brax.envs.wrappers", training=training)
        envs = _module("brax.envs", wrappers=wrappers)
        stubs.update(
            {
                "brax": _module("brax", envs=envs),
                "brax.envs": envs,
                "brax.envs.wrappers": wrappers,
                "brax.envs.wrappers.training": training,
            }
        )
        guarded.append("brax")
    if not _installed("navix"):
        stubs["navix"] = _module("navix")
        guarded.append("navix")
    return stubs, guarded


def do_nothing_return(task: str, env_kwargs: dict, n_worlds: int = 16, seed: int = 0) -> float:
    """Mean episode return (team reward of the first acting level) with zero actions."""
    env, params = hnca_env.make(task, **env_kwargs)
    steps = int(params.max_steps_in_episode)
    zero = {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}

    def episode(key):
        _, state = env.reset_env(key, params)

        def body(state, k):
            state, _, _, info = env.transition(k, state, zero, params)
            return state, info["team_reward"][env.agent_levels[0]]

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    keys = jax.random.split(jax.random.key(seed), n_worlds)
    return float(jnp.mean(jax.jit(jax.vmap(episode))(keys)))


def run_ippo(path: Path, task: str, env_kwargs: dict, updates: int) -> dict:
    log: list = []
    module = load_patched(path, "jaxmarl-ippo", ippo_stubs(log))
    config = {**IPPO_CONFIG, "ENV_NAME": task, "ENV_KWARGS": dict(env_kwargs)}
    config["TOTAL_TIMESTEPS"] = config["NUM_ENVS"] * config["NUM_STEPS"] * updates
    rng = jax.random.PRNGKey(config["SEED"])
    rng, rng_init = jax.random.split(rng)
    t0 = time.perf_counter()
    train = jax.jit(module.make_train(config, rng_init))  # as the file's main() does
    compiled = train.lower(rng).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(rng))
    t2 = time.perf_counter()
    m = out["metrics"]
    # LogWrapper's returned_episode_returns holds each agent's last finished episode return;
    # with episodes of NUM_STEPS steps, update k's rollout reports update k-1's episodes, and
    # update 0 reports placeholders (zeros) but for its last step: it is left out.
    returns = np.asarray(m["returned_episode_returns"], np.float64)
    env = module_env(task, env_kwargs)
    return {
        "config": {k: v for k, v in config.items() if k not in ("NUM_ACTORS", "MINIBATCH_SIZE")},
        "agents": env.num_agents,
        "agent_classes": {k: len(v) for k, v in env.agent_classes.items()},
        "obs_dim": int(env.observation_space(env.agents[0]).shape[0]),
        "action_dim": int(env.action_space(env.agents[0]).shape[0]),
        "return_per_update": returns.tolist(),
        "return_metric": "mean over agents of each agent's episode return (per-agent reward summed over "
        "the episode), from the file's LogWrapper metrics; update k shows the episodes of update k-1",
        "wandb_log_calls": len(log),
        "first_return": float(returns[1]),
        "last_return": float(returns[-1]),
        "finite": bool(np.all(np.isfinite(returns)))
        and all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(m)),
        "compile_s": t1 - t0,
        "train_s": t2 - t1,
    }


def module_env(task: str, env_kwargs: dict):
    from hnca_env import marl

    return marl.make(task, **env_kwargs)


def run_purejaxrl(path: Path, task: str, env_kwargs: dict, updates: int) -> dict:
    stubs, guarded = purejaxrl_stubs()
    module = load_patched(path, "purejaxrl-ppo", stubs)
    config = {**PPO_CONFIG, "ENV_NAME": task, "ENV_KWARGS": dict(env_kwargs)}
    config["TOTAL_TIMESTEPS"] = config["NUM_ENVS"] * config["NUM_STEPS"] * updates
    rng = jax.random.PRNGKey(config["SEED"])
    t0 = time.perf_counter()
    train = jax.jit(module.make_train(config))  # as the file's __main__ does
    compiled = train.lower(rng).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(rng))
    t2 = time.perf_counter()
    info = out["metrics"]
    done = np.asarray(info["returned_episode"])  # (updates, steps, envs)
    ret = np.asarray(info["returned_episode_returns"], np.float64)
    per_update = [float(ret[u][done[u]].mean()) if done[u].any() else float("nan") for u in range(len(done))]
    params = jax.tree.leaves(out["runner_state"][0].params)
    from hnca_env.wrappers import SingleAgentView

    view = SingleAgentView(hnca_env.make(task, **env_kwargs)[0], max_flat_action=None)
    return {
        "config": {k: v for k, v in config.items() if k not in ("NUM_UPDATES", "MINIBATCH_SIZE")},
        "guarded_imports": guarded,
        "obs_dim": int(view.observation_space().shape[0]),
        "action_dim": int(view.action_space().shape[0]),
        "return_per_update": per_update,
        "return_metric": "mean episode return (team reward summed over the episode) of the episodes "
        "that ended in each update, from the file's LogWrapper info",
        "first_return": next(r for r in per_update if np.isfinite(r)) if any(np.isfinite(per_update)) else None,
        "last_return": per_update[-1],
        "finite": bool(np.all(np.isfinite(ret)) and all(np.all(np.isfinite(np.asarray(p))) for p in params)),
        "compile_s": t1 - t0,
        "train_s": t2 - t1,
    }


def run_rejax(path: Path | None, task: str, env_kwargs: dict, updates: int) -> dict:
    import rejax

    from hnca_env.wrappers import SingleAgentView

    env, params = hnca_env.make(task, **env_kwargs)
    num_envs, num_steps = 64, 32
    algo = rejax.PPO.create(
        env=SingleAgentView(env, max_flat_action=None),
        env_params=params,
        num_envs=num_envs,
        num_steps=num_steps,
        total_timesteps=num_envs * num_steps * updates,
        eval_freq=num_envs * num_steps * 10,
    )
    t0 = time.perf_counter()
    compiled = jax.jit(algo.train).lower(jax.random.key(30)).compile()
    t1 = time.perf_counter()
    ts, (lengths, returns) = jax.block_until_ready(compiled(jax.random.key(30)))
    t2 = time.perf_counter()
    per_eval = np.asarray(returns, np.float64).mean(axis=1)
    return {
        "config": {
            "num_envs": num_envs,
            "num_steps": num_steps,
            "total_timesteps": num_envs * num_steps * updates,
            "eval_freq": num_envs * num_steps * 10,
            "rest": "rejax.PPO defaults (num_epochs 8, num_minibatches 16, lr 3e-4, ent_coef 0.01, "
            "hidden (64, 64) swish)",
            "rejax_version": getattr(rejax, "__version__", "0.1.3"),
        },
        "obs_dim": int(algo.env.observation_space(params).shape[0]),
        "action_dim": int(algo.env.action_space(params).shape[0]),
        "return_per_eval": per_eval.tolist(),
        "return_metric": "mean episode return (team reward summed) of rejax's own evaluation, 128 "
        "episodes with the sampled policy, before training and every 10 updates",
        "first_return": float(per_eval[0]),
        "last_return": float(per_eval[-1]),
        "finite": bool(np.all(np.isfinite(per_eval)))
        and all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(ts.actor_ts.params)),
        "compile_s": t1 - t0,
        "train_s": t2 - t1,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("client", choices=sorted([*CLIENTS, "rejax-ppo"]))
    ap.add_argument(
        "file", type=Path, nargs="?", help="local copy of the client's file (see the module docstring)"
    )
    ap.add_argument("--task", default="Grow-v0")
    ap.add_argument("--env", default='{"grid": [8, 8], "max_steps_in_episode": 32}', help="JSON overrides")
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--label", default=None, help="entry name in interop.json (default client:task)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    env_kwargs = json.loads(args.env)
    env_kwargs = {k: tuple(v) if isinstance(v, list) and k == "grid" else v for k, v in env_kwargs.items()}
    if args.client != "rejax-ppo" and args.file is None:
        ap.error(f"{args.client} needs the path of its file")
    path = args.file.resolve() if args.file is not None else None
    t0 = time.perf_counter()
    run = {"jaxmarl-ippo": run_ippo, "purejaxrl-ppo": run_purejaxrl, "rejax-ppo": run_rejax}[args.client]
    result = run(path, args.task, env_kwargs, args.updates)
    from throughput import environment_info

    spec = CLIENTS.get(args.client, REJAX)
    entry = {
        "client": args.client,
        "source": spec["commit"] + ":" + spec["path"],
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path else None,
        "patched_line": {"old": spec["old"], "new": spec["new"]} if "old" in spec else None,
        "task": args.task,
        "env_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in env_kwargs.items()},
        "updates": args.updates,
        "do_nothing_return": do_nothing_return(args.task, env_kwargs),
        **result,
        "wall_s": time.perf_counter() - t0,
        "command": "python benchmarks/interop/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "environment": environment_info(),
    }
    label = args.label or f"{args.client}:{args.task}"
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data[label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(
        f"{label}: return {entry['first_return']:.2f} -> {entry['last_return']:.2f} over {args.updates} "
        f"updates (do-nothing {entry['do_nothing_return']:.2f}), finite={entry['finite']}, "
        f"compile {entry['compile_s']:.0f} s, train {entry['train_s']:.0f} s"
    )
    return entry


if __name__ == "__main__":
    main()
