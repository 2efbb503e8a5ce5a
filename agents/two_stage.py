"""Two-stage H-NCA training (the reference's schedule, RituPande/hnca).

Stage 1 (child): pretrain the cell level alone — the task's env built without coordinators
(``parent=False``: same cells, perception, seed and target), with the pool trainer.

Stage 2 (parent): freeze the pretrained child network as a fixed rule of the env
(``fixed_rules={"cell": (rule, params)}``), so only the coordinators act and train: their
network outputs their own update and the broadcast signal, i.e. it is the actuator as well.
The first ``tau_c`` steps of every world (child-only) run without gradient
(``PoolConfig.warmup_steps = tau_c`` plus the trainer's ``stop_gradient`` on child-only steps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

import hnca_env
from agents.loop import train_loop
from agents.networks import NCAUpdateRule, as_fixed_rule
from agents.pool import PoolConfig, make_pool_trainer

Array = jax.Array


def child_problem(env_id: str, **overrides: Any):
    """The child-only problem of an H-NCA task: ``make(env_id, parent=False, **overrides)``.

    A task whose child is pretrained on a target of its own (``env.child_target``, e.g.
    pattern A of ``HNCA-Metamorphosis-Motifs-v0``) gets that target unless ``target`` is given.
    """
    env, params = hnca_env.make(env_id, parent=False, **overrides)
    child_target = getattr(env, "child_target", None)
    if child_target is not None and overrides.get("target") is None:
        overrides = {k: v for k, v in overrides.items() if k != "target_size"}
        env, params = hnca_env.make(env_id, parent=False, **overrides, target=child_target)
    return env, params


def child_network(child_params: dict) -> NCAUpdateRule:
    """The cell network whose variables are ``child_params`` (widths read off the arrays)."""
    p = child_params["params"]
    if "perception" in p:
        raise ValueError("a frozen child must use the env's fixed perception (no learned kernels)")
    layers = 1 + sum(1 for name in p if name.startswith("pre_"))
    return NCAUpdateRule(
        out_dim=p["out"]["kernel"].shape[-1], hidden=p["hidden"]["kernel"].shape[-1], layers=layers
    )


def with_frozen_child(env_id: str, child_params: dict, **overrides: Any):
    """``make(env_id, ...)`` with the cell level driven by the frozen pretrained network.

    ``child_params`` are the cell level's variables (``policy_params["cell"]`` of stage 1).
    The env then has one acting level, ``"parent"``.
    """
    rule = (as_fixed_rule(child_network(child_params)), child_params)
    return hnca_env.make(env_id, fixed_rules={"cell": rule}, **overrides)


def parent_stage_config(config: PoolConfig, env_params) -> PoolConfig:
    """``config`` with ``warmup_steps = tau_c``: seeds enter the pool after the child-only
    phase, run without gradient."""
    return dataclasses.replace(config, warmup_steps=int(env_params.tau_c))


def train_two_stage(
    env_id: str,
    key: Array,
    *,
    child: PoolConfig,
    parent: PoolConfig,
    child_iterations: int,
    parent_iterations: int,
    overrides: dict | None = None,
    child_overrides: dict | None = None,
    out: str | None = None,
    progress: bool = False,
    **loop_kwargs: Any,
) -> dict[str, Any]:
    """Pretrain the child, then train the coordinators with the child frozen.

    Args:
      env_id: an H-NCA task id (e.g. ``"HNCA-Grow-v0"``).
      child / parent: pool-trainer settings of each stage (stage 2 gets
        ``warmup_steps = tau_c`` added).
      overrides: ``make`` overrides of both stages (grid, target, tau_c, ...);
        ``child_overrides`` on top for stage 1 (e.g. the child's own target).
      out: if given, stage runs go to ``out/child`` and ``out/parent`` (metrics, checkpoints).
      loop_kwargs: passed to :func:`agents.loop.train_loop` (``log_every``,
        ``checkpoint_every``, ...).

    Returns a dict: ``child_params`` (the cell variables), ``parent_state`` (stage 2's final
    :class:`~agents.pool.PoolState`), ``env``/``env_params`` (the stage-2 env),
    ``policy`` (stage 2's ``apply``), ``child_history``, ``parent_history``.
    """
    overrides = dict(overrides or {})
    k_child, k_parent = jax.random.split(key)
    child_env, child_env_params = child_problem(env_id, **{**overrides, **dict(child_overrides or {})})
    init, iteration, _ = make_pool_trainer(child_env, child_env_params, child)
    child_state, child_history = train_loop(
        init,
        iteration,
        k_child,
        child_iterations,
        out=None if out is None else f"{out}/child",
        progress=progress,
        desc="child",
        **loop_kwargs,
    )
    child_params = child_state.params["cell"]
    env, env_params = with_frozen_child(env_id, child_params, **overrides)
    init, iteration, apply = make_pool_trainer(env, env_params, parent_stage_config(parent, env_params))
    parent_state, parent_history = train_loop(
        init,
        iteration,
        k_parent,
        parent_iterations,
        out=None if out is None else f"{out}/parent",
        progress=progress,
        desc="parent",
        **loop_kwargs,
    )
    return {
        "child_params": child_params,
        "parent_state": parent_state,
        "env": env,
        "env_params": env_params,
        "policy": apply,
        "child_history": child_history,
        "parent_history": parent_history,
    }
