"""Density classification (majority consensus): every cell must end in the majority colour.

The classic cellular-automaton benchmark (Packard 1988; Mitchell, Crutchfield & Das 1996):
start from a random binary field of density ρ; after the episode every cell must show 1 if
more than half of the cells started at 1, else 0. No cell sees beyond its neighbourhood, so
the answer has to be agreed on collectively; coordinators, which sense their cluster's mean
and talk to neighbouring coordinators, are a shortcut the flat version lacks. For the best
one-dimensional two-state rules, about 0.86–0.89 of random fields with ρ drawn uniformly are
classified entirely correctly; no finite rule can be perfect.

``Density-v0`` — children 32×32 with 8 channels (channel 0 the colour, 4 signal channels
last), coordinators 8×8×8 over 4×4 clusters; perception identity, Sobel/8, Laplacian; fire
rate 0.5, no alive mask; 64 steps. ρ is drawn per world uniformly in ``task_params["rho"]``
(default [0, 1]; ``rho=(0.5, 0.5)`` for the hard unbiased case). Ties (exactly half) are broken
by flipping one cell.

``Density-Flat-v0`` — the same with the child level alone.

Card
----
Observation: each cell's perception of its 3×3 neighbourhood (8 channels × 4 kernels);
    coordinators add their own perception and the sensed cluster mean (which includes the mean
    colour of the cluster).
Action: cell update ``(H, W, 8)``; coordinator update + 4-channel broadcast (``Density-v0``).
Reward: ``local`` = minus ``(colour - majority)²`` per cell, ``team``, ``improvement``.
Termination: none; truncated at 64 steps.
Success metrics: ``all_correct`` (fraction of worlds whose every cell reads the majority,
    colour > 0.5 read as 1), ``cell_accuracy`` (fraction of cells right), ``mse`` — final step.
Reference: best 1-D two-state rules ≈ 0.86–0.89 (ρ uniform, N = 149); not directly comparable
    (2-D torus, continuous states, learnt rule).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env import physics
from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import Task, is_concrete

Array = jax.Array


class DensityTask(Task):
    """Channel 0 holds the colour; ``EnvState.task = {"majority": 0./1., "density": ρ̂}``."""

    def __init__(self):
        super().__init__(None, visible=1)

    def default_target(self, grid):
        return np.zeros((*grid, 1), np.float32)  # the target is the majority, drawn per world

    def check_params(self, params, env) -> None:
        tp = params.task_params
        if not isinstance(tp, dict) or "rho" not in tp or jnp.shape(tp["rho"])[-1:] != (2,):
            raise ValueError("params.task_params must be a dict with 'rho': (2,) = (low, high)")
        if is_concrete(tp):
            rho = np.asarray(tp["rho"])
            if not (np.all(rho >= 0) and np.all(rho <= 1) and np.all(rho[..., 0] <= rho[..., 1])):
                raise ValueError(f"task_params['rho'] must satisfy 0 <= low <= high <= 1, got {rho}")

    def init(self, key, cells, params):
        k_rho, k_field = jax.random.split(key)
        lo, hi = params.task_params["rho"][0], params.task_params["rho"][1]
        rho = jax.random.uniform(k_rho, (), minval=lo, maxval=hi)
        field = (physics.hash_uniform(k_field, cells.shape[:2]) < rho).astype(jnp.float32)
        n = field.size
        ones = jnp.sum(field)
        field = field.at[0, 0].set(jnp.where(2 * ones == n, 1.0 - field[0, 0], field[0, 0]))  # no ties
        ones = jnp.sum(field)
        cells = jnp.zeros_like(cells).at[..., 0].set(field)
        task = {"majority": (2 * ones > n).astype(jnp.float32), "density": ones / n}
        return cells, task

    def current_target(self, state, params):
        return jnp.full((*state.grids["cell"].shape[:2], 1), state.task["majority"], jnp.float32)

    def accuracy(self, state) -> Array:
        colour = state.grids["cell"][..., 0] > 0.5
        return jnp.mean((colour == (state.task["majority"] > 0.5)).astype(jnp.float32))

    def trace(self, state, params):
        return {"mse": jnp.mean(self.error_map(state, params)), "cell_accuracy": self.accuracy(state)}

    def summarize(self, trace, params):
        acc = trace["cell_accuracy"][-1]
        return {
            "all_correct": (acc == 1.0).astype(jnp.float32),
            "cell_accuracy": acc,
            "mse": trace["mse"][-1],
        }

    def rgb(self, visible):
        return jnp.clip(jnp.repeat(1.0 - visible[..., :1], 3, axis=-1), 0.0, 1.0)  # 1 = black


def constant_colour_answer(colour: float):
    """A trivial answer (:mod:`hnca_env.baselines`): every cell shows ``colour`` (0 or 1). The
    better of the two is right in about half the worlds when ρ is drawn uniformly."""

    def answer(key, state, params):
        del key, params
        return jnp.full((*state.grids["cell"].shape[:2], 1), colour, jnp.float32)

    return answer


def density(grid: tuple[int, int] = (32, 32), rho: Any = (0.0, 1.0), **kwargs: Any) -> HNCAEnv:
    """Density-classification env; ``rho``: (low, high) of the uniform density draw."""
    kwargs.setdefault("channels", 8)
    kwargs.setdefault("perception", ("identity", "sobel_x", "sobel_y", "laplacian"))
    kwargs.setdefault("sobel_scale", 1.0 / 8.0)
    kwargs.setdefault("alive", False)
    kwargs.setdefault("parent", True)
    kwargs.setdefault("cluster", 4)
    kwargs.setdefault("parent_channels", kwargs["channels"])
    kwargs.setdefault("signals", 4)
    kwargs.setdefault("parent_sobel_scale", 1.0 / 8.0)
    kwargs.setdefault("name", "Density-v0")
    overrides = {
        "max_steps_in_episode": 64,
        "task_params": {"rho": jnp.asarray(rho, jnp.float32)},
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=tuple(grid), task=DensityTask(), default_overrides=overrides, **kwargs)


def density_flat(grid: tuple[int, int] = (32, 32), rho: Any = (0.0, 1.0), **kwargs: Any) -> HNCAEnv:
    """Density classification with the child level alone."""
    kwargs.setdefault("parent", False)
    kwargs.setdefault("name", "Density-Flat-v0")
    return density(grid, rho, **kwargs)


register("Density-v0", density)
register("Density-Flat-v0", density_flat)
