"""Grow, Persist, Regenerate: a seed must grow into a target pattern, hold it, and regrow it.

After Mordvintsev et al., "Growing Neural Cellular Automata" (Distill 2020), and the H-NCA mode
of Pande & Grattarola, "Hierarchical Neural Cellular Automata" (ALIFE 2023; RituPande/hnca).

``Grow-v0`` — Growing NCA. One level of 72×72 cells with 16 channels (premultiplied RGBA + 12
hidden), perception identity + Sobel/8, alive masking at alpha 0.1, a single-cell seed
(channels 3.. set to 1), a 40×40 target padded to 72×72, 96 steps.

``Persist-v0`` — the same, 288 steps: the pattern must stay, not only appear at step ~96.

``Regenerate-v0`` — the same, 192 steps, with random circular holes (one per event by default, up to two;
radius 7–14 cells: ``damage_holes``, ``damage_radius``, ``damage_times`` in ``EnvParams``) cut at
step 96; the pattern must regrow.

``HNCA-Grow-v0`` — H-NCA mode. Children 128×128×12 (RGB + 9 signal channels), coordinators
32×32×12 over 4×4 clusters, perception identity/Sobel/Sobel/Laplacian unscaled, fire rate 0.5,
no alive mask, U[0, 1) noise seed, τ_c = 100 child-only steps, then 200 coupled steps.

Targets: any of the procedural shapes in :mod:`hnca_env.targets` (``target="heart"``), from
convex ones (``disc``, ``square``) to ones with thin or concave parts (``star``, ``flower``,
``smiley``), any
RGBA PNG (``target="my.png"``) or array.

Card
----
Observation: see :class:`hnca_env.HNCAEnv`; no task inputs.
Action: per-cell state update; per-coordinator update + 9-channel broadcast (HNCA).
Reward: ``local`` by default (minus each cell's squared error on the visible channels);
    ``team`` and ``improvement`` by name, or any reward function.
Termination: none; truncated at ``max_steps_in_episode``.
Success metrics (:func:`hnca_env.evaluate.evaluate`): ``mse`` — final mean squared error on the
    visible channels (``env.loss``); with damage also ``mse_before_damage`` (the step before
    the first hole), ``mse_after_damage`` (``recover_steps`` = 48 steps after it; a
    ``task_params`` entry) and ``mse_peak`` (the largest error after the damage).
Reference: Growing NCA reports no single number; H-NCA reports MSE on the 0–255 scale for
    its metamorphosis task (58.8–341), not for growth.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import HNCA_STRUCTURE, Task, time_index


class PatternTask(Task):
    """Match a fixed target; after damage, also report how well the pattern regrew."""

    def summarize(self, trace, params):
        out = {"mse": trace["mse"][-1]}
        times = jnp.atleast_1d(params.damage_times)
        if times.shape[-1] == 0:
            return out
        n = trace["mse"].shape[0]
        valid = times >= 0
        first = jnp.min(jnp.where(valid, times, n))
        recover = (params.task_params or {}).get("recover_steps", 48)
        after = jnp.arange(n) >= first
        nan = jnp.float32(jnp.nan)
        hit = first < n
        out["mse_before_damage"] = jnp.where(hit, trace["mse"][time_index(n, first - 1)], nan)
        out["mse_after_damage"] = jnp.where(hit, trace["mse"][time_index(n, first + recover)], nan)
        out["mse_peak"] = jnp.where(hit, jnp.max(jnp.where(after, trace["mse"], -jnp.inf)), nan)
        return out


def grow(
    grid: tuple[int, int] = (72, 72),
    target: Any = "flower",
    target_size: int | None = None,
    **kwargs: Any,
) -> HNCAEnv:
    """Growing-NCA mode: one level, RGBA target, alive masking, single-cell seed."""
    kwargs.setdefault("channels", 16)
    kwargs.setdefault("perception", ("identity", "sobel_x", "sobel_y"))
    kwargs.setdefault("sobel_scale", 1.0 / 8.0)
    kwargs.setdefault("alive", True)
    kwargs.setdefault("name", "Grow-v0")
    return HNCAEnv(grid=grid, task=PatternTask(target, visible=4, size=target_size), **kwargs)


def persist(
    grid: tuple[int, int] = (72, 72), target: Any = "flower", target_size: int | None = None, **kwargs: Any
) -> HNCAEnv:
    """Grow-v0 with a 288-step episode: the grown pattern must hold."""
    kwargs.setdefault("name", "Persist-v0")
    overrides = {"max_steps_in_episode": 288, **(kwargs.pop("default_overrides", None) or {})}
    return grow(grid, target, target_size, default_overrides=overrides, **kwargs)


def regenerate(
    grid: tuple[int, int] = (72, 72), target: Any = "flower", target_size: int | None = None, **kwargs: Any
) -> HNCAEnv:
    """Grow-v0 with holes cut at step 96 of a 192-step episode."""
    kwargs.setdefault("name", "Regenerate-v0")
    kwargs.setdefault("max_damage_events", 2)
    kwargs.setdefault("max_damage_holes", 2)
    h = min(grid)
    overrides = {
        "max_steps_in_episode": 192,
        "damage_times": [96],
        "damage_holes": 1,
        "damage_radius": [0.1 * h, 0.2 * h],
        "task_params": {"recover_steps": 48},
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return grow(grid, target, target_size, default_overrides=overrides, **kwargs)


def hnca_grow(
    grid: tuple[int, int] = (128, 128),
    target: Any = "flower",
    target_size: int | None = None,
    **kwargs: Any,
) -> HNCAEnv:
    """H-NCA mode with the reference defaults: two levels, RGB target, noise seed, τ_c=100."""
    kwargs = {**HNCA_STRUCTURE, **kwargs}
    kwargs.setdefault("name", "HNCA-Grow-v0")
    overrides = {"seed": "noise", "tau_c": 100, "max_steps_in_episode": 300}
    overrides.update(kwargs.pop("default_overrides", None) or {})
    return HNCAEnv(
        grid=grid,
        task=PatternTask(target, visible=3, size=target_size),
        default_overrides=overrides,
        **kwargs,
    )


register("Grow-v0", grow)
register("Persist-v0", persist)
register("Regenerate-v0", regenerate)
register("HNCA-Grow-v0", hnca_grow)
