"""Views: gymnax LogWrapper and a PureJaxRL-style loop over the team-reward view, and friends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import LogWrapper

from hnca_env.wrappers import DictAgentView, LegacyView, LevelLogWrapper, TeamRewardView


def test_gymnax_logwrapper_over_team_view(hnca_small):
    env, params = hnca_small
    view = LogWrapper(TeamRewardView(env))
    n_envs, steps = 4, 14  # episodes of 12 steps: one finishes
    keys = jax.random.split(jax.random.key(0), n_envs)
    obs, state = jax.vmap(view.reset, in_axes=(0, None))(keys, params)
    n_obs = TeamRewardView(env).observation_space(params).shape[0]
    assert obs.shape == (n_envs, n_obs)
    a_space = TeamRewardView(env).action_space(params)

    # a PureJaxRL-style rollout: lax.scan over vmapped steps with a random policy
    def env_step(carry, key):
        state = carry
        k_act, k_step = jax.random.split(key)
        action = jax.vmap(a_space.sample)(jax.random.split(k_act, n_envs)) * 0.01
        obs, state, reward, term, trunc, info = jax.vmap(view.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, n_envs), state, action, params
        )
        return state, (reward, info["returned_episode"], info["returned_episode_returns"])

    state, (rewards, finished, returns) = jax.jit(
        lambda s, k: jax.lax.scan(env_step, s, jax.random.split(k, steps))
    )(state, jax.random.key(1))
    assert rewards.shape == (steps, n_envs) and np.all(np.isfinite(rewards))
    assert np.asarray(finished).sum() == n_envs  # each world finished exactly one episode
    t = int(np.argmax(np.asarray(finished[:, 0])))
    np.testing.assert_allclose(returns[t + 1, 0], rewards[: t + 1, 0].sum(), rtol=1e-4)


def test_team_view_action_roundtrip_and_errors(grow_env):
    env, params = grow_env
    view = TeamRewardView(env)
    flat = jnp.arange(16 * 16 * 16, dtype=jnp.float32)
    np.testing.assert_array_equal(view.unflatten_action(flat)["cell"].ravel(), flat)
    with pytest.raises(ValueError, match="flat action has shape"):
        view.unflatten_action(jnp.zeros(7))


def test_legacy_view_returns_five(grow_env, key):
    env, params = grow_env
    view = LegacyView(env)
    obs, state = view.reset(key, params)
    out = view.step(key, state, {"cell": jnp.zeros((16, 16, 16))}, params)
    assert len(out) == 5 and out[3].dtype == bool


def test_level_log_wrapper(hnca_small, key):
    env, params = hnca_small
    view = LevelLogWrapper(env)
    obs, state = view.reset(key, params)
    action = {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}
    total = {"cell": 0.0, "parent": 0.0}
    for i in range(12):
        obs, state, reward, term, trunc, info = view.step(jax.random.key(i), state, action, params)
        for lvl in total:
            total[lvl] += float(info["team_reward"][lvl])
    assert bool(info["returned_episode"])
    for lvl in total:
        np.testing.assert_allclose(info["returned_episode_returns"][lvl], total[lvl], rtol=1e-5)
    assert int(info["returned_episode_lengths"]) == 12


def test_dict_agent_view(key):
    import hnca_env

    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0)
    view = DictAgentView(env)
    assert view.num_agents == 64 + 4
    obs, state = view.reset(key, params)
    assert obs["cell_3_5"].shape == (48,) and obs["parent_1_0"].shape == (60,)
    actions = {a: jnp.zeros(s.shape) for a, s in view.action_spaces(params).items()}
    obs, state, rewards, dones, info = view.step(key, state, actions, params)
    assert "__all__" in dones and rewards["cell_0_0"].shape == ()
    # same numbers as the array API
    _, s0 = env.reset(key, params)
    arr = env.step(
        key, s0, {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.levels}, params
    )
    np.testing.assert_allclose(rewards["cell_2_7"], arr[2]["cell"][2, 7])
    with pytest.raises(ValueError, match="exceeds max_agents"):
        DictAgentView(env, max_agents=10)
    with pytest.raises(ValueError, match="actions missing"):
        view.step(key, state, {"cell_0_0": jnp.zeros(12)}, params)
