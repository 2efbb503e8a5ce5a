"""Levels as data: hierarchies of any depth, checked against a float64 NumPy loop."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from hnca_env.levels import Level, Multiplexer, Observer, hnca_hierarchy
from hnca_env.tasks.goals import MOSAIC_COLOURS

ROOT = Path(__file__).resolve().parents[1]


def three_levels(**overrides):
    levels = (
        Level("cell", 8, ("identity", "sobel_x", "sobel_y"), 1 / 8),
        Level("parent", 10, cluster=4, signals=4),
        Level("grandparent", 12, cluster=2, signals=6),
    )
    env = hnca_env.HNCAEnv(
        grid=(16, 16), levels=levels, alive=False, task=hnca_env.Task("heart", size=10),
        default_overrides={"tau_c": 1, "start_delay": {"grandparent": 1}, "max_steps_in_episode": 8,
                           **overrides},
    )  # fmt: skip
    return env, env.default_params


def numpy_step(grids, action, env, t, params):
    """One step of the hierarchy by hand, float64, fire rate 1 (every cell updates)."""
    g = {k: np.asarray(v, np.float64).copy() for k, v in grids.items()}
    a = {k: np.asarray(v, np.float64) for k, v in action.items()}
    names = env.levels
    g[names[0]] = g[names[0]] + a[names[0]]
    starts = [0, int(params.tau_c)]
    for lvl in names[2:]:
        starts.append(starts[-1] + int(params.start_delay[lvl]))
    for i in range(1, len(names)):
        low, up = env.level(names[i - 1]), env.level(names[i])
        lower = g[low.name]
        k, s = up.cluster, up.signals
        if t >= starts[i]:  # coupled: update, actuator, sensor
            upper = g[up.name] + a[up.name][..., : up.channels]
            sig = np.kron(a[up.name][..., up.channels :], np.ones((k, k, 1)))
            lower = lower.copy()
            lower[..., low.channels - s :] += sig
            hh, ww = lower.shape[0] // k, lower.shape[1] // k
            sensed = lower.reshape(hh, k, ww, k, -1).mean(axis=(1, 3))
            upper[..., : low.channels] += sensed
            g[low.name], g[up.name] = lower, upper
        elif t + 1 == starts[i]:  # starts now: the sensed level below, zeros after
            hh, ww = lower.shape[0] // k, lower.shape[1] // k
            sensed = lower.reshape(hh, k, ww, k, -1).mean(axis=(1, 3))
            g[up.name] = np.concatenate([sensed, np.zeros((hh, ww, up.channels - low.channels))], -1)
        else:
            g[up.name] = np.zeros_like(g[up.name])
    return g


def test_three_levels_match_a_numpy_loop_over_their_start_times():
    env, params = three_levels()
    params = params.replace(fire_rate={lvl: 1.0 for lvl in env.levels}, seed=hnca_env.SEED_NOISE)
    assert env.levels == ("cell", "parent", "grandparent")
    assert [env.grid_shape(lv) for lv in env.levels] == [(16, 16), (4, 4), (2, 2)]
    assert [env.action_dim(lv) for lv in env.levels] == [8, 14, 18]
    assert [env.obs_dim(lv) for lv in env.levels] == [24, 40 + 8, 48 + 10]
    _, state = env.reset(jax.random.key(0), params)
    grids = {k: np.asarray(v, np.float64) for k, v in state.grids.items()}
    space = env.action_space(params)
    for t in range(5):
        action = {lv: 0.1 * jax.random.normal(jax.random.key(t * 3 + i), space.spaces[lv].shape)
                  for i, lv in enumerate(env.levels)}  # fmt: skip
        want = numpy_step(grids, action, env, t, params)
        _, state, *_ = env.step_env(jax.random.key(100 + t), state, action, params)
        for lv in env.levels:
            np.testing.assert_allclose(state.grids[lv], want[lv], rtol=1e-5, atol=1e-5, err_msg=f"{lv} t={t}")
        grids = {k: np.asarray(v, np.float64) for k, v in state.grids.items()}
    assert np.abs(grids["grandparent"]).sum() > 0  # it started (at t = tau_c + 1 = 2)


def test_a_three_level_env_vmaps_over_1024_worlds_steps_and_differentiates():
    env, params = three_levels()
    keys = jax.random.split(jax.random.key(1), 1024)
    obs, state = jax.vmap(env.reset, (0, None))(keys, params)
    assert {k: v.shape for k, v in obs.items()} == {
        "cell": (1024, 16, 16, 24), "parent": (1024, 4, 4, 48), "grandparent": (1024, 2, 2, 58)}  # fmt: skip
    action = {lv: 0.01 * jnp.ones((1024, *env.grid_shape(lv), env.action_dim(lv))) for lv in env.levels}
    step = jax.jit(jax.vmap(env.step, (0, 0, 0, None)))
    for _ in range(3):
        obs, state, reward, *_ = step(keys, state, action, params)
    assert set(reward) == set(env.levels) and reward["grandparent"].shape == (1024, 2, 2)
    np.testing.assert_allclose(  # a top agent's local reward is the mean over the 8x8 cells it covers
        reward["grandparent"][0], np.asarray(reward["cell"][0]).reshape(2, 8, 2, 8).mean(axis=(1, 3)), rtol=1e-5
    )

    def loss(scale):
        _, s = env.reset_env(keys[0], params)
        for t in range(4):
            a = {lv: scale * jnp.full((*env.grid_shape(lv), env.action_dim(lv)), 0.02) for lv in env.levels}
            _, s, *_ = env.step_env(keys[t], s, a, params)
        return env.loss(s, params)

    g = jax.grad(loss)(1.0)
    assert np.isfinite(g) and g != 0


def test_both_trainers_train_a_three_level_env():
    from agents.pool import PoolConfig, make_pool_trainer
    from agents.ppo import PPOConfig, make_ppo

    env, params = hnca_env.make("HNCA3-Layout-v0", grid=(16, 16), max_steps_in_episode=8)
    assert env.levels == ("cell", "parent", "grandparent")
    cfg = PoolConfig(pool_size=8, batch_size=2, min_steps=2, max_steps=3, hidden={lv: 8 for lv in env.levels},
                     remat=False, world_chunk=None)  # fmt: skip
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state, metrics = jax.jit(iteration)(init(jax.random.key(0)))
    assert np.isfinite(metrics["loss"]) and set(state.params) == set(env.levels)
    ppo = make_ppo(PPOConfig(task="HNCA3-Layout-v0", algo="ippo", env_kwargs={"grid": (16, 16), "max_steps_in_episode": 8},
                             num_envs=2, num_steps=4, total_timesteps=8, update_epochs=1, num_minibatches=1,
                             hidden=8, parent_hidden=8, critic_hidden=8, world_embed=8))  # fmt: skip
    out = jax.jit(ppo.train)(jax.random.key(1))
    assert "grandparent" in str(jax.tree_util.tree_structure(out["state"].params))  # an actor per level
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(out["metrics"]))


def test_the_top_level_alone_sees_the_goal_at_every_depth():
    for env_id in ("HNCA3-GoalSwitch-v0", "HNCA3-Layout-v0"):
        for depth, top in ((3, "grandparent"), (2, "parent"), (1, None)):
            env, _ = hnca_env.make(env_id, grid=(16, 16), depth=depth)
            assert env.task.goal_level == top and len(env.levels) == depth
            assert env.task.extra_obs_dims() == ({} if top is None else {top: env.task.n_goals})


def test_injected_observer_and_multiplexer():
    mean_obs = Observer("mean", lambda grid, kernels: jnp.mean(grid, -1, keepdims=True), lambda c, k: 1)
    halves = Multiplexer("half", lambda dst, src, scale: dst + 0.5 * src)
    levels = (Level("cell", 8, obs=mean_obs), Level("parent", 8, cluster=4, signals=4))
    env = hnca_env.HNCAEnv(grid=(8, 8), levels=levels, alive=False, multiplexer=halves, task=hnca_env.Task(size=6))
    params = env.default_params.replace(fire_rate={"cell": 1.0, "parent": 1.0}, seed=hnca_env.SEED_STATE)
    assert env.obs_dim("cell") == 1 and env.cell_obs == "mean" and env.multiplexer == "half"
    obs, state = env.reset(jax.random.key(0), params)
    assert obs["cell"].shape == (8, 8, 1)
    action = {"cell": jnp.zeros((8, 8, 8)), "parent": jnp.ones((2, 2, 12))}
    _, state, *_ = env.step_env(jax.random.key(1), state, action, params)
    np.testing.assert_allclose(state.grids["cell"][..., 4:], 0.5)  # half the broadcast of 1
    np.testing.assert_allclose(state.grids["cell"][..., :4], 0.0)


def test_replace_multiplexer_passes_each_links_message_as_it_is():
    """``multiplexer="replace"``, three levels (HNCA3-Mosaic-v0's): after one step each level's
    signal channels hold the broadcast of the level above and its sensed channels the cluster
    mean of the level below, with nothing carried over from the step before."""
    env, params = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), multiplexer="replace")
    params = params.replace(fire_rate={lvl: 1.0 for lvl in env.levels})
    _, state = env.reset(jax.random.key(0), params)
    k = jax.random.split(jax.random.key(1), 3)
    action = {lvl: 0.5 * jax.random.normal(kk, (*env.grid_shape(lvl), env.action_dim(lvl)))
              for kk, lvl in zip(k, env.levels)}  # fmt: skip
    _, nxt, *_ = env.step_env(jax.random.key(2), state, action, params)
    g = {lvl: np.asarray(v, np.float64) for lvl, v in nxt.grids.items()}
    a = {lvl: np.asarray(v, np.float64) for lvl, v in action.items()}

    def up(x, n):
        return np.repeat(np.repeat(x, n, 0), n, 1)

    def pool(x, n):
        return x.reshape(x.shape[0] // n, n, x.shape[1] // n, n, -1).mean(axis=(1, 3))

    np.testing.assert_allclose(g["cell"][..., 3:], up(a["parent"][..., 12:], 4), atol=1e-6)
    rgb = np.asarray(state.grids["cell"], np.float64)[..., :3] + a["cell"][..., :3]
    np.testing.assert_allclose(g["cell"][..., :3], rgb, atol=1e-6)
    np.testing.assert_allclose(g["parent"][..., 3:], up(a["grandparent"][..., 12:], 2), atol=1e-6)
    np.testing.assert_allclose(g["parent"][..., :3], pool(rgb, 4), atol=1e-6)
    np.testing.assert_allclose(g["grandparent"], pool(g["parent"], 2), atol=1e-6)


@pytest.mark.parametrize(
    "levels, match",
    [
        ((Level("cells", 8),), "must be named 'cell'"),
        ((Level("cell", 8), Level("cell", 8, cluster=2, signals=2)), "unique"),
        ((Level("cell", 8), Level("parent", 8, cluster=3, signals=2)), "not divisible by the cluster size 3"),
        ((Level("cell", 8), Level("parent", 8, cluster=2, signals=6)), "too few channels for the signals"),
        ((Level("cell", 8), Level("parent", 6, cluster=2, signals=2)), "sensor adds"),
        ((Level("cell", 8), Level("parent", 8, cluster=2, signals=2), Level("top", 8, cluster=2, signals=9)),
         "broadcasts 9 signals into level 'parent'"),
        ((Level("cell", 8), Level("parent", 8, cluster=2)), "signals must be a positive integer"),
    ],
)
def test_bad_hierarchies_are_named(levels, match):
    with pytest.raises(ValueError, match=match):
        hnca_env.HNCAEnv(grid=(8, 8), levels=levels, alive=False, task=hnca_env.Task(size=6))


def test_bad_level_settings_are_named():
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        Level("cell", 0)
    with pytest.raises(ValueError, match="obs must be one of"):
        Level("cell", 8, obs="raw")
    with pytest.raises(ValueError, match="not both"):
        hnca_env.HNCAEnv(grid=(8, 8), levels=hnca_hierarchy((2,)), parent=True, alive=False)
    with pytest.raises(ValueError, match="first link only"):
        hnca_env.HNCAEnv(grid=(16, 16), levels=hnca_hierarchy((2, 2)), alive=False, multiplexer="scaled",
                         task=hnca_env.Task(visible=3, size=10))
    env, _ = three_levels()
    with pytest.raises(ValueError, match=r"start_delay for level\(s\) \['parent'\]"):
        env.make_params(start_delay={"parent": 1})
    with pytest.raises(ValueError, match="must be >= 0"):
        env.make_params(start_delay={"grandparent": -1})


def test_render_overlays_every_level():
    env, params = three_levels()
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(grids={**state.grids, "cell": jnp.ones_like(state.grids["cell"])})
    from hnca_env import render

    frame = np.asarray(render.render(env, state, params, parent_grid=True))
    assert frame[1, 1, 0] == 255 and frame[1, 4, 0] == round(0.6 * 255) and frame[1, 8, 0] == round(0.36 * 255)


@pytest.mark.parametrize("doc, marker", [("concepts.md", "Level("), ("api.md", "hnca_hierarchy(")])
def test_the_three_level_examples_in_the_docs_run(doc, marker, capsys):
    text = (ROOT / "docs" / doc).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "grandparent" in b and marker in b]
    assert example, f"docs/{doc} has no three-level example"
    exec(compile(example[0], f"docs/{doc}", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed == example[0].strip().splitlines()[-1].lstrip("# ")  # the output it shows


def test_the_constant_answer_beside_the_depth_table():
    """benchmarks/levels.py --constant: the mean of the targets, against NumPy in float64."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import levels as levels_bench

    from agents import benchmark

    rows = levels_bench.constant_answers("cpu-small", seeds=1)
    env, params = benchmark.get_suite("cpu-small").task("HNCA3-GoalSwitch-v0").make(evaluation=True)
    t = np.asarray(params.task_params["targets"], np.float64)
    want = np.mean([np.mean((t.mean(0) - g) ** 2) for g in t])
    assert rows["HNCA3-GoalSwitch-v0"]["mean of the targets (constant)"] == pytest.approx(want, rel=1e-5)
    assert 0 < rows["HNCA3-Layout-v0"]["mean of the targets (constant)"] < 0.3  # do-nothing: 0.318
    # Layout: the mean image's MSE against each evaluation world's own goal (seed 0's worlds,
    # started as hnca_env.baselines.answer_worlds starts them)
    suite = benchmark.get_suite("cpu-small")
    env, params = suite.task("HNCA3-Layout-v0").make(evaluation=True)
    t = np.asarray(params.task_params["targets"], np.float64)
    per_goal = np.mean((t.mean(0)[None] - t) ** 2, axis=(1, 2, 3))
    goal_of = jax.jit(jax.vmap(lambda k: env.reset_env(jax.random.split(k)[0], params)[1].task["goal"]))
    goals = np.asarray(goal_of(jax.random.split(suite.eval_key(0), suite.eval_worlds)))
    assert rows["HNCA3-Layout-v0"]["mean of the targets (constant)"] == pytest.approx(per_goal[goals].mean(), rel=1e-5)


# ------------------------------------------------------------------ tasks solvable on a torus
def test_mosaic_target_obs_and_tiles_by_hand():
    """HNCA3-Mosaic-v0: the target is the layout's tiles in their colours, the top level alone
    sees the layout (one bit per agent; at depth 2 each bit on 2×2 coordinators), and
    ``tiles_right`` counts the tiles whose mean colour is nearer the right colour (NumPy)."""
    env, params = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16))
    _, state = env.reset(jax.random.key(4), params)
    layout = np.asarray(state.task["layout"])
    assert layout.shape == (2, 2) and set(np.unique(layout)) <= {0, 1}
    cols = np.asarray(params.task_params["colours"], np.float64)
    want = np.kron(layout, np.ones((8, 8)))[..., None] * (cols[1] - cols[0]) + cols[0]
    np.testing.assert_allclose(np.asarray(env.task.current_target(state, params)), want, atol=1e-7)
    obs = env.get_obs(state, params)
    np.testing.assert_array_equal(np.asarray(obs["grandparent"][..., -1]), layout)
    assert obs["parent"].shape[-1] == env.obs_dim("parent") and env.task.extra_obs_dims() == {"grandparent": 1}
    env2, _ = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), depth=2)
    np.testing.assert_array_equal(np.asarray(env2.get_obs(state, params)["parent"][..., -1]), np.kron(layout, np.ones((2, 2))))
    # cells: three tiles right, the fourth painted the other colour: tiles_right = 0.75
    shown = want.copy()
    shown[:8, :8] = cols[1 - layout[0, 0]]
    cells = state.grids["cell"].at[..., :3].set(jnp.asarray(shown, jnp.float32))
    tr = env.task.trace(state.replace(grids={**state.grids, "cell": cells}), params)
    assert float(tr["tiles_right"]) == 0.75
    np.testing.assert_allclose(float(tr["mse"]), np.mean((shown - want) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of 8"):
        hnca_env.make("HNCA3-Mosaic-v0", grid=(20, 20))
    with pytest.raises(ValueError, match="two RGB triples"):
        hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), colours=[(1, 0, 0)])
    with pytest.raises(ValueError, match="not a coordinator level"):
        hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), goal_level="cell")
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        env.check_params(params.replace(task_params={"colours": jnp.zeros((3, 3))}))
    with pytest.raises(ValueError, match="must be integers"):
        env.check_params(params.replace(task_params={**params.task_params, "switch_times": jnp.array([2.5])}))


def test_mosaic_switch_draws_a_new_layout_at_the_switch():
    env, params = hnca_env.make("HNCA3-MosaicSwitch-v0", grid=(16, 16), switch_times=(2,), max_steps_in_episode=4)
    assert int(params.task_params["switch_times"][0]) == 2 and env.task.extra_obs_dims() == {"grandparent": 1}

    @jax.jit
    @jax.vmap
    def layouts(key):  # the task's post-step at times 1 and 2 (the switch) after a reset
        _, s = env.reset(key, params)
        at = [env.task.post_step(key, s, s.replace(time=jnp.int32(t)), params).task["layout"] for t in (1, 2)]
        return jnp.stack([s.task["layout"], *at])

    got = np.asarray(layouts(jax.random.split(jax.random.key(0), 8)))
    np.testing.assert_array_equal(got[:, 1], got[:, 0])  # time 1: kept
    assert np.mean(np.any(got[:, 2] != got[:, 0], axis=(1, 2))) > 0.5  # time 2: a new draw (differs in most worlds)
    # the step before the switch is scored against the old layout: mse_before_switch = trace[1]
    trace = {"mse": jnp.array([0.5, 0.25, 0.125, 0.0625, 0.03125]), "tiles_right": jnp.ones(5)}
    out = env.task.summarize(trace, params)
    assert float(out["mse_before_switch"]) == 0.25 and float(out["mse"]) == 0.03125


def test_depth_benchmark_pieces():
    """benchmarks/depth.py: the silenced top level's actions are zero (no update, no broadcast),
    the others' untouched; the trivial rows are the mean colour's error (NumPy); the table
    averages seeds (training is the CLI's, tested there)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import depth as depth_bench
    env, params = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), max_steps_in_episode=3)

    def busy(key, obs):
        return {lv: jnp.full((*env.grid_shape(lv), env.action_dim(lv)), 0.1) for lv in obs}

    quiet = depth_bench.silenced(busy, ["grandparent"])
    obs, s0 = env.reset(jax.random.key(0), params)
    action, _ = quiet.step(jax.random.key(1), obs, quiet.init(s0), s0)
    assert not np.any(np.asarray(action["grandparent"]))
    for lv in ("cell", "parent"):
        np.testing.assert_array_equal(np.asarray(action[lv]), np.asarray(busy(None, obs)[lv]))

    rows = depth_bench.trivial_rows("HNCA3-Mosaic-v0", quick=True)
    cols = np.asarray(MOSAIC_COLOURS, np.float64)  # each tile is one colour, the answer their mean
    assert rows["constant: the mean colour"]["mse"] == pytest.approx(np.mean((cols - cols.mean(0)) ** 2), rel=1e-5)
    runs = [{"task": "HNCA3-Mosaic-v0", "trainer": "pool", "depth": d, "seed": i,
             "metrics": {"mse": 0.01 * d + i * 0.002, "tiles_right": 0.9},
             "top_silenced": {"mse": 0.1, "tiles_right": 0.5}} for d in (3, 2, 1) for i in (0, 1)]  # fmt: skip
    table = depth_bench.report({"runs": runs, "eval_worlds": 8, "baselines": {"HNCA3-Mosaic-v0": rows}})
    row = next(x for x in table.splitlines() if x.startswith("| pool |"))
    assert row == "| pool | 0.031 ± 0.002 | 0.1 ± 0 | 0.021 ± 0.002 | 0.011 ± 0.002 | 2 |"  # 1.96 × 0.0014 / √2
    # diagnose: a rule pushing every state up sits at the clamp; one whose top level broadcasts
    # its layout bit (replace: the coordinators' signal channels are that bit) shows a gap of 1
    # and nothing at the clamp
    adder, p_add = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16))
    up = depth_bench.diagnose_policy(adder, p_add, lambda k, o: {lv: jnp.ones(
        (*adder.grid_shape(lv), adder.action_dim(lv))) for lv in o}, worlds=4, times=(1, 64))  # fmt: skip
    assert up["at_clamp"]["parent"][64] == up["at_clamp"]["grandparent"][64] == 1.0
    assert up["at_clamp"]["parent"][1] < 1.0
    rep, p_rep = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16), multiplexer="replace")
    top, c = "grandparent", rep.level_specs[-1].channels

    def tell(key, obs):
        act = {lv: jnp.zeros((*rep.grid_shape(lv), rep.action_dim(lv))) for lv in obs}
        act[top] = act[top].at[..., c:].set(obs[top][..., -1:])  # the broadcast: the seen bit
        return act

    told = depth_bench.diagnose_policy(rep, p_rep, tell, worlds=8, times=(4,))
    assert told["layout_gap"]["parent"][4] == pytest.approx(1.0, abs=1e-6)
    assert told["at_clamp"]["parent"][4] == told["at_clamp"]["grandparent"][4] == 0.0
    for trainer in ("pool", "ippo", "mappo"):  # --multiplexer reaches the env of every trainer, at every depth
        args = depth_bench.train_args("HNCA3-Mosaic-v0", trainer, 3, 0, quick=True, multiplexer="replace")
        assert args[args.index("env_kwargs.multiplexer=replace") - 1] == "--set"
        assert "env_kwargs.multiplexer=replace" not in depth_bench.train_args("HNCA3-Mosaic-v0", trainer, 3, 0, True)
        big = depth_bench.train_args("HNCA3-Mosaic-v0", trainer, 3, 0, quick=False, grid=32)  # --grid reaches both
        assert (big[big.index("--grid") + 1] == "32") if trainer == "pool" else "env_kwargs.grid=[32,32]" in big
