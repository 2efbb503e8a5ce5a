"""Evaluate a policy on a task: roll many worlds, record the task's trace, return its metrics.

Every task defines :meth:`~hnca_env.tasks.base.Task.trace` (scalars recorded at every step of
one world) and :meth:`~hnca_env.tasks.base.Task.summarize` (named success metrics of one world
from its trace). :func:`evaluate` runs ``n_worlds`` rollouts (batched by
:func:`hnca_env.rollout.map_worlds`) in one ``jit`` and
averages each metric over worlds, so "fraction of worlds classified correctly" is the mean of a
per-world 0/1 metric.

Example::

    env, params = hnca_env.make("Grow-v0")
    evaluate(env, random_policy(env), jax.random.key(0), params, n_worlds=16)
    # {'mse': 0.31}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hnca_env import sharding, validate
from hnca_env.rollout import WORLD_CHUNK_AUTO, env_cells, map_worlds, resolve_world_chunk, rollout

Array = jax.Array
Policy = Callable[[Array, dict], dict]


def evaluate_worlds(
    env,
    policy: Policy,
    key: Array,
    params=None,
    *,
    n_worlds: int = 32,
    steps: int | None = None,
    mesh=None,
    world_chunk: int | str | None = WORLD_CHUNK_AUTO,
) -> dict[str, Array]:
    """Per-world metrics ``{name: (n_worlds,)}`` (jitted; ``policy(key, obs)`` acts in one world,
    or a :class:`hnca_env.rollout.CarryPolicy` that keeps a carry between its steps).

    ``mesh``: a :func:`hnca_env.sharding.world_mesh` to spread the worlds over its devices
    (``n_worlds`` a multiple of the device count); the numbers are the same. ``world_chunk``:
    how the worlds are batched (:func:`hnca_env.rollout.map_worlds`; ``"auto"`` runs chunks of
    about 8k cells one after another on a CPU, all worlds in one ``vmap`` elsewhere).
    """
    params = env.default_params if params is None else params
    env.check_params(params)
    n_worlds = validate.positive_int("n_worlds", n_worlds)
    steps = validate.positive_int("steps", int(params.max_steps_in_episode) if steps is None else steps)
    cells = env_cells(env)
    resolve_world_chunk(world_chunk, n_worlds, mesh, cells)  # bad values fail here, before tracing

    def one(k):
        _, _, trace = rollout(env, policy, k, params, steps, record=lambda s: env.task.trace(s, params))
        return env.task.summarize(trace, params)

    keys = sharding.shard_worlds(jax.random.split(key, n_worlds), mesh)
    return jax.jit(
        lambda ks: sharding.constrain_worlds(
            map_worlds(one, ks, world_chunk=world_chunk, mesh=mesh, cells_per_world=cells), mesh
        )
    )(keys)


def evaluate(
    env,
    policy: Policy,
    key: Array,
    params=None,
    *,
    n_worlds: int = 32,
    steps: int | None = None,
    mesh=None,
    world_chunk: int | str | None = WORLD_CHUNK_AUTO,
) -> dict[str, float]:
    """The task's named success metrics, each averaged over ``n_worlds`` rollouts of ``steps``
    (default: the episode length ``params.max_steps_in_episode``); ``mesh`` and ``world_chunk``
    as for :func:`evaluate_worlds`."""
    per_world = evaluate_worlds(
        env, policy, key, params, n_worlds=n_worlds, steps=steps, mesh=mesh, world_chunk=world_chunk
    )
    return {name: float(jnp.mean(v)) for name, v in per_world.items()}


def zero_policy(env) -> Policy:
    """The do-nothing policy: every agent's action is zero (no update, no broadcast)."""

    def act(key, obs):
        del key
        return {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl)), jnp.float32) for lvl in obs}

    return act


def random_policy(env, scale: float = 1.0) -> Policy:
    """Uniform random actions in ``[-scale, scale]`` (the action box's nominal range)."""

    def act(key, obs):
        keys = jax.random.split(key, len(obs))
        return {
            lvl: jax.random.uniform(
                k, (*env.grid_shape(lvl), env.action_dim(lvl)), jnp.float32, -scale, scale
            )
            for k, lvl in zip(keys, sorted(obs))
        }

    return act


def noisy_policy(policy: Policy, std: float) -> Policy:
    """``policy`` with Gaussian noise of ``std`` added to every action (drawn from the step's
    key), e.g. to evaluate a rule trained with ``PoolConfig(action_noise=std)`` as it was
    trained (Self-classifying MNIST keeps its update noise on in evaluation)."""
    if not (isinstance(std, int | float) and not isinstance(std, bool) and std >= 0):
        raise ValueError(f"noisy_policy: std must be a number >= 0, got {std!r}")

    def act(key, obs):
        k_pol, k_noise = jax.random.split(key)
        action = policy(k_pol, obs)
        keys = jax.random.split(k_noise, len(action))
        return {
            lvl: a + std * jax.random.normal(k, a.shape, a.dtype)
            for k, (lvl, a) in zip(keys, sorted(action.items()))
        }

    return act


def policy_from_apply(apply: Callable[[Any, dict], dict], policy_params: Any) -> Policy:
    """Wrap a deterministic ``apply(policy_params, obs) -> action`` as ``policy(key, obs)``."""

    def act(key, obs):
        del key
        return apply(policy_params, obs)

    return act
