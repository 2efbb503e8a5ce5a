"""Locomotion: the coordinators are told a direction; the pattern must move that way intact.

A coordination task on the H-NCA structure: the direction is a task input of the coordinator
level alone; the children, which only see their neighbours and the broadcast, must translate
the whole pattern across the torus at ``speed`` cells per step without losing its shape. The
target at time t is the start pattern shifted by ``round(speed · t · direction)``.

``HNCA-Locomotion-v0`` — children 48×48 with 16 channels (premultiplied RGBA + 12 hidden, the
last 8 signal channels), Growing-NCA perception and alive masking; coordinators 12×12×16 over
4×4 clusters with H-NCA perception; the start state is the target shape (``heart``, 16×16,
any shape name, PNG or array with ``target=``) in the middle; the direction is one of the four
axis directions, drawn at reset; speed 0.25 cells/step; 96 steps (24 cells of travel).

Card
----
Observation: children: perception only; coordinators: perception, sensed cluster mean and the
    direction ``(dy, dx)`` (2 channels, the task input).
Action: child update ``(H, W, 16)``; coordinator update + 8-channel broadcast.
Reward: ``local`` = minus the squared RGBA error to the moving target, ``team``, ``improvement``.
Termination: none; truncated at 96 steps.
Success metrics: ``centre_error`` (torus distance in cells between the pattern's alpha-weighted
    centre and the target's at the final step; half the grid's diagonal when no cell is
    alive), ``centre_error_mean`` (its mean over the episode), ``mse`` (final RGBA error).
Reference: none published; a new benchmark of this suite.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import Task

Array = jax.Array

#: Unit directions ``(dy, dx)``: down, right, up, left.
AXIS_DIRECTIONS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)


def torus_centre(mass: Array) -> tuple[Array, Array]:
    """Mass-weighted centre ``(y, x)`` of ``mass (H, W)`` on the torus (circular mean) and the
    total mass."""
    h, w = mass.shape
    total = jnp.sum(mass)

    def axis_mean(weights, n):
        ang = 2 * jnp.pi * jnp.arange(n) / n
        c, s = jnp.sum(weights * jnp.cos(ang)), jnp.sum(weights * jnp.sin(ang))
        return jnp.mod(jnp.arctan2(s, c) * n / (2 * jnp.pi), n)

    return jnp.stack([axis_mean(jnp.sum(mass, 1), h), axis_mean(jnp.sum(mass, 0), w)]), total


def torus_distance(a: Array, b: Array, shape: tuple[int, int]) -> Array:
    n = jnp.asarray(shape, jnp.float32)
    d = jnp.abs(a - b) % n
    return jnp.linalg.norm(jnp.minimum(d, n - d))


class LocomotionTask(Task):
    """RGBA target moving with the drawn direction; ``EnvState.task = {"direction": (2,)}``."""

    def check_params(self, params, env) -> None:
        tp = params.task_params
        if not isinstance(tp, dict) or not {"speed", "directions"} <= set(tp):
            raise ValueError("params.task_params must be a dict with 'speed' and 'directions' (D, 2)")
        if jnp.shape(tp["directions"])[-1:] != (2,):
            raise ValueError(f"task_params['directions'] must be (D, 2), got {jnp.shape(tp['directions'])}")

    def init(self, key, cells, params):
        dirs = params.task_params["directions"]
        return cells, {"direction": dirs[jax.random.randint(key, (), 0, dirs.shape[0])]}

    def offset(self, state, params) -> Array:
        """Integer ``(dy, dx)`` the target has moved by at ``state.time``."""
        travel = params.task_params["speed"] * state.time * state.task["direction"]
        return jnp.round(travel).astype(jnp.int32)

    def current_target(self, state, params):
        off = self.offset(state, params)
        return jnp.roll(params.target, (off[0], off[1]), axis=(0, 1))

    def extra_obs_dims(self):
        return {"parent": 2}

    def extra_obs(self, state, params):
        return {"parent": state.task["direction"]}

    def trace(self, state, params):
        cells = state.grids["cell"]
        grid = cells.shape[:2]
        centre, mass = torus_centre(jnp.clip(cells[..., 3], 0.0, 1.0))
        want, _ = torus_centre(jnp.clip(self.current_target(state, params)[..., 3], 0.0, 1.0))
        worst = 0.5 * float(np.hypot(*grid))
        err = jnp.where(mass > 1e-3, torus_distance(centre, want, grid), worst)
        return {"mse": jnp.mean(self.error_map(state, params)), "centre_error": err}

    def summarize(self, trace, params):
        return {
            "centre_error": trace["centre_error"][-1],
            "centre_error_mean": jnp.mean(trace["centre_error"]),
            "mse": trace["mse"][-1],
        }


def locomotion(
    grid: tuple[int, int] = (48, 48),
    target: Any = "heart",
    target_size: int | None = 16,
    speed: float = 0.25,
    **kwargs: Any,
) -> HNCAEnv:
    """Locomotion env: the start pattern is ``target``; it must travel at ``speed`` cells/step."""
    kwargs.setdefault("channels", 16)
    kwargs.setdefault("perception", ("identity", "sobel_x", "sobel_y"))
    kwargs.setdefault("sobel_scale", 1.0 / 8.0)
    kwargs.setdefault("alive", True)
    kwargs.setdefault("parent", True)
    kwargs.setdefault("cluster", 4)
    kwargs.setdefault("parent_channels", kwargs["channels"])
    kwargs.setdefault("signals", 8)
    kwargs.setdefault("name", "HNCA-Locomotion-v0")
    grid = tuple(grid)
    task = LocomotionTask(target, visible=4, size=target_size)
    rgba = task.default_target(grid)
    seed_state = np.zeros((*grid, kwargs["channels"]), np.float32)
    seed_state[..., :4] = rgba
    overrides = {
        "seed": "state",
        "seed_state": seed_state,
        "max_steps_in_episode": 96,
        "task_params": {"speed": jnp.float32(speed), "directions": jnp.asarray(AXIS_DIRECTIONS)},
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=grid, task=task, default_overrides=overrides, **kwargs)


register("HNCA-Locomotion-v0", locomotion)
