"""Evaluation (hnca_env.evaluate): the task metrics over many worlds, whatever the batching."""

import jax
import numpy as np
import pytest
from conftest import assert_trees_close

import hnca_env
from hnca_env.evaluate import evaluate, evaluate_worlds, noisy_policy, random_policy, zero_policy
from hnca_env.rollout import rollout


def test_evaluate_worlds_is_a_loop_of_single_world_rollouts():
    """World ``i`` is the rollout from the ``i``-th split of the key, scored by the task's own
    ``trace``/``summarize``; ``evaluate`` is the mean over worlds."""
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=1, max_steps_in_episode=4)
    pol = random_policy(env, 0.1)
    key = jax.random.key(4)
    per_world = evaluate_worlds(env, pol, key, params, n_worlds=3)
    for i, k in enumerate(jax.random.split(key, 3)):
        _, _, trace = rollout(env, pol, k, params, 4, record=lambda s: env.task.trace(s, params))
        one = env.task.summarize(trace, params)
        assert_trees_close({m: v[i] for m, v in per_world.items()}, one, rtol=1e-5, atol=1e-6)
    means = evaluate(env, pol, key, params, n_worlds=3)
    assert means == pytest.approx({m: float(np.mean(v)) for m, v in per_world.items()}, rel=1e-6)
    with pytest.raises(ValueError, match="steps"):
        evaluate_worlds(env, pol, key, params, n_worlds=3, steps=0)


def test_noisy_policy_adds_the_steps_gaussian_and_refuses_a_bad_std():
    env, params = hnca_env.make("Grow-v0", grid=(8, 8), target_size=6)
    obs, _ = env.reset(jax.random.key(0), params)
    zero, key = zero_policy(env), jax.random.key(1)
    quiet = noisy_policy(zero, 0.0)(key, obs)
    np.testing.assert_array_equal(quiet["cell"], np.zeros_like(quiet["cell"]))
    loud = noisy_policy(zero, 0.5)(key, obs)["cell"]
    assert loud.shape == quiet["cell"].shape and 0.4 < float(np.std(loud)) < 0.6
    for bad in (-1.0, "0.1", True):
        with pytest.raises(ValueError, match="std"):
            noisy_policy(zero, bad)


def test_random_and_zero_policies_evaluate():
    env, params = hnca_env.make("Density-Flat-v0", grid=(8, 8), max_steps_in_episode=4)
    z = evaluate(env, zero_policy(env), jax.random.key(0), params, n_worlds=8)
    r = evaluate(env, random_policy(env), jax.random.key(0), params, n_worlds=8)
    assert set(z) == set(r) == {"all_correct", "cell_accuracy", "mse"}
    with pytest.raises(ValueError, match="n_worlds"):
        evaluate(env, zero_policy(env), jax.random.key(0), params, n_worlds=0)


def test_evaluate_does_not_depend_on_the_chunk(grow_env):
    env, params = grow_env
    pol = random_policy(env, 0.2)
    a = evaluate_worlds(env, pol, jax.random.key(1), params, n_worlds=4, steps=5, world_chunk=None)
    b = evaluate_worlds(env, pol, jax.random.key(1), params, n_worlds=4, steps=5, world_chunk=1)
    assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
