"""What a task is: a target for the children, a per-cell error, task state and inputs, metrics.

A task object is injected into :class:`hnca_env.HNCAEnv` (Jumanji style). Its
:meth:`Task.error_map` is the one definition both trainers share: the library rewards are
built from it (local = -error, team = -mean error, improvement = error decrease), and the
gradient trainer's loss is its mean (:meth:`hnca_env.HNCAEnv.loss`).

Hooks a task may override (all pure, one world):

- :meth:`init` — the start cells and the task's own state (``EnvState.task``: a goal id, a
  digit label, a direction...), drawn at reset;
- :meth:`post_step` — after each transition: change the goal, swap the digit, enforce fixed
  channels;
- :meth:`current_target` / :meth:`error_map` — what the children should show now, and the
  per-cell error against it;
- :meth:`extra_obs` — task inputs appended to a level's observation (coordinators' goal);
- :meth:`trace` / :meth:`summarize` — per-step scalars recorded in a rollout, and the named
  success metrics computed from them (:func:`hnca_env.evaluate.evaluate`);
- :meth:`rgb` — how the visible channels are drawn.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env import targets as targets_lib

Array = jax.Array


#: The H-NCA reference's structure (RituPande/hnca): children 12 channels (RGB + 9 signals),
#: coordinators 12 channels over 4×4 clusters, identity/Sobel/Sobel/Laplacian unscaled, no
#: alive mask. Task factories start from it: ``kwargs = {**HNCA_STRUCTURE, **kwargs}``.
HNCA_STRUCTURE: dict[str, Any] = {
    "channels": 12,
    "perception": ("identity", "sobel_x", "sobel_y", "laplacian"),
    "sobel_scale": 1.0,
    "alive": False,
    "parent": True,
    "cluster": 4,
    "parent_channels": 12,
    "signals": 9,
}


class Task:
    """Base task: match a target image on the children's visible channels.

    ``visible`` is the number of leading cell channels the task reads: 4 (premultiplied RGBA,
    Growing NCA), 3 (RGB, H-NCA), or any other count for tasks with their own :meth:`rgb`.
    """

    def __init__(self, target: str | np.ndarray = "flower", visible: int = 4, size: int | None = None):
        if isinstance(visible, bool) or not isinstance(visible, int) or visible < 1:
            raise ValueError(f"visible must be a positive number of channels, got {visible!r}")
        self.visible = visible
        self.target_spec = target
        self.size = size

    # ------------------------------------------------------------------ targets
    def default_target(self, grid: tuple[int, int]) -> np.ndarray:
        """The target ``(H, W, visible)`` float32 that ``default_params`` carries."""
        return self.target_array(self.target_spec, grid)

    def target_array(self, spec: str | np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """A target from a shape name, a PNG path or an array, as ``(H, W, visible)``."""
        if isinstance(spec, str):
            if self.visible not in (3, 4):
                raise ValueError(f"{type(self).__name__} does not take a named or PNG target")
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
            if rgba.shape[2] != 4 or self.visible != 3:
                raise ValueError(f"target must have {self.visible} channels, got shape {rgba.shape}")
        return rgba if self.visible == 4 else targets_lib.to_rgb(rgba)

    def current_target(self, state: Any, params: Any) -> Array:
        """What the visible channels should show now, ``(H, W, visible)``."""
        del state
        return params.target

    def check_params(self, params: Any, env: Any) -> None:
        """Raise ``ValueError`` naming a bad task number in ``params`` (shapes always; values
        only when concrete). Called by ``env.check_params``."""
        del params, env

    # ------------------------------------------------------------------ dynamics hooks
    def init(self, key: Array, cells: Array, params: Any) -> tuple[Array, Any]:
        """Start cells ``(H, W, C)`` (given the env's seed) and the task state (a pytree)."""
        del key, params
        return cells, None

    #: Whether :meth:`mutate` is implemented (the pool trainer's ``mutate`` needs it).
    can_mutate = False

    def mutate(self, key: Array, state: Any, params: Any) -> Any:
        """A world under way with a new task instance drawn (e.g. another digit) and its cells
        kept, as far as the task allows; one world. Tasks with ``can_mutate`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no mutation")

    def post_step(self, key: Array, state: Any, next_state: Any, params: Any) -> Any:
        """Applied to every transition's result (``next_state.time`` is the new time)."""
        del key, state, params
        return next_state

    def error_map(self, state: Any, params: Any) -> Array:
        """Per-cell squared error on the visible channels: ``(H, W)``, differentiable."""
        diff = state.grids["cell"][..., : self.visible] - self.current_target(state, params)
        return jnp.mean(diff * diff, axis=-1)

    def is_terminated(self, state: Any, params: Any) -> Array:
        """Natural termination; pattern tasks only end by the time limit."""
        del state, params
        return jnp.array(False)

    def extra_obs_dims(self) -> dict[str, int]:
        """Width of the task inputs appended to each level's observation (none here)."""
        return {}

    def extra_obs(self, state: Any, params: Any) -> dict[str, Array]:
        """Task inputs per level, ``{level: (H_l, W_l, D)}`` or ``(D,)`` (the same for every
        agent of the level; the env broadcasts it). None here."""
        del state, params
        return {}

    # ------------------------------------------------------------------ metrics
    def trace(self, state: Any, params: Any) -> dict[str, Array]:
        """Scalars recorded at every step of an evaluation rollout (one world)."""
        return {"mse": jnp.mean(self.error_map(state, params))}

    def summarize(self, trace: dict[str, Array], params: Any) -> dict[str, Array]:
        """Named success metrics of one world from its trace (``(T+1,)`` arrays, index = time)."""
        del params
        return {"mse": trace["mse"][-1]}

    # ------------------------------------------------------------------ drawing
    def rgb(self, visible: Array) -> Array:
        """Visible channels ``(H, W, visible)`` as float RGB in [0, 1].

        RGBA (premultiplied) is composited over white (``1 - a + rgb``, Growing NCA's
        convention); RGB is clipped; one channel is drawn grey.
        """
        if self.visible == 4:
            a = jnp.clip(visible[..., 3:4], 0.0, 1.0)
            rgb = 1.0 - a + visible[..., :3]
        elif self.visible == 1:
            rgb = jnp.repeat(visible[..., :1], 3, axis=-1)
        else:
            rgb = visible[..., :3]
        return jnp.clip(rgb, 0.0, 1.0)

    def __repr__(self) -> str:
        spec = self.target_spec
        spec = repr(spec) if isinstance(spec, str) or spec is None else f"<array {np.shape(spec)}>"
        return f"{type(self).__name__}(target={spec}, visible={self.visible})"


def is_concrete(x: Any) -> bool:
    """Whether a pytree holds no tracers (its values can be checked on the host)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def time_index(trace_len: int, t: Array) -> Array:
    """Clip a time to a trace of ``trace_len`` entries (index = time since reset)."""
    return jnp.clip(t, 0, trace_len - 1)
