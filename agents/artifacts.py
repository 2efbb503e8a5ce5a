"""What a finished run leaves behind besides its numbers: GIFs of rollouts and of regeneration
after damage, and the loss plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env import physics, render
from hnca_env.rollout import rollout

Array = jax.Array


def default_wound(grid: tuple[int, int]) -> tuple[tuple[float, float], float]:
    """The disc :func:`regrow` cuts by default: right of the centre, radius 15 % of the side,
    so it takes a bite out of a centred pattern (``(centre (y, x), radius)`` in cells)."""
    h, w = grid
    return (h / 2, w / 2 + 0.1 * w), 0.15 * min(h, w)


def regrow(
    env,
    policy: Callable[[Array, dict], dict],
    key: Array,
    params=None,
    grow_steps: int = 96,
    regrow_steps: int = 96,
    *,
    centre: Sequence[float] | None = None,
    radius: float | None = None,
    record: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, Array], Any]:
    """Grow from the seed, cut a disc out of the children, keep rolling: one world, pure.

    Returns ``(losses, records)``: ``env.loss`` of the grown, the damaged and the regrown
    state, and ``record(state)`` of both rollouts (each with its start state: the seed, then
    the damaged state). The env's own scheduled damage (``params.damage_times``, e.g.
    Regenerate-v0's holes at step 96) is switched off, so this cut is the only wound.
    """
    params = env.default_params if params is None else params
    params = params.replace(damage_times=jnp.full_like(jnp.asarray(params.damage_times), -1))
    if centre is None or radius is None:
        c, r = default_wound(env.grid)
        centre = c if centre is None else centre
        radius = r if radius is None else radius
    k_grow, k_regrow = jax.random.split(key)
    _, grown, rec_grow = rollout(env, policy, k_grow, params, grow_steps, record=record)
    hole = physics.circle_mask(env.grid, jnp.asarray(centre, jnp.float32), jnp.asarray(radius, jnp.float32))
    cells = physics.cut(grown.grids["cell"], hole)
    damaged = grown.replace(grids={**grown.grids, "cell": cells})
    _, regrown, rec_regrow = rollout(
        env, policy, k_regrow, params, regrow_steps, state=damaged, record=record
    )
    losses = {
        "grown": env.loss(grown, params),
        "damaged": env.loss(damaged, params),
        "regrown": env.loss(regrown, params),
    }
    return losses, (rec_grow, rec_regrow)


def regrow_losses(
    env, policy, key: Array, params=None, grow_steps: int = 96, regrow_steps: int = 96, n_worlds: int = 8
) -> dict[str, float]:
    """:func:`regrow`'s losses averaged over ``n_worlds`` worlds (one jit)."""

    def one(k):
        return regrow(env, policy, k, params, grow_steps, regrow_steps)[0]

    losses = jax.jit(jax.vmap(one))(jax.random.split(key, n_worlds))
    return {k: float(jnp.mean(v)) for k, v in losses.items()}


def write_regen_gif(
    env,
    policy,
    key: Array,
    path: str,
    params=None,
    grow_steps: int = 96,
    regrow_steps: int = 96,
    *,
    scale: int = 4,
    pause: int = 10,
    fps: int = 20,
) -> dict[str, float]:
    """GIF of :func:`regrow` (target on the right; the damaged frame held for ``pause``
    frames). Returns that world's losses."""
    params = env.default_params if params is None else params

    def frame(s):
        return render.render(env, s, params, scale=scale, target=True)

    @jax.jit
    def run(k):
        return regrow(env, policy, k, params, grow_steps, regrow_steps, record=frame)

    losses, (grow_frames, regrow_frames) = run(key)
    regrow_frames = np.asarray(regrow_frames)
    frames = np.concatenate(
        [np.asarray(grow_frames), np.repeat(regrow_frames[:1], pause, axis=0), regrow_frames]
    )
    render.write_gif(frames, path, fps=fps)
    return {k: float(v) for k, v in losses.items()}


def plot_loss(history: Sequence[dict], path: str, title: str | None = None, key: str = "loss") -> str | None:
    """A logged metric (default the loss) against iteration, to PNG (``None`` without
    matplotlib); log scale when every value is positive."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in history if r.get(key) is not None]
    xs, ys = [r["iteration"] for r in rows], [r[key] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(xs, ys)
    if ys and min(ys) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (MSE)" if key == "loss" else key)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
