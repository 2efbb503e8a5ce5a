"""Other people's code on our envs: the real jaxmarl, rejax, gymnax and gymnasium packages.

Each third-party test skips cleanly when its package is absent; ``pip install ".[interop]"``
(what CI installs) brings them all. docs/interop.md says which view each client needs.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from hnca_env.wrappers import SingleAgentView, TeamRewardView, base_env

# ---------------------------------------------------------------------------- make() defaults


def test_make_overrides_are_the_env_default_params(key):
    env, params = hnca_env.make("Grow-v0", grid=(8, 8), max_steps_in_episode=7, fire_rate=0.25, tau_c=3)
    assert params is env.default_params
    assert int(env.default_params.max_steps_in_episode) == 7 and int(env.default_params.tau_c) == 3
    assert env.default_params.fire_rate == {"cell": 0.25}
    # a loop that never passes params (PureJaxRL's env_params=None, JaxMARL's reset(key))
    obs, state = env.reset(key)
    zero = {"cell": jnp.zeros((8, 8, 16))}
    ends = []
    for i in range(8):
        obs, state, reward, term, trunc, info = env.step(jax.random.key(i), state, zero)
        ends.append(bool(trunc))
    assert ends == [False] * 6 + [True, False]
    # the task's own defaults stay unless overridden; explicit default_overrides merge
    hg, hp = hnca_env.make(
        "HNCA-Grow-v0", grid=(8, 8), default_overrides={"tau_c": 4}, max_steps_in_episode=9
    )
    assert int(hg.default_params.tau_c) == 4 and int(hg.default_params.max_steps_in_episode) == 9
    assert int(hg.default_params.seed) == hnca_env.SEED_NOISE
    assert hnca_env.make("HNCA-Grow-v0", grid=(8, 8))[0].default_params.max_steps_in_episode == 300


def test_make_overrides_reach_a_closed_signature_factory():
    from hnca_env.tasks.grow import grow

    def closed(grid=(12, 12)):  # takes no default_overrides
        return grow(grid=grid, target_size=8)

    hnca_env.register("ClosedGrow-v0", closed, overwrite=True)
    env, params = hnca_env.make("ClosedGrow-v0", max_steps_in_episode=11, target="ring")
    assert params is env.default_params and int(params.max_steps_in_episode) == 11
    assert params.target.shape == (12, 12, 4)
    with pytest.raises(ValueError, match="fire_rate"):
        hnca_env.make("ClosedGrow-v0", fire_rate=2.0)


# ---------------------------------------------------------------------------- env.render


def test_env_render_is_jittable_uint8_and_found_by_gym(key):
    from hnca_env import render

    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0)
    _, state = env.reset(key, params)
    frame = jax.jit(env.render)(state, params)
    assert frame.dtype == jnp.uint8 and frame.shape == (8, 8, 3)
    np.testing.assert_array_equal(frame, render.render(env, state, params))
    np.testing.assert_array_equal(env.render(state), frame)  # params=None: the defaults
    big = env.render(state, params, scale=2, parent_grid=True)
    assert big.shape == (16, 16, 3)
    gym_wrappers = pytest.importorskip("gymnax.wrappers.gym", exc_type=ImportError)
    gym_env = gym_wrappers.GymnaxToGymWrapper(env, params)  # deep-copies the env
    assert "rgb_array" in gym_env.metadata["render_modes"]
    gym_env.reset(seed=0)
    assert np.asarray(gym_env.render()).shape == (8, 8, 3)


# ---------------------------------------------------------------------------- gymnax + gymnasium


def test_gymnax_log_and_flatten_wrappers_over_team_view(key):
    from gymnax.wrappers.purerl import FlattenObservationWrapper, LogWrapper

    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=4)
    view = LogWrapper(FlattenObservationWrapper(TeamRewardView(env)))
    n = 3
    obs, state = jax.vmap(view.reset, in_axes=(0, None))(jax.random.split(key, n), params)
    act = jnp.zeros((n, view.action_space(params).shape[0]))

    def body(state, k):
        obs, state, reward, term, trunc, info = jax.vmap(view.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, n), state, act, params
        )
        return state, (reward, info["returned_episode"], info["returned_episode_returns"])

    _, (reward, ended, returns) = jax.lax.scan(body, state, jax.random.split(key, 5))
    assert obs.shape == (n, view.observation_space(params).shape[0])
    assert np.asarray(ended)[3].all() and not np.asarray(ended)[:3].any()
    np.testing.assert_allclose(returns[3], reward[:4].sum(0), rtol=1e-5)
    world0 = jax.tree.map(lambda x: x[0], state)  # gymnax's wrappers forward render to ours
    assert view.render(world0, params).shape == (8, 8, 3)
    copy.deepcopy(TeamRewardView(env))  # (gymnax's own wrappers still recurse under deepcopy)


def test_gymnasium_bridge_deep_copies_steps_and_renders_the_view():
    gym_wrappers = pytest.importorskip("gymnax.wrappers.gym", exc_type=ImportError)
    env, params = hnca_env.make("Grow-v0", grid=(8, 8), max_steps_in_episode=3)
    gym_env = gym_wrappers.GymnaxToGymWrapper(TeamRewardView(env), params, seed=0)
    assert gym_env.action_space.shape == (1024,) and gym_env.observation_space.shape == (3072,)
    obs, _ = gym_env.reset(seed=1)
    obs, reward, terminated, truncated, info = gym_env.step(np.zeros(1024, np.float32))
    assert obs.shape == (3072,) and np.isfinite(float(reward)) and not bool(truncated)
    frame = np.asarray(gym_env.render())
    assert frame.shape == (8, 8, 3) and frame.dtype == np.uint8


# ---------------------------------------------------------------------------- rejax


def test_rejax_ppo_trains_on_single_agent_view():
    rejax = pytest.importorskip("rejax")
    env, params = hnca_env.make("Grow-v0", grid=(6, 6), target_size=4, max_steps_in_episode=16)
    algo = rejax.PPO.create(  # deep-copies the config, env included
        env=SingleAgentView(env),
        env_params=params,
        num_envs=8,
        num_steps=16,
        num_epochs=2,
        num_minibatches=4,
        total_timesteps=8 * 16 * 12,
        eval_freq=8 * 16 * 6,
        learning_rate=1e-3,
    )
    ts, (lengths, returns) = jax.jit(algo.train)(jax.random.key(0))
    returns = np.asarray(returns)  # (1 + evaluations, 128 seeds)
    assert returns.shape == (3, 128) and np.isfinite(returns).all()
    assert (np.asarray(lengths) == 16).all()  # the episode length make() asked for
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(ts.actor_ts.params))
    assert algo.env is not None and base_env(algo.env) is not env  # create() deep-copied the view
    # What it learns: nothing useful. One flat Gaussian over 576 action dims gets worse as its
    # mean drifts (measured here: -30.9 -> -63.1 mean return; docs/interop.md): the
    # factorised policy (JaxMARLView + IPPO, agents.ppo) is the one that learns.


# ---------------------------------------------------------------------------- JaxMARL


@pytest.fixture(scope="module")
def marl():
    pytest.importorskip("jaxmarl")
    from hnca_env import marl

    return marl


def _jaxmarl_api_checks(env):
    """jaxmarl's own API test (FLAIROx/JaxMARL tests/test_envs_implement_base_api.py), verbatim
    in substance: base class, per-agent spaces as dict and method, reset and step formats."""
    from jaxmarl.environments import MultiAgentEnv
    from jaxmarl.environments.spaces import Space

    assert isinstance(env, MultiAgentEnv)
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent] == env.observation_space(agent)
        assert isinstance(env.observation_spaces[agent], Space)
    for agent in env.action_spaces:
        assert env.action_spaces[agent] == env.action_space(agent)
        assert isinstance(env.action_spaces[agent], Space)
    rng = jax.random.PRNGKey(0)
    initial_obs, state = env.reset(rng)
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent].contains(initial_obs[agent])
    actions = {a: env.action_space(a).sample(rng) for a in env.agents}
    result = env.step(rng, state, actions)
    assert isinstance(result, tuple) and len(result) == 5
    next_obs, next_state, reward, done, info = result
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent].contains(next_obs[agent])
    assert isinstance(reward, dict) and isinstance(done, dict) and "__all__" in done
    assert isinstance(info, dict)


@pytest.mark.parametrize("task", ["Grow-v0", "HNCA-Grow-v0"])
def test_jaxmarl_view_passes_jaxmarls_api_checks(marl, task):
    env = marl.make(task, grid=(8, 8), max_steps_in_episode=5)
    _jaxmarl_api_checks(env)
    assert env.num_agents == len(env.agents) == sum(len(v) for v in env.agent_classes.values())
    avail = env.get_avail_actions(env.reset(jax.random.key(0))[1])
    assert set(avail) == set(env.agents)


def test_jaxmarl_view_pads_levels_and_matches_the_array_api(marl, key):
    env = marl.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=5)
    base = env.env
    assert env.agent_classes["cell"][:2] == ["cell_0_0", "cell_0_1"] and len(env.agent_classes["parent"]) == 4
    # cells 48 obs / 12 actions, coordinators 60 / 21: padded to 60 + a 2-level one-hot, 21
    assert {env.observation_space(a).shape for a in env.agents} == {(62,)}
    assert {env.action_space(a).shape for a in env.agents} == {(21,)}
    obs, state = env.reset(key)
    arr_obs, arr_state = base.reset(key, env.params)
    np.testing.assert_allclose(obs["cell_2_7"][:48], arr_obs["cell"][2, 7], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(obs["cell_2_7"][48:], [0.0] * 12 + [1.0, 0.0])
    np.testing.assert_allclose(obs["parent_1_0"][:60], arr_obs["parent"][1, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(obs["parent_1_0"][60:], [0.0, 1.0])
    # a level reads its first A_l action channels; the padding changes nothing
    action = {
        lvl: 0.1 * jax.random.normal(jax.random.key(3), (*base.grid_shape(lvl), base.action_dim(lvl)))
        for lvl in base.levels
    }
    per_agent = {}
    for lvl in base.levels:
        for i, a in enumerate(env.agent_classes[lvl]):
            own = action[lvl].reshape(-1, base.action_dim(lvl))[i]
            per_agent[a] = jnp.concatenate([own, 7.0 * jnp.ones(21 - own.shape[0])])
    avail = env.get_avail_actions(state)
    assert int(avail["cell_0_0"].sum()) == 12 and bool(avail["parent_0_0"].all())
    _, _, rewards, dones, infos = env.step(key, state, per_agent)
    ref = base.step(key, arr_state, action, env.params)  # both split the key the same way
    np.testing.assert_allclose(rewards["cell_2_7"], ref[2]["cell"][2, 7], rtol=1e-5)
    np.testing.assert_allclose(rewards["parent_1_1"], ref[2]["parent"][1, 1], rtol=1e-5)
    assert infos["team_reward"].shape == (env.num_agents,)
    with pytest.raises(ValueError, match="actions missing"):
        env.step(key, state, {"cell_0_0": jnp.zeros(21)})
    with pytest.raises(ValueError, match="has shape"):
        env.step(key, state, {**per_agent, "cell_0_0": jnp.zeros(12)})
    exact = marl.JaxMARLView(base, pad=False)
    assert exact.observation_space("cell_0_0").shape == (48,) and exact.action_space("parent_0_0").shape == (
        21,
    )


def test_jaxmarl_view_auto_resets_and_honours_reset_state(marl, key):
    env = marl.make("Grow-v0", grid=(8, 8), max_steps_in_episode=3)
    obs, state = env.reset(key)
    zero = {a: jnp.zeros(16) for a in env.agents}
    for i in range(2):
        obs, state, _, dones, _ = env.step(jax.random.key(i), state, zero)
        assert not bool(dones["__all__"])
    custom = state.replace(grids={"cell": jnp.full((8, 8, 16), 0.5)}, time=jnp.asarray(0))
    obs, state, _, dones, _ = env.step(jax.random.key(9), state, zero, custom)
    assert bool(dones["__all__"]) and all(bool(dones[a]) for a in env.agents)
    assert int(state.time) == 0 and float(state.grids["cell"][0, 0, 0]) == 0.5  # the given reset state
    np.testing.assert_allclose(obs["cell_0_0"], env.get_obs(custom)["cell_0_0"])


def test_jaxmarl_logwrapper_and_an_ippo_style_rollout(marl, key):
    from jaxmarl.wrappers.baselines import LogWrapper

    env = marl.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=4)
    num_envs = 2
    num_actors = env.num_agents * num_envs
    for replace_info in (False, True):
        log = LogWrapper(env, replace_info=replace_info)
        obs, state = jax.vmap(log.reset)(jax.random.split(key, num_envs))
        a_dim = env.action_space(env.agents[0]).shape[0]  # IPPO sizes every agent like agent 0

        def body(carry, k):
            state = carry
            act = 0.01 * jax.random.normal(k, (env.num_agents, num_envs, a_dim))
            env_act = {a: act[i] for i, a in enumerate(env.agents)}  # IPPO's unbatchify
            obs, state, reward, done, info = jax.vmap(log.step)(jax.random.split(k, num_envs), state, env_act)
            info = jax.tree.map(lambda x: x.reshape((num_actors,)), info)  # IPPO's line
            rew = jnp.stack([reward[a] for a in env.agents]).reshape(num_actors)
            return state, (rew, info)

        _, (rew, info) = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, 5)))(state, key)
        ended = np.asarray(info["returned_episode"])
        assert ended[3].all() and not ended[:3].any()
        # LogWrapper's reshape of info is (envs, agents); the rewards above are (agents, envs)
        ret = np.asarray(info["returned_episode_returns"][3]).reshape(num_envs, env.num_agents)
        np.testing.assert_allclose(
            ret.T, np.asarray(rew[:4]).sum(0).reshape(env.num_agents, num_envs), rtol=1e-4
        )
        assert ("team_reward" in info) is (not replace_info)


def test_jaxmarl_view_copies_pickles_and_renders(marl, key):
    import pickle

    env = marl.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=5)
    for other in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        np.testing.assert_allclose(other.reset(key)[0]["parent_1_1"], env.reset(key)[0]["parent_1_1"])
        assert other.agents == env.agents
    _, state = env.reset(key)
    frame = jax.jit(env.render)(state)
    assert frame.shape == (8, 8, 3) and frame.dtype == jnp.uint8
    with pytest.raises(ValueError, match="exceeds max_agents"):
        marl.make("Grow-v0", grid=(40, 40))
