"""Views: gymnax LogWrapper and a PureJaxRL-style loop over the team-reward view, and friends."""

import copy
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import LogWrapper

import hnca_env
from hnca_env.wrappers import (
    MAX_FLAT_ACTION,
    DictAgentView,
    FlatActionWarning,
    LegacyView,
    LevelLogWrapper,
    SingleAgentView,
    TeamRewardView,
    base_env,
)


def test_gymnax_logwrapper_over_team_view(hnca_small):
    env, params = hnca_small
    flat = TeamRewardView(env, max_flat_action=None)  # 3408 action dims; the policy is not a Gaussian
    view = LogWrapper(flat)
    n_envs, steps = 4, 14  # episodes of 12 steps: one finishes
    keys = jax.random.split(jax.random.key(0), n_envs)
    obs, state = jax.vmap(view.reset, in_axes=(0, None))(keys, params)
    n_obs = flat.observation_space(params).shape[0]
    assert obs.shape == (n_envs, n_obs)
    a_space = flat.action_space(params)

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
    view = TeamRewardView(env, max_flat_action=None)
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


def _views(env):
    return {
        "TeamRewardView": TeamRewardView(env),
        "SingleAgentView": SingleAgentView(env),
        "LegacyView": LegacyView(env),
        "LevelLogWrapper": LevelLogWrapper(env),
        "DictAgentView": DictAgentView(env),
        "SingleAgentView(LevelLogWrapper)": SingleAgentView(LevelLogWrapper(env)),
    }


def test_views_survive_deepcopy_and_pickle(key):
    # gymnax's GymnaxWrapper.__getattr__ recursed forever here (rejax and gymnax's Gym
    # bridge deep-copy their env); and HNCAEnv's bound reward is a closure pickle refuses
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=5)
    for name, view in _views(env).items():
        obs, state = view.reset(key, params)
        if isinstance(view, DictAgentView):
            action = {a: 0.1 * jnp.ones(s.shape) for a, s in view.action_spaces(params).items()}
        elif isinstance(view, TeamRewardView):
            action = 0.1 * jnp.ones(view.action_space(params).shape)
        else:
            action = {
                lvl: 0.1 * jnp.ones((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels
            }
        out = view.step(key, state, action, params)
        for how, other in (("deepcopy", copy.deepcopy(view)), ("pickle", pickle.loads(pickle.dumps(view)))):
            assert type(other) is type(view) and base_env(other) is not env, (name, how)
            assert base_env(other).grid == (8, 8) and base_env(other).default_params.max_steps_in_episode == 5
            obs2, state2 = other.reset(key, params)
            jax.tree.map(np.testing.assert_allclose, obs, obs2)
            out2 = other.step(key, state2, action, params)
            jax.tree.map(np.testing.assert_allclose, out[2], out2[2])  # the same rewards
    assert not hasattr(LegacyView.__new__(LegacyView), "anything")  # no _env yet: no RecursionError


def test_single_agent_view_is_the_old_gymnax_five_tuple(key):
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=3)
    view = SingleAgentView(env)
    n_act = 64 * 12 + 4 * 21
    assert view.action_space(params).shape == (n_act,) and view.observation_space(params).shape == (
        64 * 48 + 4 * 60,
    )
    obs, state = view.reset(key)  # params=None: env.default_params, i.e. make's overrides
    step = jax.jit(view.step)
    dones = []
    for i in range(4):
        obs, state, reward, done, info = step(jax.random.key(i), state, jnp.zeros(n_act))
        dones.append(bool(done))
        assert reward.shape == () and done.dtype == bool
        assert set(info) == {"team_reward", "terminated", "truncated"}  # small: PureJaxRL keeps every step's
    assert dones == [False, False, True, False]  # 3-step episodes from make(), auto-reset
    # the same numbers as the array API
    _, s0 = env.reset(key, params)
    zero = {lvl: jnp.zeros((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.agent_levels}
    ref = env.step(jax.random.key(0), s0, zero, params)
    got = view.step(jax.random.key(0), view.reset(key)[1], jnp.zeros(n_act))
    np.testing.assert_allclose(got[2], ref[5]["team_reward"]["cell"], rtol=1e-6)
    full = SingleAgentView(env, full_info=True).step(key, s0, jnp.zeros(n_act))[4]
    assert full["final_observation"].shape == obs.shape and set(full["level_reward"]) == {"cell", "parent"}


def test_flat_action_warning_above_the_limit():
    small, _ = hnca_env.make("Grow-v0", grid=(8, 8))  # 8 * 8 * 16 = 1024 dims: at the limit
    big, _ = hnca_env.make("Grow-v0", grid=(16, 16))  # 4096 dims: PureJaxRL's PPO went NaN
    assert MAX_FLAT_ACTION == 1024
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SingleAgentView(small)
        TeamRewardView(big, max_flat_action=None)
        SingleAgentView(big, max_flat_action=5000)
    for cls in (SingleAgentView, TeamRewardView):
        with pytest.warns(FlatActionWarning, match=r"4096 dims.*JaxMARLView") as record:
            cls(big)
        assert record[0].filename == __file__  # points at the caller's line


def test_view_render_matches_render_and_unwraps_wrapper_states(key):
    from hnca_env import render

    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0)
    view = LogWrapper(TeamRewardView(env))
    _, state = view.reset(key, params)  # gymnax's LogEnvState around the env state
    frame = jax.jit(lambda s: view.render(s, params, parent_grid=True))(state)
    np.testing.assert_array_equal(frame, render.render(env, state.env_state, params, parent_grid=True))
    assert frame.dtype == jnp.uint8 and frame.shape == (8, 8, 3)
    with pytest.raises(TypeError, match="no env state inside"):
        render.render_frame(env, {"x": 1}, params)
