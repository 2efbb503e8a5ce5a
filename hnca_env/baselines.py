"""Trivial answers a trained policy must beat, scored by the same metric code as a policy.

A trained number means little on its own: an MSE of 0.01 on a heart is no better than painting
a same-area disc in the heart's mean colour. This module builds such *answers* (images the
children could show) and scores them with the task's own :meth:`~hnca_env.tasks.base.Task.trace`
and :meth:`~hnca_env.tasks.base.Task.summarize`, on worlds drawn exactly as
:func:`hnca_env.evaluate.evaluate` draws them (the same keys give the same start states, so a
Digits answer is scored on the same digits as the policy).

Answers (``answer(key, state, params) -> (H, W, visible)``):

- :func:`silhouette_answer`: the target's own silhouette (alpha ≥ 0.5) in its mean colour;
- :func:`disc_answer`: a disc of the silhouette's area at its centroid, in that colour;
- :func:`mean_colour_answer`: the target's mean colour everywhere (Metamorphosis' "mean of B");
- :func:`image_answer`: a fixed image (Metamorphosis' "A itself").

:func:`normalised_mse` divides an MSE by the target's variance (the mean over channels of each
channel's variance over the grid), so the mean-colour answer scores exactly 1.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env import physics

Array = jax.Array
Answer = Callable[[Array, object, object], Array]

#: A pixel belongs to a premultiplied-RGBA target's silhouette when its alpha is at least this.
SILHOUETTE_ALPHA = 0.5


def silhouette(target: Array) -> Array:
    """Boolean ``(H, W)``: the pixels of an RGBA target with alpha ≥ :data:`SILHOUETTE_ALPHA`;
    every pixel for a target without alpha (3 channels or fewer)."""
    target = jnp.asarray(target)
    if target.shape[-1] != 4:
        return jnp.ones(target.shape[:2], bool)
    return target[..., 3] >= SILHOUETTE_ALPHA


def mean_colour(target: Array, mask: Array | None = None) -> Array:
    """Per-channel mean of ``target (H, W, V)`` over ``mask (H, W)`` (default: every pixel)."""
    target = jnp.asarray(target, jnp.float32)
    m = jnp.ones(target.shape[:2], jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
    return jnp.sum(target * m[..., None], axis=(0, 1)) / jnp.maximum(jnp.sum(m), 1.0)


def silhouette_image(target: Array) -> Array:
    """The target's silhouette painted in the silhouette's mean colour, zeros elsewhere."""
    m = silhouette(target)
    return jnp.where(m[..., None], mean_colour(target, m), 0.0)


def disc_image(target: Array) -> Array:
    """A disc with the silhouette's area (``r = sqrt(area / π)``) centred on the silhouette's
    centroid, painted in the silhouette's mean colour, zeros elsewhere."""
    target = jnp.asarray(target, jnp.float32)
    m = silhouette(target)
    h, w = target.shape[:2]
    area = jnp.sum(m)
    yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")  # pixel indices, as circle_mask
    centre = jnp.stack([jnp.sum(yy * m), jnp.sum(xx * m)]) / jnp.maximum(area, 1)
    disc = physics.circle_mask((h, w), centre, jnp.sqrt(area / jnp.pi))
    return jnp.where(disc[..., None], mean_colour(target, m), 0.0)


def silhouette_answer(key, state, params):
    """Answer: :func:`silhouette_image` of the task's target."""
    del key, state
    return silhouette_image(params.target)


def disc_answer(key, state, params):
    """Answer: :func:`disc_image` of the task's target."""
    del key, state
    return disc_image(params.target)


def mean_colour_answer(key, state, params):
    """Answer: the target's mean colour over every pixel."""
    del key, state
    t = jnp.asarray(params.target, jnp.float32)
    return jnp.broadcast_to(mean_colour(t), t.shape)


def image_answer(image: Array) -> Answer:
    """Answer: the fixed image ``(H, W, visible)`` (e.g. Metamorphosis' start pattern A)."""
    image = jnp.asarray(image, jnp.float32)

    def answer(key, state, params):
        del key, state, params
        return image

    return answer


def normalised_mse(mse, target) -> float:
    """``mse`` divided by the target's variance: the mean over channels of each channel's
    variance over the grid (the MSE of painting the target's mean colour everywhere)."""
    t = np.asarray(target, np.float64)
    var = float(np.mean(np.var(t.reshape(-1, t.shape[-1]), axis=0)))
    if var <= 0:
        raise ValueError("normalised_mse: the target is constant (variance 0)")
    return float(mse) / var


def answer_worlds(env, answer: Answer, key: Array, params=None, *, n_worlds: int = 32) -> dict[str, Array]:
    """Per-world task metrics ``{name: (n_worlds,)}`` of children showing ``answer``.

    Worlds start as :func:`hnca_env.rollout.rollout` starts them from the same key (so a task
    state such as a digit is the one a policy would face under
    :func:`hnca_env.evaluate.evaluate` with ``key``); the answer replaces the children's visible
    channels, the task's ``post_step`` is applied (so a task that enforces channels, like the
    digits' ink, still does), and the metrics come from the task's ``trace``/``summarize`` of
    that one state.
    """
    params = env.default_params if params is None else params
    env.check_params(params)
    if isinstance(n_worlds, bool) or not isinstance(n_worlds, int) or n_worlds < 1:
        raise ValueError(f"n_worlds must be a positive integer, got {n_worlds!r}")
    visible = env.task.visible

    def one(k):
        k_reset, k_answer = jax.random.split(k)
        _, state = env.reset_env(k_reset, params)
        image = jnp.asarray(answer(k_answer, state, params), jnp.float32)
        cells = state.grids["cell"]
        if image.shape != (*cells.shape[:2], visible):
            raise ValueError(
                f"an answer must be (H, W, visible) = {(*cells.shape[:2], visible)}, got {image.shape}"
            )
        shown = state.replace(grids={**state.grids, "cell": cells.at[..., :visible].set(image)})
        shown = env.task.post_step(k_answer, state, shown, params)
        trace = jax.tree.map(lambda x: x[None], env.task.trace(shown, params))
        return env.task.summarize(trace, params)

    return jax.jit(jax.vmap(one))(jax.random.split(key, n_worlds))


def evaluate_answer(env, answer: Answer, key: Array, params=None, *, n_worlds: int = 32) -> dict[str, float]:
    """:func:`answer_worlds` averaged over worlds (like :func:`hnca_env.evaluate.evaluate`)."""
    per_world = answer_worlds(env, answer, key, params, n_worlds=n_worlds)
    return {name: float(jnp.mean(v)) for name, v in per_world.items()}
