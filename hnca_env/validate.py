"""Checks of what a caller hands the env: the state, the action's values, the settings.

Each runs where the thing it checks is known, so a jitted step pays nothing for them:

- shapes (:func:`check_state`) are Python checks made while tracing, once per compilation;
- the values of a concrete action (an eager ``env.step``) are counted on the device and the
  counts brought to the host (:func:`check_finite_action`);
- the values of a traced action are checked only under ``jax.experimental.checkify``
  (:func:`debug_check_finite`: ``checkify.debug_check``, which lowers to nothing otherwise);
- settings that are valid but cannot do what they say warn (:func:`warn_settings`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def check_state(env: Any, state: Any) -> None:
    """Raise unless ``state`` is a world of ``env``: its levels, each ``(H_l, W_l, C_l)``.

    A state of another env (another grid size, channel count or hierarchy) would otherwise
    fail deep inside the physics with a broadcasting error, or not at all.
    """
    grids = getattr(state, "grids", None)
    if not isinstance(grids, Mapping):
        raise TypeError(
            f"state must be an EnvState of this env (from reset or step), got {type(state).__name__}"
        )
    if set(grids) != set(env.levels):
        raise ValueError(f"state has levels {sorted(grids)}, expected {list(env.levels)}")
    for lvl in env.levels:
        got, want = jnp.shape(grids[lvl]), (*env.grid_shape(lvl), env.state_channels(lvl))
        if got != want:
            raise ValueError(
                f"state.grids[{lvl!r}] has shape {got}, expected {want}: a state of another env "
                f"(grid {env.grid}, {env.channels} channels)?"
            )


@jax.jit
def _nonfinite_counts(action: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return {lvl: jnp.sum(~jnp.isfinite(a)) for lvl, a in action.items()}


def check_finite_action(action: Mapping[str, jax.Array]) -> None:
    """Raise ``ValueError`` naming each level of a concrete action that holds NaN or inf.

    One NaN cell reaches its neighbours through perception and the team reward through the
    mean: three steps later hundreds of observation values are NaN. Rejecting it at the step
    that received it points at the policy step that made it.
    """
    # A concrete action closed over by a jitted function is checked while tracing, once per
    # compilation: compute the counts eagerly then too, instead of as tracers of that program.
    with jax.ensure_compile_time_eval():
        counts = {lvl: int(n) for lvl, n in jax.device_get(_nonfinite_counts(dict(action))).items()}
    bad = [
        f"action[{lvl!r}] has {n} non-finite value{'s' if n > 1 else ''}" for lvl, n in counts.items() if n
    ]
    if bad:
        raise ValueError(f"{'; '.join(bad)} (NaN or inf)")


def debug_check_finite(action: Mapping[str, jax.Array], time: jax.Array) -> None:
    """Under ``checkify.checkify``: fail on the first step whose action holds NaN or inf.

    A no-op (nothing compiled) without checkify, so every path (``step``, ``step_env``,
    ``transition``, the trainers) can carry it for free.
    """
    for lvl, a in action.items():
        n = jnp.sum(~jnp.isfinite(a))
        checkify.debug_check(
            n == 0, f"action[{lvl!r}] has {{}} non-finite value(s) (NaN or inf) at step {{}}", n, time
        )


def warn_settings(env: Any, params: Any) -> None:
    """Warn about concrete settings that are valid but cannot work as meant.

    ``tau_c >= max_steps_in_episode`` with coordinators: every episode ends (and auto-resets)
    before the coordinators start, so they never act. A warning, not an error: a loop that runs
    worlds past the time limit with ``step_env`` (the pool trainer) may mean it.
    """
    if not env.has_parent:
        return
    tau_c, length = np.asarray(params.tau_c), np.asarray(params.max_steps_in_episode)
    if np.any(tau_c >= length):
        warnings.warn(
            f"params.tau_c={_show(tau_c)} >= max_steps_in_episode={_show(length)}: an episode ends "
            "before the coordinators start, so they never act in it (fine only for loops that "
            "run worlds past the time limit with step_env, like the pool trainer)",
            UserWarning,
            stacklevel=4,
        )


def _show(v: np.ndarray) -> str:
    return str(v.item()) if v.size == 1 else str(v.tolist())


# ------------------------------------------------------------------ constructor arguments
#: Observation modes by name (``hnca_env.levels.OBSERVERS``).
OBS_MODES = ("perception", "neighbourhood")


def positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def check_grid(grid: Any) -> tuple[int, int]:
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
        raise ValueError(f"grid must be (H, W), got {grid!r}")
    h, w = (positive_int("grid height/width", g) for g in grid)
    if h < 3 or w < 3:
        raise ValueError(f"grid must be at least 3x3, got {h}x{w}")
    return (h, w)


def check_obs_mode(name: str, mode: Any) -> Any:
    from hnca_env.levels import Observer  # levels imports this module

    if isinstance(mode, Observer):
        return mode
    if mode not in OBS_MODES:
        raise ValueError(f"{name} must be one of {OBS_MODES}, got {mode!r}")
    return mode
