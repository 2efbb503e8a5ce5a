"""Swappable reward functions.

A reward function is a pure function ``reward(state, action, next_state, params)`` returning
per-level per-agent reward maps ``{"cell": (H, W), "parent": (H/k, W/k)}``. Any plain Python
function with that signature plugs in: ``make("Grow-v0", reward=my_fn)``. A level it leaves
out gets the mean of the cell rewards over every cell it covers (coordinators are rewarded by
their own cluster, at any depth), and a fixed-rule level's entry is dropped.

The library rewards are built from the task's per-cell error (``task.error_map(state, params)``), so they
and the gradient trainer's loss share one definition:

- ``"local"`` — :class:`LocalError`: each cell gets minus its own pixel error.
- ``"team"`` — :class:`TeamError`: every agent gets minus the grid's mean error.
- ``"improvement"`` — :class:`Improvement`: the decrease of error, ``err(s) - err(s')``,
  a potential-based shaping (Φ = -err, γ = 1): summed over an episode it telescopes.
- :class:`Weighted` — ``Σ_i w_i r_i``, weights in ``params.reward_weights`` (vmappable).

Library rewards are objects with ``bind(env)``; the env binds them once, at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from hnca_env import physics

Array = jax.Array
RewardFn = Callable[[Any, Any, Any, Any], dict[str, Array]]


def _pool_levels(env, cell_map: Array) -> dict[str, Array]:
    """A cell-level map and its cluster means for every acting coordinator level."""
    out = {"cell": cell_map}
    if getattr(env, "coupling", "intact") == "rewired":  # the mean over the cells it is linked to
        below = cell_map[..., None]
        for i, level in enumerate(env.levels[1:], start=1):
            below = env._sense(i, below)
            out[level] = below[..., 0]
        return out
    for level in env.levels[1:]:
        out[level] = physics.sensor(cell_map[..., None], env.level_scale(level))[..., 0]
    return out


class Reward:
    """Base of the library rewards: ``bind(env)`` returns the pure reward function."""

    name = "reward"

    def bind(self, env) -> RewardFn:
        raise NotImplementedError

    def default_weights(self) -> dict[str, float]:
        """Weights this reward keeps in ``EnvParams.reward_weights`` (none by default)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LocalError(Reward):
    """Minus each cell's own error; a coordinator gets minus its cluster's mean error."""

    name = "local"

    def bind(self, env) -> RewardFn:
        def reward(state, action, next_state, params):
            del state, action
            return _pool_levels(env, -env.task.error_map(next_state, params))

        return reward


class TeamError(Reward):
    """Minus the mean error over the whole grid, broadcast to every agent of every level."""

    name = "team"

    def bind(self, env) -> RewardFn:
        def reward(state, action, next_state, params):
            del state, action
            err = env.task.error_map(next_state, params)
            return _pool_levels(env, jnp.broadcast_to(-jnp.mean(err), err.shape))

        return reward


class Improvement(Reward):
    """Per-cell decrease of error, ``err(s) - err(s')`` (potential-based, γ = 1)."""

    name = "improvement"

    def bind(self, env) -> RewardFn:
        def reward(state, action, next_state, params):
            del action
            before = env.task.error_map(state, params)
            after = env.task.error_map(next_state, params)
            return _pool_levels(env, before - after)

        return reward


class Weighted(Reward):
    """Weighted sum of named rewards; weights live in ``params.reward_weights[name]``."""

    name = "weighted"

    def __init__(self, weights: Mapping[str, float], parts: Mapping[str, Any] | None = None):
        if not weights:
            raise ValueError("Weighted needs at least one component")
        parts = dict(parts or {})
        self.parts = {n: resolve(parts.get(n, n)) for n in weights}
        self.weights = {n: float(w) for n, w in weights.items()}

    def default_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def bind(self, env) -> RewardFn:
        fns = {n: bind(p, env) for n, p in self.parts.items()}

        def reward(state, action, next_state, params):
            total: dict[str, Array] = {}
            for n, fn in fns.items():
                r = complete_levels(env, fn(state, action, next_state, params))
                w = params.reward_weights[n]
                for level, v in r.items():
                    total[level] = total[level] + w * v if level in total else w * v
            return total

        return reward

    def __repr__(self) -> str:
        return f"Weighted({self.weights})"


#: Library rewards by name.
REWARDS: dict[str, type[Reward]] = {
    "local": LocalError,
    "team": TeamError,
    "improvement": Improvement,
}


def resolve(reward: Any) -> Any:
    """Turn a name, a ``{name: weight}`` dict, a Reward or a plain function into a reward."""
    if isinstance(reward, str):
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; known: {sorted(REWARDS)}")
        return REWARDS[reward]()
    if isinstance(reward, Mapping):
        return Weighted(reward)
    if isinstance(reward, Reward) or callable(reward):
        return reward
    raise TypeError(
        f"reward must be a name ({sorted(REWARDS)}), a {{name: weight}} dict, a Reward or a "
        f"function (state, action, next_state, params) -> dict; got {type(reward).__name__}"
    )


def bind(reward: Any, env) -> RewardFn:
    """The pure reward function of ``reward`` for ``env``."""
    reward = resolve(reward)
    return reward.bind(env) if isinstance(reward, Reward) else reward


def default_weights(reward: Any) -> dict[str, float]:
    reward = resolve(reward)
    return reward.default_weights() if isinstance(reward, Reward) else {}


def complete_levels(env, rewards: Mapping[str, Array]) -> dict[str, Array]:
    """Check a reward dict and fill missing coordinator levels with their cluster means."""
    if not isinstance(rewards, Mapping) or "cell" not in rewards:
        raise TypeError(
            "a reward function must return a dict with at least a 'cell' entry of shape "
            f"(H, W); got {type(rewards).__name__}"
        )
    out = dict(rewards)
    unknown = set(out) - set(env.levels)
    if unknown:
        raise ValueError(f"reward returned unknown level(s) {sorted(unknown)}; levels: {env.levels}")
    missing = [level for level in env.levels[1:] if level not in out]
    if missing:
        pooled = _pool_levels(env, jnp.asarray(out["cell"]))
        out.update({level: pooled[level] for level in missing})
    for level, v in out.items():
        want = env.grid_shape(level)
        if jnp.shape(v) != want:
            raise ValueError(f"reward for level {level!r} has shape {jnp.shape(v)}, expected {want}")
    return out
