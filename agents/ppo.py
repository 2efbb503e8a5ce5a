"""PPO on the H-NCA envs, PureJaxRL style: IPPO and MAPPO with parameters shared per level.

Every agent of a level (every cell; every coordinator) runs the same network on its own
observation: the NCA update rule of the pool trainer (:class:`agents.networks.NCAUpdateRule`,
zero-initialised output, so a fresh policy's mean action is "do nothing") as the mean of a
diagonal Gaussian (``distrax.MultivariateNormalDiag``, a learnt log-std per action channel)
and a value head. So a level's "batch of agents" is its grid, and a minibatch is a set of
(time, world) samples with all their agents: losses are means over worlds × agents.

- **IPPO**: each agent's value is a function of its own observation.
- **MAPPO**: a centralised critic. ``env.world_state`` (children and target pooled over
  clusters, coordinator states, episode time) is encoded once per world and concatenated to
  every agent's observation before its value head (the "agent-specific global state" of Yu et
  al., 2022); actors stay decentralised.
- **Per-level advantages**: each level gets its own rewards (``env`` rewards are per-level
  maps), its own GAE and its own advantage normalisation.
- **Slower coordinators** (``parent_every = k``): a coordinator draws a new action every
  ``k`` steps of the coupled phase and repeats it in between (action repeat). Its PPO sample
  is the decision step; its return sums the discounted rewards of the ``k`` steps and
  bootstraps with ``γ^k`` (an SMDP step; :func:`gae` with ``decide``). Steps in the child-only
  phase (``time < tau_c``) are no coordinator decisions: their actions have no effect.
- **Rewards**: ``reward`` in the config is the env's reward (``local``, ``team``,
  ``improvement``, or a ``{name: weight}`` dict), passed to :func:`hnca_env.make`.

Entry points::

    config = PPOConfig.for_task("Density-v0", algo="mappo", total_timesteps=65536)
    train = jax.jit(make_train(config))                 # train(key) -> {"state", "metrics"}
    out = jax.jit(jax.vmap(make_train(config)))(jax.random.split(key, 3))   # 3 seeds at once
    ppo = make_ppo(config)                              # the parts: init, update, policies
    evaluate_policy(ppo, out["state"].params, key)      # the task's success metrics

Episodes are handled by the env's auto-reset; ``terminated`` and ``truncated`` both end the
return (no bootstrap through a time limit, as PureJaxRL does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import hnca_env
from agents.networks import NCAUpdateRule
from agents.settings import (  # noqa: F401 (parse_overrides: public here too)
    check_task_id,
    json_safe,  # noqa: F401 (re-exported: agents.ppo.json_safe)
    load_settings,
    parse_overrides,
    python_scalars,
)
from agents.settings import tuples as _tuples
from hnca_env import sharding
from hnca_env.evaluate import evaluate
from hnca_env.rollout import WORLD_CHUNK_AUTO, CarryPolicy, rollout
from hnca_env.wrappers import LevelLogWrapper

Array = jax.Array

ALGOS = ("ippo", "mappo")
REWARDS = ("local", "team", "improvement")


# ---------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO settings. ``total_timesteps`` counts world steps (one step of one world, all its
    agents at once); ``num_updates = total_timesteps // (num_envs * num_steps)``.

    ``env_kwargs`` go to ``hnca_env.make(task, reward=reward, **env_kwargs)`` (grid, target,
    episode length...). ``hidden``/``parent_hidden``: actor widths of the cells and the
    coordinators; ``critic_hidden``: width of the two-layer value heads; ``world_embed``:
    MAPPO's world-state embedding. ``mesh``: a :func:`hnca_env.sharding.world_mesh` to split
    the worlds over devices (not saved with the config).
    """

    task: str = "Density-v0"
    algo: str = "ippo"
    reward: Any = "local"
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 16
    num_steps: int = 32
    total_timesteps: int = 131_072
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    lr: float = 3e-4
    anneal_lr: bool = True
    reward_scale: float = 1.0
    hidden: int = 64
    parent_hidden: int = 256
    critic_hidden: int = 64
    world_embed: int = 64
    init_log_std: float = -2.5
    clip_action: bool = True
    parent_every: int = 1
    normalize_advantages: bool = True
    normalize_obs: bool = True
    mesh: Any = None

    def __post_init__(self):
        python_scalars(self)
        check_task_id("PPOConfig", self.task)
        if self.algo not in ALGOS:
            raise ValueError(f"PPOConfig.algo must be one of {ALGOS}, got {self.algo!r}")
        for name in ("anneal_lr", "clip_action", "normalize_advantages", "normalize_obs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PPOConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.reward, str) and self.reward not in REWARDS:
            raise ValueError(
                f"PPOConfig.reward must be one of {REWARDS} or a {{name: weight}} dict, got {self.reward!r}"
            )
        if not isinstance(self.reward, str | Mapping):
            raise ValueError(
                f"PPOConfig.reward must be a name or a {{name: weight}} dict, got {self.reward!r}"
            )
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"PPOConfig.env_kwargs must be a mapping, got {type(self.env_kwargs).__name__}")
        for name in (
            "num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches",
            "hidden", "parent_hidden", "critic_hidden", "world_embed", "parent_every",
        ):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive integer, got {v!r}")
        for name, lo, hi in (("gamma", 0.0, 1.0), ("gae_lambda", 0.0, 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and lo <= v <= hi):
                raise ValueError(f"PPOConfig.{name} must be in [{lo}, {hi}], got {v!r}")
        for name in ("clip_eps", "lr", "max_grad_norm", "reward_scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) and v > 0):
                raise ValueError(f"PPOConfig.{name} must be a positive number, got {v!r}")
        for name in ("ent_coef", "vf_coef"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) and v >= 0):
                raise ValueError(f"PPOConfig.{name} must be a number >= 0, got {v!r}")
        if not (isinstance(self.init_log_std, int | float) and np.isfinite(self.init_log_std)):
            raise ValueError(f"PPOConfig.init_log_std must be a finite number, got {self.init_log_std!r}")
        batch = self.num_envs * self.num_steps
        if self.total_timesteps < batch:
            raise ValueError(
                f"PPOConfig.total_timesteps={self.total_timesteps} is less than one update's "
                f"num_envs * num_steps = {batch}"
            )
        if batch % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches={self.num_minibatches} must divide num_envs * num_steps = {batch}"
            )
        if self.num_steps % self.parent_every:
            raise ValueError(
                f"PPOConfig.parent_every={self.parent_every} must divide num_steps={self.num_steps} "
                "(rollouts then end on a coordinator decision)"
            )
        if self.mesh is not None and self.num_envs % self.mesh.shape[sharding.WORLDS]:
            raise ValueError(
                f"PPOConfig.num_envs={self.num_envs} must be a multiple of the mesh's "
                f"{self.mesh.shape[sharding.WORLDS]} devices"
            )

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)

    @property
    def minibatch_size(self) -> int:
        """(time, world) samples per minibatch, each with all its agents."""
        return self.num_envs * self.num_steps // self.num_minibatches

    def replace(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON/YAML-able settings (``mesh`` is left out; tuples become lists)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "mesh"}
        return json_safe(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PPOConfig:
        """Settings from a dict; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PPO setting(s) {unknown}; known: {sorted(known - {'mesh'})}")
        d = dict(d)
        if "env_kwargs" in d:
            d["env_kwargs"] = _tuples(dict(d["env_kwargs"] or {}))
        return cls(**d)

    @classmethod
    def for_task(cls, task: str, **overrides: Any) -> PPOConfig:
        """The defaults for ``task`` (:data:`TASK_DEFAULTS`), then ``overrides``."""
        if task not in hnca_env.registered_envs():
            raise ValueError(f"unknown env id {task!r}; registered: {hnca_env.registered_envs()}")
        base = dict(TASK_DEFAULTS.get(task, {}))
        if "env_kwargs" in overrides and "env_kwargs" in base:
            overrides = {**overrides, "env_kwargs": {**base["env_kwargs"], **overrides["env_kwargs"]}}
        return cls.from_dict({**base, "task": task, **overrides})


#: Per-task defaults (small enough for a CPU; docs/baselines.md reports runs of these).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # clamp: coordinators integrate the sensed cluster mean every step (H-NCA's adder), so
    # exploring actions can drive states far out; clipping keeps the rewards bounded.
    "Density-v0": dict(
        env_kwargs={"grid": (16, 16), "clamp": True}, reward_scale=0.1, total_timesteps=65_536
    ),
    "Density-Flat-v0": dict(
        env_kwargs={"grid": (16, 16), "clamp": True}, reward_scale=0.1, total_timesteps=65_536
    ),
    "Grow-v0": dict(
        env_kwargs={"grid": (24, 24), "target": "heart", "target_size": 14, "max_steps_in_episode": 32},
        total_timesteps=65_536,
        init_log_std=-2.0,
    ),
}


def load_config(
    task: str | None = None, path: str | None = None, overrides: Sequence[str] | Mapping = ()
) -> PPOConfig:
    """A config from the task's defaults, then a YAML file, then ``key=value`` overrides.

    A file that is missing, unreadable or not YAML raises ``ValueError`` naming it.
    """
    settings = load_settings(path, overrides, what="PPO")
    task = settings.pop("task", None) or task or PPOConfig.task
    return PPOConfig.for_task(task, **settings)


# --------------------------------------------------------------------------------- networks
class WorldEncoder(nn.Module):
    """MAPPO's view of the whole world: ``world_state (h, w, F)`` -> a vector."""

    features: int

    @nn.compact
    def __call__(self, world_state: Array) -> Array:
        x = world_state.reshape(-1)
        x = nn.tanh(nn.Dense(self.features, name="dense_0")(x))
        return nn.tanh(nn.Dense(self.features, name="dense_1")(x))


class LevelActorCritic(nn.Module):
    """One level's shared agent: the NCA update rule as the Gaussian mean, a learnt log-std per
    action channel, and a value head (on the observation, plus MAPPO's world context)."""

    action_dim: int
    hidden: int
    critic_hidden: int
    init_log_std: float

    @nn.compact
    def __call__(self, obs: Array, context: Array | None = None):
        mean = NCAUpdateRule(self.action_dim, self.hidden, name="actor")(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        x = obs
        if context is not None:
            x = jnp.concatenate([obs, jnp.broadcast_to(context, (*obs.shape[:-1], context.shape[-1]))], -1)
        for i in range(2):
            x = nn.tanh(nn.Dense(self.critic_hidden, name=f"critic_{i}")(x))
        value = nn.Dense(1, name="value")(x)[..., 0]
        return mean, jnp.broadcast_to(log_std, mean.shape), value


class ActorCritic(nn.Module):
    """Every acting level of one world: ``{level: (mean, log_std, value)}``."""

    levels: tuple[str, ...]
    action_dims: tuple[int, ...]
    hiddens: tuple[int, ...]
    critic_hidden: int
    init_log_std: float
    central: bool
    world_embed: int

    @nn.compact
    def __call__(self, obs: Mapping[str, Array], world_state: Array | None = None) -> dict:
        ctx = WorldEncoder(self.world_embed, name="world")(world_state) if self.central else None
        return {
            lvl: LevelActorCritic(a, h, self.critic_hidden, self.init_log_std, name=lvl)(obs[lvl], ctx)
            for lvl, a, h in zip(self.levels, self.action_dims, self.hiddens)
        }


def gaussian(mean: Array, log_std: Array) -> distrax.MultivariateNormalDiag:
    """Per-agent diagonal Gaussian over the action channels (batch shape = the agent grid;
    ``log_std`` has the shape of ``mean``)."""
    return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


# ---------------------------------------------------------------------------------- GAE
def gae(
    rewards: Array,
    values: Array,
    dones: Array,
    last_value: Array,
    gamma: float,
    lam: float,
    decide: Array | None = None,
) -> tuple[Array, Array]:
    """Generalised advantage estimation over a ``(T, ...)`` rollout: ``(advantages, targets)``.

    ``dones[t]``: the episode ended with step ``t`` (no bootstrap past it); it broadcasts
    against ``rewards[t]`` (e.g. ``(T, N, 1, 1)`` for ``(T, N, H, W)`` agent rewards).
    ``values[t]``: V of the observation step ``t`` acted on; ``last_value``: V after the last step.

    ``decide[t]`` (default all true) marks the steps where the agent chose an action; between
    decisions it repeats it. A decision's return then sums the discounted rewards up to the next
    decision and bootstraps with ``γ^k`` (k = steps between them), and λ weights whole decision
    intervals. Advantages of non-decision steps are 0. With every step a decision this is the
    usual GAE: ``δ_t = r_t + γ(1 - d_t)V_{t+1} - V_t``, ``A_t = δ_t + γλ(1 - d_t)A_{t+1}``.
    """
    dones = jnp.broadcast_to(dones, rewards.shape).astype(rewards.dtype)
    if decide is None:
        decide = jnp.ones(rewards.shape, bool)
    decide = jnp.broadcast_to(decide, rewards.shape)

    def body(carry, x):
        adv_next, v_next, acc, disc = carry
        r, v, d, dec = x
        acc = r + gamma * (1.0 - d) * acc  # discounted rewards from t to the next decision
        disc = gamma * (1.0 - d) * disc  # discount of the value at the next decision
        adv = acc + disc * v_next - v + lam * disc * adv_next
        carry = (
            jnp.where(dec, adv, adv_next),
            jnp.where(dec, v, v_next),
            jnp.where(dec, 0.0, acc),
            jnp.where(dec, 1.0, disc),
        )
        return carry, jnp.where(dec, adv, 0.0)

    init = (
        jnp.zeros_like(last_value),
        last_value,
        jnp.zeros_like(last_value),
        jnp.ones_like(last_value),
    )
    _, adv = jax.lax.scan(body, init, (rewards, values, dones, decide), reverse=True)
    return adv, adv + values


# ---------------------------------------------------------------------------------- trainer
class Transition(NamedTuple):
    obs: dict
    world_state: Any
    action: dict
    log_prob: dict
    value: dict
    reward: dict
    done: Array
    decide: dict
    info: dict


class PPOState(struct.PyTreeNode):
    """The carry of one PPO run: network parameters, optimiser state, the worlds (each with
    its episode statistics), their current observations, the coordinators' held actions, the
    PRNG key and the update count."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: Any
    held: Any
    key: Array
    iteration: Array


class PPO(NamedTuple):
    """What :func:`make_ppo` builds; ``init``/``update``/``train`` are pure (jit them)."""

    config: PPOConfig
    env: Any
    env_params: Any
    model: ActorCritic
    init: Any  # key -> PPOState
    update: Any  # PPOState -> (PPOState, metrics)
    train: Any  # key -> {"state": PPOState, "metrics": {name: (num_updates,)}}
    policy_apply: Any  # (params, obs) -> the mean action of one world (deterministic policy)
    act: Any  # (params, key, obs, world_state, time, held, deterministic) -> (env_action, held, sampled, log_prob, value, decide)
    policy: Any  # (params, deterministic=True) -> hnca_env.rollout.CarryPolicy, for rollout/evaluate


def identity_norm(features: int) -> dict:
    """Running statistics of ``features`` channels before any sample (mean 0, variance 1)."""
    return {"mean": jnp.zeros(features), "var": jnp.ones(features), "count": jnp.asarray(1e-4)}


def merge_norm(stats: dict, x: Array) -> dict:
    """Fold the samples ``x (..., D)`` into running mean/variance ``stats`` (Chan et al.'s
    parallel update, as SB3's ``VecNormalize``)."""
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    n = x.shape[0]
    mean, var = jnp.mean(x, 0), jnp.var(x, 0)
    c = stats["count"]
    total = c + n
    delta = mean - stats["mean"]
    m2 = stats["var"] * c + var * n + jnp.square(delta) * c * n / total
    return {"mean": stats["mean"] + delta * n / total, "var": m2 / total, "count": total}


def normalize(stats: dict, x: Array) -> Array:
    return jnp.clip((x - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-8), -10.0, 10.0)


def make_env(config: PPOConfig):
    """``hnca_env.make(config.task, reward=config.reward, **config.env_kwargs)``."""
    return hnca_env.make(config.task, reward=config.reward, **dict(config.env_kwargs))


def make_ppo(config: PPOConfig, env=None, env_params=None) -> PPO:
    """Build the PPO trainer for ``config`` (on ``env``/``env_params`` if given, else on
    :func:`make_env`'s)."""
    if env is None:
        env, made_params = make_env(config)
        env_params = made_params if env_params is None else env_params
    env_params = env.default_params if env_params is None else env_params
    env.check_params(env_params)
    k = config.parent_every
    if k > 1 and "parent" in env.agent_levels:
        tau, length = int(env_params.tau_c), int(env_params.max_steps_in_episode)
        if tau % k or length % k:
            # Decisions fall at episode times tau_c + j*k; rollouts of num_steps (a multiple of
            # k) then start and end on decisions only if tau_c and the episode length are too.
            raise ValueError(
                f"PPOConfig.parent_every={k} must divide the env's tau_c ({tau}) and episode length "
                f"({length}), so that every rollout starts and ends on a coordinator decision"
            )
    levels = env.agent_levels
    hiddens = tuple(config.hidden if lvl == "cell" else config.parent_hidden for lvl in levels)
    model = ActorCritic(
        levels=levels,
        action_dims=tuple(env.action_dim(lvl) for lvl in levels),
        hiddens=hiddens,
        critic_hidden=config.critic_hidden,
        init_log_std=float(config.init_log_std),
        central=config.algo == "mappo",
        world_embed=config.world_embed,
    )
    central = config.algo == "mappo"
    log_env = LevelLogWrapper(env)
    tau_c = env_params.tau_c
    held_levels = tuple(lvl for lvl in levels if lvl != "cell")
    mesh = config.mesh

    def world_view(env_state):
        """MAPPO's world state of one world (``None`` for IPPO)."""
        return env.world_state(env_state, env_params) if central else None

    def deciding(time):
        """Which levels choose a new action at episode time ``time`` (one world)."""
        out = {}
        for lvl in levels:
            if lvl == "cell":
                out[lvl] = jnp.ones((), bool)
            else:  # coordinators: in the coupled phase, every k-th step of it
                out[lvl] = (time >= tau_c) & ((time - tau_c) % k == 0)
        return out

    def forward(params, obs, world_state):
        """The network on one world, observations normalised with ``params["obs_norm"]``."""
        norm = params["obs_norm"]
        obs = {lvl: normalize(norm[lvl], obs[lvl]) for lvl in levels}
        if central:
            world_state = normalize(norm["world"], world_state)
        return model.apply(params["net"], obs, world_state)

    def act(params, key, obs, world_state, time, held, deterministic=False):
        """One world's step of the policy: ``(env_action, held, sampled, log_prob, value,
        decide)`` (the env gets ``env_action``: clipped, coordinators' held between decisions)."""
        out = forward(params, obs, world_state)
        decide = deciding(time)
        keys = jax.random.split(key, len(levels))
        sampled, env_action, logp, value, new_held = {}, {}, {}, {}, {}
        for kk, lvl in zip(keys, levels):
            mean, log_std, v = out[lvl]
            dist = gaussian(mean, log_std)
            a = mean if deterministic else dist.sample(seed=kk)
            sampled[lvl], logp[lvl], value[lvl] = a, dist.log_prob(a), v
            env_action[lvl] = jnp.clip(a, -1.0, 1.0) if config.clip_action else a
            if lvl in held:  # repeat the last decision's action in between decisions
                env_action[lvl] = new_held[lvl] = jnp.where(decide[lvl], env_action[lvl], held[lvl])
        return env_action, new_held, sampled, logp, value, decide

    def policy_apply(params, obs):
        """Deterministic policy of one world: each level's actor mean, clipped as the env
        received it in training. Stateless, so without the coordinators' action repeat: with
        ``parent_every > 1`` use :func:`policy_rollout` / :func:`evaluate_policy`."""
        out = {}
        for i, lvl in enumerate(levels):
            a = NCAUpdateRule(model.action_dims[i], model.hiddens[i]).apply(
                {"params": params["net"]["params"][lvl]["actor"]},
                normalize(params["obs_norm"][lvl], obs[lvl]),
            )
            out[lvl] = jnp.clip(a, -1.0, 1.0) if config.clip_action else a
        return out

    def carry_policy(params, deterministic=True) -> CarryPolicy:
        """The trained policy as the library's rollouts take it: the carry is the coordinators'
        held action (repeated between decisions), so ``parent_every > 1`` evaluates as trained."""

        def step(key, obs, held, env_state):
            action, held, *_ = act(params, key, obs, world_view(env_state), env_state.time, held, deterministic)
            return action, held

        return CarryPolicy(init=lambda env_state: zeros_held(), step=step)

    def zeros_held(n=None):
        shape = () if n is None else (n,)
        return {
            lvl: jnp.zeros((*shape, *env.grid_shape(lvl), env.action_dim(lvl)), jnp.float32)
            for lvl in held_levels
            if k > 1
        }

    def lr_schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * jnp.maximum(frac, 0.0)

    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(lr_schedule if config.anneal_lr else config.lr, eps=1e-5),
    )

    def merge_rollout(norm, traj):
        """Fold a rollout's observations (and MAPPO's world states) into the statistics."""
        out = {lvl: merge_norm(norm[lvl], traj.obs[lvl]) for lvl in levels}
        if central:
            out["world"] = merge_norm(norm["world"], traj.world_state)
        return out

    def init(key: Array) -> PPOState:
        k_net, k_env, k_warm, key = jax.random.split(key, 4)
        obs1, state1 = log_env.reset(jax.random.key(0), env_params)
        net = model.init(k_net, obs1, world_view(state1.env_state))
        obs, env_state = jax.vmap(log_env.reset, in_axes=(0, None))(
            jax.random.split(k_env, config.num_envs), env_params
        )
        obs, env_state = sharding.constrain_worlds((obs, env_state), mesh)
        norm = {lvl: identity_norm(obs[lvl].shape[-1]) for lvl in levels}
        if central:
            norm["world"] = identity_norm(env.world_state(state1.env_state, env_params).shape[-1])
        held = zeros_held(config.num_envs)
        if config.normalize_obs:
            # Start the statistics from one rollout of the fresh policy (mean action zero), not
            # from the reset alone: states drift over an episode (coordinators integrate their
            # sensors), and a first update on features far outside the statistics is violent.
            (_, env_state, obs, held, _), traj = jax.lax.scan(
                env_step,
                ({"net": net, "obs_norm": norm}, env_state, obs, held, k_warm),
                None,
                config.num_steps,
            )
            norm = merge_rollout(norm, traj)
        return PPOState(
            {"net": net, "obs_norm": norm},
            tx.init(net),
            env_state,
            obs,
            held,
            key,
            jnp.zeros((), jnp.int32),
        )

    def env_step(carry, _):
        params, env_state, obs, held, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        ws = jax.vmap(world_view)(env_state.env_state) if central else None
        time = env_state.env_state.time
        env_action, held, action, logp, value, decide = jax.vmap(
            act, in_axes=(None, 0, 0, 0 if central else None, 0, 0, None)
        )(params, jax.random.split(k_act, config.num_envs), obs, ws, time, held, False)
        obs2, env_state2, reward, term, trunc, info = jax.vmap(log_env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, config.num_envs), env_state, env_action, env_params
        )
        obs2, env_state2 = sharding.constrain_worlds((obs2, env_state2), mesh)
        done = jnp.logical_or(term, trunc)
        stats = {
            "returned_episode": info["returned_episode"],
            "returned_episode_returns": info["returned_episode_returns"],
        }
        reward = {lvl: reward[lvl] * config.reward_scale for lvl in levels}
        tr = Transition(obs, ws, action, logp, value, reward, done, decide, stats)
        return (params, env_state2, obs2, held, key), tr

    def loss_fn(net, norm, mb: Transition, adv: dict, targets: dict):
        params = {"net": net, "obs_norm": norm}
        out = jax.vmap(forward, in_axes=(None, 0, 0 if central else None))(params, mb.obs, mb.world_state)
        total = 0.0
        stats = {}
        for lvl in levels:
            mean, log_std, value = out[lvl]
            dist = gaussian(mean, log_std)
            logp = dist.log_prob(mb.action[lvl])
            w = jnp.broadcast_to(mb.decide[lvl][:, None, None], logp.shape).astype(jnp.float32)
            n = jnp.maximum(jnp.sum(w), 1.0)
            a = adv[lvl]
            if config.normalize_advantages:
                mu = jnp.sum(a * w) / n
                sd = jnp.sqrt(jnp.sum(jnp.square(a - mu) * w) / n)
                a = (a - mu) / (sd + 1e-8)
            log_ratio = logp - mb.log_prob[lvl]
            ratio = jnp.exp(log_ratio)
            clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
            pg = -jnp.sum(jnp.minimum(ratio * a, clipped * a) * w) / n
            old_v = mb.value[lvl]
            v_clip = old_v + jnp.clip(value - old_v, -config.clip_eps, config.clip_eps)
            vf = (
                0.5
                * jnp.sum(
                    jnp.maximum(jnp.square(value - targets[lvl]), jnp.square(v_clip - targets[lvl])) * w
                )
                / n
            )
            ent = jnp.mean(dist.entropy())
            total = total + pg + config.vf_coef * vf - config.ent_coef * ent
            stats[f"pg_loss_{lvl}"] = pg
            stats[f"value_loss_{lvl}"] = vf
            stats[f"entropy_{lvl}"] = ent
            stats[f"approx_kl_{lvl}"] = jnp.sum(((ratio - 1.0) - log_ratio) * w) / n
            stats[f"clip_frac_{lvl}"] = jnp.sum((jnp.abs(ratio - 1.0) > config.clip_eps) * w) / n
        return total, stats

    def update(state: PPOState):
        (params, env_state, obs, held, key), traj = jax.lax.scan(
            env_step,
            (state.params, state.env_state, state.obs, state.held, state.key),
            None,
            config.num_steps,
        )
        ws_last = jax.vmap(world_view)(env_state.env_state) if central else None
        out_last = jax.vmap(forward, in_axes=(None, 0, 0 if central else None))(params, obs, ws_last)
        adv, targets = {}, {}
        done = traj.done[:, :, None, None]
        for lvl in levels:
            adv[lvl], targets[lvl] = gae(
                traj.reward[lvl],
                traj.value[lvl],
                done,
                out_last[lvl][2],
                config.gamma,
                config.gae_lambda,
                None if lvl == "cell" else traj.decide[lvl][:, :, None, None],
            )

        def epoch(carry, _):
            net, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            n = config.num_steps * config.num_envs
            perm = jax.random.permutation(k_perm, n)

            def shuffle(x):
                x = x.reshape((n, *x.shape[2:]))[perm]
                return x.reshape((config.num_minibatches, config.minibatch_size, *x.shape[1:]))

            data = jax.tree.map(shuffle, (traj._replace(info=None), adv, targets))

            def minibatch(carry, mb):
                net, opt_state = carry
                tr, a, t = mb
                (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(net, norm, tr, a, t)
                updates, opt_state = tx.update(grads, opt_state, net)
                return (optax.apply_updates(net, updates), opt_state), {"loss": loss, **stats}

            (net, opt_state), stats = jax.lax.scan(minibatch, (net, opt_state), data)
            return (net, opt_state, key), stats

        norm = params["obs_norm"]
        key, k_epochs = jax.random.split(key)
        (net, opt_state, _), stats = jax.lax.scan(
            epoch, (params["net"], state.opt_state, k_epochs), None, config.update_epochs
        )
        if config.normalize_obs:  # the next rollout normalises with this one's statistics too
            norm = merge_rollout(norm, traj)
        params = {"net": net, "obs_norm": norm}
        metrics = {name: jnp.mean(v) for name, v in stats.items()}
        finished = traj.info["returned_episode"]
        n_done = jnp.sum(finished)
        for lvl in levels:
            metrics[f"reward_{lvl}"] = jnp.mean(traj.reward[lvl]) / config.reward_scale
            ret = traj.info["returned_episode_returns"][lvl]
            metrics[f"episode_return_{lvl}"] = jnp.where(
                n_done > 0, jnp.sum(ret * finished) / jnp.maximum(n_done, 1), jnp.nan
            )
            metrics[f"log_std_{lvl}"] = jnp.mean(net["params"][lvl]["log_std"])
        metrics["episodes"] = n_done
        new = PPOState(params, opt_state, env_state, obs, held, key, state.iteration + 1)
        return new, metrics

    def train(key: Array) -> dict:
        state = init(key)
        state, metrics = jax.lax.scan(lambda s, _: update(s), state, None, config.num_updates)
        return {"state": state, "metrics": metrics}

    return PPO(config, env, env_params, model, init, update, train, policy_apply, act, carry_policy)


def make_train(config: PPOConfig, env=None, env_params=None):
    """PureJaxRL's entry point: ``train(key) -> {"state": PPOState, "metrics": ...}``, pure and
    jittable end to end (``jax.jit(jax.vmap(train))(keys)`` trains one run per key)."""
    return make_ppo(config, env, env_params).train


# ------------------------------------------------------------------------------ evaluation
def policy_rollout(
    ppo: PPO,
    params: Any,
    key: Array,
    steps: int | None = None,
    *,
    deterministic: bool = True,
    record=None,
):
    """One world under the trained policy (with the coordinators' action repeat), without
    auto-reset: ``(final_state, records)`` with ``record(state)`` of the start and every step.
    The library's :func:`hnca_env.rollout.rollout` with ``ppo.policy(params)``."""
    env_params = ppo.env_params
    steps = int(env_params.max_steps_in_episode) if steps is None else steps
    _, final, recs = rollout(ppo.env, ppo.policy(params, deterministic), key, env_params, steps, record=record)
    return final, recs


def evaluate_policy(
    ppo: PPO,
    params: Any,
    key: Array,
    *,
    n_worlds: int = 32,
    steps: int | None = None,
    deterministic: bool = True,
    mesh=None,
    world_chunk: int | str | None = WORLD_CHUNK_AUTO,
) -> dict[str, float]:
    """The task's success metrics of a PPO policy, averaged over ``n_worlds`` episodes
    (the deterministic policy, the actors' means, unless ``deterministic=False``): the
    library's :func:`hnca_env.evaluate.evaluate` with ``ppo.policy(params)``, so ``mesh`` and
    ``world_chunk`` work as there."""
    return evaluate(
        ppo.env, ppo.policy(params, deterministic), key, ppo.env_params,
        n_worlds=n_worlds, steps=steps, mesh=mesh, world_chunk=world_chunk,
    )  # fmt: skip
