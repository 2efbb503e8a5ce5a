"""Ablations of the links between levels (HNCAEnv(coupling=...)): the broadcast zeroed, and the
clusters rewired at random, against a NumPy loop over the children."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env

KW = dict(grid=(8, 8), cluster=4, tau_c=0, max_steps_in_episode=4)


def _members(env, i=1):
    """For each cell of level i-1 (flat index), the flat index of the level-i agent it is linked to."""
    h, w = env.grid_shape(env.levels[i - 1])
    k = env.level_specs[i].cluster
    perm, inv = env._rewiring[i]
    wp = w // k
    return np.array([(inv[r] // w // k) * wp + (inv[r] % w) // k for r in range(h * w)])


def test_rewired_sensor_broadcast_and_reward_follow_one_random_membership():
    env, params = hnca_env.make("HNCA-Grow-v0", coupling="rewired", coupling_seed=3, **KW)
    member = _members(env)
    assert sorted(np.bincount(member).tolist()) == [16, 16, 16, 16]  # 4 coordinators, 16 cells each
    blocks = np.arange(64).reshape(8, 8)
    intact = (blocks // 8 // 4) * 2 + (blocks % 8) // 4
    assert not np.array_equal(member, intact.reshape(-1))  # not the spatial clusters
    x = np.random.default_rng(0).normal(size=(8, 8, 3)).astype(np.float32)
    flat = x.reshape(64, 3).astype(np.float64)
    want = np.stack([flat[member == j].mean(0) for j in range(4)]).reshape(2, 2, 3)
    np.testing.assert_allclose(np.asarray(env._sense(1, jnp.asarray(x))), want, rtol=1e-6, atol=1e-6)
    signal = np.arange(4 * 2, dtype=np.float32).reshape(2, 2, 2)
    got = np.asarray(env._broadcast(1, jnp.asarray(signal))).reshape(64, 2)
    np.testing.assert_array_equal(got, signal.reshape(4, 2)[member])
    # the coordinators' reward is the mean over their linked cells
    obs, state = env.reset(jax.random.key(0), params)
    zero = {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}
    _, _, reward, *_ = env.step(jax.random.key(1), state, zero, params)
    cells = np.asarray(reward["cell"], np.float64).reshape(64)
    want_r = np.array([cells[member == j].mean() for j in range(4)]).reshape(2, 2)
    np.testing.assert_allclose(np.asarray(reward["parent"]), want_r, rtol=1e-5)
    # one permutation per seed
    again, _ = hnca_env.make("HNCA-Grow-v0", coupling="rewired", coupling_seed=3, **KW)
    other, _ = hnca_env.make("HNCA-Grow-v0", coupling="rewired", coupling_seed=4, **KW)
    assert np.array_equal(_members(again), member) and not np.array_equal(_members(other), member)


def test_no_broadcast_leaves_the_children_deaf_and_the_coordinators_sensing():
    env, params = hnca_env.make("HNCA-Grow-v0", coupling="no-broadcast", **KW)
    intact, _ = hnca_env.make("HNCA-Grow-v0", **KW)
    obs, state = env.reset(jax.random.key(0), params)
    cell_a = jnp.zeros((8, 8, env.action_dim("cell")))
    loud = {"cell": cell_a, "parent": jnp.full((2, 2, env.action_dim("parent")), 3.0)}
    quiet = {"cell": cell_a, "parent": jnp.zeros((2, 2, env.action_dim("parent")))}
    a = env.step(jax.random.key(1), state, loud, params)[1]
    b = env.step(jax.random.key(1), state, quiet, params)[1]
    np.testing.assert_array_equal(a.grids["cell"], b.grids["cell"])  # the broadcast never arrives
    c = intact.step(jax.random.key(1), state, loud, params)[1]
    assert not np.array_equal(a.grids["cell"], c.grids["cell"])  # where intact, it does
    # the coordinators still update and sense: as an intact step whose broadcast part is zero
    cp = env.level_specs[1].channels
    silent = {"cell": cell_a, "parent": loud["parent"].at[..., cp:].set(0.0)}
    d = intact.step(jax.random.key(1), state, silent, params)[1]
    np.testing.assert_allclose(a.grids["parent"], d.grids["parent"], rtol=1e-6)  # to XLA's rounding
    np.testing.assert_allclose(a.grids["cell"], d.grids["cell"], rtol=1e-6)


def test_a_rewired_env_runs_jitted_and_vmapped():
    env, params = hnca_env.make("HNCA-Grow-v0", coupling="rewired", **KW)
    keys = jax.random.split(jax.random.key(0), 3)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    act = {lvl: jnp.ones((3, *env.grid_shape(lvl), env.action_dim(lvl))) * 0.1 for lvl in env.agent_levels}
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs2, state2, *_ = step(keys, state, act, params)
    assert all(np.isfinite(np.asarray(v)).all() for v in obs2.values())


def test_bad_couplings_are_refused():
    with pytest.raises(ValueError, match="coupling must be one of"):
        hnca_env.make("HNCA-Grow-v0", coupling="cut", **KW)
    with pytest.raises(ValueError, match="this env has one level"):
        hnca_env.make("Grow-v0", grid=(8, 8), coupling="rewired")
    with pytest.raises(ValueError, match="coupling_seed must be an integer >= 0"):
        hnca_env.make("HNCA-Grow-v0", coupling="rewired", coupling_seed=-1, **KW)
