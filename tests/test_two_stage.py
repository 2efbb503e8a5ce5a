"""Two-stage H-NCA training: the child alone, then the parents with the child frozen."""

import jax
import jax.numpy as jnp
import numpy as np

import hnca_env
from agents.pool import PoolConfig, make_pool_trainer
from agents.two_stage import child_problem, train_two_stage, with_frozen_child


def test_child_only_steps_carry_no_gradient():
    """The first tau_c steps run under stop_gradient: a rollout that ends before the parents
    start teaches the cells nothing; once coupled, the cells learn."""
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=10, target_size=6)
    cfg = PoolConfig(
        pool_size=4, batch_size=4, min_steps=2, max_steps=2, reseed=0, hidden={"cell": 8, "parent": 8}
    )
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    state = init(jax.random.key(0))
    # non-zero output layers, so the loss depends on the cells' hidden layer
    state = state.replace(params=jax.tree.map(lambda p: p + 0.01, state.params))

    def cell_update(start_time):
        pool = state.pool.replace(time=jnp.full_like(state.pool.time, start_time))
        new, m = iteration(state.replace(pool=pool))
        assert np.isfinite(float(m["loss"]))
        kernel = lambda s: s.params["cell"]["params"]["hidden"]["kernel"]  # noqa: E731
        return float(jnp.abs(kernel(new) - kernel(state)).max())

    assert cell_update(start_time=0) == 0.0  # steps 1 and 2 are child-only
    assert cell_update(start_time=10) > 0.0  # coupled: gradients flow


def test_two_stage_trains_parents_with_the_child_frozen():
    child_cfg = PoolConfig(pool_size=8, batch_size=4, min_steps=2, max_steps=3, lr=1e-2, hidden={"cell": 8})
    parent_cfg = PoolConfig(
        pool_size=8, batch_size=4, min_steps=2, max_steps=3, lr=1e-2, hidden={"parent": 8}
    )
    out = train_two_stage(
        "HNCA-Grow-v0",
        jax.random.key(0),
        child=child_cfg,
        parent=parent_cfg,
        child_iterations=2,
        parent_iterations=3,
        overrides=dict(grid=(8, 8), tau_c=3, target_size=6),
        log_every=1,
    )
    env, env_params, state = out["env"], out["env_params"], out["parent_state"]
    losses = [r["loss"] for r in out["child_history"] + out["parent_history"]]
    assert len(losses) == 5 and np.all(np.isfinite(losses))
    # stage 1 learnt something; stage 2 trains only the coordinators
    assert float(jnp.abs(out["child_params"]["params"]["out"]["kernel"]).sum()) > 0
    assert env.agent_levels == ("parent",) and set(state.params) == {"parent"}
    frozen = env_params.rule_params["cell"]
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(out["child_params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # gradients reached the parents: their zero-initialised output layer moved
    assert float(jnp.abs(state.params["parent"]["params"]["out"]["kernel"]).sum()) > 0
    # every pool world went through the tau_c child-only steps before entering the pool
    assert int(state.pool.time.min()) >= 3


def test_child_problem_is_the_cell_level_alone():
    child_env, _ = child_problem("HNCA-Grow-v0", grid=(8, 8), target_size=6)
    env, _ = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), target_size=6)
    assert child_env.levels == ("cell",) and env.levels == ("cell", "parent")
    assert child_env.obs_dim("cell") == env.obs_dim("cell")  # the child transfers as it is
    assert child_env.action_dim("cell") == env.action_dim("cell")
    from agents.networks import make_policy

    init, _ = make_policy(child_env, {"cell": 8})
    frozen_env, frozen_params = with_frozen_child(
        "HNCA-Grow-v0", init(jax.random.key(0))["cell"], grid=(8, 8)
    )
    assert frozen_env.agent_levels == ("parent",)
    assert "cell" in frozen_params.rule_params
