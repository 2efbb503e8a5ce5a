"""Evolution strategies on the same env and the same policy networks (evosax).

The third way to train: no gradient through the env (the pool trainer's) and no credit
assignment over hundreds of agents (PPO's). The policy is the pool trainer's NCA update rules
(:func:`agents.networks.make_policy`, one network per acting level), flattened by evosax into
one parameter vector; a population of such vectors is evaluated by the library's own rollout
(:func:`hnca_env.rollout.rollout_worlds`) on ``worlds`` worlds each, and its fitness is either
the task's differentiable loss at the end of the episode (``fitness="loss"``, what the pool
trainer minimises) or minus the mean per-step team reward of the first acting level
(``fitness="return"``, what RL maximises). evosax minimises; both are written as costs.

One generation, jitted (``iteration(state) -> (state, metrics)``, the pool trainer's contract,
so :func:`agents.loop.train_loop` runs it with checkpoints and exact resume):

1. ``ask`` the strategy for a population (antithetic pairs for OpenAI-ES; SNES and Sep-CMA-ES
   sample as evosax does);
2. every member plays ``worlds`` worlds for ``steps`` steps (the same world keys for every
   member of a generation: common random numbers, so fitness differences are the members');
3. ``tell`` the strategy the costs (fitness shaping: centred ranks for OpenAI-ES, the
   strategies' own weights otherwise).

``ESConfig.mesh`` shards the population over devices (each device evaluates its share).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import flatten_util

import hnca_env
from agents.networks import make_policy
from agents.settings import check_task_id, load_settings, python_scalars
from hnca_env import sharding
from hnca_env.rollout import rollout_worlds

Array = jax.Array

#: Strategies selectable by name.
ALGORITHMS = ("open_es", "snes", "sep_cma_es")
FITNESS = ("loss", "return")


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """ES settings; ``from_dict`` / ``to_dict`` round-trip through YAML like ``PPOConfig``."""

    task: str = "Density-v0"
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    algorithm: str = "open_es"
    population: int = 64
    worlds: int = 4  # worlds each member plays per generation
    steps: int | None = None  # episode steps per evaluation (None: the env's episode length)
    fitness: str = "loss"
    sigma: float = 0.05  # initial search std
    lr: float = 0.03  # OpenAI-ES: Adam on the mean; SNES / Sep-CMA-ES: their own updates
    hidden: Mapping[str, int] | None = None
    #: Per acting level, a factor on its parameters' search scale: the strategy searches
    #: ``params / scale`` (so that level's noise is ``scale x sigma`` and its steps ``scale x``
    #: the mean's). Coordinators integrate their whole cluster, so a small factor there keeps
    #: their broadcasts from swamping the cells (e.g. ``{"parent": 0.1}``). Unnamed levels: 1.
    level_scale: Mapping[str, float] | None = None
    mesh: Any = None

    def __post_init__(self):
        python_scalars(self)
        check_task_id("ESConfig", self.task)
        if self.env_kwargs is None:  # as PPOConfig: no env settings
            object.__setattr__(self, "env_kwargs", {})
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"ESConfig.env_kwargs must be a mapping, got {type(self.env_kwargs).__name__}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"ESConfig.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.fitness not in FITNESS:
            raise ValueError(f"ESConfig.fitness must be one of {FITNESS}, got {self.fitness!r}")
        for name in ("population", "worlds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ESConfig.{name} must be a positive integer, got {v!r}")
        if self.algorithm == "open_es" and self.population % 2:
            raise ValueError(
                f"ESConfig.population must be even for antithetic OpenAI-ES, got {self.population}"
            )
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ValueError(f"ESConfig.steps must be None or a positive integer, got {self.steps!r}")
        for name in ("sigma", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"ESConfig.{name} must be a positive number, got {v!r}")
        for lvl, v in dict(self.level_scale or {}).items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"ESConfig.level_scale[{lvl!r}] must be a positive number, got {v!r}")
        if self.mesh is not None and self.population % self.mesh.shape[sharding.WORLDS]:
            raise ValueError(
                f"ESConfig.population ({self.population}) must be a multiple of the mesh's "
                f"{self.mesh.shape[sharding.WORLDS]} devices"
            )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("mesh")
        d["env_kwargs"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dict(self.env_kwargs).items()
        }
        d["hidden"] = None if self.hidden is None else dict(self.hidden)
        d["level_scale"] = None if self.level_scale is None else dict(self.level_scale)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ESConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"mesh"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ESConfig setting(s) {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("env_kwargs"), Mapping):
            d["env_kwargs"] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in dict(d["env_kwargs"]).items()
            }
        return cls(**d)


def load_config(
    task: str | None = None, path: str | None = None, overrides: Sequence[str] | Mapping = ()
) -> ESConfig:
    """An ``ESConfig`` from a YAML file, then ``key=value`` overrides (``task`` if neither sets it)."""
    settings = load_settings(path, overrides, what="ES")
    if task is not None:
        settings.setdefault("task", task)
    return ESConfig.from_dict(settings)


class ESState(struct.PyTreeNode):
    """The carry: the strategy's state (its mean is the current policy), the PRNG key and the
    generation count (``iteration``, as ``PoolState``'s, for the loop and checkpoints)."""

    es_state: Any
    key: Array
    iteration: Array
    params: Any  # the strategy's mean as policy parameters (what hnca eval loads)


def _strategy(config: ESConfig, template):
    from evosax.algorithms import SNES, Open_ES, Sep_CMA_ES

    if config.algorithm == "open_es":
        return Open_ES(
            config.population,
            template,
            use_antithetic_sampling=True,
            optimizer=optax.adam(config.lr),
            std_schedule=optax.constant_schedule(config.sigma),
        )
    if config.algorithm == "snes":
        return SNES(config.population, template, optimizer=optax.sgd(config.lr))
    return Sep_CMA_ES(config.population, template)


def flatten(params) -> tuple[Array, Any]:
    """A policy's parameters as one vector and the function back (evosax's ravelling)."""
    flat, unravel = flatten_util.ravel_pytree(params)
    return flat, unravel


def make_es(config: ESConfig):
    """``(env, env_params, init, iteration, policy_apply)`` for ``config``.

    ``init(key) -> ESState``; ``iteration(state) -> (state, metrics)`` is one jitted
    generation; ``policy_apply(params, obs) -> action`` (the mean is ``state.params``).
    """
    env, env_params = hnca_env.make(config.task, **dict(config.env_kwargs))
    unknown = set(config.level_scale or {}) - set(env.agent_levels)
    if unknown:
        raise ValueError(
            f"ESConfig.level_scale names {sorted(unknown)}, not acting levels of {config.task} "
            f"({list(env.agent_levels)})"
        )
    p_init, p_apply = make_policy(env, config.hidden)
    scale = {lvl: float(v) for lvl, v in dict(config.level_scale or {}).items() if float(v) != 1.0}

    def to_policy(z):  # search coordinates -> policy parameters
        return {lvl: jax.tree.map(lambda x: x * scale[lvl], v) if lvl in scale else v for lvl, v in z.items()}

    def to_search(theta):
        return {lvl: jax.tree.map(lambda x: x / scale[lvl], v) if lvl in scale else v for lvl, v in theta.items()}

    steps = int(env_params.max_steps_in_episode) if config.steps is None else config.steps
    template = jax.eval_shape(p_init, jax.random.key(0))
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
    strategy = _strategy(config, template)
    es_params = strategy.default_params
    if config.algorithm != "open_es":  # both start their search std at sigma
        es_params = es_params.replace(std_init=jnp.float32(config.sigma))
    level = env.agent_levels[0]

    def cost(policy_params, keys) -> Array:
        def act(key, obs):
            del key
            return p_apply(policy_params, obs)

        if config.fitness == "loss":
            _, final, _ = rollout_worlds(env, act, keys, env_params, steps, world_chunk=None)
            return jnp.mean(jax.vmap(env.loss, in_axes=(0, None))(final, env_params))

        def one(k):
            def body(carry, kk):
                obs, st = carry
                k_act, k_step = jax.random.split(kk)
                obs, st, _, _, info = env.step_env(k_step, st, act(k_act, obs), env_params)
                return (obs, st), info["team_reward"][level]

            k_reset, k_run = jax.random.split(k)
            obs, st = env.reset_env(k_reset, env_params)
            _, rewards = jax.lax.scan(body, (obs, st), jax.random.split(k_run, steps))
            return jnp.mean(rewards)

        return -jnp.mean(jax.vmap(one)(keys))

    @jax.jit
    def init(key: Array) -> ESState:
        k_p, k_es, key = jax.random.split(key, 3)
        mean = to_search(p_init(k_p))
        es_state = strategy.init(k_es, mean, es_params)
        return ESState(es_state, key, jnp.zeros((), jnp.int32), to_policy(strategy.get_mean(es_state)))

    @jax.jit
    def iteration(state: ESState) -> tuple[ESState, dict]:
        key, k_ask, k_eval, k_tell = jax.random.split(state.key, 4)
        population, es_state = strategy.ask(k_ask, state.es_state, es_params)
        population = sharding.constrain_worlds(population, config.mesh)
        keys = jax.random.split(k_eval, config.worlds)  # common random numbers
        costs = jax.vmap(lambda z, k: cost(to_policy(z), k), in_axes=(0, None))(population, keys)
        es_state, _ = strategy.tell(k_tell, population, costs, es_state, es_params)
        mean = to_policy(strategy.get_mean(es_state))
        # costs: the loss, or minus the mean team reward; "loss" is the mean policy's (shown
        # by the progress bar), on this generation's worlds
        metrics = {"loss": cost(mean, keys), "population_cost": jnp.mean(costs), "best_cost": jnp.min(costs)}
        return ESState(es_state, key, state.iteration + 1, mean), metrics

    return env, env_params, init, iteration, p_apply


__all__ = ["ALGORITHMS", "ESConfig", "ESState", "FITNESS", "flatten", "load_config", "make_es"]
