"""Roll a policy in one world: the ``lax.scan`` that rendering, evaluation and the CLI share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array


def rollout(
    env,
    policy: Callable[[Array, dict], dict],
    key: Array,
    params=None,
    steps: int = 100,
    state=None,
    record: Callable[[Any], Any] | None = None,
):
    """Run ``policy(key, obs) -> action`` for ``steps`` with ``env.step_env`` (no auto-reset).

    Starts from ``state`` or from a reset with a key split off ``key``. Returns
    ``(obs, state, records)``: the final observation and state, and ``record(state)`` stacked
    over the start state and every step (``None`` without ``record``). Pure: jit or vmap it.
    """
    params = env.default_params if params is None else params
    k_reset, k_run = jax.random.split(key)
    if state is None:
        obs, state = env.reset_env(k_reset, params)
    else:
        obs = env.get_obs(state, params)

    def body(carry, k):
        obs, st = carry
        k_act, k_step = jax.random.split(k)
        obs, st, *_ = env.step_env(k_step, st, policy(k_act, obs), params)
        return (obs, st), (record(st) if record is not None else None)

    (obs, state_out), recs = jax.lax.scan(body, (obs, state), jax.random.split(k_run, steps))
    if record is not None:
        first = record(state)
        recs = jax.tree.map(lambda f, r: jax.numpy.concatenate([f[None], r]), first, recs)
    return obs, state_out, recs
