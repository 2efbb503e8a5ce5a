"""What a task is: a target for the children, a per-cell error, termination and task inputs.

A task object is injected into :class:`hnca_env.HNCAEnv` (Jumanji style). Its
:meth:`Task.error_map` is the one definition both trainers share: the library rewards are
built from it (local = -error, team = -mean error, improvement = error decrease), and the
gradient trainer's loss is its mean (:meth:`hnca_env.HNCAEnv.loss`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env import targets as targets_lib

Array = jax.Array


class Task:
    """Base task: match a target image on the children's visible channels.

    Subclasses override what differs. ``visible`` is 4 (premultiplied RGBA, Growing NCA) or
    3 (RGB, H-NCA).
    """

    name = "pattern"

    def __init__(self, target: str | np.ndarray = "flower", visible: int = 4, size: int | None = None):
        if visible not in (3, 4):
            raise ValueError(f"visible must be 3 (RGB) or 4 (RGBA), got {visible}")
        self.visible = visible
        self.target_spec = target
        self.size = size

    def default_target(self, grid: tuple[int, int]) -> np.ndarray:
        """The target ``(H, W, visible)`` float32 that ``default_params`` carries."""
        return self.target_array(self.target_spec, grid)

    def target_array(self, spec: str | np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """A target from a shape name, a PNG path or an array, as ``(H, W, visible)``."""
        if isinstance(spec, str):
            if spec.lower().endswith(".png"):
                rgba = targets_lib.load_png(spec, grid, self.size)
            else:
                rgba = targets_lib.make_target(spec, grid, self.size)
        else:
            rgba = np.asarray(spec, np.float32)
            if rgba.ndim != 3 or rgba.shape[:2] != tuple(grid):
                raise ValueError(f"target shape {rgba.shape} does not match the grid {tuple(grid)}")
            if rgba.shape[2] == self.visible:
                return rgba
            if rgba.shape[2] != 4:
                raise ValueError(f"target must have {self.visible} or 4 channels, got {rgba.shape}")
        return rgba if self.visible == 4 else targets_lib.to_rgb(rgba)

    def error_map(self, cells: Array, params: Any) -> Array:
        """Per-cell squared error on the visible channels: ``(H, W)``, differentiable."""
        diff = cells[..., : self.visible] - params.target
        return jnp.mean(diff * diff, axis=-1)

    def is_terminated(self, state: Any, params: Any) -> Array:
        """Natural termination; pattern tasks only end by the time limit."""
        del state, params
        return jnp.array(False)

    def extra_obs_dims(self) -> dict[str, int]:
        """Width of the task inputs appended to each level's observation (none here)."""
        return {}

    def extra_obs(self, state: Any, params: Any) -> dict[str, Array]:
        """Task inputs per level, ``{level: (H_l, W_l, D)}`` (none here)."""
        del state, params
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target_spec!r}, visible={self.visible})"
