"""JaxMARL view: an :class:`~hnca_env.HNCAEnv` as a ``jaxmarl`` ``MultiAgentEnv``.

Needs the ``[marl]`` extra (``pip install "hnca-env[marl]"``, i.e. ``jaxmarl``). A dependency
rather than duck typing because JaxMARL's own API test (``tests/test_envs_implement_base_api.py``)
asks ``isinstance(env, MultiAgentEnv)`` and ``isinstance(space, jaxmarl...spaces.Space)``;
jaxmarl's core install is small (no brax, no GPU packages; docs/interop.md).

Every agent of every acting level is one JaxMARL agent, named ``"{level}_{y}_{x}"``.
Cells and coordinators have different observation and action sizes; JaxMARL's IPPO builds one
network for all agents from ``action_space(agents[0])``. So by default (``pad=True``) every
agent gets the same sizes: observations zero-padded to the largest level's, followed by a
one-hot of the agent's level (``level_id``); actions of the largest level's size, of which a
level reads its first ``A_l`` channels (``get_avail_actions`` marks those). ``pad=False``
keeps each level's exact sizes, for per-class code (``agent_classes``).

Built for small grids: a dict entry per agent is slow to trace at thousands of agents
(benchmarks/dict_view.py), so more than ``max_agents`` raise. For large grids use the
level-keyed array API (``agents.ppo``'s IPPO shares one rule per level the same way).

Example (the one line that replaces ``jaxmarl.make(...)`` in a JaxMARL baseline)::

    from hnca_env import marl
    env = marl.make("Grow-v0", grid=(8, 8), max_steps_in_episode=32)
    obs, state = env.reset(key)                       # {"cell_0_0": (48,), ...}
    obs, state, rewards, dones, infos = env.step(key, state, actions)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

try:
    from jaxmarl.environments import spaces as marl_spaces
    from jaxmarl.environments.multi_agent_env import MultiAgentEnv
except ImportError as e:  # pragma: no cover - depends on the extra
    raise ImportError('hnca_env.marl needs jaxmarl: pip install "hnca-env[marl]"') from e

import hnca_env
from hnca_env.env import EnvParams, EnvState, HNCAEnv
from hnca_env.wrappers import _pickled_env, _unpickled_env

Array = jax.Array


class JaxMARLView(MultiAgentEnv):
    """A JaxMARL ``MultiAgentEnv`` over one :class:`HNCAEnv` world.

    Observation of agent ``"{level}_{y}_{x}"``: that agent's row of ``obs[level]``,
    ``(O_l,)``, padded (see the module docstring). Action: ``(A,)``, nominal range
    ``[-1, 1]``. Reward: the env's per-agent reward (``reward[level][y, x]``). Done: the
    world's ``terminated | truncated``, the same for every agent and ``"__all__"``; ``step``
    then auto-resets (to ``reset_state`` if given, as JaxMARL's ``step`` does). Infos:
    ``team_reward``, shape ``(num_agents,)`` (each agent's level's mean reward), so JaxMARL's
    ``LogWrapper`` and its baselines' ``info.reshape(NUM_ACTORS)`` accept them.

    Args:
      env: the :class:`HNCAEnv`.
      params: the world's numbers, fixed for the view (JaxMARL envs keep theirs inside);
        default ``env.default_params`` (``hnca_env.make``'s overrides included).
      pad: same observation / action sizes for every agent (JaxMARL's IPPO needs it when
        levels differ); ``False`` keeps each level's own.
      level_id: with ``pad`` and several acting levels, append a one-hot of the level to
        every observation so a shared network can tell cells from coordinators.
      max_agents: refuse more agents than this (tracing cost grows with the dict).
    """

    def __init__(
        self,
        env: HNCAEnv,
        params: EnvParams | None = None,
        *,
        pad: bool = True,
        level_id: bool = True,
        max_agents: int = 1024,
    ):
        if not isinstance(env, HNCAEnv):
            raise TypeError(f"JaxMARLView wraps an HNCAEnv, got {type(env).__name__}")
        self.env = env
        self.params = env.default_params if params is None else params
        env.check_params(self.params)
        self.levels = tuple(env.agent_levels)
        self._grid = {lvl: env.grid_shape(lvl) for lvl in self.levels}
        self._names = {
            lvl: [f"{lvl}_{y}_{x}" for y in range(h) for x in range(w)] for lvl, (h, w) in self._grid.items()
        }
        agents = [a for lvl in self.levels for a in self._names[lvl]]
        if len(agents) > max_agents:
            raise ValueError(
                f"JaxMARLView of {len(agents)} agents exceeds max_agents={max_agents}; use a "
                "smaller grid or the level-keyed array API (agents.ppo) for large ones"
            )
        super().__init__(num_agents=len(agents))
        self.agents = agents
        self.pad = bool(pad)
        self.level_id = bool(level_id) and self.pad and len(self.levels) > 1
        self._obs_own = {lvl: env.obs_dim(lvl) for lvl in self.levels}
        self._act_own = {lvl: env.action_dim(lvl) for lvl in self.levels}
        n_id = len(self.levels) if self.level_id else 0
        max_o, max_a = max(self._obs_own.values()), max(self._act_own.values())
        self._obs_dim = {lvl: (max_o + n_id if self.pad else o) for lvl, o in self._obs_own.items()}
        self._act_dim = {lvl: (max_a if self.pad else a) for lvl, a in self._act_own.items()}
        self.observation_spaces = {
            a: marl_spaces.Box(-jnp.inf, jnp.inf, (self._obs_dim[lvl],), jnp.float32)
            for lvl in self.levels
            for a in self._names[lvl]
        }
        self.action_spaces = {
            a: marl_spaces.Box(-1.0, 1.0, (self._act_dim[lvl],), jnp.float32)
            for lvl in self.levels
            for a in self._names[lvl]
        }

    # ------------------------------------------------------------------ JaxMARL members
    @property
    def name(self) -> str:
        return self.env.name

    @property
    def agent_classes(self) -> dict[str, list[str]]:
        """``{level: [agent names]}``: the agents that share a level's sizes and role."""
        return {lvl: list(self._names[lvl]) for lvl in self.levels}

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: Array) -> tuple[dict, EnvState]:
        obs, state = self.env.reset_env(key, self.params)
        return self._split_obs(obs), state

    @partial(jax.jit, static_argnums=(0,))
    def step(
        self, key: Array, state: EnvState, actions: dict, reset_state: EnvState | None = None
    ) -> tuple[dict, EnvState, dict, dict, dict]:
        """One transition, then a reset where the world is done (to ``reset_state`` if given)."""
        key_step, key_reset = jax.random.split(key)
        next_state, reward, done, infos = self._transition(key_step, state, actions)
        state_re = self.env.initial_state(key_reset, self.params) if reset_state is None else reset_state
        state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_re, next_state)
        # one observation, of the selected state (as HNCAEnv.step does)
        obs = self.get_obs(state)
        return obs, state, reward, self._dones(done), infos

    def step_env(self, key: Array, state: EnvState, actions: dict) -> tuple[dict, EnvState, dict, dict, dict]:
        """One transition without reset."""
        next_state, reward, done, infos = self._transition(key, state, actions)
        return self.get_obs(next_state), next_state, reward, self._dones(done), infos

    def get_obs(self, state: EnvState) -> dict:
        """``{agent: (O,)}`` of a state."""
        return self._split_obs(self.env.get_obs(state, self.params))

    @partial(jax.jit, static_argnums=(0,))
    def get_avail_actions(self, state: EnvState) -> dict:
        """``{agent: bool (A,)}``: the action channels the agent's level reads (all of them
        unless ``pad`` made the action longer than the level's own)."""
        del state
        return {
            a: jnp.arange(self._act_dim[lvl]) < self._act_own[lvl] for lvl in self.levels for a in self._names[lvl]
        }

    def render(self, state: EnvState, params: EnvParams | None = None, **kwargs: Any) -> Array:
        """uint8 RGB frame of the world (:func:`hnca_env.render.render_frame`)."""
        from hnca_env.render import render_frame

        return render_frame(self.env, state, self.params if params is None else params, **kwargs)

    # ------------------------------------------------------------------ agents <-> arrays
    def _transition(self, key, state, actions):
        action = self._join_actions(actions)
        next_state, reward, terminated, info = self.env.transition(key, state, action, self.params)
        done = jnp.logical_or(terminated, self.env.is_truncated(next_state, self.params))
        rewards = {}
        for lvl in self.levels:
            flat = jnp.ravel(reward[lvl])
            rewards.update({a: flat[i] for i, a in enumerate(self._names[lvl])})
        team = jnp.concatenate(
            [jnp.full((len(self._names[lvl]),), info["team_reward"][lvl]) for lvl in self.levels]
        )
        return next_state, rewards, done, {"team_reward": team}

    def _dones(self, done: Array) -> dict:
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        return dones

    def _split_obs(self, obs: dict) -> dict:
        out = {}
        for i, lvl in enumerate(self.levels):
            o = obs[lvl].reshape(-1, self._obs_own[lvl])
            if self.pad:
                n_id = len(self.levels) if self.level_id else 0
                o = jnp.pad(o, ((0, 0), (0, self._obs_dim[lvl] - n_id - self._obs_own[lvl])))
                if n_id:
                    one_hot = jnp.broadcast_to(jnp.eye(n_id, dtype=o.dtype)[i], (o.shape[0], n_id))
                    o = jnp.concatenate([o, one_hot], axis=-1)
            out.update({a: o[j] for j, a in enumerate(self._names[lvl])})
        return out

    def _join_actions(self, actions: dict) -> dict:
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions missing for {len(missing)} agent(s), e.g. {missing[:3]}")
        out = {}
        for lvl in self.levels:
            want = (self._act_dim[lvl],)
            for a in self._names[lvl]:
                if jnp.shape(actions[a]) != want:
                    raise ValueError(f"action of {a!r} has shape {jnp.shape(actions[a])}, expected {want}")
            stacked = jnp.stack([jnp.asarray(actions[a], jnp.float32) for a in self._names[lvl]])
            out[lvl] = stacked[:, : self._act_own[lvl]].reshape(*self._grid[lvl], self._act_own[lvl])
        return self.env.check_action(out)

    # ------------------------------------------------------------------ copy / pickle
    def __getstate__(self) -> dict:
        return {k: _pickled_env(v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: _unpickled_env(v) for k, v in state.items()})


def make(
    env_id: str, *, pad: bool = True, level_id: bool = True, max_agents: int = 1024, **overrides: Any
) -> JaxMARLView:
    """``hnca_env.make(env_id, **overrides)`` as a :class:`JaxMARLView` (``jaxmarl.make``'s shape)."""
    env, params = hnca_env.make(env_id, **overrides)
    return JaxMARLView(env, params, pad=pad, level_id=level_id, max_agents=max_agents)
