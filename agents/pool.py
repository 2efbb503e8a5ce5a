"""Gradient "pool" training through the environment (Growing NCA's sample-pool method).

The trainer backpropagates through ``env.step_env`` with a deterministic policy: the same env,
the same physics and the same task loss (``env.loss``) as RL uses. One iteration, all in one
``jax.jit`` with the pool in the carry (pure, no Python state):

1. sample a batch of pool states (without replacement);
2. rank it by loss; replace the ``reseed`` worst samples by fresh seeds (1: prevents
   forgetting how to grow; ``batch_size``: every rollout starts from the seed, Growing NCA's
   first experiment);
3. optionally damage the ``damage`` best samples with random discs (regeneration training),
   and give ``mutate`` random others a new task instance under their cells (a new digit);
4. roll out a random number of steps in ``[min_steps, max_steps]`` — a ``lax.scan`` over
   ``max_steps`` whose tail is masked, so the length changes without re-compiling —
   under ``jax.checkpoint`` per step when ``remat`` (memory O(steps · state), not activations;
   with ``remat_segments=S`` also per segment of steps: O((S + steps/S) · state));
5. loss = mean task loss of the final states; per-parameter gradient normalisation
   (Growing NCA) or global-norm clipping; Adam with a piecewise-constant schedule;
6. write the final states back into the pool.

H-NCA: the first ``tau_c`` steps of a world are child-only; the reference runs them without
gradient. Here every step that ends at ``time <= tau_c`` has its result under
``jax.lax.stop_gradient``, and ``warmup_steps`` (set it to ``tau_c``) runs each fresh seed
through those steps before it enters the pool, so the rolled-out steps are the coupled ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.networks import make_policy
from agents.settings import python_scalars
from hnca_env import physics, sharding
from hnca_env.rollout import WORLD_CHUNK_AUTO, env_cells, resolve_world_chunk

Array = jax.Array

GRAD_MODES = ("normalize", "clip", "none")


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """Pool-trainer settings; defaults are Growing NCA's (pool 1024, batch 8, 64–96 steps,
    Adam 2e-3 → 2e-4 at iteration 2000, per-parameter gradient normalisation).

    ``to_dict`` / ``from_dict`` round-trip through JSON and YAML (``mesh`` is left out). The
    settings of a whole run (task, env, these, and the rules ``hnca train`` derives some of them
    by: ``lr_final``, hidden widths, ``remat_segments``, ``donate``, ``warmup_steps``) are
    :class:`agents.pool_run.PoolRunConfig`.
    """

    pool_size: int = 1024
    batch_size: int = 8
    min_steps: int = 64
    max_steps: int = 96
    lr: float = 2e-3
    lr_final: float = 2e-4
    lr_boundary: int = 2000
    grad: str = "normalize"
    clip_norm: float = 1.0
    damage: int = 0
    reseed: int = 1
    # Samples of each batch whose task instance is drawn anew while their cells are kept
    # (``env.task.mutate``; Self-classifying MNIST swaps the digit under a quarter of a batch).
    mutate: int = 0
    remat: bool = True
    remat_segments: int = 0  # >0: checkpoint segments of steps too (memory ~ segments + steps/segments)
    hidden: Mapping[str, int] | None = None
    layers: Mapping[str, int] | int | None = None  # hidden layers per level, or every level's (default 1)
    learn_perception: tuple[str, ...] = ()
    # std of Gaussian noise added to every action in training rollouts (Self-classifying
    # MNIST's N(0, 0.02) on the updates); the env's fire and alive masks apply after it
    action_noise: float = 0.0
    warmup_steps: int = 0
    donate: bool = False  # iteration(state) reuses state's buffers (the pool): ~1/3 less peak memory
    mesh: Any = None  # a hnca_env.sharding.world_mesh: pool and batch split over its devices
    # Worlds differentiated together: None = the whole batch in one vmap; k = chunks of k
    # worlds in sequence, their gradients summed (same numbers; on a CPU 1.6x faster and 1/7
    # of the temporaries at batch 8, 72x72); "auto": chunks of ~8k cells on a CPU, else None
    # (hnca_env.rollout.resolve_world_chunk). With a mesh, k counts each device's worlds
    # (chunk_per_device), and "auto" is one vmap.
    world_chunk: int | str | None = "auto"

    def __post_init__(self):
        python_scalars(self)
        for name in ("pool_size", "batch_size", "min_steps", "max_steps", "lr_boundary"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PoolConfig.{name} must be a positive integer, got {v!r}")
        if self.batch_size > self.pool_size:
            raise ValueError(f"batch_size={self.batch_size} exceeds pool_size={self.pool_size}")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps={self.min_steps} exceeds max_steps={self.max_steps}")
        def number(v):
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        if not (number(self.action_noise) and self.action_noise >= 0):
            raise ValueError(f"PoolConfig.action_noise must be a finite number >= 0, got {self.action_noise!r}")
        for name in ("lr", "lr_final", "clip_norm"):
            v = getattr(self, name)
            if not (number(v) and v > 0):
                raise ValueError(f"PoolConfig.{name} must be a finite positive number, got {v!r}")
        for name in ("damage", "reseed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"PoolConfig.{name} must be an integer, got {v!r}")
        if self.grad not in GRAD_MODES:
            raise ValueError(f"PoolConfig.grad must be one of {GRAD_MODES}, got {self.grad!r}")
        if not 0 <= self.damage < self.batch_size:
            raise ValueError(f"PoolConfig.damage must be in [0, batch_size), got {self.damage}")
        if not 0 <= self.reseed <= self.batch_size or self.reseed + self.damage > self.batch_size:
            raise ValueError(
                f"PoolConfig.reseed must be in [0, batch_size - damage], got reseed={self.reseed}, "
                f"damage={self.damage}, batch_size={self.batch_size}"
            )
        if isinstance(self.mutate, bool) or not isinstance(self.mutate, int) or self.mutate < 0:
            raise ValueError(f"PoolConfig.mutate must be an integer >= 0, got {self.mutate!r}")
        if self.reseed + self.damage + self.mutate > self.batch_size:
            raise ValueError(
                f"PoolConfig: reseed + damage + mutate must be <= batch_size, got {self.reseed} + "
                f"{self.damage} + {self.mutate} > {self.batch_size}"
            )
        if (
            isinstance(self.remat_segments, bool)
            or not isinstance(self.remat_segments, int)
            or self.remat_segments < 0
        ):
            raise ValueError(
                f"PoolConfig.remat_segments must be an integer >= 0, got {self.remat_segments!r}"
            )
        if self.remat_segments and not self.remat:
            raise ValueError("PoolConfig.remat_segments needs remat=True")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"PoolConfig.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        layers = self.layers.values() if isinstance(self.layers, Mapping) else [self.layers]
        if self.layers is not None and not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in layers
        ):
            raise ValueError(
                f"PoolConfig.layers must be a positive integer (every level) or a mapping level -> "
                f"positive integer, got {self.layers!r}"
            )
        if self.mesh is not None:
            n = self.mesh.shape[sharding.WORLDS]
            if self.pool_size % n or self.batch_size % n:
                raise ValueError(
                    f"with a mesh of {n} devices, pool_size ({self.pool_size}) and batch_size "
                    f"({self.batch_size}) must be multiples of {n}"
                )
        self.chunk_per_device()  # raises on bad values

    def chunk_per_device(self, cells_per_world: int | None = None) -> int | None:
        """The worlds each device differentiates at a time: ``None`` (its whole share of the
        batch in one ``vmap``) or a divisor of its share. With a mesh an integer
        ``world_chunk`` counts worlds *per device* (every device runs its chunks in sequence,
        the devices side by side); ``"auto"`` is one ``vmap`` with a mesh."""
        if self.mesh is None:
            return resolve_world_chunk(self.world_chunk, self.batch_size, None, cells_per_world)
        if self.world_chunk in (None, WORLD_CHUNK_AUTO):
            return None
        share = self.batch_size // self.mesh.shape[sharding.WORLDS]
        try:
            return resolve_world_chunk(self.world_chunk, share)
        except ValueError as e:
            raise ValueError(
                f"{e}: with a mesh of {self.mesh.shape[sharding.WORLDS]} devices world_chunk counts the "
                f"worlds of each device's share ({share} of batch_size {self.batch_size})"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-able settings: ``mesh`` is left out, tuples become lists."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "mesh"}
        for name in ("hidden", "layers"):
            d[name] = d[name] if d[name] is None or isinstance(d[name], int) else dict(d[name])
        d["learn_perception"] = list(self.learn_perception)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolConfig:
        """Settings from a dict (``to_dict``'s, or a YAML mapping); unknown keys are an error
        naming them."""
        known = {f.name for f in dataclasses.fields(cls)} - {"mesh"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PoolConfig setting(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        lp = d.get("learn_perception")
        if lp is not None:
            d["learn_perception"] = (lp,) if isinstance(lp, str) else tuple(lp)
        return cls(**d)


class PoolState(struct.PyTreeNode):
    """Everything an iteration carries: policy parameters, optimiser state, the pool of world
    states (an ``EnvState`` with a leading pool axis), the PRNG key and the iteration count."""

    params: Any
    opt_state: Any
    pool: Any
    key: Array
    iteration: Array


def normalize_per_param(grads: Any) -> Any:
    """Growing NCA's per-parameter gradient normalisation: ``g / (‖g‖ + 1e-8)``."""
    return jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + 1e-8), grads)


def damage_discs(key: Array, cells: Array) -> Array:
    """Zero one random disc in each of ``cells (N, H, W, C)`` (Growing NCA's damage: centre in
    the middle half of the grid, radius 5–20 % of its width)."""
    n, h, w, _ = cells.shape

    def one(k, c):
        hole = physics.random_hole(k, (h, w), (0.05, 0.2), centre_range=(0.25, 0.75), radius_scale=min(h, w))
        return physics.cut(c, hole)

    return jax.vmap(one)(jax.random.split(key, n), cells)


def make_pool_trainer(env, env_params, config: PoolConfig = PoolConfig()):
    """Build ``(init, iteration, policy_apply)`` for ``env``.

    ``init(key) -> PoolState`` fills the pool with seeds; ``iteration(state) -> (state,
    metrics)`` is one jitted training step; ``policy_apply(params, obs) -> action``. With
    ``config.donate`` the iteration donates its input (the pool is updated in place; the old
    state must not be used afterwards), as ``hnca train`` does.
    Levels driven by ``fixed_rules`` (a frozen child) are part of the env, not trained.
    """
    env.check_params(env_params)
    if config.mutate and not env.task.can_mutate:
        raise ValueError(f"PoolConfig.mutate needs a task that can mutate; {type(env.task).__name__} cannot")
    p_init, p_apply = make_policy(env, config.hidden, config.learn_perception, config.layers)
    schedule = optax.piecewise_constant_schedule(config.lr, {config.lr_boundary: config.lr_final / config.lr})
    chain = []
    if config.grad == "clip":
        chain.append(optax.clip_by_global_norm(config.clip_norm))
    chain.append(optax.adam(schedule))
    opt = optax.chain(*chain)

    def policy_step(params, state, k):
        """One transition; a result still in the child-only phase carries no gradient."""
        action = p_apply(params, env.get_obs(state, env_params))
        if config.action_noise:
            # a key of its own, so runs without noise keep their numbers
            k_noise = jax.random.split(jax.random.fold_in(k, 1), len(action))
            action = {
                lvl: a + config.action_noise * jax.random.normal(kn, a.shape, a.dtype)
                for kn, (lvl, a) in zip(k_noise, sorted(action.items()))
            }
        new, *_ = env.transition(k, state, action, env_params)
        if env.has_parent:
            child_only = new.time <= env_params.tau_c
            new = jax.tree.map(lambda x: jnp.where(child_only, jax.lax.stop_gradient(x), x), new)
        return new

    def seed(key: Array, params) -> Any:
        """A fresh world, run through ``warmup_steps`` steps without gradient."""
        k_init, k_run = jax.random.split(key)
        state = env.initial_state(k_init, env_params)
        if config.warmup_steps:
            frozen = jax.lax.stop_gradient(params)
            state, _ = jax.lax.scan(
                lambda s, k: (policy_step(frozen, s, k), None),
                state,
                jax.random.split(k_run, config.warmup_steps),
            )
        return state

    # on a mesh, every carry (a fresh one, an iteration's, one read from a checkpoint) is laid
    # out the same way, the pool split over the devices and the rest replicated, so a resumed
    # run compiles and computes exactly what an unbroken one does
    if config.mesh is not None:
        rep = jax.sharding.NamedSharding(config.mesh, jax.sharding.PartitionSpec())
        carry_layout = PoolState(rep, rep, sharding.world_sharding(config.mesh), rep, rep)
        jit_carry = partial(jax.jit, out_shardings=carry_layout)
        jit_step = partial(jax.jit, out_shardings=(carry_layout, rep))
    else:
        jit_carry = jit_step = jax.jit

    @jit_carry
    def init(key: Array) -> PoolState:
        k_p, k_s, key = jax.random.split(key, 3)
        params = p_init(k_p)
        pool = jax.vmap(seed, in_axes=(0, None))(jax.random.split(k_s, config.pool_size), params)
        pool = sharding.constrain_worlds(pool, config.mesh)
        return PoolState(params, opt.init(params), pool, key, jnp.zeros((), jnp.int32))

    def rollout_loss(params, batch, n_steps, keys):
        def body(state, xs):
            t, k = xs
            new = policy_step(params, state, k)
            keep = t < n_steps
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state), None

        if config.remat:
            body = jax.checkpoint(body)

        def one(state, k):
            xs = (jnp.arange(config.max_steps), jax.random.split(k, config.max_steps))
            if not config.remat_segments:
                return jax.lax.scan(body, state, xs)[0]
            # Two-level checkpointing: the backward pass keeps one carry per segment and, while
            # it differentiates a segment, one per step of that segment: S + T/S carries
            # instead of T (O(sqrt T) with S ~ sqrt T), for one more forward pass.
            n_seg = min(config.remat_segments, config.max_steps)
            seg = -(-config.max_steps // n_seg)
            pad = n_seg * seg - config.max_steps  # padded steps are masked out (t >= n_steps)
            xs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)]) if pad else x, xs)
            xs = (xs[0].at[config.max_steps :].set(config.max_steps), xs[1])
            xs = jax.tree.map(lambda x: x.reshape(n_seg, seg, *x.shape[1:]), xs)

            @jax.checkpoint
            def segment(state, seg_xs):
                return jax.lax.scan(body, state, seg_xs)[0], None

            return jax.lax.scan(segment, state, xs)[0]

        final = jax.vmap(one)(batch, keys)
        losses = jax.vmap(env.loss, in_axes=(0, None))(final, env_params)
        return jnp.mean(losses), (final, losses)

    chunk = config.chunk_per_device(env_cells(env))
    n_dev = 1 if config.mesh is None else config.mesh.shape[sharding.WORLDS]

    def batch_value_and_grad(params, batch, n_steps, keys):
        """``value_and_grad`` of :func:`rollout_loss` over the batch, or summed over chunks of
        ``chunk`` worlds differentiated one after another (each chunk's rollout and backward
        pass stay in cache; only one chunk's residuals are alive at a time)."""
        vg = jax.value_and_grad(rollout_loss, has_aux=True)
        if chunk is None:
            return vg(params, batch, n_steps, keys)
        n = config.batch_size // (chunk * n_dev)

        def body(acc, xs):
            chunk_batch, chunk_keys = sharding.constrain_worlds(xs, config.mesh)
            (_, aux), g = vg(params, chunk_batch, n_steps, chunk_keys)
            return jax.tree.map(jnp.add, acc, g), aux

        # (B, ...) -> (n, D * chunk, ...): step j of the scan takes the j-th chunk of every
        # device's contiguous share of the batch, so each device only reads its own worlds
        def split(x):
            x = x.reshape(n_dev, n, chunk, *x.shape[1:]).swapaxes(0, 1)
            return sharding.constrain_worlds(x.reshape(n, n_dev * chunk, *x.shape[3:]), config.mesh, axis=1)

        def merge(x):
            x = x.reshape(n, n_dev, chunk, *x.shape[2:]).swapaxes(0, 1)
            return x.reshape(config.batch_size, *x.shape[3:])

        grads, (final, losses) = jax.lax.scan(
            body, jax.tree.map(jnp.zeros_like, params), jax.tree.map(split, (batch, keys))
        )
        final, losses = sharding.constrain_worlds(jax.tree.map(merge, (final, losses)), config.mesh)
        # each chunk's loss is the mean over its worlds; the batch mean is their mean
        return (jnp.mean(losses), (final, losses)), jax.tree.map(lambda g: g / n, grads)

    @partial(jit_step, donate_argnums=(0,) if config.donate else ())
    def iteration(state: PoolState) -> tuple[PoolState, dict]:
        key, k_idx, k_seed, k_dmg, k_len, k_roll = jax.random.split(state.key, 6)
        idx = jax.random.choice(k_idx, config.pool_size, (config.batch_size,), replace=False)
        batch = jax.tree.map(lambda x: x[idx], state.pool)
        pre = jax.vmap(env.loss, in_axes=(0, None))(batch, env_params)
        order = jnp.argsort(-pre)  # worst first
        idx = idx[order]
        batch = sharding.constrain_worlds(jax.tree.map(lambda x: x[order], batch), config.mesh)
        if config.reseed:
            fresh = jax.vmap(seed, in_axes=(0, None))(jax.random.split(k_seed, config.reseed), state.params)
            batch = jax.tree.map(lambda b, s: b.at[: config.reseed].set(s), batch, fresh)
        if config.damage:
            cells = batch.grids["cell"]
            hurt = damage_discs(k_dmg, cells[-config.damage :])
            batch = batch.replace(grids={**batch.grids, "cell": cells.at[-config.damage :].set(hurt)})
        if config.mutate:
            # a random subset of the samples neither re-seeded nor damaged: new task, same cells
            # keys of their own (folded off the carry's key): runs without mutation keep their numbers
            k_pick, k_mut = jax.random.split(jax.random.fold_in(state.key, 1))
            free = jnp.arange(config.reseed, config.batch_size - config.damage)
            pick = jax.random.choice(k_pick, free, (config.mutate,), replace=False)
            chosen = jax.tree.map(lambda x: x[pick], batch)
            mutated = jax.vmap(env.task.mutate, in_axes=(0, 0, None))(
                jax.random.split(k_mut, config.mutate), chosen, env_params
            )
            batch = jax.tree.map(lambda b, m: b.at[pick].set(m), batch, mutated)
        n_steps = jax.random.randint(k_len, (), config.min_steps, config.max_steps + 1)
        keys = jax.random.split(k_roll, config.batch_size)
        (loss, (final, losses)), grads = batch_value_and_grad(state.params, batch, n_steps, keys)
        if config.grad == "normalize":
            grads = normalize_per_param(grads)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        pool = jax.tree.map(lambda p, f: p.at[idx].set(f), state.pool, final)
        pool = sharding.constrain_worlds(pool, config.mesh)
        metrics = {"loss": loss, "max_loss": losses.max(), "steps": n_steps, "lr": schedule(state.iteration)}
        return PoolState(params, opt_state, pool, key, state.iteration + 1), metrics

    if config.mesh is not None:
        compiled_iteration = iteration

        def iteration(state: PoolState) -> tuple[PoolState, dict]:
            """A carry from anywhere (e.g. a checkpoint read onto one device) laid out on the
            mesh first (a no-op for the previous iteration's output)."""
            return compiled_iteration(jax.device_put(state, carry_layout))

    return init, iteration, p_apply
