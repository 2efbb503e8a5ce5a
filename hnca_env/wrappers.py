"""Views of an :class:`~hnca_env.HNCAEnv` for code written against other conventions.

- :class:`TeamRewardView` — one flattened agent with the team reward: gymnax's own
  ``LogWrapper`` and PureJaxRL-style loops run on it unchanged.
- :class:`LegacyView` — the old gymnax 5-tuple ``(obs, state, reward, done, info)``.
- :class:`LevelLogWrapper` — episode returns and lengths for per-level array rewards.
- :class:`DictAgentView` — JaxMARL-style dicts keyed by agent name, for small grids only
  (dict-per-agent keying is slow to compile and run at thousands of agents).

All views are pure and jittable; they wrap, they never copy the physics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

Array = jax.Array


class TeamRewardView(GymnaxWrapper):
    """Single-agent view: flat observation and action vectors, scalar team reward.

    Observation: the acting levels' observations raveled and concatenated (level order of
    ``env.agent_levels``). Action: one flat vector split back into the levels' arrays.
    Reward: ``info["team_reward"]`` of the first acting level (the mean of its agents'
    rewards; with the library rewards the coordinators' team reward is the same number).
    ``step`` returns gymnax 1.0's ``(obs, state, reward, terminated, truncated, info)``.
    """

    def __init__(self, env):
        super().__init__(env)
        self._shapes = {lvl: (*env.grid_shape(lvl), env.action_dim(lvl)) for lvl in env.agent_levels}
        self._sizes = {lvl: int(np.prod(s)) for lvl, s in self._shapes.items()}
        self._team_level = env.agent_levels[0]

    def flatten_obs(self, obs: dict) -> Array:
        return jnp.concatenate([jnp.ravel(obs[lvl]) for lvl in self._env.agent_levels])

    def unflatten_action(self, action: Array) -> dict:
        action = jnp.asarray(action)
        total = sum(self._sizes.values())
        if action.shape != (total,):
            raise ValueError(f"flat action has shape {action.shape}, expected ({total},)")
        out, i = {}, 0
        for lvl in self._env.agent_levels:
            n = self._sizes[lvl]
            out[lvl] = action[i : i + n].reshape(self._shapes[lvl])
            i += n
        return out

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self.flatten_obs(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, self.unflatten_action(action), params
        )
        info = dict(info)
        info["level_reward"] = reward
        if "final_observation" in info:
            info["final_observation"] = self.flatten_obs(info["final_observation"])
        team = info["team_reward"][self._team_level]
        return self.flatten_obs(obs), state, team, terminated, truncated, info

    def observation_space(self, params=None) -> spaces.Box:
        n = sum(int(np.prod(b.shape)) for b in self._env.observation_space(params).spaces.values())
        return spaces.Box(-jnp.inf, jnp.inf, (n,), jnp.float32)

    def action_space(self, params=None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (sum(self._sizes.values()),), jnp.float32)


class LegacyView(GymnaxWrapper):
    """Old gymnax step signature: ``(obs, state, reward, done, info)``, done = term or trunc."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


@struct.dataclass
class LevelLogState:
    env_state: Any
    episode_returns: dict
    episode_length: Array
    returned_episode_returns: dict
    returned_episode_length: Array


class LevelLogWrapper(GymnaxWrapper):
    """Episode statistics for per-level rewards.

    ``info["returned_episode_returns"][level]`` is the last finished episode's return of the
    level's mean agent (sum over steps of ``team_reward[level]``);
    ``info["returned_episode_lengths"]`` its length; ``info["returned_episode"]`` marks the
    step that finished one.
    """

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        zeros = {lvl: jnp.zeros((), jnp.float32) for lvl in self._env.agent_levels}
        z = jnp.zeros((), jnp.int32)
        return obs, LevelLogState(env_state, zeros, z, zeros, z)

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        ret = {lvl: state.episode_returns[lvl] + info["team_reward"][lvl] for lvl in reward}
        length = state.episode_length + 1
        new = LevelLogState(
            env_state=env_state,
            episode_returns={k: jnp.where(done, 0.0, v) for k, v in ret.items()},
            episode_length=jnp.where(done, 0, length),
            returned_episode_returns={
                k: jnp.where(done, v, state.returned_episode_returns[k]) for k, v in ret.items()
            },
            returned_episode_length=jnp.where(done, length, state.returned_episode_length),
        )
        info = {
            **info,
            "returned_episode_returns": new.returned_episode_returns,
            "returned_episode_lengths": new.returned_episode_length,
            "returned_episode": done,
        }
        return obs, new, reward, terminated, truncated, info


class DictAgentView(GymnaxWrapper):
    """JaxMARL-style view: ``{agent_name: array}`` per agent, ``dones["__all__"]``.

    Agents are named ``"cell_{y}_{x}"`` and ``"parent_{y}_{x}"``. Meant for small grids:
    building a dict of thousands of entries makes tracing and compiling slow, so more than
    ``max_agents`` agents raise an error. ``step`` returns JaxMARL's
    ``(obs, state, rewards, dones, infos)``.
    """

    def __init__(self, env, max_agents: int = 1024):
        super().__init__(env)
        self.agents = [
            f"{lvl}_{y}_{x}"
            for lvl in env.agent_levels
            for y in range(env.grid_shape(lvl)[0])
            for x in range(env.grid_shape(lvl)[1])
        ]
        if len(self.agents) > max_agents:
            raise ValueError(
                f"DictAgentView of {len(self.agents)} agents exceeds max_agents={max_agents}; "
                "use the level-keyed array API for large grids (or raise max_agents)"
            )
        self.num_agents = len(self.agents)

    def _split(self, arrays: dict) -> dict:
        out = {}
        for lvl in self._env.agent_levels:
            a = arrays[lvl]
            h, w = self._env.grid_shape(lvl)
            for y in range(h):
                for x in range(w):
                    out[f"{lvl}_{y}_{x}"] = a[y, x]
        return out

    def _join(self, per_agent: dict) -> dict:
        missing = set(self.agents) - set(per_agent)
        if missing:
            raise ValueError(f"actions missing for {len(missing)} agent(s), e.g. {sorted(missing)[:3]}")
        out = {}
        for lvl in self._env.agent_levels:
            h, w = self._env.grid_shape(lvl)
            rows = [jnp.stack([per_agent[f"{lvl}_{y}_{x}"] for x in range(w)]) for y in range(h)]
            out[lvl] = jnp.stack(rows)
        return out

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self._split(obs), state

    def step(self, key, state, actions, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, self._join(actions), params
        )
        done = jnp.logical_or(terminated, truncated)
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        return self._split(obs), state, self._split(reward), dones, info

    def observation_spaces(self, params=None) -> dict:
        spaces_ = self._env.observation_space(params).spaces
        return {a: spaces.Box(-jnp.inf, jnp.inf, spaces_[a.split("_")[0]].shape[-1:]) for a in self.agents}

    def action_spaces(self, params=None) -> dict:
        spaces_ = self._env.action_space(params).spaces
        return {a: spaces.Box(-1.0, 1.0, spaces_[a.split("_")[0]].shape[-1:]) for a in self.agents}
