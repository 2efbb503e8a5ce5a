"""The task suite: one generic conformance test over every registered id, and each task's
metrics checked on hand-built states whose answer is known."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import suite_ids

import hnca_env
from hnca_env.evaluate import evaluate, zero_policy
from hnca_env.render import render
from hnca_env.tasks import density as density_mod
from hnca_env.tasks import digits as digits_mod
from hnca_env.tasks import locomotion as loco_mod
from hnca_env.tasks.metamorphosis import SYNTHETIC, signal_readout_rule, synthetic_pattern

#: Small settings per id so the whole conformance sweep stays fast on 2 CPU cores.
SMALL = hnca_env.tasks.SMOKE_SETTINGS


def test_every_registered_id_has_small_settings_and_a_card():
    assert set(SMALL) == suite_ids()
    import importlib

    for module in hnca_env.tasks.TASK_MODULES:
        doc = importlib.import_module(module).__doc__
        for word in ("Card", "Observation", "Action", "Reward", "Termination", "Success metric", "Reference"):
            assert word in doc, f"{module} card lacks {word!r}"


def _tree_close(a, b, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), atol=atol)


@pytest.mark.parametrize("env_id", sorted(SMALL))
def test_conformance(env_id):
    env, params = hnca_env.make(env_id, **SMALL[env_id])
    key = jax.random.key(3)
    k_reset, k_act, k_step = jax.random.split(key, 3)

    # reset / step: shapes, spaces, dtypes
    obs, state = env.reset(k_reset, params)
    assert set(obs) == set(env.agent_levels)
    assert bool(env.observation_space(params).contains(obs))
    action = jax.tree.map(lambda a: 0.1 * a, dict(env.action_space(params).sample(k_act)))
    obs2, state2, reward, term, trunc, info = env.step(k_step, state, action, params)
    for lvl in env.agent_levels:
        assert obs2[lvl].shape == (*env.grid_shape(lvl), env.obs_dim(lvl))
        assert reward[lvl].shape == env.grid_shape(lvl)
        assert obs2[lvl].dtype == jnp.float32
    assert term.shape == () and trunc.shape == () and term.dtype == bool
    assert set(info["team_reward"]) == set(env.agent_levels)
    assert bool(env.state_space(params).contains(state2.grids))

    # determinism per key (jit = no-jit is checked in test_env on both modes)
    again = env.step(k_step, state, action, params)
    _tree_close(again[1], state2, atol=0)

    # vmap == loop
    keys = jax.random.split(key, 3)
    v_obs, v_state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    for i in range(3):
        o_i, s_i = env.reset(keys[i], params)
        _tree_close(jax.tree.map(lambda x: x[i], v_state), s_i, atol=1e-6)

    # no re-tracing across steps with new values
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def roll(k, s):
        def body(s, k):
            o, s, r, t, tr, _ = env.step(k, s, jax.tree.map(jnp.zeros_like, action), params)
            return s, env.loss(s, params)

        return jax.lax.scan(body, s, jax.random.split(k, params.max_steps_in_episode + 2))

    roll(key, state)
    s_end, losses = roll(jax.random.key(9), state2)  # crosses an auto-reset
    assert np.all(np.isfinite(np.asarray(losses)))

    # finite gradients of the task loss through step, w.r.t. the action
    def loss_of(a):
        return env.loss(env.step_env(k_step, state, a, params)[1], params)

    grads = jax.jit(jax.grad(loss_of))(action)  # compiled: faster than op by op here
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))

    # render and evaluate
    frame = jax.jit(lambda s: render(env, s, params, target=True))(state2)
    assert frame.dtype == jnp.uint8 and frame.shape == (env.grid[0], 2 * env.grid[1], 3)
    metrics = evaluate(env, zero_policy(env), key, params, n_worlds=2)
    assert metrics and all(np.isfinite(v) or np.isnan(v) for v in metrics.values())
    assert "mse" in metrics


# ------------------------------------------------------------------ pattern tasks
def test_pattern_metrics_on_known_states():
    env, params = hnca_env.make("Grow-v0", grid=(16, 16), target_size=10)
    _, state = env.reset(jax.random.key(0), params)
    tgt = np.asarray(params.target, np.float64)
    perfect = state.replace(grids={"cell": state.grids["cell"].at[..., :4].set(params.target)})
    assert float(env.task.trace(perfect, params)["mse"]) == 0.0
    empty = state.replace(grids={"cell": jnp.zeros_like(state.grids["cell"])})
    np.testing.assert_allclose(float(env.loss(empty, params)), np.mean(tgt**2), rtol=1e-5)


def test_regenerate_summary_by_hand():
    env, params = hnca_env.make(
        "Regenerate-v0", grid=(16, 16), damage_times=[4], task_params={"recover_steps": 2}
    )
    mse = jnp.array([0.9, 0.5, 0.2, 0.1, 0.6, 0.4, 0.3, 0.15])  # index = time; holes cut at t=4
    out = env.task.summarize({"mse": mse}, params)
    assert float(out["mse_before_damage"]) == pytest.approx(0.1)
    assert float(out["mse_after_damage"]) == pytest.approx(0.3)  # t = 4 + 2
    assert float(out["mse_peak"]) == pytest.approx(0.6)
    assert float(out["mse"]) == pytest.approx(0.15)


def test_regenerate_damages_during_episode():
    env, params = hnca_env.make("Regenerate-v0", grid=(24, 24), target_size=16, damage_times=[2])
    params = params.replace(
        seed=hnca_env.SEED_STATE, seed_state=jnp.ones((24, 24, 16)), damage_radius=jnp.array([5.0, 6.0])
    )
    params = params.replace(fire_rate={"cell": 0.0})
    _, s = env.reset(jax.random.key(0), params)
    zero = {"cell": jnp.zeros((24, 24, 16))}
    _, s1, *_ = env.step(jax.random.key(1), s, zero, params)
    _, s2, *_ = env.step(jax.random.key(2), s1, zero, params)
    alive1 = np.asarray(s1.grids["cell"][..., 3] > 0).sum()
    alive2 = np.asarray(s2.grids["cell"][..., 3] > 0).sum()
    assert alive1 == 24 * 24 and alive2 < alive1 - 50  # a hole of radius >= 5 at t = 2


# ------------------------------------------------------------------ metamorphosis
def test_synthetic_patterns():
    for kind in SYNTHETIC:
        a = synthetic_pattern(kind, (32, 40), seed=1)
        assert a.shape == (32, 40, 3) and a.dtype == np.float32
        assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.05
        np.testing.assert_array_equal(a, synthetic_pattern(kind, (32, 40), seed=1))
    assert not np.array_equal(
        synthetic_pattern("circles", (32, 32), 0), synthetic_pattern("circles", (32, 32), 1)
    )
    with pytest.raises(ValueError, match="unknown synthetic pattern"):
        synthetic_pattern("spiral", (8, 8))


def test_metamorphosis_start_target_and_metric():
    env, params = hnca_env.make("HNCA-Metamorphosis-v0", grid=(16, 16), start="rings", target="flower")
    _, state = env.reset(jax.random.key(0), params)
    np.testing.assert_allclose(state.grids["cell"][..., :3], synthetic_pattern("rings", (16, 16), 0))
    np.testing.assert_allclose(params.target, synthetic_pattern("flower", (16, 16), 1))
    mse = float(env.loss(state, params))
    out = env.task.summarize({"mse": jnp.array([1.0, mse])}, params)
    assert float(out["mse_255"]) == pytest.approx(mse * 255**2, rel=1e-6)


def test_readout_rule_matches_numpy():
    env, params = hnca_env.make("HNCA-Metamorphosis-Fixed-v0", grid=(8, 8))
    assert env.agent_levels == ("parent",)
    fn = env.fixed_rules["cell"]
    x = np.random.default_rng(0).normal(size=(8, 8, 12)).astype(np.float32)
    obs = env.get_obs(
        hnca_env.EnvState(time=jnp.array(0), grids={"cell": jnp.asarray(x), "parent": jnp.zeros((2, 2, 12))}),
        params,
        levels=("cell",),
    )["cell"]
    out = np.asarray(fn(params.rule_params["cell"], obs, jax.random.key(0)))
    rate, leak = 0.5, 0.5
    want = np.zeros_like(x)
    want[..., :3] = rate * (x[..., 3:6] - x[..., :3])
    want[..., 3:] = -leak * x[..., 3:]
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert signal_readout_rule.__doc__


# ------------------------------------------------------------------ goal switching
def test_goal_switch_dynamics_and_obs():
    env, params = hnca_env.make("HNCA-GoalSwitch-v0", grid=(16, 16), switch_times=(2,))
    _, s = env.reset(jax.random.key(0), params)
    g0 = int(s.task["goal"])
    zero = jax.tree.map(jnp.zeros_like, dict(env.action_space(params).sample(jax.random.key(1))))
    obs, s1, *_ = env.step(jax.random.key(1), s, zero, params)
    assert int(s1.task["goal"]) == g0
    np.testing.assert_array_equal(obs["parent"][..., -3:], np.broadcast_to(np.eye(3)[g0], (4, 4, 3)))
    obs, s2, *_ = env.step(jax.random.key(2), s1, zero, params)
    g1 = int(s2.task["goal"])
    assert g1 != g0  # switched at t = 2, always to another goal
    np.testing.assert_array_equal(obs["parent"][..., -3:], np.broadcast_to(np.eye(3)[g1], (4, 4, 3)))
    np.testing.assert_array_equal(env.task.current_target(s2, params), params.task_params["targets"][g1])
    assert obs["cell"].shape[-1] == env.channels * 4  # the children never see the goal


def test_goal_switch_summary_by_hand():
    env, params = hnca_env.make("HNCA-GoalSwitch-v0", grid=(16, 16), switch_times=(3, 6))
    tp = dict(params.task_params, recover_tol=jnp.float32(0.1))
    params = params.replace(task_params=tp)
    #              t: 0    1    2     3    4    5     6    7    8    9
    mse = jnp.array([0.9, 0.3, 0.05, 0.8, 0.2, 0.09, 0.7, 0.6, 0.5, 0.4])
    out = env.task.summarize({"mse": mse, "goal": jnp.zeros(10, jnp.int32)}, params)
    # switch at 3: before 0.05, after (t=5) 0.09, recovered after 2 steps;
    # switch at 6: before 0.09, after (t=9) 0.4, not recovered: censored at 4 steps.
    assert float(out["mse_before_switch"]) == pytest.approx((0.05 + 0.09) / 2)
    assert float(out["mse_after_switch"]) == pytest.approx((0.09 + 0.4) / 2)
    assert float(out["steps_to_recover"]) == pytest.approx((2 + 4) / 2)
    assert float(out["recovered"]) == pytest.approx(0.5)


def test_goal_switch_rejects_wrong_goal_count():
    env, params = hnca_env.make("HNCA-GoalSwitch-v0", grid=(16, 16))
    bad = dict(params.task_params, targets=params.task_params["targets"][:2])
    with pytest.raises(ValueError, match="number of goals is structure"):
        env.check_params(params.replace(task_params=bad))
    with pytest.raises(ValueError, match="at least 2 goals"):
        hnca_env.make("HNCA-GoalSwitch-v0", goals=["disc"])


# ------------------------------------------------------------------ digits
def test_digits_data_and_split():
    images, labels = digits_mod.load_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert set(np.unique(labels)) == set(range(10)) and 0 <= images.min() and images.max() == 1.0
    env, params = hnca_env.make("Digits-v0", split="test")
    for i in range(5):
        _, s = env.reset(jax.random.key(i), params)
        idx = int(s.task["index"])
        assert digits_mod.TRAIN_SIZE <= idx < 1797 and int(s.task["label"]) == labels[idx]
        big = np.kron(images[idx], np.ones((3, 3)))
        ink = np.pad(np.where(big > digits_mod.INK_THRESHOLD, big, 0), 2)
        np.testing.assert_allclose(s.grids["cell"][..., 0], ink, atol=1e-6)
    with pytest.raises(ValueError, match="unknown split"):
        hnca_env.make("Digits-v0", split="validation")


def test_digits_metrics_on_known_states():
    env, params = hnca_env.make("Digits-v0")
    _, s = env.reset(jax.random.key(0), params)
    alive = np.asarray(s.task["ink"] > 0)
    label = int(s.task["label"])
    cells = np.asarray(s.grids["cell"]).copy()
    cells[..., 1:11] = 0
    cells[alive, 1 + label] = 1.0
    perfect = s.replace(grids={"cell": jnp.asarray(cells)})
    tr = env.task.trace(perfect, params)
    assert float(tr["cell_accuracy"]) == 1.0 and float(tr["all_right"]) == 1.0
    assert float(tr["mse"]) == 0.0 and float(tr["all_agree"]) == 1.0
    wrong = cells.copy()
    y, x = np.argwhere(alive)[0]
    wrong[y, x, 1:11] = 0
    wrong[y, x, 1 + (label + 1) % 10] = 1.0
    tr = env.task.trace(s.replace(grids={"cell": jnp.asarray(wrong)}), params)
    assert float(tr["cell_accuracy"]) == pytest.approx((alive.sum() - 1) / alive.sum())
    assert float(tr["all_right"]) == 0.0 and float(tr["all_agree"]) == 0.0
    # the error of that one cell, by hand: 2 wrong entries of 10, squared error 1 each
    np.testing.assert_allclose(float(tr["mse"]), 0.2 / (28 * 28), rtol=1e-5)
    # every cell names the same wrong label: all agree (the paper's "total agreement"), none right
    same_wrong = cells.copy()
    same_wrong[alive, 1:11] = 0
    same_wrong[alive, 1 + (label + 1) % 10] = 1.0
    tr = env.task.trace(s.replace(grids={"cell": jnp.asarray(same_wrong)}), params)
    assert float(tr["all_agree"]) == 1.0 and float(tr["all_right"]) == 0.0
    assert float(tr["cell_accuracy"]) == 0.0


def test_digits_env_enforces_ink_and_swaps():
    env, params = hnca_env.make("Digits-v0", swap_time=2)
    _, s = env.reset(jax.random.key(4), params)
    act = {"cell": jnp.ones((28, 28, 20))}
    params = params.replace(fire_rate={"cell": 1.0})
    _, s1, *_ = env.step(jax.random.key(1), s, act, params)
    np.testing.assert_allclose(s1.grids["cell"][..., 0], s.task["ink"])  # ink is not the agents'
    dead = np.asarray(s.task["ink"] == 0)
    assert np.all(np.asarray(s1.grids["cell"])[dead] == 0)
    assert np.all(np.asarray(s1.grids["cell"])[~dead, 1:] == 1.0)
    idx = set()
    for i in range(6):
        _, s_i = env.reset(jax.random.key(10 + i), params)
        _, s_i1, *_ = env.step(jax.random.key(i), s_i, act, params)
        _, s_i2, *_ = env.step(jax.random.key(i + 7), s_i1, act, params)
        idx.add(int(s_i2.task["index"]) != int(s_i1.task["index"]))
        np.testing.assert_allclose(s_i2.grids["cell"][..., 0], s_i2.task["ink"])
    assert True in idx  # the digit was swapped at t = 2


# ------------------------------------------------------------------ density
def test_density_init_majority_and_metrics():
    env, params = hnca_env.make("Density-v0", grid=(16, 16), rho=(0.5, 0.5))
    for i in range(8):
        _, s = env.reset(jax.random.key(i), params)
        field = np.asarray(s.grids["cell"][..., 0], np.float64)
        assert set(np.unique(field)) <= {0.0, 1.0} and field.sum() != 128  # no ties
        assert float(s.task["majority"]) == float(field.sum() > 128)
        assert np.all(np.asarray(s.grids["cell"][..., 1:]) == 0)
        right = s.grids["cell"].at[..., 0].set(s.task["majority"])
        tr = env.task.trace(s.replace(grids={**s.grids, "cell": right}), params)
        assert float(tr["cell_accuracy"]) == 1.0 and float(tr["mse"]) == 0.0
        one_off = right.at[3, 4, 0].set(1.0 - s.task["majority"])
        tr = env.task.trace(s.replace(grids={**s.grids, "cell": one_off}), params)
        assert float(tr["cell_accuracy"]) == pytest.approx(255 / 256)
        out = env.task.summarize(jax.tree.map(lambda v: v[None], tr), params)
        assert float(out["all_correct"]) == 0.0
        np.testing.assert_allclose(float(tr["mse"]), 1 / 256, rtol=1e-6)


def test_density_rho_is_respected_and_checked():
    env, params = hnca_env.make("Density-Flat-v0", grid=(16, 16), rho=(0.9, 1.0))
    assert env.levels == ("cell",)
    _, s = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 16), params)
    assert np.all(np.asarray(s.task["density"]) > 0.8) and np.all(np.asarray(s.task["majority"]) == 1)
    with pytest.raises(ValueError, match="rho"):
        hnca_env.make("Density-v0", rho=(0.7, 0.2))
    assert density_mod.DensityTask().visible == 1


# ------------------------------------------------------------------ locomotion
def test_torus_centre_and_distance():
    m = np.zeros((16, 16), np.float32)
    m[0, 15] = m[0, 0] = m[15, 15] = m[15, 0] = 1.0  # a blob across the corner
    c, mass = loco_mod.torus_centre(jnp.asarray(m))
    assert float(mass) == 4.0
    d = float(loco_mod.torus_distance(c, jnp.array([15.5, 15.5]), (16, 16)))
    assert d == pytest.approx(0.0, abs=1e-4)
    assert float(
        loco_mod.torus_distance(jnp.array([1.0, 1.0]), jnp.array([15.0, 1.0]), (16, 16))
    ) == pytest.approx(2.0)


def test_locomotion_target_moves_and_metrics():
    env, params = hnca_env.make("HNCA-Locomotion-v0", grid=(32, 32), target_size=8, speed=0.5)
    _, s = env.reset(jax.random.key(0), params)
    d = np.asarray(s.task["direction"])
    assert np.isclose(np.abs(d).sum(), 1.0)
    s10 = s.replace(time=jnp.array(10))
    tgt = np.asarray(env.task.current_target(s10, params))
    np.testing.assert_array_equal(
        tgt, np.roll(np.asarray(params.target), (int(5 * d[0]), int(5 * d[1])), (0, 1))
    )
    # on the moving target: perfect; the start pattern left behind is 5 cells off
    on = s10.replace(grids={**s10.grids, "cell": s10.grids["cell"].at[..., :4].set(tgt)})
    tr = env.task.trace(on, params)
    assert float(tr["mse"]) == 0.0 and float(tr["centre_error"]) == pytest.approx(0.0, abs=1e-3)
    tr = env.task.trace(s10, params)
    assert float(tr["centre_error"]) == pytest.approx(5.0, abs=1e-3)
    dead = s10.replace(grids={**s10.grids, "cell": jnp.zeros_like(s10.grids["cell"])})
    assert float(env.task.trace(dead, params)["centre_error"]) == pytest.approx(0.5 * np.hypot(32, 32))
    assert (
        np.asarray(env.get_obs(s, params)["parent"])[..., -2:].tolist()
        == np.broadcast_to(d, (8, 8, 2)).tolist()
    )


# ------------------------------------------------------------------ rewards on every task
def test_readme_tasks_block_runs():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text.split("## Tasks", 1)[1], re.S).group(1)
    code = code.replace("n_worlds=64", "n_worlds=4").replace(
        'make("Density-v0", ', 'make("Density-v0", grid=(8, 8), max_steps_in_episode=4, '
    )
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["env"].reward.name == "team"


def test_tasks_page_block_runs():
    """docs/tasks.md's example (written by docs/make_tasks_page.py), at a small size."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "n_worlds=64" in code and 'make("Density-v0", ' in code
    code = code.replace("n_worlds=64", "n_worlds=4").replace(
        'make("Density-v0", ', 'make("Density-v0", grid=(8, 8), max_steps_in_episode=4, '
    )
    ns: dict = {}
    exec(compile(code, "docs/tasks.md", "exec"), ns)
    assert set(ns["metrics"]) and all(np.isfinite(v) for v in ns["metrics"].values())


def test_policy_from_apply_ignores_the_key():
    from hnca_env.evaluate import policy_from_apply

    env, params = hnca_env.make("Density-Flat-v0", grid=(8, 8), max_steps_in_episode=3)

    def apply(p, obs):
        return {"cell": jnp.full((8, 8, env.action_dim("cell")), p)}

    act = policy_from_apply(apply, 0.25)
    obs, _ = env.reset(jax.random.key(0), params)
    a1, a2 = act(jax.random.key(1), obs), act(jax.random.key(2), obs)
    np.testing.assert_array_equal(a1["cell"], a2["cell"])
    assert float(a1["cell"][0, 0, 0]) == 0.25
    # a constant policy pushes every colour up by 0.25 per firing: after 3 steps at fire rate 1
    # every cell reads 1, so worlds whose majority is 1 are all correct, the others all wrong
    from hnca_env.evaluate import evaluate_worlds

    m = evaluate_worlds(
        env, act, jax.random.key(0), params.replace(fire_rate={"cell": 1.0}), n_worlds=16, steps=3
    )
    acc = np.asarray(m["cell_accuracy"])
    assert set(np.unique(acc)) <= {0.0, 1.0} and 0 < acc.sum() < 16
    np.testing.assert_array_equal(np.asarray(m["all_correct"]), acc)


def test_motif_pairs_rearrange_the_same_motifs():
    from hnca_env.tasks.metamorphosis import MOTIF_PAIRS, motif_pair

    for pair in MOTIF_PAIRS:
        a, b = motif_pair(pair, (64, 64), seed=1)
        assert a.shape == b.shape == (64, 64, 3) and a.dtype == np.float32
        assert np.abs(a - b).mean() > 0.02  # rearranged, not the same picture
        # the same motifs in the same colours: every channel's ink (above the dark ground) agrees
        ink_a = (a - a.min(axis=(0, 1))).sum(axis=(0, 1))
        ink_b = (b - b.min(axis=(0, 1))).sum(axis=(0, 1))
        np.testing.assert_allclose(ink_a, ink_b, rtol=0.03)
        assert a.mean() < 0.35  # a dark background
    with pytest.raises(ValueError, match="unknown motif pair"):
        motif_pair("dots-squares", (64, 64))
    env, params = hnca_env.make("HNCA-Metamorphosis-Motifs-v0", grid=(32, 32), pair="triangles-ring")
    a, b = motif_pair("triangles-ring", (32, 32))
    np.testing.assert_array_equal(np.asarray(params.target), b)
    np.testing.assert_array_equal(env.motif_a, a)
    # one fixed U[0, 1) noise array as the seed (the reference's stored seed), children grow A first
    assert int(params.seed) == hnca_env.SEED_STATE and int(params.tau_c) == 64
    noise = np.asarray(params.seed_state)
    assert noise.shape == (32, 32, 12) and 0 <= noise.min() and noise.max() < 1 and noise.std() > 0.25
    np.testing.assert_array_equal(env.child_target, a)
