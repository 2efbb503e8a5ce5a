"""Registry, overrides, and every bad input getting a clear error (the rewards: tests/test_rewards.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env


def test_registry_lists_versioned_ids():
    ids = hnca_env.registered_envs()
    assert "Grow-v0" in ids and "HNCA-Grow-v0" in ids


def test_unknown_id_lists_known():
    with pytest.raises(ValueError, match="unknown env id 'Nope-v0'.*Grow-v0"):
        hnca_env.make("Nope-v0")


def test_register_and_make_custom():
    from hnca_env.tasks.grow import grow

    hnca_env.register("MyGrow-v3", lambda **kw: grow(grid=(12, 12), target_size=8, **kw), overwrite=True)
    env, params = hnca_env.make("MyGrow-v3", fire_rate=0.25)
    assert env.grid == (12, 12) and params.fire_rate["cell"] == 0.25
    with pytest.raises(ValueError, match="already registered"):
        hnca_env.register("MyGrow-v3", grow)
    with pytest.raises(ValueError, match="Name-v0"):
        hnca_env.register("no_version", grow)


def test_overrides_split_between_constructor_and_params():
    env, params = hnca_env.make(
        "HNCA-Grow-v0", grid=(16, 16), tau_c=5, fire_rate={"parent": 0.25}, target="ring"
    )
    assert env.grid == (16, 16) and int(params.tau_c) == 5
    assert params.fire_rate == {"cell": 0.5, "parent": 0.25}
    assert params.target.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="unknown option.*gird"):
        hnca_env.make("Grow-v0", gird=(8, 8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fire_rate=1.5), r"fire_rate\['cell'\] must be in \[0, 1\]"),
        (dict(fire_rate=-0.1), r"must be in \[0, 1\]"),
        (dict(tau_c=-1), "tau_c must be >= 0"),
        (dict(reward="pixel"), "unknown reward 'pixel'"),
        (dict(target="blob"), "unknown target shape 'blob'"),
        (dict(seed="tree"), "unknown seed 'tree'"),
        (dict(target=np.zeros((5, 5, 3))), "does not match the grid"),
        (dict(cell_obs="fov"), "cell_obs must be one of"),
        (dict(perception=("identity", "sobel_q")), "unknown perception kernel"),
        (dict(damage_times=[1, 2, 3, 4, 5]), "exceed max_damage_events"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hnca_env.make("HNCA-Grow-v0", grid=(16, 16), **kwargs)


def test_structural_errors():
    with pytest.raises(ValueError, match="not divisible by the cluster size 4"):
        hnca_env.make("HNCA-Grow-v0", grid=(18, 16))
    with pytest.raises(ValueError, match="too few channels for the signals"):
        hnca_env.make("HNCA-Grow-v0", grid=(16, 16), channels=8)
    with pytest.raises(ValueError, match="alive masking needs an alpha channel"):
        hnca_env.make("HNCA-Grow-v0", grid=(16, 16), alive=True)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        hnca_env.make("Grow-v0", channels=0)
    with pytest.raises(ValueError, match="grid must be"):
        hnca_env.make("Grow-v0", grid=(16,))
    with pytest.raises(ValueError, match="fixed_rules for unknown level"):
        hnca_env.make("Grow-v0", fixed_rules={"parent": (lambda p, o, k: o, None)})


def test_bad_actions_and_params_at_call_time(grow_env, key):
    env, params = grow_env
    _, state = env.reset(key, params)
    with pytest.raises(
        ValueError, match=r"action\['cell'\] has shape \(16, 16, 3\), expected \(16, 16, 16\)"
    ):
        env.step(key, state, {"cell": jnp.zeros((16, 16, 3))}, params)
    with pytest.raises(TypeError, match="must be floating point"):
        env.step(key, state, {"cell": jnp.zeros((16, 16, 16), jnp.int32)}, params)
    with pytest.raises(TypeError, match="must be a dict keyed by level"):
        env.step(key, state, jnp.zeros((16, 16, 16)), params)
    with pytest.raises(ValueError, match="action has levels"):
        env.step(key, state, {"parent": jnp.zeros((4, 4, 21))}, params)
    with pytest.raises(ValueError, match=r"fire_rate\['cell'\] must be in \[0, 1\]"):
        env.reset(key, params.replace(fire_rate={"cell": 2.0}))
    with pytest.raises(ValueError, match="params.target has shape"):
        env.reset(key, params.replace(target=jnp.zeros((8, 8, 4))))
    with pytest.raises(TypeError, match="params must be hnca_env.EnvParams"):
        env.reset(key, {"fire_rate": 0.5})
    # shape errors are raised even under jit
    with pytest.raises(ValueError, match="has shape"):
        jax.jit(lambda s: env.step(key, s, {"cell": jnp.zeros((2, 2, 16))}, params))(state)


