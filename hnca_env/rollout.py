"""Roll a policy in one world (the ``lax.scan`` that rendering, evaluation and the CLI share),
and run a per-world function over many worlds (:func:`map_worlds`, :func:`rollout_worlds`).

Many worlds: ``jax.vmap`` computes all of them together, step by step, which is what an
accelerator wants. On a CPU the batch's working set (72×72 cells × 128 hidden units × 8
worlds is 21 MB per step) falls out of the caches; running the worlds one after another
(``jax.lax.map``), each through all its steps, keeps one world's state in cache: a Growing-NCA
rollout of 8 / 64 worlds of 72×72 ran 1.3× / 1.5× faster on 2 cores (benchmarks/compare.py).
``world_chunk`` chooses: ``None`` = all worlds in one ``vmap``; ``k`` = chunks of ``k`` worlds
in sequence (``lax.map(..., batch_size=k)``); ``"auto"`` = chunks of about
:data:`AUTO_CHUNK_CELLS` cells on the CPU backend, ``None`` on other backends and whenever the
worlds are sharded over a mesh. The numbers are the same either way, up to float rounding.

A policy is ``policy(key, obs) -> action``, or a :class:`CarryPolicy` for one that keeps
something between steps (PPO's coordinators hold their action between decisions): every
function here takes either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from hnca_env import validate

Array = jax.Array

#: The ``world_chunk`` values :func:`resolve_world_chunk` accepts besides positive integers.
WORLD_CHUNK_AUTO = "auto"


#: ``"auto"`` on a CPU aims at chunks of about this many cells: measured on 2 cores, a
#: Growing-NCA rollout is fastest with 4k–10k cells per chunk (1–2 worlds of 72×72, 8 of 32×32,
#: 16 of 24×24) and no faster than ``vmap`` with more (benchmarks/compare.py, docs/benchmarks.md).
AUTO_CHUNK_CELLS = 8192


def resolve_world_chunk(
    world_chunk: int | str | None, n_worlds: int, mesh=None, cells_per_world: int | None = None
) -> int | None:
    """The chunk size to use for ``n_worlds`` worlds: ``None`` (one ``vmap``) or an int that
    divides ``n_worlds``. ``"auto"``: ``None`` off the CPU, with a mesh, or without
    ``cells_per_world``; else the largest divisor of ``n_worlds`` up to
    ``AUTO_CHUNK_CELLS // cells_per_world`` (at least 1). Raises ``ValueError`` naming the
    problem for a bad value."""
    if world_chunk == WORLD_CHUNK_AUTO:
        if mesh is not None or jax.default_backend() != "cpu" or not cells_per_world:
            return None
        target = max(1, AUTO_CHUNK_CELLS // int(cells_per_world))
        world_chunk = max(d for d in range(1, min(target, n_worlds) + 1) if n_worlds % d == 0)
    if world_chunk is None:
        return None
    if isinstance(world_chunk, bool) or not isinstance(world_chunk, int | np.integer) or world_chunk < 1:
        raise ValueError(f"world_chunk must be None, 'auto' or a positive integer, got {world_chunk!r}")
    world_chunk = int(world_chunk)
    if n_worlds % world_chunk:
        raise ValueError(f"world_chunk={world_chunk} must divide the number of worlds ({n_worlds})")
    if mesh is not None and world_chunk < n_worlds:
        raise ValueError(
            "world_chunk runs worlds in sequence, which would serialise a mesh's devices: "
            "use world_chunk=None (or 'auto') with a mesh"
        )
    return None if world_chunk >= n_worlds else world_chunk


@dataclasses.dataclass(frozen=True)
class CarryPolicy:
    """A policy with a carry between the steps of one world.

    ``init(state) -> carry`` from the world's start state; ``step(key, obs, carry, state) ->
    (action, carry)`` each step (``state``: the env state the observation came from, for a
    policy that reads its time or a centralised view). A plain ``policy(key, obs)`` is the
    carry-less case (:func:`as_carry_policy`).
    """

    init: Callable[[Any], Any]
    step: Callable[[Array, dict, Any, Any], tuple[dict, Any]]


def as_carry_policy(policy) -> CarryPolicy:
    """``policy`` as a :class:`CarryPolicy` (a plain ``policy(key, obs)`` carries ``()``)."""
    if isinstance(policy, CarryPolicy):
        return policy
    if not callable(policy):
        raise TypeError(f"a policy must be policy(key, obs) -> action or a CarryPolicy, got {policy!r}")
    return CarryPolicy(init=lambda state: (), step=lambda key, obs, carry, state: (policy(key, obs), carry))


def env_cells(env) -> int:
    """Cells (agents) of one world of ``env``, over all its levels."""
    return sum(int(np.prod(env.grid_shape(lvl))) for lvl in env.levels)


def map_worlds(
    fn: Callable[..., Any],
    *xs: Any,
    world_chunk: int | str | None = WORLD_CHUNK_AUTO,
    mesh=None,
    cells_per_world: int | None = None,
):
    """``fn`` of one world mapped over the leading (worlds) axis of every leaf of ``xs``.

    ``jax.vmap(fn)(*xs)`` when the chunk resolves to ``None``; else ``jax.lax.map`` over chunks
    of ``world_chunk`` worlds, each chunk vmapped (see the module docstring for when that is
    faster; ``"auto"`` needs ``cells_per_world``, e.g. :func:`env_cells`, and is ``vmap``
    without it). Jittable; differentiable like ``vmap``.
    """
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("map_worlds needs at least one array with a worlds axis")
    n = leaves[0].shape[0]
    chunk = resolve_world_chunk(world_chunk, n, mesh, cells_per_world)
    if chunk is None:
        return jax.vmap(fn)(*xs)
    return jax.lax.map(lambda a: fn(*a), xs, batch_size=chunk)


def rollout(
    env,
    policy: Callable[[Array, dict], dict],
    key: Array,
    params=None,
    steps: int = 100,
    state=None,
    record: Callable[[Any], Any] | None = None,
):
    """Run ``policy(key, obs) -> action`` (or a :class:`CarryPolicy`) for ``steps`` with
    ``env.step_env`` (no auto-reset).

    Starts from ``state`` or from a reset with a key split off ``key``. Returns
    ``(obs, state, records)``: the final observation and state, and ``record(state)`` stacked
    over the start state and every step (``None`` without ``record``). Pure: jit or vmap it.
    ``params``, ``state`` and the policy's actions are checked as ``env.step`` checks them
    (shapes, levels, dtype; values when concrete), while tracing.
    """
    params = env.default_params if params is None else params
    env.check_params(params)
    steps = validate.positive_int("steps", steps)
    k_reset, k_run = jax.random.split(key)
    if state is None:
        obs, state = env.reset_env(k_reset, params)
    else:
        validate.check_state(env, state)
        obs = env.get_obs(state, params)

    pol = as_carry_policy(policy)

    def body(carry, k):
        obs, st, c = carry
        k_act, k_step = jax.random.split(k)
        action, c = pol.step(k_act, obs, c, st)
        action = env.check_action(action)  # the policy's output: levels, shapes, dtype
        obs, st, *_ = env.step_env(k_step, st, action, params)
        return (obs, st, c), (record(st) if record is not None else None)

    (obs, state_out, _), recs = jax.lax.scan(
        body, (obs, state, pol.init(state)), jax.random.split(k_run, steps)
    )
    if record is not None:
        first = record(state)
        recs = jax.tree.map(lambda f, r: jax.numpy.concatenate([f[None], r]), first, recs)
    return obs, state_out, recs


def rollout_worlds(
    env,
    policy: Callable[[Array, dict], dict],
    keys: Array,
    params=None,
    steps: int = 100,
    states=None,
    record: Callable[[Any], Any] | None = None,
    *,
    world_chunk: int | str | None = WORLD_CHUNK_AUTO,
):
    """:func:`rollout` in ``len(keys)`` worlds: ``(obs, state, records)`` with a leading worlds
    axis. ``states``: batched start states (default: a reset per world). ``world_chunk``: how
    the worlds are batched (module docstring); the results do not depend on it beyond float
    rounding. Pure: jit it.
    """

    def one(k, s=None):
        return rollout(env, policy, k, params, steps, state=s, record=record)

    xs = (keys,) if states is None else (keys, states)
    return map_worlds(one, *xs, world_chunk=world_chunk, cells_per_world=env_cells(env))
