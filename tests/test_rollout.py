"""Batching many worlds: hnca_env.rollout.map_worlds / rollout_worlds and world_chunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close

import hnca_env
from hnca_env.evaluate import evaluate, evaluate_worlds, random_policy
from hnca_env.rollout import (
    AUTO_CHUNK_CELLS,
    env_cells,
    map_worlds,
    resolve_world_chunk,
    rollout,
    rollout_worlds,
)


@pytest.fixture(scope="module")
def single_rollouts(hnca_small):
    """``(policy, keys, record, want)``: 4 single-world rollouts, one after another, that every
    ``world_chunk`` below is compared with (one compiled function for the 4 keys)."""
    env, params = hnca_small
    policy = random_policy(env, 0.3)
    keys = jax.random.split(jax.random.key(3), 4)
    record = lambda s: s.grids["cell"].mean()  # noqa: E731
    single = jax.jit(lambda k: rollout(env, policy, k, params, 6, record=record))
    loop = [single(k) for k in keys]
    return policy, keys, record, jax.tree.map(lambda *xs: jnp.stack(xs), *loop)


@pytest.mark.parametrize("chunk", [None, 1, 2, 4, "auto"])
def test_rollout_worlds_equals_a_loop_of_single_rollouts(hnca_small, single_rollouts, chunk):
    env, params = hnca_small
    policy, keys, record, want = single_rollouts
    got = jax.jit(lambda k: rollout_worlds(env, policy, k, params, 6, record=record, world_chunk=chunk))(keys)
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)  # float rounding of batched vs single ops


def test_rollout_worlds_from_given_states(grow_env):
    env, params = grow_env
    keys = jax.random.split(jax.random.key(0), 4)
    _, states = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
    policy = random_policy(env, 0.1)
    a = rollout_worlds(env, policy, keys, params, 3, states=states, world_chunk=None)
    b = rollout_worlds(env, policy, keys, params, 3, states=states, world_chunk=2)
    assert_trees_close(a, b, rtol=1e-6, atol=1e-7)


def test_map_worlds_is_differentiable_like_vmap():
    w = jnp.arange(3.0)
    xs = jnp.arange(12.0).reshape(4, 3)

    def loss(w, chunk):
        return jnp.sum(map_worlds(lambda x: jnp.sin(x * w).sum(), xs, world_chunk=chunk) ** 2)

    np.testing.assert_allclose(jax.grad(loss)(w, 1), jax.grad(loss)(w, None), rtol=1e-6)


def test_auto_chunk_rule():
    cpu = jax.default_backend() == "cpu"
    assert resolve_world_chunk("auto", 8, cells_per_world=72 * 72) == (1 if cpu else None)
    assert resolve_world_chunk("auto", 64, cells_per_world=24 * 24) == (8 if cpu else None)
    # the largest divisor of the worlds up to the cell budget
    assert resolve_world_chunk("auto", 30, cells_per_world=AUTO_CHUNK_CELLS // 4) == (3 if cpu else None)
    assert resolve_world_chunk("auto", 4, cells_per_world=8 * 8) is None  # the whole batch fits
    assert resolve_world_chunk("auto", 64) is None  # unknown world size: vmap
    assert resolve_world_chunk(4, 4) is None and resolve_world_chunk(None, 4) is None
    env, _ = hnca_env.make("HNCA-Grow-v0", grid=(16, 16))
    assert env_cells(env) == 16 * 16 + (16 // env.cluster) ** 2


@pytest.mark.parametrize(
    "chunk, match",
    [(0, "positive integer"), (3, "must divide"), (True, "positive integer"), ("two", "positive")],
)
def test_bad_world_chunk_is_refused(grow_env, chunk, match):
    env, params = grow_env
    with pytest.raises(ValueError, match=match):
        resolve_world_chunk(chunk, 4)
    with pytest.raises(ValueError, match=match):
        evaluate_worlds(
            env, random_policy(env), jax.random.key(0), params, n_worlds=4, steps=2, world_chunk=chunk
        )


def test_rollout_checks_its_arguments_and_the_policys_actions(hnca_small, key):
    """Bad input to rollout (and so rollout_worlds and evaluate) names the problem while tracing,
    as env.step does, instead of a broadcasting error inside the physics."""
    env, params = hnca_small

    def zeros(levels, dim=None, dtype=jnp.float32):
        return lambda k, obs: {
            lvl: jnp.zeros((*env.grid_shape(lvl), dim or env.action_dim(lvl)), dtype) for lvl in levels
        }

    bad = [
        (zeros(env.agent_levels, dim=3), ValueError, r"action\['cell'\] has shape \(16, 16, 3\)"),
        (zeros(["cell"]), ValueError, r"action has levels \['cell'\], expected \['cell', 'parent'\]"),
        (zeros(env.agent_levels, dtype=jnp.int32), TypeError, "must be floating point"),
    ]
    for policy, error, match in bad:
        with pytest.raises(error, match=match):
            rollout(env, policy, key, params, steps=2)
        with pytest.raises(error, match=match):
            evaluate_worlds(env, policy, key, params, n_worlds=2, steps=2)
    with pytest.raises(ValueError, match="steps must be a positive integer, got -1"):
        rollout(env, random_policy(env), key, params, steps=-1)
    other, other_params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8))
    with pytest.raises(ValueError, match=r"state.grids\['cell'\] has shape \(8, 8, 12\)"):
        rollout(env, random_policy(env), key, params, steps=2, state=other.reset(key, other_params)[1])
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        rollout(env, random_policy(env), key, params.replace(max_steps_in_episode=0), steps=2)
    # NumPy integers are integers
    metrics = evaluate(env, random_policy(env), key, params, n_worlds=np.int64(2), steps=np.int32(2),
                       world_chunk=np.int64(1))  # fmt: skip
    assert metrics and all(np.isfinite(v) for v in metrics.values())


def test_a_carry_policy_keeps_its_carry_and_a_plain_one_is_wrapped():
    """rollout threads a CarryPolicy's carry step to step (here: a step counter the action
    reads); a plain policy gives the numbers of its CarryPolicy wrapper; a non-policy is
    refused by name."""
    import jax.numpy as jnp

    import hnca_env
    from hnca_env.evaluate import zero_policy
    from hnca_env.rollout import CarryPolicy, as_carry_policy, rollout

    env, params = hnca_env.make("Grow-v0", grid=(8, 8), target_size=6)
    zero = zero_policy(env)

    def step(key, obs, count, state):
        act = zero(key, obs)
        return {lvl: a + 0.01 * count for lvl, a in act.items()}, count + 1

    counting = CarryPolicy(init=lambda state: jnp.float32(0.0), step=step)
    _, _, counts = rollout(env, counting, jax.random.key(0), params, 4, record=lambda s: s.time)
    assert counts.tolist() == [0, 1, 2, 3, 4]
    a = rollout(env, zero, jax.random.key(1), params, 3)[1].grids["cell"]
    b = rollout(env, as_carry_policy(zero), jax.random.key(1), params, 3)[1].grids["cell"]
    np.testing.assert_array_equal(a, b)
    c = rollout(env, counting, jax.random.key(1), params, 3)[1].grids["cell"]
    assert not np.array_equal(a, c)  # the carry reached the actions
    with pytest.raises(TypeError, match="a policy must be"):
        as_carry_policy("zero")
