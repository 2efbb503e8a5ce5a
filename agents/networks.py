"""Policies as NCA update rules: one network shared by every agent of a level.

A level's policy is a per-cell MLP (a 1×1 convolution) applied to the level's observation grid
``(H, W, O) -> (H, W, A)``, with a zero-initialised output layer so a fresh policy does
nothing (Growing NCA's trick). Used deterministically by the gradient trainer; RL adds a
Gaussian head on the same module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

#: Hidden widths by level: Growing NCA's 128 for cells, the H-NCA reference's 256 for parents.
DEFAULT_HIDDEN = {"cell": 128, "parent": 256}


class NCAUpdateRule(nn.Module):
    """Per-cell MLP ``O -> hidden -> A`` (ReLU), output layer zero-initialised."""

    out_dim: int
    hidden: int = 128

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        x = nn.relu(nn.Dense(self.hidden, name="hidden")(obs))
        return nn.Dense(
            self.out_dim, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="out"
        )(x)


def make_policy(
    env, hidden: Mapping[str, int] | None = None
) -> tuple[Callable[[Array], dict], Callable[[dict, dict], dict]]:
    """Shared-parameter policies for every acting level of ``env``.

    Returns ``(init, apply)``: ``init(key) -> params`` (a dict keyed by level) and
    ``apply(params, obs) -> action`` (dicts keyed by level, one world; vmap for many).
    """
    widths = {**DEFAULT_HIDDEN, **dict(hidden or {})}
    nets = {lvl: NCAUpdateRule(env.action_dim(lvl), widths[lvl]) for lvl in env.agent_levels}

    def init(key: Array) -> dict:
        keys = jax.random.split(key, len(nets))
        return {
            lvl: net.init(k, jnp.zeros((1, 1, env.obs_dim(lvl)), jnp.float32))
            for k, (lvl, net) in zip(keys, nets.items())
        }

    def apply(params: dict, obs: dict) -> dict:
        return {lvl: net.apply(params[lvl], obs[lvl]) for lvl, net in nets.items()}

    return init, apply


def as_fixed_rule(module: nn.Module) -> Callable[[dict, Array, Array], Array]:
    """Adapt a level network to ``HNCAEnv(fixed_rules={level: (rule, params)})``."""

    def rule(params: dict, obs: Array, key: Array) -> Array:
        del key
        return module.apply(params, obs)

    return rule
