"""Views of an :class:`~hnca_env.HNCAEnv` for code written against other conventions.

Which view each well-known training loop needs: docs/rl.md ("Other people's loops").

- :class:`SingleAgentView` — one flattened agent, the team reward, the old gymnax 5-tuple
  ``(obs, state, reward, done, info)``: what PureJaxRL's and rejax's PPO call.
- :class:`TeamRewardView` — the same agent with gymnax 1.0's 6-tuple step: gymnax's own
  ``LogWrapper`` / ``FlattenObservationWrapper`` and gymnax 1.0 loops run on it.
- :class:`LegacyView` — the old gymnax 5-tuple over any 6-tuple env or view.
- :class:`LevelLogWrapper` — episode returns and lengths for per-level array rewards.
- :class:`DictAgentView` — dicts keyed by agent name, for small grids only. For JaxMARL's
  own code use :class:`hnca_env.marl.JaxMARLView` (the ``[marl]`` extra).

All views are pure and jittable; they wrap, they never copy the physics. They survive
``copy.deepcopy`` and ``pickle`` (rejax and gymnax's Gym bridge deep-copy their env) and
render like the env (``view.render(state, params)``).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

from hnca_env import rewards as rewards_lib
from hnca_env.env import HNCAEnv

Array = jax.Array

#: Largest flat action a single-agent view accepts without a :class:`FlatActionWarning`.
MAX_FLAT_ACTION = 1024


class FlatActionWarning(UserWarning):
    """A flat single-agent view whose action is too large for a diagonal-Gaussian policy."""


def base_env(env) -> HNCAEnv:
    """The :class:`HNCAEnv` under any stack of views and gymnax/JaxMARL wrappers."""
    while not isinstance(env, HNCAEnv):
        inner = getattr(env, "__dict__", {}).get("_env", getattr(env, "env", None))
        if inner is None:
            raise TypeError(f"{type(env).__name__} wraps no HNCAEnv")
        env = inner
    return env


def check_flat_action(n_action: int, limit: int | None, where: str) -> None:
    """Warn when a flat action of ``n_action`` dims exceeds ``limit`` (None: never).

    Why: a diagonal Gaussian over d action dims has a log-probability that is a sum of d
    terms, so PPO's ratio ``exp(logp_new - logp_old)`` moves d times faster than in a
    one-dimensional task; measured with PureJaxRL's own ``ppo_continuous_action.py``
    (docs/interop.md), a 16x16 ``Grow-v0`` (4096 dims) went NaN in its first update.
    """
    if limit is not None and n_action > limit:
        warnings.warn(
            f"{where}: the flat action has {n_action} dims (> {limit}). A diagonal Gaussian "
            "policy over it makes PPO's probability ratio overflow (PureJaxRL's PPO went NaN "
            "in its first update on a 16x16 Grow-v0, 4096 dims; docs/interop.md). Factorise "
            "the policy instead: one rule shared by every cell (hnca_env.marl.JaxMARLView for "
            "JaxMARL's IPPO, or agents.ppo), or use a smaller grid. Pass "
            "max_flat_action=None to silence this.",
            FlatActionWarning,
            stacklevel=_caller_stacklevel(),
        )


def _caller_stacklevel() -> int:
    """``warnings`` stack level of the first frame outside this module (the user's line)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


class _View(GymnaxWrapper):
    """Base of the views: attribute forwarding that survives ``copy`` and ``pickle``.

    gymnax's ``GymnaxWrapper.__getattr__`` forwards every missing name to ``self._env``;
    while ``copy.deepcopy`` or ``pickle`` rebuild an instance, ``_env`` is not set yet and
    that lookup recursed forever. Here a missing ``_env`` (or any dunder) is an
    ``AttributeError``, and an ``HNCAEnv`` inside pickles through :func:`_pickled_env`.
    """

    def __getattr__(self, name: str):
        inner = self.__dict__.get("_env")
        if inner is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(inner, name)

    def __getstate__(self) -> dict:
        return {k: _pickled_env(v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: _unpickled_env(v) for k, v in state.items()})

    def render(self, state, params=None, **kwargs: Any) -> Array:
        """uint8 RGB frame of one world (see :func:`hnca_env.render.render_frame`)."""
        from hnca_env.render import render_frame

        return render_frame(base_env(self), state, params, **kwargs)


class _PickledEnv:
    """An :class:`HNCAEnv` as pickle stores it: its attributes without the bound reward.

    ``HNCAEnv`` keeps ``rewards.bind(reward, env)``, a closure pickle cannot store; the
    view drops it and binds it again on loading. Not used once ``HNCAEnv`` pickles itself.
    """

    def __init__(self, env: HNCAEnv):
        self.cls = type(env)
        self.attrs = {k: v for k, v in vars(env).items() if k not in ("_reward_fn", "_checked_params")}

    def restore(self) -> HNCAEnv:
        env = object.__new__(self.cls)
        env.__dict__.update(self.attrs)
        env._checked_params = None
        env._reward_fn = rewards_lib.bind(env.reward, env)
        return env


def _pickled_env(value: Any) -> Any:
    own = getattr(type(value), "__getstate__", None)
    if isinstance(value, HNCAEnv) and own is getattr(object, "__getstate__", None):
        return _PickledEnv(value)
    return value


def _unpickled_env(value: Any) -> Any:
    return value.restore() if isinstance(value, _PickledEnv) else value


class TeamRewardView(_View):
    """Single-agent view: flat observation and action vectors, scalar team reward.

    Observation: the acting levels' observations raveled and concatenated (level order of
    ``env.agent_levels``). Action: one flat vector split back into the levels' arrays.
    Reward: ``info["team_reward"]`` of the first acting level (the mean of its agents'
    rewards; with the library rewards the coordinators' team reward is the same number).
    ``step`` returns gymnax 1.0's ``(obs, state, reward, terminated, truncated, info)``;
    ``info`` keeps the env's (``final_observation`` flattened) plus ``level_reward``.

    Args:
      env: an :class:`HNCAEnv` (or a view of one).
      max_flat_action: warn (:class:`FlatActionWarning`) above this many action dims;
        ``None`` never warns (e.g. when the policy is not a diagonal Gaussian).
    """

    def __init__(self, env, *, max_flat_action: int | None = MAX_FLAT_ACTION):
        super().__init__(env)
        self._shapes = {lvl: (*env.grid_shape(lvl), env.action_dim(lvl)) for lvl in env.agent_levels}
        self._sizes = {lvl: int(np.prod(s)) for lvl, s in self._shapes.items()}
        self._team_level = env.agent_levels[0]
        check_flat_action(sum(self._sizes.values()), max_flat_action, type(self).__name__)

    def flatten_obs(self, obs: dict) -> Array:
        """``{level: (H_l, W_l, O_l)}`` -> ``(sum_l H_l W_l O_l,)``."""
        return jnp.concatenate([jnp.ravel(obs[lvl]) for lvl in self._env.agent_levels])

    def unflatten_action(self, action: Array) -> dict:
        """``(sum_l H_l W_l A_l,)`` -> ``{level: (H_l, W_l, A_l)}``."""
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


class SingleAgentView(TeamRewardView):
    """The single-agent view for PureJaxRL, rejax and other old-gymnax (5-tuple) loops.

    The agent of :class:`TeamRewardView` (flat observation, flat action, the team reward of
    the first acting level) with the step those loops unpack:
    ``obs, state, reward, done, info = view.step(key, state, action, params)``, where
    ``done = terminated | truncated`` and the env auto-resets. ``params=None`` runs
    ``env.default_params``, which ``hnca_env.make(id, **overrides)`` sets to the overrides.

    ``info`` is small on purpose: ``team_reward`` (``{level: ()}``), ``terminated``,
    ``truncated``. PureJaxRL returns every step's info from ``train``; the full per-level
    maps and the flat ``final_observation`` would cost O(obs) memory per step there.
    ``full_info=True`` keeps them (as :class:`TeamRewardView` does).

    Example::

        env, _ = hnca_env.make("Grow-v0", grid=(8, 8), max_steps_in_episode=32)
        env, env_params = SingleAgentView(env), None     # PureJaxRL's env-construction line
    """

    def __init__(self, env, *, max_flat_action: int | None = MAX_FLAT_ACTION, full_info: bool = False):
        super().__init__(env, max_flat_action=max_flat_action)
        self.full_info = bool(full_info)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        if not self.full_info:
            info = {k: info[k] for k in ("team_reward", "terminated", "truncated")}
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


class LegacyView(_View):
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


class LevelLogWrapper(_View):
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


class DictAgentView(_View):
    """JaxMARL-style view: ``{agent_name: array}`` per agent, ``dones["__all__"]``.

    Agents are named ``"cell_{y}_{x}"`` and ``"parent_{y}_{x}"``. Meant for small grids:
    building a dict of thousands of entries makes tracing and compiling slow, so more than
    ``max_agents`` agents raise an error. ``step(key, state, actions, params)`` returns
    ``(obs, state, rewards, dones, infos)``. This is not JaxMARL's API (``step``'s 4th
    argument there is ``reset_state``, spaces are per agent): JaxMARL's own code runs on
    :class:`hnca_env.marl.JaxMARLView`.
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
            want = (self._env.action_dim(lvl),)

            def agent_action(name):
                if jnp.shape(per_agent[name]) != want:
                    raise ValueError(f"action of agent {name!r} has shape {jnp.shape(per_agent[name])}, expected {want}")
                return per_agent[name]

            rows = [jnp.stack([agent_action(f"{lvl}_{y}_{x}") for x in range(w)]) for y in range(h)]
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
        return {a: spaces.Box(-jnp.inf, jnp.inf, spaces_[a.rsplit("_", 2)[0]].shape[-1:]) for a in self.agents}

    def action_spaces(self, params=None) -> dict:
        spaces_ = self._env.action_space(params).spaces
        return {a: spaces.Box(-1.0, 1.0, spaces_[a.rsplit("_", 2)[0]].shape[-1:]) for a in self.agents}
