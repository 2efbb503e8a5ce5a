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

from hnca_env import levels as levels_lib
from hnca_env import params as params_lib
from hnca_env import physics, validate
from hnca_env import rewards as rewards_lib
from hnca_env.params import (  # noqa: F401 (re-exported: hnca_env.env was their home)
    SEED_NOISE,
    SEED_SINGLE_CELL,
    SEED_STATE,
    SEEDS,
    EnvParams,
)
from hnca_env.tasks.base import Task
from hnca_env.tasks.base import is_concrete as _is_concrete

Array = jax.Array

OBS_MODES = validate.OBS_MODES  # observation modes by name
#: How each level is linked to the one below: ``intact`` (the clusters H-NCA defines),
#: ``no-broadcast`` (the coordinators sense, but their broadcast never reaches the level below:
#: the ablation of the coordination) and ``rewired`` (each coordinator's children are a fixed
#: random set of the level below's cells, the same for its sensor, broadcast and reward: the
#: control of Evolving H-NCA, Bielawski et al. 2024).
COUPLINGS = ("intact", "no-broadcast", "rewired")

@struct.dataclass
class EnvState(environment.EnvState):
    """One world: ``grids[level]`` is that level's ``(H_l, W_l, C_l)`` state; ``time`` counts
    steps since reset (child-only steps included); ``task`` is the task's own state (a goal id,
    a digit label...; ``None`` for pattern tasks)."""

    grids: dict = None
    task: Any = None


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
      multiplexer: ``"adder"``, ``"scaled"``, ``"replace"`` or a :class:`~hnca_env.levels.Multiplexer`.
      reward: reward name, ``{name: weight}``, Reward object or function (see rewards).
      fixed_rules: ``{level: (rule_fn, rule_params)}``; ``rule_fn(rule_params, obs, key)``
        returns that level's action and the level stops being an agent group.
      auto_reset: reset finished worlds inside ``step`` (gymnax behaviour).
      clamp: clip states to ``[clamp_min, clamp_max]`` after each step.
      max_damage_holes: static upper bound of ``params.damage_holes``.
      max_damage_events: length of ``params.damage_times``; 0 (default) compiles no damage.
      default_overrides: numbers for ``default_params`` (e.g. ``tau_c=100``).
      coupling: :data:`COUPLINGS`: the links as H-NCA defines them (``intact``), or an ablation
        of them (``no-broadcast``, or ``rewired`` with the permutation drawn from
        ``coupling_seed``); needs a coordinator level.
      levels: the whole hierarchy as data, finest first (:class:`hnca_env.levels.Level`, any
        depth); replaces ``channels``, ``perception``, ``sobel_scale``, ``cell_obs``,
        ``parent``, ``cluster``, ``parent_channels``, ``signals`` and ``parent_*``, which build
        a one- or two-level hierarchy (``"cell"``, ``"parent"``). ``multiplexer`` may be a name
        or a :class:`hnca_env.levels.Multiplexer`; an observation mode a name or an
        :class:`hnca_env.levels.Observer`.
    """

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
        levels: Any = None,
        coupling: str = "intact",
        coupling_seed: int = 0,
    ):
        if task is not None and not isinstance(task, Task):
            raise TypeError(
                f"task must be a hnca_env.Task (e.g. Task('heart', visible=4)), got {type(task).__name__} {task!r}"
            )
        self.task = task if task is not None else Task()
        self.grid = validate.check_grid(grid)
        self.visible = self.task.visible
        if levels is None:
            levels = levels_lib.two_level_hierarchy(
                channels, perception, sobel_scale, cell_obs, parent, cluster, parent_channels,
                signals, parent_perception, parent_sobel_scale, parent_obs,
            )  # fmt: skip
        elif parent:
            raise ValueError("give either levels= or parent=True (the two-level arguments), not both")
        self.level_specs = levels_lib.check_hierarchy(levels, self.grid, self.visible)
        self.levels = tuple(lv.name for lv in self.level_specs)
        self._spec = {lv.name: lv for lv in self.level_specs}
        self._index = {lv.name: i for i, lv in enumerate(self.level_specs)}
        self._kernels = {lv.name: lv.kernels for lv in self.level_specs}
        self._shapes, self._scales = {}, {}
        h, w, k = *self.grid, 1
        for lv in self.level_specs:
            k *= lv.cluster if self._index[lv.name] else 1
            self._shapes[lv.name], self._scales[lv.name] = (h // k, w // k), k
        self.mux = levels_lib.multiplexer(multiplexer)
        self.multiplexer = self.mux.name
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        if coupling != "intact" and len(self.levels) < 2:
            raise ValueError(f"coupling={coupling!r} ablates the links between levels: this env has one level")
        if isinstance(coupling_seed, bool) or not isinstance(coupling_seed, (int, np.integer)) or coupling_seed < 0:
            raise ValueError(f"coupling_seed must be an integer >= 0, got {coupling_seed!r}")
        self.coupling = coupling
        self._rewiring = {}  # link i -> (perm, inverse) of the flat cells of level i - 1
        rng = np.random.default_rng(int(coupling_seed))
        for i in range(1, len(self.levels)) if coupling == "rewired" else ():
            perm = rng.permutation(int(np.prod(self._shapes[self.levels[i - 1]])))
            self._rewiring[i] = (perm, np.argsort(perm))
        if self.mux.scaled and len(self.levels) > 2:
            raise ValueError(
                f"multiplexer {self.multiplexer!r} reads EnvParams.actuator_scale/sensor_scale, which "
                "belong to the first link only: with more than two levels use 'adder' or your own Multiplexer"
            )
        # the two-level names, kept as attributes (level 0 and the first coordinator level)
        base = self.level_specs[0]
        self.channels, self.perception, self.kernels = base.channels, base.perception, base.kernels
        self.cell_obs = base.observer.name
        self.alive = bool(alive)
        if self.alive and self.visible != 4:
            raise ValueError("alive masking needs an alpha channel: use an RGBA task (visible=4)")
        self.has_parent = len(self.levels) > 1
        if self.has_parent:
            first = self.level_specs[1]
            self.cluster, self.parent_channels, self.signals = first.cluster, first.channels, first.signals
            self.parent_kernels, self.parent_perception = first.kernels, first.perception
            self.parent_obs = first.observer.name
        else:
            self.cluster, self.parent_channels, self.signals = validate.positive_int("cluster", cluster), 0, 0

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
        self.max_damage_holes = validate.positive_int("max_damage_holes", max_damage_holes)
        if (
            isinstance(max_damage_events, bool)
            or not isinstance(max_damage_events, int)
            or max_damage_events < 0
        ):
            raise ValueError(f"max_damage_events must be an integer >= 0, got {max_damage_events!r}")
        self.max_damage_events = max_damage_events
        self._name = name
        self._default_params = params_lib.default_params(self, dict(default_overrides or {}))
        self._checked_params = None  # the last params object validated by reset/step
        self.check_params(self._default_params)

    # ------------------------------------------------------------------ structure helpers
    @property
    def name(self) -> str:
        return self._name

    def level(self, level: str) -> levels_lib.Level:
        """The :class:`~hnca_env.levels.Level` spec of a level name."""
        if level not in self._spec:
            raise ValueError(f"unknown level {level!r}; levels: {self.levels}")
        return self._spec[level]

    def level_below(self, level: str) -> str | None:
        """The name of the level a level coordinates (``None`` for level 0)."""
        i = self._index[self.level(level).name]
        return self.levels[i - 1] if i else None

    def grid_shape(self, level: str) -> tuple[int, int]:
        """Agent-grid shape ``(H_l, W_l)`` of a level."""
        self.level(level)
        return self._shapes[level]

    def level_scale(self, level: str) -> int:
        """Children per side covered by one agent of a level (1 for level 0)."""
        self.level(level)
        return self._scales[level]

    def state_channels(self, level: str) -> int:
        return self.level(level).channels

    def action_dim(self, level: str) -> int:
        """Action channels per agent of a level: its update, then its broadcast."""
        spec = self.level(level)
        return spec.channels + spec.signals

    def obs_dim(self, level: str) -> int:
        """Observation channels per agent of a level: its own grid seen by its observer, the
        sensed cluster of the level below (coordinators), then task inputs."""
        spec = self.level(level)
        extra = self.task.extra_obs_dims().get(level, 0)
        own = spec.observer.dim(spec.channels, len(self._kernels[level]))
        below = self.level_below(level)
        return own + (self.state_channels(below) if below is not None else 0) + extra

    @property
    def num_actions(self) -> int:
        """Action channels of one cell agent (gymnax's continuous-env convention)."""
        return self.action_dim("cell")

    # ------------------------------------------------------------------ params
    def make_params(self, **overrides: Any) -> EnvParams:
        """``default_params`` with ``overrides`` applied and checked.

        Accepts conveniences: ``fire_rate=0.5`` (all levels) or ``{level: p}``, ``seed="noise"``,
        ``target="heart"`` (a shape name, an array or a PNG path), ``damage_times=[20]``.
        """
        params = params_lib.apply_overrides(self, self.default_params, overrides)
        self.check_params(params)
        return params

    @property
    def default_params(self) -> EnvParams:
        return self._default_params

    def check_params(self, params: EnvParams) -> None:
        """Raise ``ValueError`` naming the first invalid number of ``params``
        (:func:`hnca_env.params.check_params`). Shapes are always checked; values only where
        they are concrete (not under ``jit``)."""
        params_lib.check_params(self, params)

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
        grids = {self.levels[0]: cells}
        for i, lvl in enumerate(self.levels[1:], 1):
            start = self._first_state(i, grids[self.levels[i - 1]])
            grids[lvl] = jnp.where(self.start_time(lvl, params) == 0, start, jnp.zeros_like(start))
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

        base = self.levels[0]
        cells = state.grids[base]
        m = physics.fire_mask(k_cell, self.grid, params.fire_rate[base])
        cells = physics.stochastic_update(
            cells, action[base], m, alive=self.alive, alive_threshold=params.alive_threshold
        )
        grids = {base: cells}
        t_next = state.time + 1
        for i in range(1, len(self.levels)):  # bottom-up: each link's update, actuator, sensor
            k_link = k_parent if i == 1 else jax.random.fold_in(k_parent, i)
            grids = self._link_step(i, k_link, state, grids, action[self.levels[i]], t_next, params)
        if self.max_damage_events:
            grids[base] = self._damage(k_damage, grids[base], t_next, params)
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

    def start_time(self, level: str, params: EnvParams) -> Array:
        """The step at which a level starts: 0 for level 0, ``tau_c`` for level 1, then each
        level ``start_delay[level]`` steps after the level below it."""
        i = self._index[self.level(level).name]
        if i == 0:
            return jnp.zeros((), jnp.int32)
        t = params.tau_c
        for lvl in self.levels[2 : i + 1]:
            t = t + params.start_delay[lvl]
        return t

    def _sense(self, i: int, lower: Array) -> Array:
        """Link ``i``'s sensor: each agent of level ``i`` averages its cluster of level ``i-1``
        (under ``rewired``, its fixed random set of that level's cells)."""
        if i in self._rewiring:
            h, w, c = lower.shape
            lower = lower.reshape(h * w, c)[self._rewiring[i][0]].reshape(h, w, c)
        return physics.sensor(lower, self.level_specs[i].cluster)

    def _broadcast(self, i: int, signal: Array) -> Array:
        """Link ``i``'s actuator signal on the grid of level ``i-1``: each agent's signal on the
        cells it covers (none under ``no-broadcast``; its rewired cells under ``rewired``)."""
        up = physics.upsample(signal, self.level_specs[i].cluster)
        if self.coupling == "no-broadcast":
            return jnp.zeros_like(up)
        if i in self._rewiring:
            h, w, c = up.shape
            up = up.reshape(h * w, c)[self._rewiring[i][1]].reshape(h, w, c)
        return up

    def _first_state(self, i: int, lower: Array) -> Array:
        """First state of level ``i``: the sensed level below in its first channels, zeros after."""
        spec = self.level_specs[i]
        sensed = self._sense(i, lower)
        pad = spec.channels - self.level_specs[i - 1].channels
        return jnp.pad(sensed, ((0, 0), (0, 0), (0, pad))) if pad else sensed

    def _first_parent_state(self, cells: Array) -> Array:
        """First coordinator state: the sensor output in the first C channels, zeros after."""
        return self._first_state(1, cells)

    def _link_step(self, i, key, state, grids, action, t_next, params):
        """Level ``i``'s update, actuator and sensor, once it runs; ``grids`` holds the levels
        below it already stepped.

        Order within a coupled step: the level below's update (done before), this level's
        update, its actuator (the broadcast into the last ``signals`` channels of the level
        below), its sensor (the cluster average of the level below, after the actuator, mixed
        into this level's first channels). The stored state is thus the post-communication
        state the next observation is made of.
        """
        spec, low = self.level_specs[i], self.level_specs[i - 1]
        name, lower_name = spec.name, low.name
        lower, upper = grids[lower_name], state.grids[name]
        start = self.start_time(name, params)
        coupled = state.time >= start
        delta, signal = action[..., : spec.channels], action[..., spec.channels :]
        m = physics.fire_mask(key, self.grid_shape(name), params.fire_rate[name])
        upper_upd = upper + delta * m
        a_scale = params.actuator_scale if self.mux.scaled else None
        s0 = low.channels - spec.signals
        mixed = self.mux(lower[..., s0 : s0 + spec.signals], self._broadcast(i, signal), a_scale)
        lower_act = jnp.concatenate([lower[..., :s0], mixed, lower[..., s0 + spec.signals :]], axis=-1)
        sensed = self._sense(i, lower_act)
        s_scale = params.sensor_scale if self.mux.scaled else None
        head = self.mux(upper_upd[..., : low.channels], sensed, s_scale)
        upper_coupled = jnp.concatenate([head, upper_upd[..., low.channels :]], axis=-1)
        starts_now = t_next == start
        upper_next = jnp.where(
            coupled,
            upper_coupled,
            jnp.where(starts_now, self._first_state(i, lower), jnp.zeros_like(upper)),
        )
        return {**grids, lower_name: jnp.where(coupled, lower_act, lower), name: upper_next}

    def _damage(self, key, cells, t_next, params):
        """Zero ``damage_holes`` random discs of the children when ``t_next`` is a damage time."""
        hit = jnp.any(params.damage_times == t_next)
        h, w = self.grid
        keep = jnp.ones((h, w), bool)
        for i, k in enumerate(jax.random.split(key, self.max_damage_holes)):
            hole = physics.random_hole(k, self.grid, (params.damage_radius[0], params.damage_radius[1]))
            keep = keep & ~(hole & (i < params.damage_holes))
        return physics.cut(cells, ~keep & hit)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None, levels=None) -> dict:
        """Observations ``{level: (H_l, W_l, O_l)}`` of the acting levels (or of ``levels``)."""
        del key
        params = self.default_params if params is None else params
        levels = self.agent_levels if levels is None else levels
        extra = self.task.extra_obs(state, params)
        obs = {}
        for lvl in levels:
            spec, below = self.level(lvl), self.level_below(lvl)
            parts = [spec.observer(state.grids[lvl], self._kernels[lvl])]
            if below is not None:
                parts.append(self._sense(self._index[lvl], state.grids[below]))
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
        """Compact global view for centralised critics, ``(H/k, W/k, C_0 + ... + C_top + visible + 1)``.

        The children and the target pooled over clusters (``k = cluster``; for a single level
        ``k`` = cluster if it divides the grid, else 1), the coordinator states (levels above
        the first nearest-upsampled to its grid), and the elapsed fraction of the episode as a
        constant plane.
        """
        k = self.cluster if all(g % self.cluster == 0 for g in self.grid) else 1
        parts = [physics.sensor(state.grids[self.levels[0]], k)]
        for lvl in self.levels[1:]:  # every coordinator level at the first one's resolution
            factor = self.level_scale(lvl) // k
            parts.append(state.grids[lvl] if factor == 1 else physics.upsample(state.grids[lvl], factor))
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
