"""Grow: a seed must grow into a target pattern and hold it.

Two faithful modes of one env class:

``Grow-v0`` — Growing NCA (Mordvintsev et al., Distill 2020). One level of 72×72 cells with 16
channels (premultiplied RGBA + 12 hidden), perception identity + Sobel/8, alive masking at
alpha 0.1, a single-cell seed (channels 3.. set to 1), a 40×40 target padded to 72×72.

``HNCA-Grow-v0`` — H-NCA (Pande & Grattarola, ALIFE 2023; RituPande/hnca). Children
128×128×12 (RGB + 9 signal channels), coordinators 32×32×12 over 4×4 clusters, perception
identity/Sobel/Sobel/Laplacian unscaled, fire rate 0.5, no alive mask, U[0, 1) noise seed,
τ_c = 100 child-only steps, then 200 coupled steps.

Card
----
Observation: see :class:`hnca_env.HNCAEnv`; no task inputs.
Action: per-cell state update; per-coordinator update + 9-channel broadcast (HNCA).
Reward: ``local`` by default (minus each cell's squared error on the visible channels);
    ``team`` and ``improvement`` by name, or any reward function.
Termination: none; truncated at ``max_steps_in_episode`` (96 Grow, 300 HNCA-Grow).
Success metric: final mean squared error on the visible channels (``env.loss``).
Reference: Growing NCA reports no single number; H-NCA reports MSE on the 0–255 scale for
    its metamorphosis task (58.8–341), not for growth.
"""

from __future__ import annotations

from typing import Any

from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import Task


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
    return HNCAEnv(grid=grid, task=Task(target, visible=4, size=target_size), **kwargs)


def hnca_grow(
    grid: tuple[int, int] = (128, 128),
    target: Any = "flower",
    target_size: int | None = None,
    **kwargs: Any,
) -> HNCAEnv:
    """H-NCA mode with the reference defaults: two levels, RGB target, noise seed, τ_c=100."""
    kwargs.setdefault("channels", 12)
    kwargs.setdefault("perception", ("identity", "sobel_x", "sobel_y", "laplacian"))
    kwargs.setdefault("sobel_scale", 1.0)
    kwargs.setdefault("alive", False)
    kwargs.setdefault("parent", True)
    kwargs.setdefault("cluster", 4)
    kwargs.setdefault("parent_channels", 12)
    kwargs.setdefault("signals", 9)
    kwargs.setdefault("name", "HNCA-Grow-v0")
    overrides = {"seed": "noise", "tau_c": 100, "max_steps_in_episode": 300}
    overrides.update(kwargs.pop("default_overrides", None) or {})
    return HNCAEnv(
        grid=grid,
        task=Task(target, visible=3, size=target_size),
        default_overrides=overrides,
        **kwargs,
    )


register("Grow-v0", grow)
register("HNCA-Grow-v0", hnca_grow)
