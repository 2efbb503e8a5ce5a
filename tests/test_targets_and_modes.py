"""Targets, observation modes, the scaled multiplexer and the world state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from hnca_env import physics, targets


@pytest.mark.parametrize("name", sorted(targets.SHAPES))
def test_shapes_are_premultiplied_rgba(name):
    t = targets.make_target(name, (72, 72))
    assert t.shape == (72, 72, 4) and t.dtype == np.float32
    a = t[..., 3]
    assert 0 <= a.min() and a.max() <= 1 and 0.05 < a.mean() < 0.5
    assert np.all(t[..., :3] <= a[..., None] + 1e-6)  # premultiplied
    assert a[:12].max() == 0 and a[-12:].max() == 0  # 40×40 centred in 72×72


def test_png_target_roundtrip(tmp_path):
    import imageio.v2 as imageio

    img = np.zeros((10, 10, 4), np.uint8)
    img[2:8, 2:8] = [255, 0, 0, 255]
    path = str(tmp_path / "t.png")
    imageio.imwrite(path, img)
    env, params = hnca_env.make("Grow-v0", grid=(16, 16), target=path, target_size=10)
    t = np.asarray(params.target)
    assert t.shape == (16, 16, 4)
    assert t[..., 3].sum() == 36 and np.allclose(t[t[..., 3] > 0], [1, 0, 0, 1])
    with pytest.raises(ValueError, match="does not fit"):
        targets.pad_to(np.zeros((20, 20, 4)), (16, 16))


def test_neighbourhood_observation_mode(key):
    env, params = hnca_env.make(
        "HNCA-Grow-v0", grid=(8, 8), tau_c=0, cell_obs="neighbourhood", parent_obs="neighbourhood"
    )
    obs, state = env.reset(key, params)
    assert obs["cell"].shape == (8, 8, 9 * 12) and obs["parent"].shape == (2, 2, 9 * 12 + 12)
    np.testing.assert_allclose(obs["cell"], physics.neighbourhood(state.grids["cell"]))
    assert env.observation_space(params).contains(obs)


def test_scaled_multiplexer_in_env(key):
    env, params = hnca_env.make(
        "HNCA-Grow-v0",
        grid=(8, 8),
        tau_c=0,
        multiplexer="scaled",
        fire_rate=1.0,
        actuator_scale=np.full(9, 0.5),
        sensor_scale=np.zeros(12),
    )
    _, s = env.reset(key, params)
    signal = jnp.ones((2, 2, 9))
    a = {"cell": jnp.zeros((8, 8, 12)), "parent": jnp.concatenate([jnp.zeros((2, 2, 12)), signal], -1)}
    _, s2, *_ = env.step(key, s, a, params)
    np.testing.assert_allclose(s2.grids["cell"][..., 3:], s.grids["cell"][..., 3:] + 0.5, atol=1e-6)
    np.testing.assert_allclose(s2.grids["parent"], s.grids["parent"], atol=1e-6)  # λ_sensor = 0


def test_world_state_values(key):
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0, max_steps_in_episode=4)
    _, s = env.reset(key, params)
    ws = np.asarray(env.world_state(s, params))
    np.testing.assert_allclose(ws[..., :12], physics.sensor(s.grids["cell"], 4), atol=1e-6)
    np.testing.assert_allclose(ws[..., 12:24], s.grids["parent"], atol=1e-6)
    np.testing.assert_allclose(ws[..., 24:27], physics.sensor(params.target, 4), atol=1e-6)
    assert np.all(ws[..., 27] == 0.0)
    ws_batch = jax.vmap(env.world_state, in_axes=(0, None))(
        jax.tree.map(lambda x: jnp.stack([x, x]), s), params
    )
    assert ws_batch.shape == (2, 2, 2, 28)
