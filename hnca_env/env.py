"""HNCAEnv: a Hierarchical Neural Cellular Automaton as a multi-agent environment.

After Pande & Grattarola, "Hierarchical Neural Cellular Automata" (ALIFE 2023; reference code
RituPande/hnca) and Mordvintsev et al., "Growing Neural Cellular Automata" (Distill 2020).

Card
----
Agents
    Every cell of the child grid ``(H, W)`` is an agent of level ``"cell"``; with a parent level,
    every cell of the coarser grid ``(H/k, W/k)`` is a coordinator of level ``"parent"`` that
    senses its ``k×k`` cluster of children and broadcasts a signal back to it. A level driven by
    a fixed rule (``fixed_rules``) is not an agent group: it has no obs, action or reward entry.
Observation
    ``{"cell": (H, W, O_c), "parent": (H/k, W/k, O_p)}``. A cell sees its own state and its 3×3
    neighbourhood through the fixed perception kernels (``(K*C)``) or raw (``9*C``,
    ``cell_obs="neighbourhood"``). A coordinator sees its own neighbourhood the same way, plus
    the sensed average of its cluster (``C``), plus task inputs.
Action
    Cell: its state update Δ, ``(H, W, C)``. Coordinator: its own update and its broadcast,
    ``(H/k, W/k, C_p + S)`` — the first ``C_p`` channels update the coordinator, the last ``S``
    are added (multiplexer) to the children's ``S`` signal channels. Continuous, unclipped;
    the action space's [-1, 1] box is the nominal range for sampling.
Transition
    ``step`` applies the fire mask (per cell, Bernoulli(``fire_rate``)), alive masking
    (Growing-NCA mode), then — once the parent level has started (after ``tau_c`` child-only
    steps) — the actuator (parent → child signal channels) and the sensor (child → parent,
    adder). Optional damage cuts circular holes at given steps; optional clamp.
Reward
    Injected (``reward=``): per-level maps ``{"cell": (H, W), "parent": (H/k, W/k)}``;
    ``info["team_reward"]`` holds each level's mean. See :mod:`hnca_env.rewards`.
Termination
    ``terminated`` by the task (never for pattern tasks); ``truncated`` at
    ``max_steps_in_episode``. Auto-reset as gymnax, with ``info["final_observation"]``.

Structure (grid, channels, levels, cluster, kernels, alive mode, observation modes, reward,
task, fixed rules) is fixed in the constructor; numbers that may differ per world live in
:class:`EnvParams` and can be vmapped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from hnca_env import physics, validate
from hnca_env import rewards as rewards_lib
from hnca_env.tasks.base import Task
from hnca_env.tasks.base import is_concrete as _is_concrete

Array = jax.Array

#: Initial states (``EnvParams.seed``).
SEED_SINGLE_CELL = 0  # one live cell in the centre, channels 3.. set to 1 (Growing NCA)
SEED_NOISE = 1  # every channel U[0, 1) (H-NCA reference)
SEED_STATE = 2  # ``EnvParams.seed_state`` as given (e.g. a start pattern)
SEEDS = {"single_cell": SEED_SINGLE_CELL, "noise": SEED_NOISE, "state": SEED_STATE}

OBS_MODES = ("perception", "neighbourhood")


@struct.dataclass
class EnvState(environment.EnvState):
    """One world: ``grids[level]`` is that level's ``(H_l, W_l, C_l)`` state; ``time`` counts
    steps since reset (child-only steps included); ``task`` is the task's own state (a goal id,
    a digit label...; ``None`` for pattern tasks)."""

    grids: dict = None
    task: Any = None


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Numbers of one world (vmappable). Build them with ``env.default_params.replace(...)``.

    Fields:
      max_steps_in_episode: time limit (``truncated``).
      fire_rate: ``{level: p}``, per-cell update probability in [0, 1].
      tau_c: child-only steps before the parent level starts.
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


class LevelDict(spaces.Dict):
    """gymnax ``Dict`` space whose ``contains`` accepts plain dicts (gymnax uses getattr)."""

    def contains(self, x) -> Array:
        ok = jnp.array(True)
        for k, space in self.spaces.items():
            ok = ok & space.contains(x[k] if isinstance(x, Mapping) else getattr(x, k))
        return ok


class HNCAEnv(environment.Environment):
    """Hierarchical NCA environment (see the module docstring for the full card).

    Example::

        env, params = hnca_env.make("HNCA-Grow-v0", grid=(32, 32))
        obs, state = env.reset(jax.random.key(0), params)
        action = jax.tree.map(jnp.zeros_like, env.action_space(params).sample(key))
        obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

    Args:
      grid: child grid ``(H, W)``.
      channels: child channels ``C`` (visible channels first, signal channels last).
      task: a :class:`~hnca_env.tasks.base.Task` (target, error, task inputs).
      perception: names of the child's fixed kernels (``physics.KERNELS``).
      sobel_scale: multiplier of the Sobel kernels (1/8 Growing NCA, 1 H-NCA).
      alive: Growing-NCA alive masking on the alpha channel (needs an RGBA task).
      cell_obs: ``"perception"`` or ``"neighbourhood"`` (raw 3×3).
      parent: whether the coordinator level exists.
      cluster: children per coordinator per side (``k``).
      parent_channels: coordinator channels ``C_p`` (≥ ``C``: the sensor adds into the first C).
      signals: child signal channels ``S`` the coordinators write (the last ``S`` channels).
      parent_perception, parent_sobel_scale, parent_obs: as for cells.
      multiplexer: ``"adder"`` or ``"scaled"``.
      reward: reward name, ``{name: weight}``, Reward object or function (see rewards).
      fixed_rules: ``{level: (rule_fn, rule_params)}``; ``rule_fn(rule_params, obs, key)``
        returns that level's action and the level stops being an agent group.
      auto_reset: reset finished worlds inside ``step`` (gymnax behaviour).
      clamp: clip states to ``[clamp_min, clamp_max]`` after each step.
      max_damage_holes: static upper bound of ``params.damage_holes``.
      max_damage_events: length of ``params.damage_times``; 0 (default) compiles no damage.
      default_overrides: numbers for ``default_params`` (e.g. ``tau_c=100``).
    """

    _supports_transition_gradients = True
    _transition_gradients_enabled = True

    def __init__(
        self,
        grid: tuple[int, int] = (72, 72),
        channels: int = 16,
        task: Task | None = None,
        perception: tuple[str, ...] = ("identity", "sobel_x", "sobel_y"),
        sobel_scale: float = 1.0 / 8.0,
        alive: bool = True,
        cell_obs: str = "perception",
        parent: bool = False,
        cluster: int = 4,
        parent_channels: int = 12,
        signals: int = 9,
        parent_perception: tuple[str, ...] = ("identity", "sobel_x", "sobel_y", "laplacian"),
        parent_sobel_scale: float = 1.0,
        parent_obs: str = "perception",
        multiplexer: str = "adder",
        reward: Any = "local",
        fixed_rules: Mapping[str, tuple[Callable, Any]] | None = None,
        auto_reset: bool = True,
        clamp: bool = False,
        max_damage_holes: int = 1,
        max_damage_events: int = 0,
        default_overrides: Mapping[str, Any] | None = None,
        name: str = "HNCA",
    ):
        self.task = task if task is not None else Task()
        self.grid = _check_grid(grid)
        self.channels = _positive_int("channels", channels)
        self.visible = self.task.visible
        if self.channels < self.visible:
            raise ValueError(f"channels={channels} is fewer than the task's {self.visible} visible channels")
        self.kernels = physics.perception_kernels(perception, sobel_scale)
        self.perception = tuple(perception)
        self.alive = bool(alive)
        if self.alive and self.visible != 4:
            raise ValueError("alive masking needs an alpha channel: use an RGBA task (visible=4)")
        self.cell_obs = _check_obs_mode("cell_obs", cell_obs)
        self.has_parent = bool(parent)
        self.cluster = _positive_int("cluster", cluster)
        self.multiplexer = multiplexer
        if multiplexer not in physics.MULTIPLEXERS:
            raise ValueError(f"unknown multiplexer {multiplexer!r}; known: {physics.MULTIPLEXERS}")
        if self.has_parent:
            h, w = self.grid
            if h % self.cluster or w % self.cluster:
                raise ValueError(f"grid {h}x{w} is not divisible by the cluster size {self.cluster}")
            self.parent_channels = _positive_int("parent_channels", parent_channels)
            self.signals = _positive_int("signals", signals)
            hidden = self.channels - self.visible
            if self.signals > hidden:
                raise ValueError(
                    f"too few channels for the signals: {self.signals} signal channels need "
                    f"channels >= visible + signals = {self.visible + self.signals}, got "
                    f"channels={self.channels}"
                )
            if self.parent_channels < self.channels:
                raise ValueError(
                    f"parent_channels={parent_channels} < channels={channels}: the sensor adds "
                    "the children's cluster average into the first `channels` parent channels"
                )
            self.parent_kernels = physics.perception_kernels(parent_perception, parent_sobel_scale)
            self.parent_perception = tuple(parent_perception)
            self.parent_obs = _check_obs_mode("parent_obs", parent_obs)
        else:
            self.parent_channels = 0
            self.signals = 0
        self.levels = ("cell", "parent") if self.has_parent else ("cell",)

        fixed_rules = dict(fixed_rules or {})
        unknown = set(fixed_rules) - set(self.levels)
        if unknown:
            raise ValueError(f"fixed_rules for unknown level(s) {sorted(unknown)}; levels: {self.levels}")
        for level, rule in fixed_rules.items():
            if not (isinstance(rule, tuple) and len(rule) == 2 and callable(rule[0])):
                raise TypeError(f"fixed_rules[{level!r}] must be a (rule_fn, rule_params) pair")
        self.fixed_rules = {lvl: fn for lvl, (fn, _) in fixed_rules.items()}
        self._fixed_rule_params = {lvl: p for lvl, (_, p) in fixed_rules.items()}
        self.agent_levels = tuple(lvl for lvl in self.levels if lvl not in self.fixed_rules)
        if not self.agent_levels:
            raise ValueError("every level is a fixed rule: at least one level must act")

        self.reward = rewards_lib.resolve(reward)
        self._reward_fn = rewards_lib.bind(self.reward, self)
        self.auto_reset = bool(auto_reset)
        self.clamp = bool(clamp)
        self.max_damage_holes = _positive_int("max_damage_holes", max_damage_holes)
        if (
            isinstance(max_damage_events, bool)
            or not isinstance(max_damage_events, int)
            or max_damage_events < 0
        ):
            raise ValueError(f"max_damage_events must be an integer >= 0, got {max_damage_events!r}")
        self.max_damage_events = max_damage_events
        self._name = name
        self._default_params = self._build_default_params(dict(default_overrides or {}))
        self._checked_params = None  # the last params object validated by reset/step
        self.check_params(self._default_params)

    # ------------------------------------------------------------------ structure helpers
    @property
    def name(self) -> str:
        return self._name

    def grid_shape(self, level: str) -> tuple[int, int]:
        """Agent-grid shape ``(H_l, W_l)`` of a level."""
        if level == "cell":
            return self.grid
        if level == "parent" and self.has_parent:
            return (self.grid[0] // self.cluster, self.grid[1] // self.cluster)
        raise ValueError(f"unknown level {level!r}; levels: {self.levels}")

    def state_channels(self, level: str) -> int:
        return self.channels if level == "cell" else self.parent_channels

    def action_dim(self, level: str) -> int:
        """Action channels per agent of a level."""
        return self.channels if level == "cell" else self.parent_channels + self.signals

    def obs_dim(self, level: str) -> int:
        """Observation channels per agent of a level."""
        extra = self.task.extra_obs_dims().get(level, 0)
        if level == "cell":
            own = self.channels * (len(self.kernels) if self.cell_obs == "perception" else 9)
            return own + extra
        own = self.parent_channels * (len(self.parent_kernels) if self.parent_obs == "perception" else 9)
        return own + self.channels + extra

    @property
    def num_actions(self) -> int:
        """Action channels of one cell agent (gymnax's continuous-env convention)."""
        return self.action_dim("cell")

    # ------------------------------------------------------------------ params
    def _build_default_params(self, overrides: dict) -> EnvParams:
        h, w = self.grid
        base = EnvParams(
            max_steps_in_episode=96,
            fire_rate={lvl: 0.5 for lvl in self.levels},
            tau_c=0,
            alive_threshold=0.1,
            target=jnp.asarray(self.task.default_target(self.grid)),
            seed=SEED_SINGLE_CELL,
            seed_state=jnp.zeros((h, w, self.channels), jnp.float32),
            damage_times=-jnp.ones((self.max_damage_events,), jnp.int32),
            damage_holes=1,
            damage_radius=jnp.array([0.1 * min(h, w), 0.2 * min(h, w)], jnp.float32),
            actuator_scale=jnp.ones((max(self.signals, 1),), jnp.float32),
            sensor_scale=jnp.ones((self.channels,), jnp.float32),
            reward_weights=rewards_lib.default_weights(self.reward),
            rule_params=dict(self._fixed_rule_params),
            task_params=None,
        )
        return self._apply_overrides(base, overrides)

    def _apply_overrides(self, params: EnvParams, overrides: Mapping[str, Any]) -> EnvParams:
        overrides = dict(overrides)
        fields = set(EnvParams.__dataclass_fields__)
        bad = set(overrides) - fields
        if bad:
            raise ValueError(f"unknown EnvParams field(s) {sorted(bad)}; fields: {sorted(fields)}")
        if "fire_rate" in overrides:
            fr = overrides["fire_rate"]
            if isinstance(fr, Mapping):
                unknown = set(fr) - set(self.levels)
                if unknown:
                    raise ValueError(f"fire_rate for unknown level(s) {sorted(unknown)}")
                overrides["fire_rate"] = {**params.fire_rate, **fr}
            else:
                overrides["fire_rate"] = {lvl: fr for lvl in self.levels}
        if isinstance(overrides.get("seed"), str):
            name = overrides["seed"]
            if name not in SEEDS:
                raise ValueError(f"unknown seed {name!r}; known: {sorted(SEEDS)}")
            overrides["seed"] = SEEDS[name]
        if "target" in overrides:
            overrides["target"] = jnp.asarray(self.task.target_array(overrides["target"], self.grid))
        for k in ("seed_state", "damage_times", "damage_radius", "actuator_scale", "sensor_scale"):
            if k in overrides:
                overrides[k] = jnp.asarray(overrides[k])
        if "damage_times" in overrides:
            dt = jnp.atleast_1d(overrides["damage_times"]).astype(jnp.int32)
            if dt.shape[-1] > self.max_damage_events:
                raise ValueError(
                    f"{dt.shape[-1]} damage_times exceed max_damage_events={self.max_damage_events}: "
                    f"build the env with max_damage_events>={dt.shape[-1]} (a constructor option)"
                )
            fill = -jnp.ones((*dt.shape[:-1], self.max_damage_events - dt.shape[-1]), jnp.int32)
            overrides["damage_times"] = jnp.concatenate([dt, fill], -1)
        return params.replace(**overrides)

    def make_params(self, **overrides: Any) -> EnvParams:
        """``default_params`` with ``overrides`` applied and checked.

        Accepts conveniences: ``fire_rate=0.5`` (all levels) or ``{level: p}``, ``seed="noise"``,
        ``target="heart"`` (a shape name, an array or a PNG path), ``damage_times=[20]``.
        """
        params = self._apply_overrides(self.default_params, overrides)
        self.check_params(params)
        return params

    @property
    def default_params(self) -> EnvParams:
        return self._default_params

    def check_params(self, params: EnvParams) -> None:
        """Raise ``ValueError`` naming the first invalid number of ``params``.

        Shapes are always checked; values only where they are concrete (not under ``jit``).
        """
        if not isinstance(params, EnvParams):
            raise TypeError(f"params must be hnca_env.EnvParams, got {type(params).__name__}")
        h, w = self.grid
        want = {"target": (h, w, self.visible), "seed_state": (h, w, self.channels)}
        for k, shape in want.items():
            got = jnp.shape(getattr(params, k))
            if got[-3:] != shape:
                raise ValueError(f"params.{k} has shape {got}, expected {shape}")
        if not isinstance(params.fire_rate, Mapping) or set(params.fire_rate) != set(self.levels):
            raise ValueError(f"params.fire_rate must be a dict with keys {self.levels}")
        for lvl in self.fixed_rules:
            if lvl not in (params.rule_params or {}):
                raise ValueError(f"params.rule_params lacks the parameters of fixed level {lvl!r}")
        self.task.check_params(params, self)
        if not _is_concrete(params):
            return
        for lvl, p in params.fire_rate.items():
            p = np.asarray(p)
            if not np.all((p >= 0) & (p <= 1)):
                raise ValueError(f"fire_rate[{lvl!r}] must be in [0, 1], got {p}")
        checks = [
            ("tau_c", np.asarray(params.tau_c), lambda v: v >= 0, "must be >= 0"),
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
                lambda v: (v >= 0) & (v <= self.max_damage_holes),
                f"must be in [0, max_damage_holes={self.max_damage_holes}]",
            ),
            ("damage_radius", np.asarray(params.damage_radius), lambda v: np.all(v >= 0), "must be >= 0"),
        ]
        for name, v, ok, msg in checks:
            if not np.all(ok(v)):
                raise ValueError(f"params.{name} {msg}, got {v}")
        if not np.all(np.isfinite(np.asarray(params.target))):
            raise ValueError("params.target contains NaN or inf")
        validate.warn_settings(self, params)

    # ------------------------------------------------------------------ public API
    def reset(self, key: Array, params: EnvParams | None = None) -> tuple[dict, EnvState]:
        """Reset one world: ``(obs, state)``. Validates ``params`` first."""
        params = self.default_params if params is None else params
        self._check_params_once(params)
        return self._reset_jit(key, params)

    def step(
        self,
        key: Array,
        state: EnvState,
        action: Mapping[str, Array],
        params: EnvParams | None = None,
    ) -> tuple[dict, EnvState, dict, Array, Array, dict]:
        """One transition of one world, with auto-reset (unless built with ``auto_reset=False``).

        Returns ``(obs, state, reward, terminated, truncated, info)``; ``reward`` is
        ``{level: (H_l, W_l)}``; ``info`` has ``team_reward`` (per level) and
        ``final_observation``. Validates first: the state's levels and shapes, the action's
        levels, shapes and dtype, and — when the action is concrete (not traced) — that it is
        finite. Under ``jit`` the values are checked only inside ``checkify.checkify``
        (docs/api.md, "Errors and validation").
        """
        params = self.default_params if params is None else params
        self._check_params_once(params)
        validate.check_state(self, state)
        action = self.check_action(action)
        if _is_concrete(action):
            validate.check_finite_action(action)
        return self._step_jit(key, state, action, params)

    def _check_params_once(self, params: EnvParams) -> None:
        """Validate ``params`` unless it is the very object validated last: an eager loop of
        ``step`` calls then pulls the params' values to the host once, not every step."""
        if params is self._checked_params:
            return
        self.check_params(params)
        if _is_concrete(params):
            self._checked_params = params

    def check_action(self, action: Mapping[str, Array]) -> dict[str, Array]:
        """Validate an action dict (levels, shapes, dtype) and cast it to float32."""
        if not isinstance(action, Mapping):
            raise TypeError(
                f"action must be a dict keyed by level {self.agent_levels}, got {type(action).__name__}"
            )
        if set(action) != set(self.agent_levels):
            raise ValueError(f"action has levels {sorted(action)}, expected {list(self.agent_levels)}")
        out = {}
        for lvl in self.agent_levels:
            a = action[lvl]
            want = (*self.grid_shape(lvl), self.action_dim(lvl))
            if jnp.shape(a) != want:
                raise ValueError(f"action[{lvl!r}] has shape {jnp.shape(a)}, expected {want}")
            dtype = jnp.result_type(a)
            if not jnp.issubdtype(dtype, jnp.floating):
                raise TypeError(f"action[{lvl!r}] must be floating point, got dtype {dtype}")
            out[lvl] = jnp.asarray(a, jnp.float32)
        return out

    @partial(jax.jit, static_argnames=("self",))
    def _reset_jit(self, key, params):
        return self.reset_env(key, params)

    @partial(jax.jit, static_argnames=("self",))
    def _step_jit(self, key, state, action, params):
        key_step, key_reset = jax.random.split(key)
        state_st, reward, terminated, info = self.transition(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        info = {**info, "terminated": terminated, "truncated": truncated}
        if not self.auto_reset:
            return self.get_obs(state_st, params), state_st, reward, terminated, truncated, info
        done = jnp.logical_or(terminated, truncated)
        state_re = self.initial_state(key_reset, params)
        state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_re, state_st)
        # One observation, of the selected state. The pre-reset one is only computed for
        # info["final_observation"], and XLA drops it when the caller does not use it: so
        # auto-reset costs a seed and a select, not a second observation (benchmarks/).
        info["final_observation"] = self.get_obs(state_st, params)
        return self.get_obs(state, params), state, reward, terminated, truncated, info

    # ------------------------------------------------------------------ gymnax hooks
    def initial_state(self, key: Array, params: EnvParams) -> EnvState:
        """The seed state of one world (no observation)."""
        h, w = self.grid
        c = self.channels

        def single_cell(_):
            return jnp.zeros((h, w, c), jnp.float32).at[h // 2, w // 2, 3:].set(1.0)

        def noise(k):
            return physics.hash_uniform(k, (h, w, c))  # cheap: auto-reset draws it every step

        def given(_):
            return jnp.asarray(params.seed_state, jnp.float32)

        k_seed, k_task = jax.random.split(key)
        cells = jax.lax.switch(jnp.clip(params.seed, 0, 2), [single_cell, noise, given], k_seed)
        cells, task_state = self.task.init(k_task, cells, params)
        grids = {"cell": cells}
        if self.has_parent:
            start = self._first_parent_state(cells)
            grids["parent"] = jnp.where(params.tau_c == 0, start, jnp.zeros_like(start))
        return EnvState(time=jnp.zeros((), jnp.int32), grids=grids, task=task_state)

    def reset_env(self, key: Array, params: EnvParams) -> tuple[dict, EnvState]:
        state = self.initial_state(key, params)
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """Transition without auto-reset: ``(obs, state, reward, terminated, info)``.

        For trainers that manage episodes themselves (the pool trainer); ``action`` must be
        valid (see :meth:`check_action`).
        """
        next_state, reward, terminated, info = self.transition(key, state, action, params)
        return self.get_obs(next_state, params), next_state, reward, terminated, info

    def transition(self, key, state, action, params):
        """The dynamics without observations: ``(next_state, reward, terminated, info)``."""
        k_cell, k_parent, k_rules, k_damage, k_task = jax.random.split(key, 5)
        action = dict(action)
        if self.fixed_rules:
            obs_now = self.get_obs(state, params, levels=tuple(self.fixed_rules))
            rule_keys = jax.random.split(k_rules, len(self.fixed_rules))
            for rk, (lvl, fn) in zip(rule_keys, sorted(self.fixed_rules.items())):
                action[lvl] = fn(params.rule_params[lvl], obs_now[lvl], rk)
        validate.debug_check_finite(action, state.time)  # only under checkify

        cells = state.grids["cell"]
        m = physics.fire_mask(k_cell, self.grid, params.fire_rate["cell"])
        cells = physics.stochastic_update(
            cells, action["cell"], m, alive=self.alive, alive_threshold=params.alive_threshold
        )
        grids = {"cell": cells}
        t_next = state.time + 1
        if self.has_parent:
            grids = self._parent_step(k_parent, state, cells, action["parent"], t_next, params)
        if self.max_damage_events:
            grids["cell"] = self._damage(k_damage, grids["cell"], t_next, params)
        if self.clamp:
            grids = {k: jnp.clip(v, params.clamp_min, params.clamp_max) for k, v in grids.items()}
        next_state = self.task.post_step(
            k_task, state, EnvState(time=t_next, grids=grids, task=state.task), params
        )

        agent_action = {lvl: action[lvl] for lvl in self.agent_levels}
        reward = rewards_lib.complete_levels(self, self._reward_fn(state, agent_action, next_state, params))
        reward = {lvl: reward[lvl] for lvl in self.agent_levels}
        info = {"team_reward": {lvl: jnp.mean(r) for lvl, r in reward.items()}}
        terminated = jnp.asarray(self.task.is_terminated(next_state, params), bool)
        return next_state, reward, terminated, info

    def _first_parent_state(self, cells: Array) -> Array:
        """First coordinator state: the sensor output in the first C channels, zeros after."""
        sensed = physics.sensor(cells, self.cluster)
        pad = self.parent_channels - self.channels
        return jnp.pad(sensed, ((0, 0), (0, 0), (0, pad))) if pad else sensed

    def _parent_step(self, key, state, cells, parent_action, t_next, params):
        """Coordinator update, actuator and sensor, once the parent level runs.

        Order within a coupled step: child update (done by the caller), coordinator update,
        actuator (the broadcast into the children's signal channels), sensor (the children's
        cluster average added into the coordinators). The stored state is thus the
        post-communication state the next observation is made of.
        """
        parent = state.grids["parent"]
        coupled = state.time >= params.tau_c
        delta, signal = parent_action[..., : self.parent_channels], parent_action[..., self.parent_channels :]
        m = physics.fire_mask(key, self.grid_shape("parent"), params.fire_rate["parent"])
        parent_upd = parent + delta * m
        scale = params.actuator_scale if self.multiplexer == "scaled" else None
        cells_act = physics.actuator(
            cells, signal, self.cluster, self.channels - self.signals, self.multiplexer, scale
        )
        sensed = physics.sensor(cells_act, self.cluster)
        s_scale = params.sensor_scale if self.multiplexer == "scaled" else None
        head = physics.multiplex(parent_upd[..., : self.channels], sensed, self.multiplexer, s_scale)
        parent_coupled = jnp.concatenate([head, parent_upd[..., self.channels :]], axis=-1)
        starts_now = t_next == params.tau_c
        parent_next = jnp.where(
            coupled,
            parent_coupled,
            jnp.where(starts_now, self._first_parent_state(cells), jnp.zeros_like(parent)),
        )
        return {"cell": jnp.where(coupled, cells_act, cells), "parent": parent_next}

    def _damage(self, key, cells, t_next, params):
        """Zero ``damage_holes`` random discs of the children when ``t_next`` is a damage time."""
        hit = jnp.any(params.damage_times == t_next)
        h, w = self.grid
        keep = jnp.ones((h, w), bool)
        for i, k in enumerate(jax.random.split(key, self.max_damage_holes)):
            kc, kr = jax.random.split(k)
            centre = jax.random.randint(kc, (2,), 0, jnp.array([h, w]))
            radius = jax.random.uniform(
                kr, (), minval=params.damage_radius[0], maxval=params.damage_radius[1]
            )
            hole = physics.circle_mask(self.grid, centre, radius) & (i < params.damage_holes)
            keep = keep & ~hole
        keep = keep | ~hit
        return cells * keep[..., None].astype(cells.dtype)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None, levels=None) -> dict:
        """Observations ``{level: (H_l, W_l, O_l)}`` of the acting levels (or of ``levels``)."""
        del key
        params = self.default_params if params is None else params
        levels = self.agent_levels if levels is None else levels
        extra = self.task.extra_obs(state, params)
        obs = {}
        cells = state.grids["cell"]
        for lvl in levels:
            if lvl == "cell":
                parts = [
                    physics.perceive(cells, self.kernels)
                    if self.cell_obs == "perception"
                    else physics.neighbourhood(cells)
                ]
            else:
                parent = state.grids["parent"]
                own = (
                    physics.perceive(parent, self.parent_kernels)
                    if self.parent_obs == "perception"
                    else physics.neighbourhood(parent)
                )
                parts = [own, physics.sensor(cells, self.cluster)]
            if lvl in extra:
                x = jnp.asarray(extra[lvl], jnp.float32)  # (D,) is broadcast over the level's grid
                parts.append(jnp.broadcast_to(x, (*self.grid_shape(lvl), x.shape[-1])))
            obs[lvl] = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        return obs

    def is_terminated(self, state: EnvState, params: EnvParams) -> Array:
        return jnp.asarray(self.task.is_terminated(state, params), bool)

    # ------------------------------------------------------------------ losses, views, spaces
    def loss(self, state: EnvState, params: EnvParams) -> Array:
        """The task's differentiable loss of one world: mean per-cell error (gradient trainer)."""
        return jnp.mean(self.task.error_map(state, params))

    def world_state(self, state: EnvState, params: EnvParams) -> Array:
        """Compact global view for centralised critics, ``(H/k, W/k, C + C_p + visible + 1)``.

        The children and the target pooled over clusters (``k = cluster``; for a single level
        ``k`` = cluster if it divides the grid, else 1), the coordinator states, and the
        elapsed fraction of the episode as a constant plane.
        """
        k = self.cluster if all(g % self.cluster == 0 for g in self.grid) else 1
        parts = [physics.sensor(state.grids["cell"], k)]
        if self.has_parent:
            parts.append(state.grids["parent"])
        parts.append(physics.sensor(self.task.current_target(state, params), k))
        frac = state.time / params.max_steps_in_episode
        parts.append(jnp.broadcast_to(jnp.asarray(frac, jnp.float32), parts[0].shape[:2] + (1,)))
        return jnp.concatenate(parts, axis=-1)

    def action_space(self, params: EnvParams | None = None) -> LevelDict:
        """``Dict`` of ``Box(-1, 1, (H_l, W_l, A_l))`` per acting level (nominal range)."""
        return LevelDict(
            {
                lvl: spaces.Box(-1.0, 1.0, (*self.grid_shape(lvl), self.action_dim(lvl)), jnp.float32)
                for lvl in self.agent_levels
            }
        )

    def observation_space(self, params: EnvParams | None = None) -> LevelDict:
        """``Dict`` of unbounded ``Box((H_l, W_l, O_l))`` per acting level."""
        return LevelDict(
            {
                lvl: spaces.Box(-jnp.inf, jnp.inf, (*self.grid_shape(lvl), self.obs_dim(lvl)), jnp.float32)
                for lvl in self.agent_levels
            }
        )

    def state_space(self, params: EnvParams | None = None) -> LevelDict:
        return LevelDict(
            {
                lvl: spaces.Box(
                    -jnp.inf, jnp.inf, (*self.grid_shape(lvl), self.state_channels(lvl)), jnp.float32
                )
                for lvl in self.levels
            }
        )

    def render(self, state: EnvState, params: EnvParams | None = None, **kwargs: Any) -> Array:
        """uint8 RGB frame ``(H, W, 3)`` of one world, jittable; what gymnax's Gym bridge
        (``GymnaxToGymWrapper.render``) calls. ``kwargs``: ``scale``, ``parent_grid``, ``target``
        (:func:`hnca_env.render.render`); wrapper states (``.env_state``) are unwrapped."""
        from hnca_env.render import render_frame  # render imports this module

        return render_frame(self, state, params, **kwargs)

    def __getstate__(self) -> dict:
        # the bound reward is a closure (rewards.bind) that pickle cannot store: rebind on load
        state = {k: v for k, v in self.__dict__.items() if k != "_reward_fn"}
        state["_checked_params"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reward_fn = rewards_lib.bind(self.reward, self)

    def __repr__(self) -> str:
        return (
            f"HNCAEnv(name={self._name!r}, grid={self.grid}, channels={self.channels}, "
            f"levels={self.levels}, agent_levels={self.agent_levels}, task={self.task!r})"
        )


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _check_grid(grid: Any) -> tuple[int, int]:
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
        raise ValueError(f"grid must be (H, W), got {grid!r}")
    h, w = (_positive_int("grid height/width", g) for g in grid)
    if h < 3 or w < 3:
        raise ValueError(f"grid must be at least 3x3, got {h}x{w}")
    return (h, w)


def _check_obs_mode(name: str, mode: str) -> str:
    if mode not in OBS_MODES:
        raise ValueError(f"{name} must be one of {OBS_MODES}, got {mode!r}")
    return mode
