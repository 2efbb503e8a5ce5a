"""The ``hnca`` command.

``hnca tasks``                 list the registered env ids
``hnca info ID``               print an env's card: levels, shapes, params
``hnca train [options] [--config F.yaml] [--set k=v ...]``
                               gradient pool training (agents/pool.py); with no options, the
                               embedded quick default (Grow-v0, 24×24 heart, a few minutes on 2
                               CPU cores); options, a YAML file and ``key=value`` overrides set
                               the PoolRunConfig (agents/pool_run.py)
``hnca train --agent ippo|mappo [--task ID] [--config F.yaml] [--set k=v ...]``
                               PPO (agents/ppo.py); defaults per task, a YAML file and
                               ``key=value`` overrides set the PPOConfig
``hnca train --agent es [--task ID] [--config F.yaml] [--set k=v ...]``
                               evolution strategies (agents/es.py, evosax)
``hnca train --resume DIR``    continue a run from its newest complete checkpoint
``hnca eval --run DIR``        the task's success metrics of a run's trained policy

The command lives on the training side: ``hnca_env`` (the environments) never imports
``agents`` (the trainers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agents.pool_run import RUN_SETTINGS, PoolRunConfig, load_config
from agents.rundir import atomic_write, load_json, load_msgpack

#: The embedded default run of ``hnca train`` (``PoolRunConfig``'s defaults): a small target
#: that visibly grows on a CPU.
QUICK = PoolRunConfig().to_dict()


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


#: How ``hnca eval`` scores a run by default, and what ``hnca train``'s closing line reports.
EVAL_WORLDS = 32
EVAL_SEED = 0

#: What ``--resume`` may change; every other setting comes from the run's config.json.
RESUME_MAY_CHANGE = ("iterations", "checkpoint_every", "log_every", "keep")


def _build_run(cfg: dict[str, Any]):
    """The env, its params, the pool settings and the policy of a pool run's record
    (``config.json``): ``PoolRunConfig.from_dict(cfg).build()``.

    Returns ``(env, env_params, pool_config, (policy_init, policy_apply))``. Stage ``child``
    trains the cell level of an H-NCA task alone; stage ``parent`` freezes the child of the run
    ``init_child`` and trains the coordinators (``agents.two_stage``).
    """
    return PoolRunConfig.from_dict(cfg).build()


def _resumed_config(path: str, given: dict[str, Any], fixed: list[str]) -> dict[str, Any]:
    """A run's config.json with the options ``--resume`` may change applied; ``fixed``: the
    options given that it may not (an error naming them)."""
    if fixed:
        raise ValueError(
            f"--resume takes the run's settings from {path}; only "
            f"{', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)} may be given "
            f"(got {', '.join('--' + k.replace('_', '-') for k in fixed)})"
        )
    cfg = load_json(path)
    cfg.update({k: given[k] for k in RESUME_MAY_CHANGE if k in given})
    return cfg


def _run_config(args) -> dict[str, Any]:
    """A pool run's record: the defaults (QUICK), a ``--config`` YAML file, ``--set`` overrides,
    then the options given (``load_config``); with --resume, the run's own config.json."""
    from agents.settings import parse_overrides

    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command")}
    if args.resume:
        path = os.path.join(args.resume, "config.json")
        if not os.path.exists(path):
            raise ValueError(f"--resume {args.resume}: no config.json there (not a run directory)")
        fixed = sorted(
            k for k in given if k in (*RUN_SETTINGS, "config", "set") and k not in RESUME_MAY_CHANGE
        )
        cfg = _resumed_config(path, given, fixed)
        PoolRunConfig.from_dict(cfg)  # a record this version cannot read is an error naming it
        return cfg
    options = {k: v for k, v in given.items() if k in RUN_SETTINGS}
    return load_config(None, args.config, {**parse_overrides(args.set or []), **options}).to_dict()


def _horizon(env, env_params, cfg) -> int:
    """Steps of the rollouts a run shows: twice the training horizon, plus τ_c with parents."""
    return 2 * cfg["max_steps"] + (int(env_params.tau_c) if env.has_parent else 0)


def _run_loop(init, iteration, cfg, args, out, desc, postfix=("loss",)):
    """``agents.loop.train_loop`` with the run's settings: ``(state, history)``, or ``None``
    when interrupted (the last finished iteration is checkpointed)."""
    import jax

    from agents.loop import train_loop

    try:
        return train_loop(
            init,
            iteration,
            jax.random.key(cfg["seed"]),
            cfg["iterations"],
            out=out,
            log_every=cfg["log_every"],
            checkpoint_every=cfg["checkpoint_every"],
            max_to_keep=cfg["keep"],
            resume=bool(args.resume),
            desc=desc,
            postfix=postfix,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: hnca train --resume {out}", file=sys.stderr)
        return None
    except FileNotFoundError as e:
        raise ValueError(str(e)) from e


def _cmd_train(args) -> int:
    import jax
    import numpy as np
    from flax import serialization

    from agents import artifacts
    from agents.pool import make_pool_trainer
    from hnca_env import render
    from hnca_env.evaluate import evaluate

    if args.resume and os.path.exists(os.path.join(args.resume, "config.json")):
        agent = load_json(os.path.join(args.resume, "config.json")).get("agent", "pool")
        if args.agent not in (None, agent):
            raise ValueError(f"--resume {args.resume} is a {agent!r} run, not {args.agent!r}")
    else:
        agent = args.agent or "pool"
    if agent in PPO_AGENTS:
        return _cmd_train_ppo(args, agent)
    if agent == "es":
        return _cmd_train_es(args)
    cfg = _run_config(args)
    out = args.resume or args.out
    env, env_params, pool_cfg, _ = _build_run(cfg)
    pool_cfg = dataclasses.replace(pool_cfg, mesh=PoolRunConfig.from_dict(cfg).mesh())
    init, iteration, policy = make_pool_trainer(env, env_params, pool_cfg)
    os.makedirs(out, exist_ok=True)
    atomic_write(os.path.join(out, "config.json"), json.dumps(cfg, indent=2).encode())

    what = f"{cfg['task']}" + (f" (stage {cfg['stage']})" if cfg.get("stage") else "")
    print(
        f"{'resuming' if args.resume else 'training'} {what} on {env.grid[0]}x{env.grid[1]} "
        f"({jax.default_backend()}), {cfg['iterations']} iterations -> {out}"
    )
    t0 = time.perf_counter()
    ran = _run_loop(init, iteration, cfg, args, out, "pool")
    if ran is None:
        return 130
    state, history = ran
    atomic_write(os.path.join(out, "params.msgpack"), serialization.to_bytes(state.params))

    def act(key, obs):
        del key
        return policy(state.params, obs)

    steps = _horizon(env, env_params, cfg)
    frames = render.rollout_frames(env, act, jax.random.key(1), env_params, steps=steps, scale=4, target=True)
    gif = render.write_gif(np.asarray(frames), os.path.join(out, "rollout.gif"), fps=20)
    # the closing numbers are hnca eval's: the task's metrics over EVAL_WORLDS worlds, not one rollout
    metrics = evaluate(env, act, jax.random.key(EVAL_SEED), env_params, n_worlds=EVAL_WORLDS)
    episode = int(env_params.max_steps_in_episode)
    # regeneration: grow for the training horizon, cut a disc, roll as long again
    grow = cfg["max_steps"] + (int(env_params.tau_c) if env.has_parent else 0)
    regen = artifacts.write_regen_gif(
        env, act, jax.random.key(3), os.path.join(out, "regen.gif"), env_params, grow, cfg["max_steps"]
    )
    summary = {
        "eval_metrics": metrics,
        "eval_worlds": EVAL_WORLDS,
        "eval_steps": episode,
        "rollout_steps": steps,
        "regen_loss": regen,
        "regen_steps": [grow, cfg["max_steps"]],
        "iterations": cfg["iterations"],
        "train_seconds": history[-1]["time"] if history else 0.0,
        "seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }
    atomic_write(os.path.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    artifacts.plot_loss(history, os.path.join(out, "loss.png"), what)
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items())
    print(
        f"done: {shown} after {episode} steps from the seed, over {EVAL_WORLDS} worlds (as hnca eval "
        f"measures it); wrote {out}/"
        f"{{metrics.jsonl, checkpoints/, params.msgpack, {os.path.basename(gif)}, regen.gif, loss.png, summary.json}}"
    )
    return 0


#: Training methods of ``hnca train --agent`` besides the pool trainer.
PPO_AGENTS = ("ippo", "mappo")
#: Options of ``hnca train`` that set PPO settings: option -> (setting, inside env_kwargs?).
PPO_OPTIONS = {
    "grid": ("grid", True),
    "target": ("target", True),
    "target_size": ("target_size", True),
    "tau_c": ("tau_c", True),
    "hidden": ("hidden", False),
    "lr": ("lr", False),
}
#: Pool-trainer options that mean nothing to PPO.
POOL_ONLY = (
    "pool_size", "batch_size", "min_steps", "max_steps", "damage", "reseed", "remat", "stage",
    "init_child", "learn_perception",
)  # fmt: skip


def _ppo_run_config(args, agent: str) -> dict[str, Any]:
    """A PPO run's record: ``{"agent", "ppo": PPOConfig.to_dict(), "iterations", ...}``."""
    from agents.ppo import PPOConfig, load_config

    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command")}
    bad = sorted(k for k in given if k in POOL_ONLY)
    if bad:
        raise ValueError(
            f"{', '.join('--' + k.replace('_', '-') for k in bad)} set the pool trainer, not "
            f"--agent {agent} (PPO settings: --config FILE or --set key=value)"
        )
    if args.resume:
        fixed = sorted(k for k in given if k not in RESUME_MAY_CHANGE and k not in ("resume", "out", "agent"))
        cfg = _resumed_config(os.path.join(args.resume, "config.json"), given, fixed)
        ppo_cfg = PPOConfig.from_dict(cfg["ppo"])  # still valid; the schedule spans the run
        cfg["ppo"]["total_timesteps"] = cfg["iterations"] * ppo_cfg.num_envs * ppo_cfg.num_steps
        return cfg
    overrides = [*(args.set or []), *_option_overrides(given, PPO_OPTIONS), f"algo={agent}"]
    ppo_cfg = load_config(args.task, args.config, overrides)
    iterations = _iterations(given, ppo_cfg.num_updates)
    # the learning rate anneals over the run: its length in updates is --iterations
    ppo_cfg = ppo_cfg.replace(total_timesteps=iterations * ppo_cfg.num_envs * ppo_cfg.num_steps)
    return _agent_record(agent, ppo_cfg.task, "ppo", ppo_cfg.to_dict(), iterations, given, 50, 5)


def _option_overrides(given: dict[str, Any], options: dict[str, tuple[str, bool]]) -> list[str]:
    """``key=value`` overrides of a trainer config from the ``hnca train`` options given
    (``options``: option -> (setting, inside env_kwargs?); ``--grid N`` is ``[N, N]``)."""
    out = []
    for opt, (name, in_env) in options.items():
        if opt in given:
            v = [given[opt]] * 2 if opt == "grid" else given[opt]
            out.append(f"{'env_kwargs.' if in_env else ''}{name}={json.dumps(v)}")
    return out


def _iterations(given: dict[str, Any], default: int) -> int:
    iterations = given.get("iterations", default)
    if iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {iterations}")
    return iterations


def _agent_record(agent, task, section, settings, iterations, given, checkpoint_every, log_every) -> dict:
    """What a PPO or ES run records in config.json: its trainer settings under ``section``."""
    return {
        "agent": agent,
        "task": task,
        section: settings,
        "iterations": iterations,
        "seed": given.get("seed", 0),
        "checkpoint_every": given.get("checkpoint_every", checkpoint_every),
        "keep": given.get("keep", QUICK["keep"]),
        "log_every": given.get("log_every", log_every),
    }


def _build_ppo(cfg: dict[str, Any]):
    from agents.ppo import PPOConfig, make_ppo

    return make_ppo(PPOConfig.from_dict(cfg["ppo"]))


def _load_run_params(run: str, init) -> tuple[Any, str]:
    """A run's policy parameters: ``params.msgpack``, else those of its newest checkpoint
    (``init``: the run's trainer init, whose carry has ``params``)."""
    import jax

    template = jax.eval_shape(init, jax.random.key(0))
    path = os.path.join(run, "params.msgpack")
    if os.path.exists(path):
        return load_msgpack(path, template.params), "params.msgpack"
    from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer

    try:
        with Checkpointer(os.path.join(run, CHECKPOINT_SUBDIR)) as ck:
            state, _, step = ck.restore(template)
    except FileNotFoundError as e:
        raise ValueError(f"--run {run}: no params.msgpack and {e}") from e
    return state.params, f"checkpoint {step}"


def _write_eval(args, cfg: dict[str, Any], source: str, steps: int, metrics: dict) -> int:
    """Write ``eval.json`` into the run and print the metrics."""
    agent = cfg.get("agent", "pool")
    record = {
        "task": cfg["task"],
        "agent": agent,
        "stage": cfg.get("stage"),
        "params": source,
        "n_worlds": args.worlds,
        "steps": steps,
        "seed": args.seed,
        "metrics": metrics,
    }
    atomic_write(os.path.join(args.run, "eval.json"), json.dumps(record, indent=2).encode())
    print(f"{cfg['task']} ({agent}, {source}, {args.worlds} worlds, {steps} steps):")
    for name, v in metrics.items():
        print(f"  {name}: {v:.6g}")
    return 0


def _cmd_train_ppo(args, agent: str) -> int:
    import jax
    import numpy as np
    from flax import serialization

    from agents import artifacts
    from agents.ppo import evaluate_policy, policy_rollout
    from hnca_env import render

    cfg = _ppo_run_config(args, agent)
    out = args.resume or args.out
    ppo = _build_ppo(cfg)
    env, env_params, pc = ppo.env, ppo.env_params, ppo.config
    os.makedirs(out, exist_ok=True)
    atomic_write(os.path.join(out, "config.json"), json.dumps(cfg, indent=2).encode())
    agents_per_world = sum(int(np.prod(env.grid_shape(lvl))) for lvl in env.agent_levels)
    reward_key = f"reward_{env.agent_levels[0]}"  # shown and plotted (cells, or the coordinators alone)
    print(
        f"{'resuming' if args.resume else 'training'} {cfg['task']} with {agent.upper()} on "
        f"{env.grid[0]}x{env.grid[1]} ({jax.default_backend()}): {cfg['iterations']} updates of "
        f"{pc.num_envs} worlds x {pc.num_steps} steps ({agents_per_world} agents/world) -> {out}"
    )
    t0 = time.perf_counter()
    ran = _run_loop(
        ppo.init, jax.jit(ppo.update, donate_argnums=0), cfg, args, out, agent, (reward_key, "loss")
    )
    if ran is None:
        return 130
    state, history = ran
    atomic_write(os.path.join(out, "params.msgpack"), serialization.to_bytes(state.params))

    steps = int(env_params.max_steps_in_episode)

    def frame(s):
        return render.render(env, s, env_params, scale=4, target=True)

    _, frames = jax.jit(lambda k: policy_rollout(ppo, state.params, k, steps, record=frame))(
        jax.random.key(1)
    )
    gif = render.write_gif(np.asarray(frames), os.path.join(out, "rollout.gif"), fps=10)
    metrics = evaluate_policy(ppo, state.params, jax.random.key(2), n_worlds=EVAL_WORLDS)
    world_steps = cfg["iterations"] * pc.num_envs * pc.num_steps
    train_seconds = history[-1]["time"] if history else 0.0  # the whole run's, across resumes
    summary = {
        "eval_metrics": metrics,
        "eval_worlds": EVAL_WORLDS,
        "iterations": cfg["iterations"],
        "world_steps": world_steps,
        "train_seconds": train_seconds,
        # includes compilation and logging: benchmarks/baselines.py --throughput times updates alone
        "agent_steps_per_second": round(world_steps * agents_per_world / train_seconds)
        if train_seconds
        else None,
        "seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }
    atomic_write(os.path.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    artifacts.plot_loss(history, os.path.join(out, "reward.png"), f"{cfg['task']} {agent}", key=reward_key)
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items())
    print(
        f"done: {shown} (deterministic policy, {EVAL_WORLDS} worlds); wrote {out}/"
        f"{{metrics.jsonl, checkpoints/, params.msgpack, {os.path.basename(gif)}, reward.png, summary.json}}"
    )
    return 0


def _cmd_eval_ppo(args, cfg: dict[str, Any]) -> int:
    import jax

    from agents.ppo import evaluate_policy

    ppo = _build_ppo(cfg)
    params, source = _load_run_params(args.run, ppo.init)
    metrics = evaluate_policy(ppo, params, jax.random.key(args.seed), n_worlds=args.worlds, steps=args.steps)
    steps = args.steps if args.steps is not None else int(ppo.env_params.max_steps_in_episode)
    return _write_eval(args, cfg, source, steps, metrics)


#: Options of ``hnca train`` that set ES settings directly (others: --config / --set).
ES_OPTIONS = {"grid": ("grid", True), "target": ("target", True), "target_size": ("target_size", True),
              "tau_c": ("tau_c", True), "lr": ("lr", False)}  # fmt: skip


def _es_run_config(args) -> dict[str, Any]:
    """An ES run's record: ``{"agent": "es", "es": ESConfig.to_dict(), "iterations", ...}``."""
    from agents.es import load_config

    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command")}
    bad = sorted(k for k in given if k in POOL_ONLY or k == "hidden")
    if bad:
        raise ValueError(
            f"{', '.join('--' + k.replace('_', '-') for k in bad)} do not set --agent es "
            "(ES settings: --config FILE or --set key=value, e.g. --set hidden.cell=32)"
        )
    if args.resume:
        fixed = sorted(k for k in given if k not in RESUME_MAY_CHANGE and k not in ("resume", "out", "agent"))
        return _resumed_config(os.path.join(args.resume, "config.json"), given, fixed)
    es_cfg = load_config(args.task, args.config, [*(args.set or []), *_option_overrides(given, ES_OPTIONS)])
    return _agent_record("es", es_cfg.task, "es", es_cfg.to_dict(), _iterations(given, 100), given, 20, 1)


def _build_es(cfg: dict[str, Any]):
    from agents.es import ESConfig, make_es

    return make_es(ESConfig.from_dict(cfg["es"]))


def _cmd_train_es(args) -> int:
    import jax
    import numpy as np
    from flax import serialization

    from agents import artifacts
    from hnca_env import render
    from hnca_env.evaluate import evaluate, policy_from_apply

    cfg = _es_run_config(args)
    out = args.resume or args.out
    env, env_params, init, iteration, apply = _build_es(cfg)
    os.makedirs(out, exist_ok=True)
    atomic_write(os.path.join(out, "config.json"), json.dumps(cfg, indent=2).encode())
    es = cfg["es"]
    print(
        f"{'resuming' if args.resume else 'training'} {cfg['task']} with ES ({es['algorithm']}, population "
        f"{es['population']} x {es['worlds']} worlds, fitness {es['fitness']}) on {env.grid[0]}x{env.grid[1]} "
        f"({jax.default_backend()}): {cfg['iterations']} generations -> {out}"
    )
    t0 = time.perf_counter()
    ran = _run_loop(init, iteration, cfg, args, out, "es")
    if ran is None:
        return 130
    state, history = ran
    atomic_write(os.path.join(out, "params.msgpack"), serialization.to_bytes(state.params))
    act = policy_from_apply(apply, state.params)
    episode = int(env_params.max_steps_in_episode)
    frames = render.rollout_frames(
        env, act, jax.random.key(1), env_params, steps=episode, scale=4, target=True
    )
    gif = render.write_gif(np.asarray(frames), os.path.join(out, "rollout.gif"), fps=20)
    metrics = evaluate(env, act, jax.random.key(EVAL_SEED), env_params, n_worlds=EVAL_WORLDS)
    summary = {
        "eval_metrics": metrics,
        "eval_worlds": EVAL_WORLDS,
        "eval_steps": episode,
        "iterations": cfg["iterations"],
        "world_steps": cfg["iterations"] * es["population"] * es["worlds"] * (es["steps"] or episode),
        "train_seconds": history[-1]["time"] if history else 0.0,
        "seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }
    atomic_write(os.path.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    artifacts.plot_loss(history, os.path.join(out, "loss.png"), f"{cfg['task']} es")
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items())
    print(
        f"done: {shown} after {episode} steps, over {EVAL_WORLDS} worlds (the mean of the search "
        f"distribution); wrote {out}/{{metrics.jsonl, checkpoints/, params.msgpack, "
        f"{os.path.basename(gif)}, loss.png, summary.json}}"
    )
    return 0


def _cmd_eval_es(args, cfg: dict[str, Any]) -> int:
    import jax

    from hnca_env.evaluate import evaluate, policy_from_apply

    env, env_params, init, _, apply = _build_es(cfg)
    params, source = _load_run_params(args.run, init)
    metrics = evaluate(
        env, policy_from_apply(apply, params), jax.random.key(args.seed), env_params, n_worlds=args.worlds,
        steps=args.steps,
    )  # fmt: skip
    steps = args.steps if args.steps is not None else int(env_params.max_steps_in_episode)
    return _write_eval(args, cfg, source, steps, metrics)


def _cmd_eval(args) -> int:
    import jax

    from agents.pool import make_pool_trainer
    from hnca_env.evaluate import evaluate, policy_from_apply

    path = os.path.join(args.run, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"--run {args.run}: no config.json there (not a run directory)")
    cfg = load_json(path)
    if cfg.get("agent") in PPO_AGENTS:
        return _cmd_eval_ppo(args, cfg)
    if cfg.get("agent") == "es":
        return _cmd_eval_es(args, cfg)
    env, env_params, pool_cfg, (_, p_apply) = _build_run(cfg)
    init, _, _ = make_pool_trainer(env, env_params, pool_cfg)
    params, source = _load_run_params(args.run, init)
    act = policy_from_apply(p_apply, params)
    metrics = evaluate(
        env, act, jax.random.key(args.seed), env_params, n_worlds=args.worlds, steps=args.steps
    )
    steps = args.steps if args.steps is not None else int(env_params.max_steps_in_episode)
    return _write_eval(args, cfg, source, steps, metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnca", description="H-NCA multi-agent environments")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered env ids").set_defaults(func=_cmd_tasks)
    info = sub.add_parser("info", help="describe an env id")
    info.add_argument("id")
    info.set_defaults(func=_cmd_info)
    tr = sub.add_parser("train", help="train agents (default: the embedded quick Grow run)")
    tr.add_argument("--task", help=f"env id (default {QUICK['task']})")
    tr.add_argument(
        "--agent",
        choices=("pool", *PPO_AGENTS, "es"),
        help="training method: pool (gradient, default), ippo or mappo (PPO; default task Density-v0), "
        "es (evolution strategies, agents/es.py)",
    )
    tr.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML file of the run's settings: PoolRunConfig (pool), PPOConfig (ippo, mappo), ESConfig (es)",
    )
    tr.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set lr=1e-3 --set trainer.mutate=2 (pool) or "
        "--set env_kwargs.grid=[16,16] (PPO, ES) (repeatable; options given win)",
    )
    tr.add_argument(
        "--iterations",
        type=int,
        help=f"total training iterations (pool default {QUICK['iterations']}; PPO: updates, default from the config)",
    )
    tr.add_argument("--out", default="runs/quickstart", help="run directory (default runs/quickstart)")
    tr.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    tr.add_argument("--grid", type=int, help="grid side in cells")
    tr.add_argument("--target", help="target shape name or RGBA PNG path")
    tr.add_argument("--target-size", dest="target_size", type=int, help="target side in cells")
    tr.add_argument("--tau-c", dest="tau_c", type=int, help="child-only steps before the parents start")
    tr.add_argument("--pool-size", dest="pool_size", type=int)
    tr.add_argument("--batch-size", dest="batch_size", type=int)
    tr.add_argument("--min-steps", dest="min_steps", type=int)
    tr.add_argument("--max-steps", dest="max_steps", type=int)
    tr.add_argument(
        "--hidden",
        type=int,
        help="hidden width of the cells (pool: coordinators 4x; ippo/mappo: coordinators keep parent_hidden)",
    )
    tr.add_argument("--lr", type=float, help="Adam learning rate (÷10 after --lr-boundary iterations)")
    tr.add_argument(
        "--lr-boundary",
        dest="lr_boundary",
        type=int,
        help="iteration of the ÷10 (default 2/3 of --iterations)",
    )
    tr.add_argument("--damage", type=int, help="damage the K best samples of each batch (regeneration)")
    tr.add_argument("--reseed", type=int, help="re-seed the K worst samples of each batch (default 1)")
    tr.add_argument(
        "--no-remat", dest="remat", action="store_const", const=False, help="no jax.checkpoint per step"
    )
    tr.add_argument("--stage", choices=("child", "parent"), help="two-stage H-NCA training: which stage")
    tr.add_argument("--init-child", dest="init_child", metavar="RUN", help="--stage parent: the child run")
    tr.add_argument(
        "--learn-perception",
        dest="learn_perception",
        action="store_const",
        const=True,
        help="parents learn their 3x3 perception kernels (raw neighbourhood observation)",
    )
    tr.add_argument("--seed", type=int)
    tr.add_argument("--log-every", dest="log_every", type=int, help="metrics.jsonl every N iterations (10)")
    tr.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every",
        type=int,
        help="Orbax checkpoint every K iterations (200; 0 off)",
    )
    tr.add_argument("--keep", type=int, help="checkpoints kept (3)")
    tr.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="split the pool and each batch over N devices (1); on a CPU, N host devices, one core each",
    )
    tr.set_defaults(func=_cmd_train)
    ev = sub.add_parser("eval", help="the task's metrics of a trained run (writes DIR/eval.json)")
    ev.add_argument("--run", required=True, metavar="DIR", help="a run directory of hnca train")
    ev.add_argument("--worlds", type=int, default=EVAL_WORLDS, help=f"worlds averaged over ({EVAL_WORLDS})")
    ev.add_argument("--steps", type=int, help="rollout steps (default: the episode length)")
    ev.add_argument("--seed", type=int, default=EVAL_SEED)
    ev.set_defaults(func=_cmd_eval)
    be = sub.add_parser(
        "bench",
        help="run a benchmark suite (docs/protocol.md): every task x algorithm, resumable, "
        "then the scoreboard (markdown, marl-eval JSON, plots)",
    )
    be.add_argument("--suite", default="cpu-small", help="suite name (cpu-small, cpu-generalise, gpu-full)")
    be.add_argument(
        "--algorithms",
        default="random,do-nothing,pool,ippo,mappo",
        help="comma-separated built-in algorithms (random, do-nothing, pool, ippo, mappo, es)",
    )
    be.add_argument(
        "--ablations",
        action="store_true",
        help="also each trained algorithm with the coordinators' broadcast zeroed and their clusters "
        "rewired (ALGO@no-broadcast, ALGO@rewired), on the tasks with coordinators, and two levels "
        "deep and flat (ALGO@two-level, ALGO@flat) on the tasks three levels deep",
    )
    be.add_argument("--tasks", help="comma-separated task ids (default: all of the suite's)")
    be.add_argument("--out", metavar="DIR", help="run directory (finished runs are kept and skipped)")
    be.add_argument("--quick", action="store_true", help="the suite's smoke version: 8-step episodes, 2 seeds")
    be.add_argument("--report", metavar="DIR", help="only re-render DIR's scoreboard from its saved runs")
    be.set_defaults(func=_cmd_bench)
    return parser


def _cmd_bench(args) -> int:
    from agents import benchmark

    if args.report:
        benchmark.write_report(args.report)
        print((Path(args.report) / "scoreboard.md").read_text())
        return 0
    if not args.out:
        raise ValueError("hnca bench needs --out DIR (or --report DIR)")
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    suite = benchmark.quick_suite(args.suite, tasks) if args.quick else benchmark.get_suite(args.suite)
    algorithms = [a for a in args.algorithms.split(",") if a]
    if args.ablations:
        trained = [a for a in algorithms if a not in ("random", "do-nothing") and "@" not in a]
        algorithms += [f"{a}@{c}" for a in trained for c in benchmark.ABLATIONS + benchmark.DEPTHS]
    try:
        benchmark.bench(suite, algorithms, args.out, tasks=tasks)
    except RuntimeError as e:  # some runs failed; the rest are saved and reported
        print(f"hnca: error: {e}", file=sys.stderr)
        return 1
    print((Path(args.out) / "scoreboard.md").read_text())
    print(f"wrote {args.out}/scoreboard.md, scoreboard.json, marl_eval.json, scores.png, aggregate.png, profiles.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # bad settings, missing or damaged files: one line
        print(f"hnca: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
