"""PPO (agents/ppo.py): GAE against hand computations, config validation, one update, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import ppo as ppo_lib
from agents.ppo import PPOConfig, gae, load_config, make_ppo
from hnca_env.evaluate import evaluate, zero_policy

TINY = dict(
    env_kwargs={"grid": (8, 8), "max_steps_in_episode": 8},
    num_envs=2,
    num_steps=4,
    total_timesteps=16,
    update_epochs=1,
    num_minibatches=2,
    hidden=8,
    parent_hidden=8,
    critic_hidden=8,
    world_embed=8,
)


def gae_reference(rewards, values, dones, last_value, gamma, lam):
    """The textbook loop in float64."""
    T = len(rewards)
    adv = np.zeros(T)
    next_adv, next_v = 0.0, last_value
    for t in reversed(range(T)):
        nonterm = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * nonterm - values[t]
        next_adv = delta + gamma * lam * nonterm * next_adv
        adv[t] = next_adv
        next_v = values[t]
    return adv, adv + values


def test_gae_matches_the_textbook_loop():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=7), rng.normal(size=7)
    d = np.array([0, 0, 1, 0, 0, 0, 1.0])
    for last, gamma, lam in ((0.3, 0.99, 0.95), (-1.2, 0.9, 1.0), (0.5, 0.8, 0.0)):
        adv, tgt = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(d), jnp.asarray(last), gamma, lam)
        want_adv, want_tgt = gae_reference(r, v, d, last, gamma, lam)
        np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tgt, want_tgt, rtol=1e-5, atol=1e-6)


def test_gae_broadcasts_dones_over_agents():
    rng = np.random.default_rng(1)
    r, v = rng.normal(size=(5, 2, 3, 3)), rng.normal(size=(5, 2, 3, 3))
    d = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0.0]])
    last = rng.normal(size=(2, 3, 3))
    adv, _ = gae(
        jnp.asarray(r), jnp.asarray(v), jnp.asarray(d)[:, :, None, None], jnp.asarray(last), 0.9, 0.8
    )
    for n in range(2):
        for y in range(3):
            for x in range(3):
                want, _ = gae_reference(r[:, n, y, x], v[:, n, y, x], d[:, n], last[n, y, x], 0.9, 0.8)
                np.testing.assert_allclose(adv[:, n, y, x], want, rtol=1e-5, atol=1e-6)


def test_gae_with_decisions_every_second_step_by_hand():
    g, lam = 0.9, 0.5
    r = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([0.5, 9.0, -1.0, 9.0])  # values at non-decision steps are ignored
    last = 2.0
    decide = np.array([True, False, True, False])
    adv, tgt = gae(
        jnp.asarray(r), jnp.asarray(v), jnp.zeros(4), jnp.asarray(last), g, lam, jnp.asarray(decide)
    )
    a2 = r[2] + g * r[3] + g**2 * last - v[2]
    a0 = r[0] + g * r[1] + g**2 * v[2] - v[0] + lam * g**2 * a2
    np.testing.assert_allclose(adv, [a0, 0.0, a2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tgt)[[0, 2]], [a0 + v[0], a2 + v[2]], rtol=1e-6)
    # the episode ends with step 1: decision 0 sums r0 + γ r1 and does not bootstrap
    adv, _ = gae(
        jnp.asarray(r),
        jnp.asarray(v),
        jnp.array([0.0, 1.0, 0, 0]),
        jnp.asarray(last),
        g,
        lam,
        jnp.asarray(decide),
    )
    np.testing.assert_allclose(adv[0], r[0] + g * r[1] - v[0], rtol=1e-6)
    np.testing.assert_allclose(adv[2], a2, rtol=1e-6)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"task": "Nope-v0"}, "unknown env id"),
        ({"algo": "dqn"}, "algo"),
        ({"reward": "bogus"}, "reward"),
        ({"num_envs": 0}, "num_envs"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"gamma": 1.5}, "gamma"),
        ({"lr": -1.0}, "lr"),
        ({"clip_eps": float("nan")}, "clip_eps"),
        ({"ent_coef": -0.1}, "ent_coef"),
        ({"num_minibatches": 3}, "num_minibatches"),
        ({"total_timesteps": 4}, "total_timesteps"),
        ({"parent_every": 3}, "parent_every"),
    ],
)
def test_config_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**{**TINY, **change})


def test_config_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "ppo.yaml"
    path.write_text("algo: mappo\nlr: 0.001\nenv_kwargs:\n  grid: [8, 8]\n")
    cfg = load_config("Density-v0", str(path), ["num_envs=4", "env_kwargs.max_steps_in_episode=8"])
    assert cfg.algo == "mappo" and cfg.lr == 1e-3 and cfg.num_envs == 4
    assert cfg.env_kwargs["grid"] == (8, 8) and cfg.env_kwargs["max_steps_in_episode"] == 8
    assert cfg.env_kwargs["clamp"] is True  # the task's default survives
    assert PPOConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown PPO setting"):
        load_config("Density-v0", None, ["learning_rate=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("Density-v0", None, ["lr"])


@pytest.fixture(scope="module")
def tiny_ppo():
    """``tiny_ppo(algo, parent_every) -> (ppo, state)``: the TINY trainer on Density-v0 and its
    ``jax.jit(ppo.init)(key(0))``, built and compiled once per setting for the tests below."""
    built = {}

    def get(algo="ippo", parent_every=1):
        if (algo, parent_every) not in built:
            cfg = PPOConfig.for_task("Density-v0", **{**TINY, "algo": algo, "parent_every": parent_every})
            ppo = make_ppo(cfg)
            built[algo, parent_every] = ppo, jax.jit(ppo.init)(jax.random.key(0))
        return built[algo, parent_every]

    return get


@pytest.fixture(scope="module")
def tiny_update(tiny_ppo):
    """``tiny_update(algo, parent_every) -> (ppo, state, new, metrics)``: one
    ``jax.jit(ppo.update)`` of :func:`tiny_ppo`'s state, computed once per setting."""
    done = {}

    def get(algo="ippo", parent_every=1):
        if (algo, parent_every) not in done:
            ppo, state = tiny_ppo(algo, parent_every)
            done[algo, parent_every] = (ppo, state, *jax.jit(ppo.update)(state))
        return done[algo, parent_every]

    return get


@pytest.mark.parametrize("algo, parent_every", [("ippo", 1), ("mappo", 2)])
def test_one_update_moves_the_policy_and_stays_finite(tiny_update, algo, parent_every):
    ppo, state, new, metrics = tiny_update(algo, parent_every)
    assert int(new.iteration) == 1
    for name, v in metrics.items():
        if not name.startswith("episode_return"):
            assert np.isfinite(v), name
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params["net"], new.params["net"])
    for lvl in ("cell", "parent"):
        assert moved["params"][lvl]["actor"]["out"]["kernel"] > 0, lvl  # the zero-init output learnt
    grads_finite = jax.tree.leaves(jax.tree.map(lambda x: bool(jnp.all(jnp.isfinite(x))), new.params))
    assert all(grads_finite)


def test_train_is_deterministic_per_key():
    cfg = PPOConfig.for_task("Density-v0", **{**TINY, "total_timesteps": 24, "num_steps": 4, "num_envs": 2})
    train = jax.jit(ppo_lib.make_train(cfg))
    a, b = train(jax.random.key(3)), train(jax.random.key(3))
    c = train(jax.random.key(4))
    same = jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y, equal_nan=True)), a["metrics"], b["metrics"])
    assert all(jax.tree.leaves(same))
    assert not np.allclose(a["metrics"]["loss"], c["metrics"]["loss"])
    assert a["metrics"]["loss"].shape == (cfg.num_updates,)  # vmap over seeds: test_docs_rl_ppo_block_runs


def test_fresh_policy_is_do_nothing_and_repeats_coordinator_actions(tiny_ppo):
    ppo, state = tiny_ppo("ippo", parent_every=2)
    params = state.params
    got = ppo_lib.evaluate_policy(ppo, params, jax.random.key(7), n_worlds=4)
    want = evaluate(ppo.env, zero_policy(ppo.env), jax.random.key(7), ppo.env_params, n_worlds=4)
    assert got == pytest.approx(want)
    # coordinators decide at even times and hold in between; cells act every step
    obs, st = ppo.env.reset(jax.random.key(1), ppo.env_params)
    held = {"parent": jnp.full((2, 2, ppo.env.action_dim("parent")), 0.25)}
    for t, decides in ((0, True), (1, False), (2, True)):
        env_action, new_held, sampled, _, _, decide = ppo.act(
            params, jax.random.key(t), obs, None, jnp.asarray(t), held
        )
        assert bool(decide["parent"]) is decides and bool(decide["cell"])
        if decides:
            np.testing.assert_allclose(env_action["parent"], jnp.clip(sampled["parent"], -1, 1))
        else:
            np.testing.assert_allclose(env_action["parent"], held["parent"])
        np.testing.assert_allclose(new_held["parent"], env_action["parent"])


PPO_TINY_CLI = [
    "--task", "Density-v0", "--grid", "8",
    "--set", "num_envs=2", "--set", "num_steps=4", "--set", "num_minibatches=2", "--set", "update_epochs=1",
    "--set", "hidden=8", "--set", "parent_hidden=8", "--set", "critic_hidden=8", "--set", "world_embed=8",
    "--set", "env_kwargs.max_steps_in_episode=8",
]  # fmt: skip


def test_hnca_train_ppo_resume_and_eval(tmp_path, monkeypatch, capsys):
    """``hnca train --agent mappo``: outputs, an exact resume after an interruption, ``hnca eval``."""
    from agents import loop
    from agents.cli import main
    from agents.loop import read_metrics

    # One trainer for the runs below: every `hnca train` of the same config would build and
    # compile it afresh (~20 s each); what a run computes does not depend on which build it uses.
    built = []
    real_make_ppo = ppo_lib.make_ppo

    def make_ppo_once(config, *a, **kw):
        if a or kw:
            return real_make_ppo(config, *a, **kw)
        for c, p in built:
            if c == config:
                return p
        built.append((config, real_make_ppo(config)))
        return built[-1][1]

    monkeypatch.setattr(ppo_lib, "make_ppo", make_ppo_once)
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["train", "--agent", "mappo", "--iterations", "4", "--checkpoint-every", "2", "--log-every", "1"]
    assert main([*common, "--out", str(full), *PPO_TINY_CLI]) == 0
    for name in (
        "config.json",
        "metrics.jsonl",
        "params.msgpack",
        "rollout.gif",
        "summary.json",
        "reward.png",
    ):
        assert (full / name).exists(), name
    rows = read_metrics(full / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]

    real = loop.train_loop

    def interrupted(init, iteration, *a, **kw):  # stop after the third update
        calls = {"n": 0}

        def it(state):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return iteration(state)

        return real(init, it, *a, **kw)

    monkeypatch.setattr(loop, "train_loop", interrupted)
    assert main([*common, "--out", str(cut), *PPO_TINY_CLI]) == 130
    monkeypatch.setattr(loop, "train_loop", real)
    assert main(["train", "--resume", str(cut)]) == 0
    resumed = read_metrics(cut / "metrics.jsonl")
    assert [r["iteration"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(rows, resumed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["iteration"]
    assert (cut / "params.msgpack").read_bytes() == (full / "params.msgpack").read_bytes()
    assert main(["train", "--resume", str(cut), "--set", "lr=1"]) == 2
    capsys.readouterr()
    assert main(["eval", "--run", str(full), "--worlds", "2"]) == 0
    out = capsys.readouterr().out
    assert "cell_accuracy" in out and "mappo" in out
    assert (full / "eval.json").exists()
    assert len(built) == 1  # the resumed run and hnca eval rebuilt the run's own config


def _doc_blocks():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "rl.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_docs_rl_ppo_block_runs(capsys):
    code = _doc_blocks()[0].replace(
        'PPOConfig.for_task("Density-v0", algo="mappo")',
        'PPOConfig.for_task("Density-v0", algo="mappo", **TINY_DOC)',
    )
    assert "print(evaluate_policy(ppo, params, " in code
    ns: dict = {"TINY_DOC": TINY}
    capsys.readouterr()
    exec(compile(code, "docs/rl.md", "exec"), ns)
    assert ns["out"]["metrics"]["loss"].shape == (3, ns["config"].num_updates)
    printed = capsys.readouterr().out  # the block's last line: evaluate_policy of seed 0's params
    assert "'cell_accuracy': " in printed and "'mse': " in printed


def test_docs_rl_own_loops_run_and_are_short(capsys):
    raw, single = _doc_blocks()[1:3]
    assert len(raw.splitlines()) <= 40 and len(single.splitlines()) <= 40
    ns: dict = {}
    exec(
        compile(
            raw.replace("range(100)", "range(12)").replace("grid=(16, 16)", "grid=(8, 8)"), "rl.md", "exec"
        ),
        ns,
    )
    h = ns["history"]
    assert len(h) == 12 and all(np.isfinite(h))
    assert np.mean(h[-3:]) > np.mean(h[:3])  # the shared rule already helps after a few updates
    ns = {}
    exec(compile(single.replace("N, T = 8, 64", "N, T = 2, 40"), "rl.md", "exec"), ns)
    assert ns["obs"].shape == (40, 2, 8832) and ns["action"].shape == (40, 2, 2240)
    assert bool(ns["ended"].any())


def test_reward_is_one_config_field():
    from hnca_env import rewards

    for name, cls in (
        ("local", rewards.LocalError),
        ("team", rewards.TeamError),
        ("improvement", rewards.Improvement),
    ):
        env, _ = ppo_lib.make_env(PPOConfig.for_task("Density-v0", **{**TINY, "reward": name}))
        assert isinstance(env.reward, cls)
    env, params = ppo_lib.make_env(
        PPOConfig.for_task("Density-v0", **{**TINY, "reward": {"local": 1.0, "team": 0.5}})
    )
    assert isinstance(env.reward, rewards.Weighted) and params.reward_weights == {"local": 1.0, "team": 0.5}


def test_parent_every_must_align_with_tau_c_and_episode():
    with pytest.raises(ValueError, match="must divide the env's tau_c"):
        make_ppo(
            PPOConfig.for_task(
                "HNCA-Grow-v0",
                **{
                    **TINY,
                    "parent_every": 2,
                    "env_kwargs": {"grid": (8, 8), "tau_c": 3, "max_steps_in_episode": 8},
                },
            )
        )
    with pytest.raises(ValueError, match="episode length"):
        make_ppo(
            PPOConfig.for_task(
                "Density-v0",
                **{**TINY, "parent_every": 4, "env_kwargs": {"grid": (8, 8), "max_steps_in_episode": 6}},
            )
        )


def test_running_statistics_equal_those_of_all_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 3.0, size=(40, 5)), rng.normal(-1.0, 0.5, size=(7, 3, 5))
    stats = ppo_lib.merge_norm(ppo_lib.merge_norm(ppo_lib.identity_norm(5), jnp.asarray(a)), jnp.asarray(b))
    both = np.concatenate([a, b.reshape(-1, 5)])
    np.testing.assert_allclose(stats["mean"], both.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], both.var(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        ppo_lib.normalize(stats, jnp.asarray(both)),
        np.clip((both - both.mean(0)) / both.std(0), -10, 10),
        atol=1e-3,
    )


def test_policy_apply_is_the_deterministic_action(tiny_update):
    ppo, _, state, _ = tiny_update("ippo", 1)  # TINY's defaults: one update, a trained, nonzero actor
    assert ppo.config == PPOConfig.for_task("Density-v0", **TINY)
    obs, st = ppo.env.reset(jax.random.key(1), ppo.env_params)
    got = ppo.policy_apply(state.params, obs)
    want, *_ = ppo.act(state.params, jax.random.key(2), obs, None, st.time, {}, True)
    for lvl in ("cell", "parent"):
        assert float(jnp.max(jnp.abs(got[lvl]))) > 0
        np.testing.assert_allclose(got[lvl], want[lvl], rtol=1e-5, atol=1e-6)


def test_ppo_policy_runs_on_the_library_rollout_with_its_held_actions(tiny_ppo):
    """ppo.policy is a CarryPolicy: hnca_env.rollout.rollout runs it with the coordinators'
    held action as its carry, step for step what a loop over ppo.act does; evaluate_policy is
    the library's evaluate, so world_chunk works for PPO too."""
    from hnca_env.rollout import CarryPolicy, rollout

    ppo, state = tiny_ppo("ippo", parent_every=2)
    params = state.params
    pol = ppo.policy(params, deterministic=False)  # sampled actions: the carry matters
    assert isinstance(pol, CarryPolicy)
    env, ep, key, steps = ppo.env, ppo.env_params, jax.random.key(3), 5
    _, final, recs = rollout(env, pol, key, ep, steps, record=lambda s: s.grids["parent"])
    # the loop by hand, with the same keys as rollout splits them
    k_reset, k_run = jax.random.split(key)
    obs, st = env.reset_env(k_reset, ep)
    held = {"parent": jnp.zeros((*env.grid_shape("parent"), env.action_dim("parent")))}
    want = [st.grids["parent"]]
    for kk in jax.random.split(k_run, steps):
        k_act, k_step = jax.random.split(kk)
        action, held, *_ = ppo.act(params, k_act, obs, None, st.time, held, False)
        obs, st, *_ = env.step_env(k_step, st, action, ep)
        want.append(st.grids["parent"])
    np.testing.assert_allclose(recs, jnp.stack(want), rtol=1e-6, atol=1e-6)
    a = ppo_lib.evaluate_policy(ppo, params, jax.random.key(7), n_worlds=4, deterministic=False, world_chunk=None)
    b = ppo_lib.evaluate_policy(ppo, params, jax.random.key(7), n_worlds=4, deterministic=False, world_chunk=1)
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
