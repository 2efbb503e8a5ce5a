"""Rendering: a jittable frame of one world, and rollouts to GIF.

``render(env, state, params)`` is pure JAX (jit/vmap/scan it); :func:`write_gif` turns a stack
of frames into a file with imageio (the ``[video]`` extra). :func:`render_frame` is the same
frame for the ``render(state, params)`` methods of the env and its views, which gymnax's Gym
bridge (``GymnaxToGymWrapper.render``) calls; it accepts the states of wrappers too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env.rollout import rollout

Array = jax.Array


def to_rgb(env, cells: Array) -> Array:
    """Visible channels of ``cells (H, W, C)`` as float RGB in [0, 1] (the task's ``rgb``).

    RGBA (premultiplied) is composited over white (``1 - a + rgb``, Growing NCA's convention);
    RGB is clipped; tasks with other channels draw themselves (e.g. digits by class colour).
    """
    return env.task.rgb(cells[..., : env.visible])


def render(
    env, state, params=None, *, scale: int = 1, parent_grid: bool = False, target: bool = False
) -> Array:
    """One frame, uint8 ``(H*scale, W*scale, 3)`` (``(H*scale, 2*W*scale, 3)`` with ``target``).

    Args:
      scale: integer nearest upscaling.
      parent_grid: darken the cluster borders of every coordinator level (each level's
        borders once more, so a coarser level's show darker).
      target: put the task target to the right of the children.
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    rgb = to_rgb(env, state.grids["cell"])
    if parent_grid:
        if not env.has_parent:
            raise ValueError("parent_grid=True needs an env with a parent level")
        h, w = env.grid
        for level in env.levels[1:]:  # every coordinator level: coarser borders come out darker
            k = env.level_scale(level)
            border = (jnp.arange(h)[:, None] % k == 0) | (jnp.arange(w)[None, :] % k == 0)
            rgb = jnp.where(border[..., None], rgb * 0.6, rgb)
    if target:
        params = env.default_params if params is None else params
        tgt_rgb = env.task.rgb(env.task.current_target(state, params))
        rgb = jnp.concatenate([rgb, tgt_rgb], axis=1)
    if scale > 1:
        rgb = jnp.repeat(jnp.repeat(rgb, scale, axis=0), scale, axis=1)
    return (rgb * 255.0 + 0.5).astype(jnp.uint8)


def unwrap_state(state):
    """The env's own state under wrapper states that keep it as ``.env_state`` (gymnax's
    and JaxMARL's ``LogWrapper``, :class:`hnca_env.wrappers.LevelLogWrapper`, ...)."""
    while not hasattr(state, "grids") and hasattr(state, "env_state"):
        state = state.env_state
    return state


def render_frame(env, state, params=None, **kwargs: Any) -> Array:
    """:func:`render` of one world given the env's or a wrapper's state (jittable).

    What ``env.render(state, params)`` and ``view.render(state, params)`` return: uint8
    ``(H, W, 3)`` by default; ``kwargs`` as for :func:`render` (``scale``, ``parent_grid``,
    ``target``).
    """
    state = unwrap_state(state)
    if not hasattr(state, "grids"):
        raise TypeError(f"cannot render a {type(state).__name__}: no env state inside")
    return render(env, state, params, **kwargs)


def rollout_frames(
    env,
    policy: Callable[[Array, dict], dict],
    key: Array,
    params=None,
    steps: int = 100,
    state=None,
    **render_kwargs: Any,
) -> Array:
    """Roll one world for ``steps`` with ``policy(key, obs) -> action`` and render each state.

    Returns uint8 ``(steps + 1, H', W', 3)``; the first frame is the start state. One jitted
    :func:`hnca_env.rollout.rollout` (no auto-reset).
    """
    params = env.default_params if params is None else params

    @jax.jit
    def run(key, state):
        return rollout(
            env, policy, key, params, steps, state, lambda s: render(env, s, params, **render_kwargs)
        )[2]

    return run(key, state)


def write_gif(frames: Array | np.ndarray, path: str, fps: int = 20) -> str:
    """Write uint8 frames ``(T, H, W, 3)`` to a looping GIF (needs ``imageio``: ``[video]``)."""
    try:
        import imageio.v2 as imageio
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("write_gif needs imageio: pip install 'hnca-env[video]'") from e
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path


def write_png(frame: Array | np.ndarray, path: str) -> str:
    """Write one uint8 ``(H, W, 3)`` frame to PNG."""
    import imageio.v2 as imageio

    imageio.imwrite(path, np.asarray(frame))
    return path
