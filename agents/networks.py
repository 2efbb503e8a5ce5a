"""Policies as NCA update rules: one network shared by every agent of a level.

A level's policy is a per-cell MLP (a 1×1 convolution) applied to the level's observation grid
``(H, W, O) -> (H, W, A)``, with a zero-initialised output layer so a fresh policy does
nothing (Growing NCA's trick). Used deterministically by the gradient trainer; RL adds a
Gaussian head on the same module. A coordinator's network outputs its own update and the
signal it broadcasts (``env.action_dim("parent") = C_p + S``): it is the actuator too.
Optionally a level learns its own perception kernels (:class:`LearnedPerception`), as the
H-NCA reference's parents do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Hidden widths by level: Growing NCA's 128 for cells, the H-NCA reference's 256 for parents.
DEFAULT_HIDDEN = {"cell": 128, "parent": 256}


class LearnedPerception(nn.Module):
    """Learnable depthwise 3×3 perception on a raw neighbourhood observation.

    Input ``(..., 9*C + D)``: the tap-major 3×3 neighbourhood of ``C`` channels
    (:func:`hnca_env.physics.neighbourhood`) followed by ``D`` other features, passed through.
    Output ``(..., K*C + D)``, kernel-major like :func:`hnca_env.physics.perceive`. The
    parameter ``kernels (K, 3, 3, C)`` (one set per channel, as a depthwise convolution) starts
    at ``init_kernels`` for every channel, so a fresh module perceives exactly as the fixed
    kernels do; training then moves them (the H-NCA reference trains the parents' kernels).
    """

    channels: int
    init_kernels: tuple  # (K, 3, 3) nested tuples of floats (hashable module attribute)

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        c = self.channels
        base = jnp.asarray(self.init_kernels, jnp.float32)
        kernels = self.param(
            "kernels", lambda _key: jnp.broadcast_to(base[..., None], (*base.shape, c)).copy()
        )
        taps = obs[..., : 9 * c].reshape(*obs.shape[:-1], 9, c)
        k = kernels.reshape(kernels.shape[0], 9, c)
        seen = jnp.einsum("...tc,ktc->...kc", taps, k).reshape(*obs.shape[:-1], k.shape[0] * c)
        return jnp.concatenate([seen, obs[..., 9 * c :]], axis=-1)


class NCAUpdateRule(nn.Module):
    """Per-cell MLP ``O -> hidden (-> hidden ...) -> A`` (ReLU), output layer zero-initialised.

    With ``perceive_channels > 0`` the observation is a raw neighbourhood and goes through a
    :class:`LearnedPerception` (``perceive_kernels`` its initial kernels) first. ``layers``
    hidden layers (``pre_0``, ..., then ``hidden``): on a raw neighbourhood observation the
    first is a learned full 3×3 convolution, as Self-classifying MNIST's ``Conv2D(80, 3)``.
    """

    out_dim: int
    hidden: int = 128
    perceive_channels: int = 0
    perceive_kernels: tuple | None = None
    layers: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        if self.perceive_channels:
            obs = LearnedPerception(self.perceive_channels, self.perceive_kernels, name="perception")(obs)
        for i in range(self.layers - 1):
            obs = nn.relu(nn.Dense(self.hidden, name=f"pre_{i}")(obs))
        x = nn.relu(nn.Dense(self.hidden, name="hidden")(obs))
        return nn.Dense(
            self.out_dim, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="out"
        )(x)


def level_network(
    env, level: str, hidden: int, learn_perception: bool = False, layers: int = 1
) -> NCAUpdateRule:
    """The update-rule network of one acting level of ``env`` (``layers`` hidden layers).

    ``learn_perception`` needs the level to observe its raw neighbourhood
    (``cell_obs``/``parent_obs="neighbourhood"``); the kernels start at the env's fixed ones.
    """
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers of level {level!r} must be a positive integer, got {layers!r}")
    if not learn_perception:
        return NCAUpdateRule(env.action_dim(level), hidden, layers=layers)
    spec = env.level(level)
    mode = spec.observer.name
    if mode != "neighbourhood":
        opt = {"cell": "cell_obs", "parent": "parent_obs"}.get(level, f"Level({level!r}, obs=...)")
        raise ValueError(
            f"learned perception for level {level!r} needs the raw neighbourhood observation: "
            f"build the env with {opt}='neighbourhood' (it has {mode!r})"
        )
    kernels = spec.kernels
    return NCAUpdateRule(
        env.action_dim(level),
        hidden,
        perceive_channels=env.state_channels(level),
        perceive_kernels=tuple(tuple(tuple(row) for row in k) for k in np.asarray(kernels).tolist()),
        layers=layers,
    )


def make_policy(
    env,
    hidden: Mapping[str, int] | None = None,
    learn_perception: Iterable[str] = (),
    layers: Mapping[str, int] | int | None = None,
) -> tuple[Callable[[Array], dict], Callable[[dict, dict], dict]]:
    """Shared-parameter policies for every acting level of ``env``.

    Args:
      hidden: hidden width per level (default :data:`DEFAULT_HIDDEN`).
      learn_perception: levels whose policy learns its own 3×3 perception kernels from the raw
        neighbourhood (see :func:`level_network`), e.g. ``("parent",)`` as in H-NCA.
      layers: hidden layers per level (default 1), or one integer for every level.

    Returns ``(init, apply)``: ``init(key) -> params`` (a dict keyed by level) and
    ``apply(params, obs) -> action`` (dicts keyed by level, one world; vmap for many).
    """
    # levels above the first coordinator level default to the coordinators' width
    widths = {lvl: DEFAULT_HIDDEN.get(lvl, DEFAULT_HIDDEN["parent"]) for lvl in env.agent_levels}
    if hidden is not None and not isinstance(hidden, Mapping):
        raise ValueError(f"hidden must be a mapping level -> width, e.g. {{'cell': 64}}, got {hidden!r}")
    for lvl, v in dict(hidden or {}).items():  # levels that do not act are ignored (DEFAULT_HIDDEN)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"hidden[{lvl!r}] must be a positive integer, got {v!r}")
        if lvl in env.agent_levels:
            widths[lvl] = int(v)
    if isinstance(learn_perception, str):
        raise ValueError(f"learn_perception must be a sequence of level names, e.g. ('parent',), got {learn_perception!r}")
    learn = set(learn_perception)
    unknown = learn - set(env.agent_levels)
    if unknown:
        raise ValueError(
            f"learn_perception names level(s) {sorted(unknown)} that do not act; acting: {env.agent_levels}"
        )
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = dict.fromkeys(env.agent_levels, layers)
    depth = dict(layers or {})
    unknown = set(depth) - set(env.agent_levels)
    if unknown:
        raise ValueError(
            f"layers names level(s) {sorted(unknown)} that do not act; acting: {env.agent_levels}"
        )
    nets = {
        lvl: level_network(env, lvl, widths[lvl], lvl in learn, depth.get(lvl, 1)) for lvl in env.agent_levels
    }

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
