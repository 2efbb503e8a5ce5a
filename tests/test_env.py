"""HNCAEnv: the API contract, invariants and the two faithful modes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_action

import hnca_env
from hnca_env import physics
from hnca_env.env import SEED_NOISE, SEED_STATE


def zero_action(env):
    return {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}


def test_shapes_and_spaces_grow(grow_env, key):
    env, params = grow_env
    obs, state = env.reset(key, params)
    assert set(obs) == {"cell"} and obs["cell"].shape == (16, 16, 48)
    assert env.observation_space(params).contains(obs)
    action = random_action(env, params, key)
    assert env.action_space(params).contains(action)
    obs, state, reward, term, trunc, info = env.step(key, state, action, params)
    assert reward["cell"].shape == (16, 16)
    assert term.shape == () and trunc.shape == () and term.dtype == bool
    assert set(info["team_reward"]) == {"cell"}
    assert info["final_observation"]["cell"].shape == (16, 16, 48)
    assert env.state_space(params).contains(state.grids)


def test_shapes_and_spaces_hnca(hnca_small, key):
    env, params = hnca_small
    obs, state = env.reset(key, params)
    assert obs["cell"].shape == (16, 16, 48)  # 12 channels x 4 kernels
    assert obs["parent"].shape == (4, 4, 12 * 4 + 12)  # own perception + sensed cluster
    assert env.action_space(params).spaces["parent"].shape == (4, 4, 12 + 9)
    assert env.observation_space(params).contains(obs)
    ws = env.world_state(state, params)
    assert ws.shape == (4, 4, 12 + 12 + 3 + 1)


def test_seeds(grow_env, hnca_small, key):
    env, params = grow_env
    _, state = env.reset(key, params)
    cells = np.asarray(state.grids["cell"])
    assert cells.sum() == 13.0 and np.all(cells[8, 8, 3:] == 1) and np.all(cells[8, 8, :3] == 0)
    env, params = hnca_small
    _, state = env.reset(key, params)
    cells = np.asarray(state.grids["cell"])
    assert params.seed == SEED_NOISE and 0 <= cells.min() and cells.max() < 1 and cells.std() > 0.2
    assert np.all(np.asarray(state.grids["parent"]) == 0)  # parent level not started yet


def test_observation_is_local(grow_env, key):
    env, params = grow_env
    _, state = env.reset(key, params)
    grids = {"cell": jnp.zeros((16, 16, 16))}
    far = {"cell": grids["cell"].at[8, 8].set(1.0)}
    o1 = env.get_obs(state.replace(grids=grids), params)["cell"]
    o2 = env.get_obs(state.replace(grids=far), params)["cell"]
    changed = np.argwhere(np.any(np.asarray(o1 != o2), axis=-1))
    assert {tuple(c) for c in changed} <= {(8 + dy, 8 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def rollout(env, params, key, steps=4):
    obs, state = env.reset(key, params)
    for k in jax.random.split(key, steps):
        action = random_action(env, params, k)
        obs, state, reward, *_ = env.step(k, state, action, params)
    return obs, state, reward


def test_same_key_same_rollout_and_jit_equals_nojit(hnca_small):
    env, params = hnca_small
    key = jax.random.key(3)
    a = rollout(env, params, key)
    b = rollout(env, params, key)
    chex.assert_trees_all_equal(a, b)
    with jax.disable_jit():
        c = rollout(env, params, key)
    chex.assert_trees_all_close(a, c, atol=1e-5, rtol=1e-5)
    d = rollout(env, params, jax.random.key(4))
    assert not np.allclose(a[1].grids["cell"], d[1].grids["cell"])


def test_vmap_equals_loop(hnca_small):
    env, params = hnca_small
    keys = jax.random.split(jax.random.key(5), 3)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    # (the same actions as vmapping random_action over the keys, without compiling a batched sampler)
    actions = jax.tree.map(lambda *xs: jnp.stack(xs), *[random_action(env, params, k) for k in keys])
    out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params)
    for i in range(3):
        _, s_i = env.reset(keys[i], params)
        a_i = jax.tree.map(lambda x: x[i], actions)
        out_i = env.step(keys[i], s_i, a_i, params)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], out), out_i, atol=1e-6)


def test_params_vmap_per_world_fire_rate(grow_env, key):
    env, params = grow_env
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), params)
    batch = batch.replace(fire_rate={"cell": jnp.array([0.0, 1.0])})
    _, state = jax.vmap(env.reset)(jax.random.split(key, 2), batch)
    action = {"cell": jnp.full((2, 16, 16, 16), 0.01)}
    _, new, *_ = jax.vmap(env.step)(jax.random.split(key, 2), state, action, batch)
    np.testing.assert_array_equal(new.grids["cell"][0], state.grids["cell"][0])  # never fires
    assert not np.allclose(new.grids["cell"][1], state.grids["cell"][1])


def test_no_retracing_across_steps_and_episodes(hnca_small, key):
    env, params = hnca_small
    params = params.replace(max_steps_in_episode=3)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(k, s, a):
        return env.step(k, s, a, params)

    _, state = env.reset(key, params)
    action = zero_action(env)
    resets = 0
    for k in jax.random.split(key, 8):  # crosses two episode boundaries
        _, state, _, _, trunc, _ = step(k, state, action)
        resets += int(trunc)
    assert resets == 2


def test_grad_through_ten_steps_is_finite_and_nonzero(hnca_small, key):
    from agents.networks import make_policy

    env, params = hnca_small
    params = params.replace(tau_c=0)
    init, apply = make_policy(env, hidden={"cell": 16, "parent": 16})
    pparams = init(key)
    # a fresh cell rule outputs zeros whatever it sees, so nothing the parents do could reach
    # the children's colours: give the cell rule a non-zero output layer first
    out = pparams["cell"]["params"]["out"]
    out["kernel"] = 0.01 * jax.random.normal(key, out["kernel"].shape)

    def loss(pp):
        obs, state = env.reset(key, params)

        def body(carry, k):
            obs, state = carry
            obs, state, *_ = env.step(k, state, apply(pp, obs), params)
            return (obs, state), None

        (obs, state), _ = jax.lax.scan(body, (obs, state), jax.random.split(key, 10))
        return env.loss(state, params)

    grads = jax.grad(loss)(pparams)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
    for lvl in ("cell", "parent"):
        assert float(jnp.abs(grads[lvl]["params"]["out"]["kernel"]).sum()) > 0


def test_tau_c_timing_actuator_and_sensor(hnca_small, key):
    env, params = hnca_small
    params = params.replace(fire_rate={"cell": 1.0, "parent": 1.0})
    _, state = env.reset(key, params)
    rng = np.random.default_rng(0)
    delta = jnp.asarray(rng.normal(size=(4, 4, 12)), jnp.float32)
    signal = jnp.asarray(rng.normal(size=(4, 4, 9)), jnp.float32)
    action = {"cell": jnp.zeros((16, 16, 12)), "parent": jnp.concatenate([delta, signal], -1)}
    # step 1 (t: 0 -> 1 < tau_c): child only, parent stays zero, actions of parents ignored
    _, s1, *_ = env.step(key, state, action, params)
    np.testing.assert_array_equal(s1.grids["cell"], state.grids["cell"])
    assert np.all(np.asarray(s1.grids["parent"]) == 0)
    # step 2 (t reaches tau_c): parent starts as the sensor output
    _, s2, *_ = env.step(key, s1, action, params)
    np.testing.assert_allclose(s2.grids["parent"], physics.sensor(s2.grids["cell"], 4), atol=1e-6)
    # step 3 (coupled): parent += delta; children's signal channels += upsampled signal; parent += sensor
    _, s3, *_ = env.step(key, s2, action, params)
    c2, p2 = np.asarray(s2.grids["cell"], np.float64), np.asarray(s2.grids["parent"], np.float64)
    want_c = c2.copy()
    want_c[..., 3:] += np.repeat(np.repeat(np.asarray(signal), 4, 0), 4, 1)
    np.testing.assert_allclose(s3.grids["cell"], want_c, atol=1e-5)
    sensed = want_c.reshape(4, 4, 4, 4, 12).mean(axis=(1, 3))
    np.testing.assert_allclose(s3.grids["parent"], p2 + np.asarray(delta) + sensed, atol=1e-5)


def test_fixed_rule_level_is_not_an_agent(key):
    def rule(rp, obs, k):
        return jnp.full(obs.shape[:2] + (12,), rp["bias"])

    env, params = hnca_env.make(
        "HNCA-Grow-v0", grid=(16, 16), tau_c=0, fire_rate=1.0, fixed_rules={"cell": (rule, {"bias": 0.01})}
    )
    assert env.agent_levels == ("parent",)
    obs, state = env.reset(key, params)
    assert set(obs) == {"parent"}
    action = {"parent": jnp.zeros((4, 4, 21))}
    _, new, reward, *_ = env.step(key, state, action, params)
    assert set(reward) == {"parent"}
    np.testing.assert_allclose(new.grids["cell"][..., :3], state.grids["cell"][..., :3] + 0.01, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        env.step(key, state, {"parent": jnp.zeros((4, 4, 21)), "cell": jnp.zeros((16, 16, 12))}, params)
    # rule parameters live in EnvParams and can be swapped without rebuilding the env
    p2 = params.replace(rule_params={"cell": {"bias": 0.0}})
    _, new2, *_ = env.step(key, state, action, p2)
    np.testing.assert_allclose(new2.grids["cell"][..., :3], state.grids["cell"][..., :3], atol=1e-6)


def test_auto_reset_and_final_observation(grow_env, key):
    env, params = grow_env
    params = params.replace(max_steps_in_episode=2)
    obs, state = env.reset(key, params)
    action = {"cell": jnp.full((16, 16, 16), 0.05)}
    obs, state, _, _, trunc, info = env.step(key, state, action, params)
    assert not trunc and int(state.time) == 1
    obs, state, _, term, trunc, info = env.step(jax.random.key(1), state, action, params)
    assert trunc and not term and int(state.time) == 0
    chex.assert_trees_all_close(obs, env.get_obs(state, params))
    assert not np.allclose(info["final_observation"]["cell"], obs["cell"])
    # without auto-reset the world keeps going
    env2, params2 = hnca_env.make(
        "Grow-v0", grid=(16, 16), target_size=10, auto_reset=False, max_steps_in_episode=1
    )
    _, s = env2.reset(key, params2)
    _, s, _, _, trunc, info = env2.step(key, s, action, params2)
    assert trunc and int(s.time) == 1 and "final_observation" not in info


def test_damage_cuts_holes_at_given_steps(key):
    env, params = hnca_env.make(
        "Grow-v0",
        grid=(16, 16),
        target_size=10,
        seed="state",
        seed_state=np.ones((16, 16, 16)),
        damage_times=[2],
        max_damage_events=2,
        damage_radius=[3.0, 3.0],
        fire_rate=0.0,
        alive=False,
    )
    assert params.seed == SEED_STATE
    _, s = env.reset(key, params)
    action = {"cell": jnp.zeros((16, 16, 16))}
    _, s1, *_ = env.step(key, s, action, params)
    assert float(s1.grids["cell"].min()) == 1.0
    _, s2, *_ = env.step(key, s1, action, params)
    zeroed = int((np.asarray(s2.grids["cell"][..., 0]) == 0).sum())
    assert zeroed == 29  # lattice points within radius 3
    assert np.all((np.asarray(s2.grids["cell"]) == 0).all(-1) | (np.asarray(s2.grids["cell"]) == 1).all(-1))


def test_clamp(key):
    env, params = hnca_env.make(
        "Grow-v0", grid=(16, 16), target_size=10, clamp=True, clamp_max=1.5, fire_rate=1.0
    )
    _, s = env.reset(key, params)
    _, s, *_ = env.step(key, s, {"cell": jnp.full((16, 16, 16), 5.0)}, params)
    assert float(s.grids["cell"].max()) <= 1.5


def test_state_grad_through_step(grow_env, key):
    env, params = grow_env
    _, s = env.reset(key, params)

    def f(cells):
        _, new, *_ = env.step(
            key, s.replace(grids={"cell": cells}), {"cell": jnp.zeros((16, 16, 16))}, params
        )
        return env.loss(new, params)

    g = jax.grad(f)(s.grids["cell"])
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_frozen_child_rule_parents_learn(key):
    """The H-NCA reference setting: a pretrained child rule is frozen, only parents train."""
    from agents.networks import NCAUpdateRule, as_fixed_rule, make_policy

    child = NCAUpdateRule(out_dim=12, hidden=16)
    cparams = child.init(key, jnp.zeros((1, 1, 48)))
    out = cparams["params"]["out"]
    out["kernel"] = 0.05 * jax.random.normal(key, out["kernel"].shape)
    env, params = hnca_env.make(
        "HNCA-Grow-v0", grid=(8, 8), tau_c=0, fixed_rules={"cell": (as_fixed_rule(child), cparams)}
    )
    assert env.agent_levels == ("parent",)
    init, apply = make_policy(env, hidden={"parent": 16})
    pparams = init(key)
    assert set(pparams) == {"parent"}

    def loss(pp):
        _, state = env.reset(key, params)
        for k in jax.random.split(key, 5):
            obs = env.get_obs(state, params)
            _, state, *_ = env.step(k, state, apply(pp, obs), params)
        return env.loss(state, params)

    g = jax.grad(loss)(pparams)["parent"]["params"]
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
    assert float(jnp.abs(g["out"]["kernel"]).sum()) > 0  # parents' broadcast reaches the colours


def test_env_pickles_and_steps_the_same():
    import pickle

    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=1, reward="team")
    back = pickle.loads(pickle.dumps(env))
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    action = {lvl: 0.01 * jnp.ones((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}
    a = env.step(key, state, action, params)
    b = back.step(key, back.reset(key, params)[1], action, params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
