"""The library rewards (hnca_env.rewards): each against its definition in float64 NumPy,
weighted sums and user reward functions, on every task, and the worked example of
docs/rewards.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from hnca_env import rewards

#: Small settings per id (the conformance sweep's).
SMALL = hnca_env.tasks.SMOKE_SETTINGS


def np_err(cells, target):
    return ((np.asarray(cells, np.float64)[..., : target.shape[-1]] - target) ** 2).mean(-1)


@pytest.fixture(scope="module")
def reward_setup():
    out = {}
    for name in ("local", "team", "improvement"):
        env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, reward=name)
        key = jax.random.key(1)
        _, s = env.reset(key, params)
        a = {lvl: 0.1 * jnp.ones((*env.grid_shape(lvl), env.action_dim(lvl))) for lvl in env.levels}
        _, s2, r, *_ = env.step(key, s, a, params)
        out[name] = (env, params, s, s2, r)
    return out


def test_library_rewards_match_numpy(reward_setup):
    env, params, s, s2, r = reward_setup["local"]
    tgt = np.asarray(params.target, np.float64)
    e2 = np_err(s2.grids["cell"], tgt)
    np.testing.assert_allclose(r["cell"], -e2, atol=1e-6)
    np.testing.assert_allclose(r["parent"], -e2.reshape(2, 4, 2, 4).mean((1, 3)), atol=1e-6)
    env, params, s, s2, r = reward_setup["team"]
    e2 = np_err(s2.grids["cell"], tgt)
    np.testing.assert_allclose(r["cell"], np.full((8, 8), -e2.mean()), atol=1e-6)
    np.testing.assert_allclose(r["parent"], np.full((2, 2), -e2.mean()), atol=1e-6)
    env, params, s, s2, r = reward_setup["improvement"]
    d = np_err(s.grids["cell"], tgt) - np_err(s2.grids["cell"], tgt)
    np.testing.assert_allclose(r["cell"], d, atol=1e-6)


def test_weighted_and_custom_rewards(key):
    env, params = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8, reward={"local": 1.0, "team": 0.5})
    assert params.reward_weights == {"local": 1.0, "team": 0.5}
    _, s = env.reset(key, params)
    a = {"cell": jnp.full((12, 12, 16), 0.1)}
    _, s2, r, *_ = env.step(key, s, a, params)
    e = np_err(s2.grids["cell"], np.asarray(params.target))
    np.testing.assert_allclose(r["cell"], -e - 0.5 * e.mean(), atol=1e-6)
    # weights are numbers in EnvParams: change them without rebuilding
    _, _, r0, *_ = env.step(key, s, a, params.replace(reward_weights={"local": 0.0, "team": 1.0}))
    np.testing.assert_allclose(r0["cell"], np.full((12, 12), -e.mean()), atol=1e-6)

    def alive_bonus(state, action, next_state, params):
        return {"cell": next_state.grids["cell"][..., 3]}

    env2, params2 = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8, reward=alive_bonus)
    _, s = env2.reset(key, params2)
    _, s2, r, *_ = env2.step(key, s, a, params2)
    np.testing.assert_allclose(r["cell"], s2.grids["cell"][..., 3])

    def bad(state, action, next_state, params):
        return next_state.grids["cell"][..., 0]

    env3, params3 = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8, reward=bad)
    _, s = env3.reset(key, params3)
    with pytest.raises(TypeError, match="must return a dict"):
        env3.step(key, s, a, params3)
    with pytest.raises(TypeError, match="reward must be a name"):
        rewards.resolve(3)


def test_library_rewards_on_every_task():
    # one reset and transition per task, shared by the three rewards (the reward does not
    # change the dynamics): each reward of the same (s, act, s2) against its definition
    for env_id in sorted(SMALL):
        env, params = hnca_env.make(env_id, **SMALL[env_id])
        _, s = env.reset(jax.random.key(1), params)
        act = {lvl: jnp.zeros(sp.shape) for lvl, sp in env.action_space(params).spaces.items()}
        s2 = env.transition(jax.random.key(2), s, act, params)[0]
        err = np.asarray(env.task.error_map(s2, params), np.float64)
        want = {
            "local": -err,
            "team": np.full_like(err, -err.mean()),
            "improvement": np.asarray(env.task.error_map(s, params), np.float64) - err,
        }
        for name in ("local", "team", "improvement"):
            env, params = hnca_env.make(env_id, reward=name, **SMALL[env_id])
            r = {lvl: np.asarray(v) for lvl, v in env._reward_fn(s, act, s2, params).items()}
            np.testing.assert_allclose(r["cell"], want[name], atol=1e-5, err_msg=f"{env_id} {name}")
            if env.has_parent:  # coordinators: the mean over their own cluster
                k = env.cluster
                h, w = env.grid
                cluster = want[name].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
                np.testing.assert_allclose(r["parent"], cluster, atol=1e-5, err_msg=f"{env_id} {name}")


def test_rewards_doc_worked_example():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "rewards.md").read_text()
    section = text.split("## Worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/rewards.md", "exec"), ns)
    s, rew = ns["state"], ns["rew"]
    c = np.asarray(s.grids["cell"][..., 0], np.float64)
    maj = float(s.task["majority"])
    nbr = sum(np.roll(c, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    want = -((c - maj) ** 2) + 0.1 * -((c - nbr) ** 2)
    np.testing.assert_allclose(rew["cell"], want, atol=1e-5)
    np.testing.assert_allclose(rew["parent"], want.reshape(4, 4, 4, 4).mean(axis=(1, 3)), atol=1e-5)
    assert ns["params_late"].reward_weights == {"local": 1.0, "agreement": 0.0}
