"""Rendering: jittable frames and GIF output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hnca_env
from hnca_env import render


def test_render_rgba_over_white_and_target(grow_env, key):
    env, params = grow_env
    _, state = env.reset(key, params)
    frame = jax.jit(lambda s: render.render(env, s, params))(state)
    assert frame.shape == (16, 16, 3) and frame.dtype == jnp.uint8
    f = np.asarray(frame)
    assert (f[0, 0] == 255).all()  # empty (alpha 0) cells are white
    assert (f[8, 8] == 0).all()  # the seed cell: alpha 1, rgb 0 -> black
    both = render.render(env, state, params, target=True, scale=2)
    assert both.shape == (32, 64, 3)
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        render.render(env, state, params, scale=0)


def test_render_parent_grid_and_vmap(key):
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(8, 8), tau_c=0)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 3), params)
    frames = jax.vmap(lambda s: render.render(env, s, params, parent_grid=True))(state)
    assert frames.shape == (3, 8, 8, 3)
    plain = np.asarray(render.render(env, jax.tree.map(lambda x: x[0], state), params)).astype(int)
    f0 = np.asarray(frames[0]).astype(int)
    assert (f0[0] <= plain[0]).all() and (f0[1, 1] == plain[1, 1]).all()
    grow, gp = hnca_env.make("Grow-v0", grid=(8, 8), target_size=4)
    with pytest.raises(ValueError, match="needs an env with a parent level"):
        render.render(grow, grow.initial_state(key, gp), gp, parent_grid=True)


def test_rollout_frames_and_gif(grow_env, key, tmp_path):
    import imageio.v2 as imageio

    env, params = grow_env

    def policy(k, obs):
        return {"cell": 0.05 * jnp.ones((16, 16, 16))}

    frames = render.rollout_frames(env, policy, key, params, steps=5)
    assert frames.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(frames[0], render.render(env, env.reset(key, params)[1], params))
    # distinct frames survive the GIF round trip (identical neighbours may be merged by the encoder)
    ramp = np.stack([np.full((16, 16, 3), 40 * i, np.uint8) for i in range(6)])
    back = imageio.mimread(render.write_gif(ramp, str(tmp_path / "r.gif")))
    assert len(back) == 6 and back[0].shape[:2] == (16, 16)
    assert [int(f[0, 0, 0]) for f in back] == [0, 40, 80, 120, 160, 200]
    with pytest.raises(ValueError, match="frames must be uint8"):
        render.write_gif(np.zeros((2, 4, 4, 3), np.float32), str(tmp_path / "x.gif"))
