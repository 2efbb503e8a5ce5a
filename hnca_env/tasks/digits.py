"""Self-classifying digits: every ink cell must name the digit it belongs to.

After Randazzo, Mordvintsev, Niklasson, Levin & Greydanus, "Self-classifying MNIST Digits"
(Distill 2020). The digits are scikit-learn's bundled 8×8 set (1,797 digits, shipped in
``hnca_env/data/digits.npz``; nothing is downloaded), each pixel scaled up to a 3×3 block and
padded to 28×28, MNIST's size. Cells under ink (intensity > 0.25) are alive; the others stay
empty. Each alive cell writes 10 class channels; it is right when their argmax is the digit's
label. The digit may be swapped for another mid-episode (``swap_time``); the cells must notice
and re-classify.

``Digits-v0`` — 28×28 cells, 20 channels: 0 = ink (set by the env, not by the agents), 1–10 =
class scores, 11–19 hidden; perception identity + Sobel/8; fire rate 0.5; 200 steps; train
split (the first 1,437 digits). ``make("Digits-v0", split="test")`` evaluates on the held-out
360. ``swap_time=100`` (an ``EnvParams.task_params`` entry, or the ``swap_time`` option)
swaps the digit at step 100.

Card
----
Observation: each cell's perception of its neighbourhood (20 channels × 3 kernels), ink
    included; dead cells read zeros.
Action: cell update ``(28, 28, 20)``; the env resets channel 0 to the ink and zeroes dead cells
    after every step.
Reward: ``local`` = minus the mean squared error of the class channels to the one-hot label
    (alive cells; 0 elsewhere — the per-cell L2 loss of the paper), ``team``, ``improvement``.
Termination: none; truncated at 200 steps.
Success metrics at the final step: ``cell_accuracy`` (mean over digits of the fraction of
    alive cells whose argmax is the label), ``all_right`` (fraction of digits whose alive
    cells all name the right label), ``all_agree`` (fraction of digits whose alive cells all
    name one label, right or not), ``mse``.
Reference: on MNIST's test set, 95.3% average cell accuracy and 88.1% "total agreement". The
    notebook (google-research/self-organising-systems ``mnist_ca.ipynb``) counts a digit as in
    total agreement when all its alive cells name the *same* label, right or not: our
    ``all_agree``, not ``all_right``. Its accuracy is pooled over all alive cells of a batch
    (ours averages per digit), and the reported figures are the best over the first 200 steps
    of a run with noise on the updates, not the value at step 200.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import Task, is_concrete

Array = jax.Array

N_CLASSES = 10
INK_THRESHOLD = 0.25
TRAIN_SIZE = 1437  # the first 80%; the last 360 digits are held out
SPLITS = {"train": (0, TRAIN_SIZE), "test": (TRAIN_SIZE, 1797), "all": (0, 1797)}

#: Class colours for drawing (tab10).
PALETTE = np.array(
    [
        [0.12, 0.47, 0.71], [1.00, 0.50, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
        [0.58, 0.40, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.50, 0.50, 0.50],
        [0.74, 0.74, 0.13], [0.09, 0.75, 0.81],
    ],
    np.float32,
)  # fmt: skip


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The shipped digits: images float32 ``(1797, 8, 8)`` in [0, 1] and labels int32 ``(1797,)``."""
    with importlib.resources.files("hnca_env.data").joinpath("digits.npz").open("rb") as f:
        data = np.load(f)
        return data["images"].astype(np.float32) / 16.0, data["labels"].astype(np.int32)


class DigitsTask(Task):
    """``EnvState.task = {"index", "label", "ink" (H, W)}``; channel 0 = ink, 1–10 = classes."""

    def __init__(self, scale: int = 3, pad: int = 2):
        super().__init__(None, visible=1 + N_CLASSES)
        self.scale, self.pad = scale, pad
        images, labels = load_digits()
        self._images = images
        self._labels = labels

    def grid(self) -> tuple[int, int]:
        side = 8 * self.scale + 2 * self.pad
        return (side, side)

    def default_target(self, grid):
        return np.zeros((*grid, self.visible), np.float32)  # per digit; see current_target

    def check_params(self, params, env) -> None:
        tp = params.task_params
        if not isinstance(tp, dict) or not {"split", "swap_time"} <= set(tp):
            raise ValueError("params.task_params must be a dict with 'split' (2,) and 'swap_time'")
        if is_concrete(tp):
            lo, hi = (int(v) for v in np.asarray(tp["split"]).reshape(-1, 2)[0])
            if not 0 <= lo < hi <= len(self._labels):
                raise ValueError(f"task_params['split'] must be 0 <= start < end <= {len(self._labels)}")

    def digit(self, key: Array, params) -> dict[str, Array]:
        """Draw a digit of the split: its index, label and ink ``(H, W)`` (intensity, 0 if dead)."""
        lo, hi = params.task_params["split"][0], params.task_params["split"][1]
        index = jax.random.randint(key, (), lo, hi)
        img = jnp.asarray(self._images)[index]
        img = jnp.repeat(jnp.repeat(img, self.scale, 0), self.scale, 1)
        img = jnp.pad(img, self.pad)
        ink = jnp.where(img > INK_THRESHOLD, img, 0.0)
        return {"index": index, "label": jnp.asarray(self._labels)[index], "ink": ink}

    def _enforce(self, cells: Array, task: dict) -> Array:
        alive = (task["ink"] > 0)[..., None]
        return jnp.where(alive, cells, 0.0).at[..., 0].set(task["ink"])

    def init(self, key, cells, params):
        task = self.digit(key, params)
        return self._enforce(jnp.zeros_like(cells), task), task

    can_mutate = True

    def mutate(self, key, state, params):
        """Another digit of the split under the same cells (their states kept where the new
        digit has ink; the env's rules then hold: the ink channel set, dead cells zeroed)."""
        task = self.digit(key, params)
        return state.replace(
            grids={**state.grids, "cell": self._enforce(state.grids["cell"], task)}, task=task
        )

    def post_step(self, key, state, next_state, params):
        swap = next_state.time == params.task_params["swap_time"]
        new = self.digit(key, params)
        task = jax.tree.map(lambda n, o: jnp.where(swap, n, o), new, state.task)
        grids = {**next_state.grids, "cell": self._enforce(next_state.grids["cell"], task)}
        return next_state.replace(grids=grids, task=task)

    def current_target(self, state, params):
        alive = (state.task["ink"] > 0)[..., None]
        one_hot = jax.nn.one_hot(state.task["label"], N_CLASSES, dtype=jnp.float32)
        return jnp.concatenate([state.task["ink"][..., None], alive * one_hot], axis=-1)

    def error_map(self, state, params):
        alive = (state.task["ink"] > 0).astype(jnp.float32)
        scores = state.grids["cell"][..., 1 : 1 + N_CLASSES]
        diff = scores - self.current_target(state, params)[..., 1:]
        return alive * jnp.mean(diff * diff, axis=-1)

    def trace(self, state, params):
        alive = state.task["ink"] > 0
        guess = jnp.argmax(state.grids["cell"][..., 1 : 1 + N_CLASSES], axis=-1)
        n_alive = jnp.maximum(jnp.sum(alive), 1)
        right = alive & (guess == state.task["label"])
        same = alive & (guess == guess.reshape(-1)[jnp.argmax(alive.reshape(-1))])
        return {
            "mse": jnp.mean(self.error_map(state, params)),
            "cell_accuracy": jnp.sum(right) / n_alive,
            "all_right": (jnp.sum(right) == jnp.sum(alive)).astype(jnp.float32),
            "all_agree": (jnp.sum(same) == jnp.sum(alive)).astype(jnp.float32),
        }

    def summarize(self, trace, params):
        return {k: v[-1] for k, v in trace.items()}

    def rgb(self, visible):
        ink = jnp.clip(visible[..., 0:1], 0.0, 1.0)
        colour = jnp.asarray(PALETTE)[jnp.argmax(visible[..., 1 : 1 + N_CLASSES], axis=-1)]
        shade = 0.35 + 0.65 * ink
        return jnp.where(ink > 0, colour * shade + (1.0 - shade) * 0.1, 1.0)


def constant_label_answer(label: int):
    """A trivial answer (:mod:`hnca_env.baselines`): every alive cell names ``label``."""

    def answer(key, state, params):
        del key, params
        alive = (state.task["ink"] > 0)[..., None]
        one_hot = jax.nn.one_hot(label, N_CLASSES, dtype=jnp.float32)
        return jnp.concatenate([state.task["ink"][..., None], alive * one_hot], axis=-1)

    return answer


def random_label_answer(key, state, params):
    """A trivial answer (chance): every alive cell names a uniformly random label of its own."""
    del params
    alive = (state.task["ink"] > 0)[..., None]
    labels = jax.random.randint(key, state.task["ink"].shape, 0, N_CLASSES)
    one_hot = jax.nn.one_hot(labels, N_CLASSES, dtype=jnp.float32)
    return jnp.concatenate([state.task["ink"][..., None], alive * one_hot], axis=-1)


def digits(split: str = "train", swap_time: int = -1, scale: int = 3, pad: int = 2, **kwargs: Any) -> HNCAEnv:
    """Self-classifying digits env: ``split`` ``"train"``, ``"test"`` or ``"all"``;
    ``swap_time`` the step at which the digit is swapped (-1: never)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLITS)}")
    kwargs.setdefault("channels", 20)
    kwargs.setdefault("perception", ("identity", "sobel_x", "sobel_y"))
    kwargs.setdefault("sobel_scale", 1.0 / 8.0)
    kwargs.setdefault("alive", False)
    kwargs.setdefault("name", "Digits-v0")
    task = DigitsTask(scale, pad)
    grid = kwargs.pop("grid", None)
    if grid is not None and tuple(int(g) for g in np.reshape(grid, -1)) != task.grid():
        side = task.grid()[0]
        raise ValueError(
            f"Digits-v0's grid is fixed at {side}x{side} (8 x scale {scale} + 2 x pad {pad}); got grid={grid!r}: "
            f"leave it out, pass {task.grid()} (hnca train --grid {side}), or change scale/pad"
        )
    overrides = {
        "max_steps_in_episode": 200,
        "task_params": {"split": jnp.array(SPLITS[split], jnp.int32), "swap_time": jnp.int32(swap_time)},
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=task.grid(), task=task, default_overrides=overrides, **kwargs)


register("Digits-v0", digits)
