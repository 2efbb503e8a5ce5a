"""Policies as NCA update rules: learnable parent perception."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from agents.networks import make_policy

HIDDEN = {"cell": 8, "parent": 8}


def envs():
    kw = dict(grid=(8, 8), tau_c=0, target_size=6)
    fixed = hnca_env.make("HNCA-Grow-v0", **kw)
    raw = hnca_env.make("HNCA-Grow-v0", parent_obs="neighbourhood", **kw)
    return fixed, raw


def random_state(env, params, key):
    k1, k2 = jax.random.split(key)
    state = env.initial_state(k1, params)
    parent = jax.random.normal(k2, state.grids["parent"].shape)
    return state.replace(grids={**state.grids, "parent": parent})


def test_initial_learned_kernels_equal_the_fixed_perception():
    (env_f, params_f), (env_r, params_r) = envs()
    assert env_r.obs_dim("parent") == 9 * 12 + 12 and env_f.obs_dim("parent") == 4 * 12 + 12
    key = jax.random.key(0)
    init_f, apply_f = make_policy(env_f, HIDDEN)
    init_r, apply_r = make_policy(env_r, HIDDEN, learn_perception=("parent",))
    pf = init_f(key)
    pf = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(key, x.shape), pf)  # non-zero output layer
    pr = init_r(key)
    kernels = pr["parent"]["params"]["perception"]["kernels"]
    assert kernels.shape == (4, 3, 3, 12)
    np.testing.assert_array_equal(
        kernels[..., 5], np.asarray(env_f.parent_kernels)
    )  # identity/Sobel/Sobel/Laplacian
    pr = {
        "cell": pf["cell"],
        "parent": {"params": {**pf["parent"]["params"], "perception": {"kernels": kernels}}},
    }
    state = random_state(env_f, params_f, key)
    a_f = jax.jit(lambda p, s: apply_f(p, env_f.get_obs(s, params_f)))(pf, state)
    a_r = jax.jit(lambda p, s: apply_r(p, env_r.get_obs(s, params_r)))(pr, state)
    assert float(jnp.abs(a_f["parent"]).max()) > 0.1
    np.testing.assert_allclose(a_r["parent"], a_f["parent"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a_r["cell"], a_f["cell"])


def test_learned_kernels_get_gradients():
    _, (env, params) = envs()
    init, apply = make_policy(env, HIDDEN, learn_perception=("parent",))
    key = jax.random.key(1)
    pp = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(key, x.shape), init(key))
    state0 = random_state(env, params, key)

    def loss(pp):
        state = state0
        for k in jax.random.split(key, 3):
            state, *_ = env.transition(k, state, apply(pp, env.get_obs(state, params)), params)
        return env.loss(state, params)

    g = jax.jit(jax.grad(loss))(pp)["parent"]["params"]["perception"]["kernels"]
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_learned_perception_needs_the_raw_neighbourhood():
    (env_f, _), _ = envs()
    with pytest.raises(ValueError, match="parent_obs='neighbourhood'"):
        make_policy(env_f, HIDDEN, learn_perception=("parent",))
    with pytest.raises(ValueError, match="do not act"):
        make_policy(env_f, HIDDEN, learn_perception=("grandparent",))


def test_two_hidden_layers_on_a_raw_neighbourhood():
    """Self-classifying MNIST's rule: a learned full 3×3 conv (Dense on the raw neighbourhood),
    a 1×1 hidden layer, a zero output."""
    import hnca_env
    from agents.networks import make_policy
    from agents.two_stage import child_network

    env, params = hnca_env.make("Digits-v0", cell_obs="neighbourhood")
    init, apply = make_policy(env, {"cell": 80}, layers={"cell": 2})
    p = init(jax.random.key(0))
    shapes = jax.tree.map(lambda x: x.shape, p["cell"]["params"])
    assert shapes["pre_0"]["kernel"] == (9 * 20, 80)
    assert shapes["hidden"]["kernel"] == (80, 80) and shapes["out"]["kernel"] == (80, 20)
    obs, _ = env.reset(jax.random.key(1), params)
    assert not np.asarray(apply(p, obs)["cell"]).any()  # zero output layer: does nothing
    assert child_network(p["cell"]).layers == 2
    with pytest.raises(ValueError, match="layers"):
        make_policy(env, layers={"parent": 2})
    with pytest.raises(ValueError, match="layers"):
        make_policy(env, layers={"cell": 0})
