"""EnvParams: the numbers of one world, their defaults, overrides and checks.

Structure (grid, levels, channels, kernels, task...) is fixed when an :class:`~hnca_env.env.HNCAEnv`
is built; the numbers that may differ per world live in :class:`EnvParams` and can be vmapped.
This module builds an env's default params, applies ``make(..., **overrides)`` conveniences
(``seed="noise"``, ``target="heart"``, ``fire_rate=0.5``...) and checks params, naming the first
invalid number. ``HNCAEnv.default_params`` / ``make_params`` / ``check_params`` call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from hnca_env import rewards as rewards_lib
from hnca_env import validate
from hnca_env.tasks.base import is_concrete as _is_concrete

Array = jax.Array

#: Initial states (``EnvParams.seed``).
SEED_SINGLE_CELL = 0  # one live cell in the centre, channels 3.. set to 1 (Growing NCA)
SEED_NOISE = 1  # every channel U[0, 1) (H-NCA reference)
SEED_STATE = 2  # ``EnvParams.seed_state`` as given (e.g. a start pattern)
SEEDS = {"single_cell": SEED_SINGLE_CELL, "noise": SEED_NOISE, "state": SEED_STATE}

OBS_MODES = ("perception", "neighbourhood")


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Numbers of one world (vmappable). Build them with ``env.default_params.replace(...)``.

    Fields:
      max_steps_in_episode: time limit (``truncated``).
      fire_rate: ``{level: p}``, per-cell update probability in [0, 1].
      tau_c: child-only steps before the first coordinator level starts.
      start_delay: ``{level: steps}`` for the levels above the first coordinator level: each
        starts that many steps after the level below it started (default 0).
      alive_threshold: alpha threshold of the living mask (Growing-NCA mode).
      target: ``(H, W, visible)`` target of the task.
      seed: which initial state (``SEED_*``); seed_state: ``(H, W, C)`` for ``SEED_STATE``.
      damage_times: ``(D,)`` int steps after which holes are cut (-1 = unused slot).
      damage_holes: holes per damage event (≤ the constructor's ``max_damage_holes``).
      damage_radius: ``(2,)`` min/max hole radius in cells.
      clamp_min/clamp_max: state bounds when the env was built with ``clamp=True``.
      actuator_scale/sensor_scale: λ of the ``scaled`` multiplexer.
      reward_weights: ``{name: w}`` for composed rewards.
      rule_params: ``{level: pytree}`` parameters of fixed-rule levels.
      task_params: task-specific numbers (pytree) or None.
    """

    fire_rate: dict = None
    tau_c: int = 0
    start_delay: dict = None
    alive_threshold: float = 0.1
    target: Array = None
    seed: int = SEED_SINGLE_CELL
    seed_state: Array = None
    damage_times: Array = None
    damage_holes: int = 1
    damage_radius: Array = None
    clamp_min: float = -10.0
    clamp_max: float = 10.0
    actuator_scale: Array = None
    sensor_scale: Array = None
    reward_weights: dict = None
    rule_params: dict = None
    task_params: Any = None


def default_params(env, overrides: Mapping[str, Any]) -> EnvParams:
    """The default :class:`EnvParams` of ``env``'s structure, with ``overrides`` applied."""
    h, w = env.grid
    base = EnvParams(
        max_steps_in_episode=96,
        fire_rate={lvl: 0.5 for lvl in env.levels},
        tau_c=0,
        start_delay={lvl: 0 for lvl in env.levels[2:]},
        alive_threshold=0.1,
        target=jnp.asarray(env.task.default_target(env.grid)),
        seed=SEED_SINGLE_CELL,
        seed_state=jnp.zeros((h, w, env.channels), jnp.float32),
        damage_times=-jnp.ones((env.max_damage_events,), jnp.int32),
        damage_holes=1,
        damage_radius=jnp.array([0.1 * min(h, w), 0.2 * min(h, w)], jnp.float32),
        actuator_scale=jnp.ones((max(env.signals, 1),), jnp.float32),
        sensor_scale=jnp.ones((env.channels,), jnp.float32),
        reward_weights=rewards_lib.default_weights(env.reward),
        rule_params=dict(env._fixed_rule_params),
        task_params=None,
    )
    return apply_overrides(env, base, dict(overrides))


def apply_overrides(env, params: EnvParams, overrides: Mapping[str, Any]) -> EnvParams:
    """``params`` with ``overrides`` applied (names, shapes and conveniences resolved, not
    value-checked: see :func:`check_params`)."""
    overrides = dict(overrides)
    fields = set(EnvParams.__dataclass_fields__)
    bad = set(overrides) - fields
    if bad:
        raise ValueError(f"unknown EnvParams field(s) {sorted(bad)}; fields: {sorted(fields)}")
    if "fire_rate" in overrides:
        fr = overrides["fire_rate"]
        if isinstance(fr, Mapping):
            unknown = set(fr) - set(env.levels)
            if unknown:
                raise ValueError(f"fire_rate for unknown level(s) {sorted(unknown)}")
            overrides["fire_rate"] = {**params.fire_rate, **fr}
        else:
            overrides["fire_rate"] = {lvl: fr for lvl in env.levels}
    if "start_delay" in overrides:
        sd = dict(overrides["start_delay"] or {})
        unknown = set(sd) - set(env.levels[2:])
        if unknown:
            raise ValueError(
                f"start_delay for level(s) {sorted(unknown)}: only the levels above the first "
                f"coordinator level have one ({list(env.levels[2:])}; level 1 starts after tau_c)"
            )
        overrides["start_delay"] = {**params.start_delay, **sd}
    if isinstance(overrides.get("seed"), str):
        name = overrides["seed"]
        if name not in SEEDS:
            raise ValueError(f"unknown seed {name!r}; known: {sorted(SEEDS)}")
        overrides["seed"] = SEEDS[name]
    if "target" in overrides:
        overrides["target"] = jnp.asarray(env.task.target_array(overrides["target"], env.grid))
    for k in ("seed_state", "damage_times", "damage_radius", "actuator_scale", "sensor_scale"):
        if k in overrides:
            overrides[k] = jnp.asarray(overrides[k])
    if "damage_times" in overrides:
        dt = jnp.atleast_1d(overrides["damage_times"]).astype(jnp.int32)
        if dt.shape[-1] > env.max_damage_events:
            raise ValueError(
                f"{dt.shape[-1]} damage_times exceed max_damage_events={env.max_damage_events}: "
                f"build the env with max_damage_events>={dt.shape[-1]} (a constructor option)"
            )
        fill = -jnp.ones((*dt.shape[:-1], env.max_damage_events - dt.shape[-1]), jnp.int32)
        overrides["damage_times"] = jnp.concatenate([dt, fill], -1)
    return params.replace(**overrides)


def _is_dtype(x: Any, kind) -> bool:
    """Whether ``x`` (a number, array or tracer) has a dtype of ``kind`` (e.g. ``jnp.integer``)."""
    try:
        return bool(jnp.issubdtype(jnp.result_type(x), kind))
    except TypeError:
        return False


def check_params(env, params: EnvParams) -> None:
    """Raise ``ValueError`` naming the first invalid number of ``params``.

    Shapes are always checked; values only where they are concrete (not under ``jit``).
    """
    if not isinstance(params, EnvParams):
        raise TypeError(f"params must be hnca_env.EnvParams, got {type(params).__name__}")
    h, w = env.grid
    want = {"target": (h, w, env.visible), "seed_state": (h, w, env.channels)}
    for k, shape in want.items():
        got = jnp.shape(getattr(params, k))
        if got[-3:] != shape:
            raise ValueError(f"params.{k} has shape {got}, expected {shape}")
    if not isinstance(params.fire_rate, Mapping) or set(params.fire_rate) != set(env.levels):
        raise ValueError(f"params.fire_rate must be a dict with keys {env.levels}")
    if not isinstance(params.start_delay, Mapping) or set(params.start_delay) != set(env.levels[2:]):
        raise ValueError(f"params.start_delay must be a dict with keys {env.levels[2:]}")
    for lvl in env.fixed_rules:
        if lvl not in (params.rule_params or {}):
            raise ValueError(f"params.rule_params lacks the parameters of fixed level {lvl!r}")
    shapes = {
        "damage_radius": (2,),
        "actuator_scale": (max(env.signals, 1),),
        "sensor_scale": (env.channels,),
        "damage_times": (env.max_damage_events,),
    }
    for k, shape in shapes.items():
        got = jnp.shape(getattr(params, k))
        if got[-1:] != shape:
            raise ValueError(f"params.{k} has shape {got}, expected {shape}")
    for k in ("seed", "max_steps_in_episode", "tau_c", "damage_holes", "damage_times"):
        if not _is_dtype(getattr(params, k), jnp.integer):
            raise ValueError(f"params.{k} must be an integer, got {getattr(params, k)!r}")
    for lvl, p in params.fire_rate.items():
        if not _is_dtype(p, jnp.number):
            raise ValueError(f"params.fire_rate[{lvl!r}] must be a number, got {p!r}")
    need = set(rewards_lib.default_weights(env.reward))
    missing = sorted(need - set(params.reward_weights or {}))
    if missing:
        raise ValueError(
            f"params.reward_weights lacks the weight(s) of {missing}: the reward {env.reward!r} "
            f"needs {sorted(need)}"
        )
    env.task.check_params(params, env)
    if not _is_concrete(params):
        return
    for lvl, p in params.fire_rate.items():
        p = np.asarray(p)
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"fire_rate[{lvl!r}] must be in [0, 1], got {p}")
    checks = [
        ("tau_c", np.asarray(params.tau_c), lambda v: v >= 0, "must be >= 0"),
        *(
            (f"start_delay[{lvl!r}]", np.asarray(d), lambda v: v >= 0, "must be >= 0")
            for lvl, d in params.start_delay.items()
        ),
        (
            "max_steps_in_episode",
            np.asarray(params.max_steps_in_episode),
            lambda v: v >= 1,
            "must be >= 1",
        ),
        ("seed", np.asarray(params.seed), lambda v: (v >= 0) & (v <= 2), "must be 0, 1 or 2 (SEED_*)"),
        (
            "damage_holes",
            np.asarray(params.damage_holes),
            lambda v: (v >= 0) & (v <= env.max_damage_holes),
            f"must be in [0, max_damage_holes={env.max_damage_holes}]",
        ),
        ("damage_radius", np.asarray(params.damage_radius), lambda v: np.all(v >= 0), "must be >= 0"),
    ]
    for name, v, ok, msg in checks:
        if not np.all(ok(v)):
            raise ValueError(f"params.{name} {msg}, got {v}")
    for name in ("target", "seed_state", "actuator_scale", "sensor_scale"):
        if not np.all(np.isfinite(np.asarray(getattr(params, name)))):
            raise ValueError(f"params.{name} contains NaN or inf")
    if not np.all(np.asarray(params.clamp_min) < np.asarray(params.clamp_max)):
        raise ValueError(f"params.clamp_min={params.clamp_min} must be below clamp_max={params.clamp_max}")
    validate.warn_settings(env, params)
