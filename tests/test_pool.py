"""The gradient pool trainer: re-seeding, damage, learning, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from agents.pool import PoolConfig, damage_discs, make_pool_trainer
from hnca_env.rollout import rollout


def test_damage_discs_zero_one_disc_per_sample():
    cells = jnp.ones((3, 20, 20, 4))
    out = np.asarray(damage_discs(jax.random.key(0), cells))
    for i in range(3):
        zero = (out[i] == 0).all(-1)
        assert 0 < zero.sum() < 400
        assert ((out[i] == 0) | (out[i] == 1)).all()
        ys, xs = np.nonzero(zero)
        assert 5 <= ys.mean() <= 15 and 5 <= xs.mean() <= 15  # centre in the middle half


def test_worst_sample_reseeded_and_best_damaged():
    env, params = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8, fire_rate=0.0)
    cfg = PoolConfig(pool_size=4, batch_size=4, min_steps=1, max_steps=1, damage=1, hidden={"cell": 8})
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(0))
    # known pool: constant fields 1..4 (all alive); loss grows with the constant
    levels = jnp.arange(1.0, 5.0)
    cells = jnp.ones((4, 12, 12, 16)) * levels[:, None, None, None]
    state = state.replace(pool=state.pool.replace(grids={"cell": cells}))
    state, m = iteration(state)
    new = np.asarray(state.pool.grids["cell"])
    seed = np.asarray(env.initial_state(jax.random.key(0), params).grids["cell"])
    np.testing.assert_array_equal(new[3], seed)  # worst (4.0) replaced by the seed
    np.testing.assert_array_equal(new[1], np.full((12, 12, 16), 2.0))  # middle ones untouched
    np.testing.assert_array_equal(new[2], np.full((12, 12, 16), 3.0))
    hole = (new[0] == 0).all(-1)
    assert hole.any() and np.all(new[0][~hole] == 1.0)  # best (1.0) damaged
    assert int(state.iteration) == 1


def test_few_iterations_lower_the_loss():
    env, params = hnca_env.make("Grow-v0", grid=(16, 16), target="disc", target_size=10)
    cfg = PoolConfig(pool_size=32, batch_size=4, min_steps=8, max_steps=12, lr=3e-3, hidden={"cell": 32})
    init, iteration, apply = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(0))

    def eval_loss(pp):
        _, st, _ = rollout(env, lambda k, obs: apply(pp, obs), jax.random.key(1), params, steps=12)
        return env.loss(st, params)

    before = float(eval_loss(state.params))
    losses = []
    for _ in range(40):
        state, m = iteration(state)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses))
    assert float(eval_loss(state.params)) < 0.8 * before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(pool_size=4, batch_size=8), "exceeds pool_size"),
        (dict(min_steps=10, max_steps=5), "min_steps=10 exceeds max_steps=5"),
        (dict(grad="adamw"), "grad must be one of"),
        (dict(damage=8), "damage must be in"),
        (dict(lr=0.0), "lr must be a finite positive number"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoolConfig(**kwargs)


def test_reseed_whole_batch_starts_every_rollout_from_the_seed():
    env, params = hnca_env.make("Grow-v0", grid=(8, 8), target_size=6, fire_rate=0.0)
    cfg = PoolConfig(pool_size=2, batch_size=2, min_steps=1, max_steps=1, reseed=2, hidden={"cell": 4})
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(0))
    state = state.replace(pool=state.pool.replace(grids={"cell": jnp.full((2, 8, 8, 16), 0.5)}))
    state, _ = iteration(state)
    seed = np.asarray(env.initial_state(jax.random.key(0), params).grids["cell"])
    # fresh policy (zero output) and no firing: one step leaves the seed as it was
    np.testing.assert_array_equal(np.asarray(state.pool.grids["cell"]), np.stack([seed, seed]))
    with pytest.raises(ValueError, match="reseed must be in"):
        PoolConfig(batch_size=4, reseed=3, damage=2)


def test_regrow_cuts_one_disc_and_ignores_the_envs_own_damage():
    from agents.artifacts import default_wound, regrow
    from hnca_env import physics
    from hnca_env.evaluate import zero_policy

    ones = np.ones((16, 16, 16), np.float32)
    env, params = hnca_env.make("Regenerate-v0", grid=(16, 16), target_size=8, seed="state", seed_state=ones)
    params = params.replace(damage_times=jnp.full_like(params.damage_times, 3), fire_rate={"cell": 0.0})
    losses, (grow, re) = jax.jit(
        lambda k: regrow(env, zero_policy(env), k, params, 4, 4, record=lambda s: s.grids["cell"])
    )(jax.random.key(0))
    centre, radius = default_wound(env.grid)
    hole = np.asarray(physics.circle_mask(env.grid, jnp.asarray(centre), jnp.asarray(radius)))
    np.testing.assert_array_equal(np.asarray(grow), np.broadcast_to(ones, (5, 16, 16, 16)))  # step 3: no hole
    np.testing.assert_array_equal(np.asarray(re[0]), ones * ~hole[..., None])
    np.testing.assert_array_equal(
        np.asarray(re[-1]), np.asarray(re[0])
    )  # a do-nothing policy regrows nothing
    assert float(losses["damaged"]) != float(losses["grown"])
    assert float(losses["regrown"]) == float(losses["damaged"])


def test_segment_checkpointing_gives_the_same_training():
    """remat_segments (two-level, sqrt-T memory) and donate compute exactly what per-step remat does."""
    import dataclasses

    env, params = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8)
    base = PoolConfig(pool_size=8, batch_size=2, min_steps=3, max_steps=7, hidden={"cell": 8})
    runs = []
    for segs, donate in ((0, False), (3, False), (3, True)):
        cfg = dataclasses.replace(base, remat_segments=segs, donate=donate)
        init, it, _ = make_pool_trainer(env, params, cfg)
        s = init(jax.random.key(0))
        for _ in range(2):
            s, m = it(s)
        runs.append((float(m["loss"]), s.params))
    for loss, p in runs[1:]:  # segments, and segments with the state donated
        assert runs[0][0] == pytest.approx(loss, rel=1e-6)
        for a, b in zip(jax.tree.leaves(runs[0][1]), jax.tree.leaves(p)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="remat_segments needs remat"):
        PoolConfig(remat=False, remat_segments=2)


@pytest.fixture(scope="module")
def chunked_training():
    """``train(world_chunk) -> (metrics, state)`` after 2 iterations, each chunking trained once
    (the whole-batch run is the reference of every test below)."""
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=2, max_steps_in_episode=12)
    base = dict(pool_size=8, batch_size=4, min_steps=3, max_steps=5, hidden={"cell": 8, "parent": 8})
    runs = {}

    def train(c):
        if c not in runs:
            init, it, _ = make_pool_trainer(env, params, PoolConfig(**base, world_chunk=c))
            s = init(jax.random.key(0))
            for _ in range(2):
                s, m = it(s)
            runs[c] = (m, s)
        return runs[c]

    return train


@pytest.mark.parametrize("chunk", [1, 2, "auto"])
def test_world_chunks_give_the_same_training(chunked_training, chunk):
    """Differentiating the batch in chunks of worlds and summing is the whole-batch gradient
    (H-NCA env: child-only steps without gradient, coordinators, reseeding)."""
    (m0, s0), (m1, s1) = chunked_training(None), chunked_training(chunk)
    assert float(m0["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
    assert float(m0["max_loss"]) == pytest.approx(float(m1["max_loss"]), rel=1e-5)
    for a, b in zip(
        jax.tree.leaves((s0.params, s0.pool)), jax.tree.leaves((s1.params, s1.pool)), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_world_chunk_must_divide_the_batch():
    with pytest.raises(ValueError, match="world_chunk=3 must divide the number of worlds"):
        PoolConfig(batch_size=8, world_chunk=3)
    with pytest.raises(ValueError, match="world_chunk must be None, 'auto' or a positive integer"):
        PoolConfig(world_chunk=0)


def test_mutate_draws_a_new_digit_under_the_same_cells():
    env, params = hnca_env.make("Digits-v0")
    cfg = PoolConfig(
        pool_size=8, batch_size=8, min_steps=1, max_steps=1, reseed=0, mutate=8, hidden={"cell": 8}
    )
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(0))
    before = jax.tree.map(np.asarray, state.pool.task)
    state, _ = iteration(state)
    after = jax.tree.map(np.asarray, state.pool.task)
    assert (after["index"] != before["index"]).sum() >= 6  # new digits (a repeat is possible)
    cells = np.asarray(state.pool.grids["cell"])
    np.testing.assert_array_equal(cells[..., 0], after["ink"])  # the env holds the new ink
    assert not cells[after["ink"] == 0].any()  # cells off the new digit are dead


def test_mutate_needs_a_task_that_can():
    env, params = hnca_env.make("Grow-v0", grid=(12, 12))
    with pytest.raises(ValueError, match="mutate"):
        make_pool_trainer(env, params, PoolConfig(pool_size=4, batch_size=4, mutate=1))
    with pytest.raises(ValueError, match="reseed \\+ damage \\+ mutate"):
        PoolConfig(pool_size=8, batch_size=4, reseed=2, damage=1, mutate=2)


def test_action_noise_moves_a_do_nothing_rule_and_zero_noise_changes_nothing():
    env, params = hnca_env.make("Digits-v0")
    base = dict(pool_size=4, batch_size=4, min_steps=2, max_steps=2, reseed=0, hidden={"cell": 8})
    pools = {}
    for noise in (0.0, 0.02):
        init, iteration, _ = make_pool_trainer(env, params, PoolConfig(**base, action_noise=noise))
        state = init(jax.random.key(0))
        start = np.asarray(state.pool.grids["cell"])
        state, _ = iteration(state)
        pools[noise] = np.asarray(state.pool.grids["cell"])
    # the fresh rule outputs zeros: without noise the states stay, with noise alive cells move
    np.testing.assert_array_equal(pools[0.0], start)
    moved = np.abs(pools[0.02] - start)[..., 1:]
    assert 0 < moved.max() < 0.2
    with pytest.raises(ValueError, match="action_noise"):
        PoolConfig(action_noise=-1.0)


def test_noisy_policy_adds_noise_of_that_std():
    from hnca_env.evaluate import noisy_policy, zero_policy

    env, params = hnca_env.make("Grow-v0", grid=(32, 32))
    obs, _ = env.reset(jax.random.key(0), params)
    a = np.asarray(noisy_policy(zero_policy(env), 0.5)(jax.random.key(1), obs)["cell"])
    assert a.shape == (32, 32, 16) and abs(a.std() - 0.5) < 0.02
    with pytest.raises(ValueError, match="std"):
        noisy_policy(zero_policy(env), -0.1)
