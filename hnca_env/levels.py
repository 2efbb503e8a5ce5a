"""Levels as data: a hierarchy is an ordered tuple of :class:`Level` specs, finest first.

Level 0 is the children (the cells that show the pattern); it is always named ``"cell"``
(tasks and rewards read ``state.grids["cell"]``); the levels above may have any names. Each level above it is a grid of
coordinators, one per ``cluster × cluster`` block of the level below. Every *link* (level
``l`` over level ``l - 1``) runs, in one coupled step and after level ``l - 1`` has updated:
level ``l``'s own update, its actuator (its broadcast, nearest-upsampled, mixed into the last
``signals`` channels of level ``l - 1``) and its sensor (the cluster average of level
``l - 1``, mixed into level ``l``'s first ``channels[l - 1]`` channels). A level starts
``EnvParams.tau_c`` (level 1) or ``EnvParams.start_delay[name]`` steps after the level below
it started (levels 2 and up; default 0); before that it is all zeros and on its first step it
becomes the sensed average of the level below.

The parts a link is made of are injectable:

- :class:`Observer` — how an agent sees its own grid (``"perception"``: the fixed kernels;
  ``"neighbourhood"``: the raw 3×3 block; or your own);
- :class:`Multiplexer` — how a signal is mixed into its destination channels (``"adder"``,
  ``"scaled"`` with a per-channel λ, ``"replace"``, or your own). With ``"adder"`` a level
  integrates what it senses and receives, step after step (H-NCA's rule); ``"replace"`` makes
  the destination channels the signal itself: each link passes this step's message, with no
  memory of the last.

Example, a three-level hierarchy::

    from hnca_env.levels import Level
    levels = (
        Level("cell", channels=16, perception=("identity", "sobel_x", "sobel_y"), sobel_scale=1 / 8),
        Level("parent", channels=16, cluster=4, signals=9),
        Level("grandparent", channels=16, cluster=2, signals=8),
    )
    env = hnca_env.HNCAEnv(grid=(32, 32), levels=levels, alive=False, task=hnca_env.Task("heart"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from hnca_env import physics, validate

Array = jax.Array

#: Default names of the levels above the children when none are given.
DEFAULT_NAMES = ("cell", "parent", "grandparent", "great_grandparent")


@dataclasses.dataclass(frozen=True)
class Observer:
    """How an agent observes its own level's grid.

    ``fn(grid (H, W, C), kernels (K, 3, 3)) -> (H, W, F)`` and ``dim(C, K) -> F``.
    """

    name: str
    fn: Callable[[Array, np.ndarray], Array]
    dim: Callable[[int, int], int]

    def __call__(self, grid: Array, kernels: np.ndarray) -> Array:
        return self.fn(grid, kernels)


def _neighbourhood(grid: Array, kernels: np.ndarray) -> Array:
    del kernels
    return physics.neighbourhood(grid)


def _perception_dim(channels: int, n_kernels: int) -> int:
    return channels * n_kernels


def _neighbourhood_dim(channels: int, n_kernels: int) -> int:
    return 9 * channels


# module-level functions, not lambdas: an env (and so its levels) must pickle
OBSERVERS = {
    "perception": Observer("perception", physics.perceive, _perception_dim),
    "neighbourhood": Observer("neighbourhood", _neighbourhood, _neighbourhood_dim),
}


@dataclasses.dataclass(frozen=True)
class Multiplexer:
    """How a signal ``src`` is mixed into its destination channels ``dst`` (same shape):
    ``fn(dst, src, scale) -> mixed``; ``scaled``: whether it reads a per-channel λ
    (``EnvParams.actuator_scale`` / ``sensor_scale``)."""

    name: str
    fn: Callable[[Array, Array, Any], Array]
    scaled: bool = False

    def __call__(self, dst: Array, src: Array, scale: Any = None) -> Array:
        return self.fn(dst, src, scale)


def _add(dst: Array, src: Array, scale: Any = None) -> Array:
    return dst + src


def _add_scaled(dst: Array, src: Array, scale: Any = None) -> Array:
    return dst + scale * src


def _replace(dst: Array, src: Array, scale: Any = None) -> Array:
    return src.astype(dst.dtype)


MULTIPLEXERS = {
    "adder": Multiplexer("adder", _add),
    "scaled": Multiplexer("scaled", _add_scaled, scaled=True),
    "replace": Multiplexer("replace", _replace),
}


def observer(spec: str | Observer, what: str = "obs") -> Observer:
    """An :class:`Observer` from its name or itself."""
    if isinstance(spec, Observer):
        return spec
    if spec not in OBSERVERS:
        raise ValueError(f"{what} must be one of {tuple(OBSERVERS)} or an Observer, got {spec!r}")
    return OBSERVERS[spec]


def multiplexer(spec: str | Multiplexer) -> Multiplexer:
    """A :class:`Multiplexer` from its name or itself."""
    if isinstance(spec, Multiplexer):
        return spec
    if spec not in MULTIPLEXERS:
        raise ValueError(f"unknown multiplexer {spec!r}; known: {tuple(MULTIPLEXERS)}")
    return MULTIPLEXERS[spec]


@dataclasses.dataclass(frozen=True)
class Level:
    """One level of the hierarchy.

    Args:
      name: the key of this level in observations, actions, rewards and ``state.grids``.
      channels: state channels ``C_l``. Above level 0, ``C_l >= C_{l-1}`` (the sensor mixes the
        cluster average of the level below into the first ``C_{l-1}`` channels).
      perception: names of the fixed 3×3 kernels (``physics.KERNELS``).
      sobel_scale: multiplier of the Sobel kernels (1/8 Growing NCA, 1 H-NCA).
      obs: the :class:`Observer` (or its name) of the level's own grid.
      cluster: level 0: unused (1); above: cells of the level below per side per agent.
      signals: level 0: unused (0); above: how many of the level below's *last* channels this
        level's broadcast writes (its action is ``C_l + signals`` channels).
    """

    name: str
    channels: int
    perception: tuple[str, ...] = ("identity", "sobel_x", "sobel_y", "laplacian")
    sobel_scale: float = 1.0
    obs: str | Observer = "perception"
    cluster: int = 1
    signals: int = 0

    def __post_init__(self):
        object.__setattr__(self, "perception", tuple(self.perception))
        for field in ("channels", "cluster"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Level {self.name!r}: {field} must be a positive integer, got {v!r}")
        if isinstance(self.signals, bool) or not isinstance(self.signals, (int, np.integer)) or self.signals < 0:
            raise ValueError(f"Level {self.name!r}: signals must be an integer >= 0, got {self.signals!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a level's name must be a non-empty string, got {self.name!r}")
        observer(self.obs, f"Level {self.name!r}: obs")
        physics.perception_kernels(self.perception, self.sobel_scale)  # names known

    @property
    def observer(self) -> Observer:
        return observer(self.obs)

    @property
    def kernels(self) -> np.ndarray:
        return physics.perception_kernels(self.perception, self.sobel_scale)


def check_hierarchy(levels: Sequence[Level], grid: tuple[int, int], visible: int) -> tuple[Level, ...]:
    """Validate an ordered hierarchy (finest first) on a child grid; returns it as a tuple."""
    if isinstance(levels, Level) or not isinstance(levels, Sequence):
        raise TypeError(f"levels must be a non-empty sequence of hnca_env.levels.Level, got {levels!r}")
    levels = tuple(levels)
    if not levels or not all(isinstance(lv, Level) for lv in levels):
        raise TypeError("levels must be a non-empty sequence of hnca_env.levels.Level")
    names = [lv.name for lv in levels]
    if names[0] != "cell":
        raise ValueError(f"level 0 (the children, which tasks and rewards read) must be named 'cell', got {names[0]!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"level names must be unique, got {names}")
    if levels[0].channels < visible:
        raise ValueError(f"channels={levels[0].channels} is fewer than the task's {visible} visible channels")
    h, w = grid
    for i in range(1, len(levels)):
        lower, lv = levels[i - 1], levels[i]
        if h % lv.cluster or w % lv.cluster:
            raise ValueError(f"grid {h}x{w} is not divisible by the cluster size {lv.cluster}")
        h, w = h // lv.cluster, w // lv.cluster
        if lv.signals < 1:
            raise ValueError(f"signals must be a positive integer, got {lv.signals!r} (level {lv.name!r})")
        room = lower.channels - (visible if i == 1 else 0)
        if lv.signals > room:
            raise ValueError(
                f"too few channels for the signals: {lv.signals} signal channels need "
                f"channels >= visible + signals = {visible + lv.signals}, got channels={lower.channels}"
                if i == 1
                else f"level {lv.name!r} broadcasts {lv.signals} signals into level {lower.name!r}, "
                f"which has only {lower.channels} channels"
            )
        if lv.channels < lower.channels:
            raise ValueError(
                f"parent_channels={lv.channels} < channels={lower.channels}: the sensor adds "
                f"the children's cluster average into the first `channels` parent channels"
                if i == 1
                else f"level {lv.name!r} has {lv.channels} channels, fewer than level {lower.name!r}'s "
                f"{lower.channels}: the sensor adds the cluster average into the first {lower.channels}"
            )
    return levels


#: The H-NCA reference's perception (RituPande/hnca): identity, Sobel x/y unscaled, Laplacian.
HNCA_PERCEPTION = ("identity", "sobel_x", "sobel_y", "laplacian")


def hnca_hierarchy(clusters: Sequence[int] = (4, 2), channels: int = 12, signals: int = 9) -> tuple[Level, ...]:
    """The H-NCA reference's structure stacked ``len(clusters)`` coordinator levels deep: every
    level ``channels`` channels with the reference's perception; coordinator level ``i`` covers
    ``clusters[i - 1]`` cells of the level below per side and broadcasts ``signals`` channels
    into it. Names: :data:`DEFAULT_NAMES` (``cell``, ``parent``, ``grandparent``, ...)."""
    if len(clusters) >= len(DEFAULT_NAMES):
        raise ValueError(f"at most {len(DEFAULT_NAMES) - 1} coordinator levels have default names")
    out = [Level("cell", channels, HNCA_PERCEPTION, 1.0)]
    for i, k in enumerate(clusters, 1):
        out.append(Level(DEFAULT_NAMES[i], channels, HNCA_PERCEPTION, 1.0, cluster=int(k), signals=signals))
    return tuple(out)


def two_level_hierarchy(
    channels, perception, sobel_scale, cell_obs, parent, cluster, parent_channels, signals,
    parent_perception, parent_sobel_scale, parent_obs,
) -> tuple[Level, ...]:  # fmt: skip
    """The hierarchy ``HNCAEnv``'s two-level arguments describe (checked under their names):
    ``("cell",)``, or ``("cell", "parent")`` with ``parent=True``."""
    cell = Level(
        "cell",
        validate.positive_int("channels", channels),
        perception,
        sobel_scale,
        validate.check_obs_mode("cell_obs", cell_obs),
    )
    validate.positive_int("cluster", cluster)
    if not parent:
        return (cell,)
    first = Level(
        "parent",
        validate.positive_int("parent_channels", parent_channels),
        parent_perception,
        parent_sobel_scale,
        validate.check_obs_mode("parent_obs", parent_obs),
        cluster=cluster,
        signals=validate.positive_int("signals", signals),
    )
    return (cell, first)
