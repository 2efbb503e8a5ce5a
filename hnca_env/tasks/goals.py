"""Goal switching: only the coordinators know the goal; the children must form its target.

A coordination task built on the H-NCA structure (Pande & Grattarola, ALIFE 2023): the goal id
is a task input of the coordinator level alone, so the children can only learn it through the
coordinators' broadcast. The goal changes during the episode (``switch_times``) to a different
one, drawn at random; the pattern must follow.

``HNCA-GoalSwitch-v0`` — children 32×32×12 (RGB + 9 signal channels), coordinators 8×8×12
over 4×4 clusters, H-NCA perception, fire rate 0.5, no alive mask, U[0, 1) noise seed, the
coordinators start at once (τ_c = 0). Three goals (``disc``, ``square``, ``cross`` drawn as
RGB on black; any list of shape names, PNG paths or ``(H, W, 3)`` arrays with ``goals=``).
The first goal is drawn at reset, the switch comes at step 96, the episode ends at 192.

``HNCA3-GoalSwitch-v0`` — the same task three levels deep: children 32×32×12, coordinators
8×8×12 over 4×4 clusters, a top level 4×4×12 over 2×2 coordinators that alone sees the goal
(the coordinators see only their own grid and their cluster): the goal has to travel down two
links. ``make(..., depth=2)`` gives the two-level version (the coordinators see the goal),
``depth=1`` the flat one (nobody does: chance).

``HNCA3-Layout-v0`` — grow a heart (14 px at 32×32) in one of the grid's four quadrants, drawn at
reset and kept; only the top of three levels sees which (each top agent covers 8×8 children),
so the large-scale layout is known only at the top. 128 steps from U[0, 1) noise; metric
``mse`` (final); ``depth=2`` / ``1`` as above. On the torus, from noise, no policy can place it:
the quadrants are one orbit of the symmetries the hierarchy keeps (see below), so the mean of
the four layouts is the best answer at every depth.

``HNCA3-Mosaic-v0`` — paint a random two-colour mosaic of 8×8 tiles (one tile per top agent),
the layout drawn per world at reset and seen only by the top level, one bit per agent; 64 steps
from noise; states clamped to [-10, 10]. Metrics ``mse`` and ``tiles_right`` (chance 0.5).

``HNCA3-MosaicSwitch-v0`` — the same with goal switching: a new layout is drawn at step 64 of
128, and only the top level sees the change. Metrics ``mse`` and ``tiles_right`` (final, after
the switch) and ``mse_before_switch``.

Measured (docs/training.md, "Three levels"; ``python benchmarks/depth.py``: 16×16 children, the
same budget at every depth, 128 worlds per seed). Pool trainer, three levels: Mosaic MSE 0.017
(97 % of tiles right), MosaicSwitch 0.012 after the switch (99.7 % right; 3 seeds each),
where the flat version and the best answer without the layout (the mean colour,
0.107) stay at chance; the same trained rule with its top level silenced falls back to chance
(tiles 0.51–0.52). Two levels (the coordinators see the layout) do better still (0.003 and
0.002). IPPO learns the two-level relay (0.004 and 0.050; 3 seeds) but not the three-level one (the
constant answer, also at 4× the budget) through the tasks' H-NCA coupling; with
``multiplexer="replace"`` (each link passes only the current message) it learns both, and
silencing its top level sends it back to chance (IPPO three levels deep: Mosaic 0.003,
MosaicSwitch 0.0033, every tile right; silenced, tiles at chance; 3 seeds). At the registered
32×32 (pool trainer, 3 seeds): three levels 0.0023 and 0.0038, every tile right; silenced,
tiles at chance; flat, the mean colour (0.107). IPPO with ``replace`` at 32×32 (3 seeds, the
16×16 budget): three levels Mosaic 0.0031, MosaicSwitch 0.0035 after the switch, every tile
right; silenced, tiles at chance; two levels 0.00055 and 0.00093; flat 0.1115 and 0.1124.
On GoalSwitch and Layout no trained policy beat the
constant answer that paints the mean of the targets (GoalSwitch 0.0066, Layout 0.0133), and on
Layout none can.

Card
----
Observation: children: their perception, nothing else; coordinators: their perception, the
    sensed cluster mean, and at the level that sees it the goal one-hot (``G`` channels, the
    task input; Mosaic: one channel, the layout bit under the agent).
Action: child update ``(H, W, 12)``; coordinator update + 9-channel broadcast.
Reward: ``local`` (minus the child's RGB squared error to the current goal's target), ``team``,
    ``improvement`` (the error drop is counted against the goal in force after the step).
Termination: none; truncated at 192 steps (the GoalSwitch ids), 128 (Layout, MosaicSwitch) or
    64 (Mosaic).
Success metrics (per switch, averaged over the switches that happen): ``mse_before_switch``
    (the step before the switch, against the old goal), ``mse_after_switch`` (the last step of
    the new goal's segment), ``steps_to_recover`` (steps after the switch until the error first
    falls to ``recover_tol`` = 0.02; the segment length if it never does), ``recovered``
    (fraction of switches recovered), and ``mse`` (final). Layout: ``mse``; Mosaic: ``mse``
    and ``tiles_right``.
Reference: none published; a new benchmark of this suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env.env import HNCAEnv
from hnca_env.levels import hnca_hierarchy
from hnca_env.registry import register
from hnca_env.tasks.base import HNCA_STRUCTURE, Task, is_concrete

Array = jax.Array


def _check_switch_times(tp: dict) -> None:
    if is_concrete(tp) and not np.issubdtype(np.asarray(tp["switch_times"]).dtype, np.integer):
        raise ValueError("task_params['switch_times'] must be integers (-1 = unused slot)")


class GoalSwitchTask(Task):
    """``G`` targets in ``task_params["targets"]``; ``EnvState.task = {"goal": int32}``."""

    def __init__(self, goals: Sequence[Any], size: int | None = None, goal_level: str | None = "parent"):
        super().__init__(goals[0] if len(goals) else None, visible=3, size=size)
        self.goal_level = goal_level  # the one level that sees the goal (None: no level does)
        if len(goals) < 2:
            raise ValueError(f"goal switching needs at least 2 goals, got {len(goals)}")
        self.goals = tuple(goals)
        self.n_goals = len(goals)

    def goal_targets(self, grid: tuple[int, int]) -> np.ndarray:
        return np.stack([self.target_array(g, grid) for g in self.goals])

    def check_params(self, params, env) -> None:
        tp = params.task_params
        if not isinstance(tp, dict) or not {"targets", "switch_times", "recover_tol"} <= set(tp):
            raise ValueError(
                "params.task_params must be a dict with 'targets', 'switch_times', 'recover_tol'"
            )
        want = (self.n_goals, *env.grid, 3)
        if jnp.shape(tp["targets"])[-4:] != want:
            raise ValueError(
                f"task_params['targets'] has shape {jnp.shape(tp['targets'])}, expected {want} "
                "(the number of goals is structure: set it with goals=[...] in make)"
            )
        _check_switch_times(tp)

    def init(self, key, cells, params):
        return cells, {"goal": jax.random.randint(key, (), 0, self.n_goals)}

    def post_step(self, key, state, next_state, params):
        switch = jnp.any(params.task_params["switch_times"] == next_state.time)
        other = (state.task["goal"] + jax.random.randint(key, (), 1, self.n_goals)) % self.n_goals
        goal = jnp.where(switch, other, state.task["goal"])
        return next_state.replace(task={"goal": goal})

    def current_target(self, state, params):
        return params.task_params["targets"][state.task["goal"]]

    def extra_obs_dims(self):
        return {} if self.goal_level is None else {self.goal_level: self.n_goals}

    def extra_obs(self, state, params):
        if self.goal_level is None:
            return {}
        one_hot = jax.nn.one_hot(state.task["goal"], self.n_goals, dtype=jnp.float32)
        return {self.goal_level: one_hot}  # broadcast over that level's grid by the env

    def trace(self, state, params):
        return {"mse": jnp.mean(self.error_map(state, params)), "goal": state.task["goal"]}

    def summarize(self, trace, params):
        mse = trace["mse"]
        n = mse.shape[0]
        t = jnp.arange(n)
        times = jnp.sort(jnp.atleast_1d(params.task_params["switch_times"]))
        valid = (times >= 1) & (times < n)
        ends = jnp.concatenate([times[1:], jnp.array([n], times.dtype)])
        ends = jnp.where((ends >= 1) & (ends < n) & (ends > times), ends, n)  # next switch or the end
        tol = params.task_params["recover_tol"]

        def one(start, end):
            seg = (t >= start) & (t < end)
            ok = seg & (mse <= tol)
            first = jnp.min(jnp.where(ok, t, n))
            before = mse[jnp.clip(start - 1, 0, n - 1)]
            after = mse[jnp.clip(end - 1, 0, n - 1)]
            return before, after, jnp.minimum(first, end) - start, first < end

        before, after, steps, rec = jax.vmap(one)(times, ends)
        count = jnp.maximum(jnp.sum(valid), 1)
        nan = jnp.float32(jnp.nan)
        any_valid = jnp.any(valid)

        def avg(x):
            return jnp.where(any_valid, jnp.sum(jnp.where(valid, x, 0.0)) / count, nan)

        return {
            "mse": mse[-1],
            "mse_before_switch": avg(before),
            "mse_after_switch": avg(after),
            "steps_to_recover": avg(steps.astype(jnp.float32)),
            "recovered": avg(rec.astype(jnp.float32)),
        }


def goal_switch(
    grid: tuple[int, int] = (32, 32),
    goals: Sequence[Any] = ("disc", "square", "cross"),
    target_size: int | None = None,
    switch_times: Sequence[int] = (96,),
    goal_level: str | None = "top",
    **kwargs: Any,
) -> HNCAEnv:
    """Goal-switching env; ``goals``: shape names, PNG paths or ``(H, W, 3)`` arrays;
    ``switch_times``: steps at which the goal changes (their number is structure). With
    ``levels=`` (any depth), ``goal_level`` (default: the top level) is the one that sees the
    goal; ``goal_level=None``: no level does."""
    if "levels" in kwargs:
        kwargs = {"alive": False, **kwargs}
        top = kwargs["levels"][-1].name if len(kwargs["levels"]) > 1 else None
    else:
        kwargs = {**HNCA_STRUCTURE, **kwargs}
        top = "parent" if kwargs.get("parent") else None
    goal_level = top if goal_level == "top" else goal_level
    kwargs.setdefault("name", "HNCA-GoalSwitch-v0")
    grid = tuple(grid)
    task = GoalSwitchTask(list(goals), size=target_size, goal_level=goal_level)
    targets = task.goal_targets(grid)
    overrides = {
        "seed": "noise",
        "tau_c": 0,
        "max_steps_in_episode": 192,
        "target": targets[0],
        "task_params": {
            "targets": jnp.asarray(targets),
            "switch_times": jnp.asarray(switch_times, jnp.int32).reshape(-1),
            "recover_tol": jnp.float32(0.02),
        },
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=grid, task=task, default_overrides=overrides, **kwargs)


register("HNCA-GoalSwitch-v0", goal_switch)


class LayoutTask(GoalSwitchTask):
    """One of ``G`` layouts is drawn at reset and kept; only ``goal_level`` sees which."""

    def summarize(self, trace, params):
        return {"mse": trace["mse"][-1]}


def _depth_levels(depth: int, kwargs: dict) -> dict:
    """``levels=`` for a hierarchy ``depth`` levels deep (H-NCA structure, clusters 4 then 2)."""
    if kwargs.pop("parent", None) is False:  # make(..., parent=False): the children alone
        depth = 1
    if depth not in (1, 2, 3):
        raise ValueError(f"depth must be 1, 2 or 3, got {depth!r}")
    if "levels" not in kwargs:
        kwargs["levels"] = hnca_hierarchy((4, 2)[: depth - 1])
    return kwargs


def goal_switch_3(
    grid: tuple[int, int] = (32, 32),
    goals: Sequence[Any] = ("disc", "square", "cross"),
    target_size: int | None = None,
    switch_times: Sequence[int] = (96,),
    depth: int = 3,
    goal_level: str | None = "top",
    **kwargs: Any,
) -> HNCAEnv:
    """``HNCA3-GoalSwitch-v0``: goal switching where only the *top* of three levels sees the
    goal (children 32×32, coordinators 8×8 over 4×4, top 4×4 over 2×2 coordinators): the goal
    must travel down two links. ``depth=2`` / ``1``: the same task two levels deep (the
    coordinators see the goal) or flat (nobody sees it: chance), for comparisons."""
    kwargs.setdefault("name", "HNCA3-GoalSwitch-v0")
    return goal_switch(grid, goals, target_size, switch_times, goal_level, **_depth_levels(depth, kwargs))


def layout_3(
    grid: tuple[int, int] = (32, 32),
    shape: str = "heart",
    size: int | None = None,
    depth: int = 3,
    goal_level: str | None = "top",
    **kwargs: Any,
) -> HNCAEnv:
    """``HNCA3-Layout-v0``: grow a shape in one of the grid's four quadrants, the quadrant drawn
    at reset and seen only by the top of three levels (each top agent covers 8×8 children):
    the large-scale layout is known only at the top. ``depth=2`` / ``1`` as for
    :func:`goal_switch_3`. 128 steps from U[0, 1) noise; metric ``mse`` (final)."""
    grid = tuple(grid)
    kwargs = _depth_levels(depth, kwargs)
    kwargs.setdefault("name", "HNCA3-Layout-v0")
    size = size or min(grid) // 2 - 2
    centred = Task(shape, visible=3, size=size).target_array(shape, grid)
    h, w = grid
    shifts = [(-h // 4, -w // 4), (-h // 4, w // 4), (h // 4, -w // 4), (h // 4, w // 4)]
    layouts = [np.roll(centred, s, axis=(0, 1)) for s in shifts]
    top = kwargs["levels"][-1].name if len(kwargs["levels"]) > 1 else None
    task = LayoutTask(layouts, goal_level=top if goal_level == "top" else goal_level)
    targets = task.goal_targets(grid)
    overrides = {
        "seed": "noise",
        "tau_c": 0,
        "max_steps_in_episode": 128,
        "target": targets[0],
        "task_params": {
            "targets": jnp.asarray(targets),
            "switch_times": jnp.asarray([-1], jnp.int32),
            "recover_tol": jnp.float32(0.02),
        },
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=grid, task=task, default_overrides=overrides, **{"alive": False, **kwargs})


register("HNCA3-GoalSwitch-v0", goal_switch_3)
register("HNCA3-Layout-v0", layout_3)


# --------------------------------------------------------------------------- solvable on a torus
# Every grid is a torus, the children start from i.i.d. noise and every agent of a level runs
# the same rule, so a hierarchy whose top agents all receive the same input cannot tell one
# position from another beyond the period of its coarsest grid: HNCA3-Layout-v0's four
# quadrants (16 cells apart at 32×32, a multiple of the top level's 8) are one orbit, and no
# policy can beat the mean of the four layouts there. The two tasks below keep what only the
# top level knows while being solvable: the top level *sees* the layout at its own resolution,
# one bit per agent, so no agent needs to know where it is.


class MosaicTask(Task):
    """A random two-colour layout of ``block × block`` tiles, drawn per world at reset and kept
    (drawn anew at ``task_params["switch_times"]`` when given); ``goal_level`` alone sees it, as a ``(H_l, W_l, 1)`` map of 0/1 at its own resolution
    (``factor`` of its agents per tile side). ``EnvState.task = {"layout": (H/block, W/block) int32}``."""

    def __init__(self, block: int, goal_level: str | None, factor: int = 1, target: np.ndarray | None = None):
        super().__init__(target, visible=3)  # ``target``: what ``params.target`` holds (unused)
        self.block, self.goal_level, self.factor = block, goal_level, factor

    def check_params(self, params, env) -> None:
        tp = params.task_params
        if not isinstance(tp, dict) or "colours" not in tp:
            raise ValueError("params.task_params must be a dict with 'colours' (2, 3): the off and on colours")
        if jnp.shape(tp["colours"]) != (2, 3):
            raise ValueError(f"task_params['colours'] has shape {jnp.shape(tp['colours'])}, expected (2, 3)")
        if "switch_times" in tp:
            _check_switch_times(tp)

    def init(self, key, cells, params):
        h, w = cells.shape[0] // self.block, cells.shape[1] // self.block
        return cells, {"layout": jax.random.bernoulli(key, 0.5, (h, w)).astype(jnp.int32)}

    def post_step(self, key, state, next_state, params):
        """At ``task_params["switch_times"]`` (if given) a new layout is drawn."""
        times = params.task_params.get("switch_times")
        if times is None:
            return next_state
        layout = state.task["layout"]
        new = jax.random.bernoulli(key, 0.5, layout.shape).astype(jnp.int32)
        switch = jnp.any(times == next_state.time)
        return next_state.replace(task={"layout": jnp.where(switch, new, layout)})

    def current_target(self, state, params):
        tiles = params.task_params["colours"][state.task["layout"]]  # (h, w, 3)
        return jnp.repeat(jnp.repeat(tiles, self.block, axis=0), self.block, axis=1)

    def extra_obs_dims(self):
        return {} if self.goal_level is None else {self.goal_level: 1}

    def extra_obs(self, state, params):
        if self.goal_level is None:
            return {}
        m = state.task["layout"].astype(jnp.float32)
        m = jnp.repeat(jnp.repeat(m, self.factor, axis=0), self.factor, axis=1)
        return {self.goal_level: m[..., None]}

    def trace(self, state, params):
        rgb = state.grids["cell"][..., :3]
        h, w = rgb.shape[0] // self.block, rgb.shape[1] // self.block
        means = rgb.reshape(h, self.block, w, self.block, 3).mean(axis=(1, 3))  # (h, w, 3)
        cols = params.task_params["colours"]
        d = jnp.sum((means[..., None, :] - cols) ** 2, axis=-1)  # (h, w, 2)
        right = jnp.take_along_axis(d, state.task["layout"][..., None], axis=-1)[..., 0]
        wrong = jnp.take_along_axis(d, 1 - state.task["layout"][..., None], axis=-1)[..., 0]
        return {"mse": jnp.mean(self.error_map(state, params)), "tiles_right": jnp.mean(right < wrong)}

    def summarize(self, trace, params):
        out = {"mse": trace["mse"][-1], "tiles_right": trace["tiles_right"][-1]}
        times = params.task_params.get("switch_times")
        if times is not None:  # the step before the (first) switch, against the old layout
            n = trace["mse"].shape[0]
            t0 = jnp.min(jnp.where(times >= 1, times, n))
            out["mse_before_switch"] = trace["mse"][jnp.clip(t0 - 1, 0, n - 1)]
        return out


#: ``HNCA3-Mosaic-v0``'s tile colours: off (teal), on (orange).
MOSAIC_COLOURS = ((0.1, 0.5, 0.9), (0.9, 0.5, 0.1))


def mosaic_3(
    grid: tuple[int, int] = (32, 32),
    colours: Sequence[Sequence[float]] = MOSAIC_COLOURS,
    switch_times: Sequence[int] | None = None,
    depth: int = 3,
    goal_level: str | None = "top",
    **kwargs: Any,
) -> HNCAEnv:
    """``HNCA3-Mosaic-v0``: paint a random two-colour mosaic whose tiles are the top level's
    agents (8×8 children each: coordinators over 4×4 children, the top over 2×2 coordinators).
    The layout is drawn per world at reset and seen only by the top level, one bit per agent:
    the large-scale layout is known only at the top, and the children must get it two links
    down. ``depth=2``: the coordinators see it (each bit on its 2×2 coordinators); ``depth=1``:
    nobody (the best answer is the mean of the two colours). 64 steps from U[0, 1) noise;
    metrics ``mse`` (final) and ``tiles_right`` (the fraction of tiles whose mean colour is
    nearer the right colour than the other; chance 0.5)."""
    grid = tuple(grid)
    block = 8
    if grid[0] % block or grid[1] % block:
        raise ValueError(f"HNCA3-Mosaic-v0's grid must be a multiple of {block} per side, got {grid}")
    colours = np.asarray(colours, np.float32)
    if colours.shape != (2, 3):
        raise ValueError(f"colours must be two RGB triples (off, on), got shape {colours.shape}")
    kwargs = _depth_levels(depth, kwargs)
    kwargs.setdefault("name", "HNCA3-Mosaic-v0")
    kwargs.setdefault("clamp", True)  # states kept in [-10, 10]: long pool rollouts stay finite
    levels = kwargs["levels"]
    top = levels[-1].name if len(levels) > 1 else None
    goal_level = top if goal_level == "top" else goal_level
    factor = 1
    if goal_level is not None:
        names = [lv.name for lv in levels]
        if goal_level not in names[1:]:
            raise ValueError(f"goal_level {goal_level!r} is not a coordinator level of {names}")
        scale = int(np.prod([lv.cluster for lv in levels[1 : names.index(goal_level) + 1]]))
        if block % scale:
            raise ValueError(f"{goal_level!r} agents cover {scale} cells per side, which does not divide the tile {block}")
        factor = block // scale
    task = MosaicTask(block, goal_level, factor, target=np.broadcast_to(colours.mean(axis=0), (*grid, 3)).copy())
    overrides = {
        "seed": "noise",
        "tau_c": 0,
        "max_steps_in_episode": 64,
        "task_params": {"colours": jnp.asarray(colours)}
        | ({} if switch_times is None else {"switch_times": jnp.asarray(switch_times, jnp.int32).reshape(-1)}),
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(grid=grid, task=task, default_overrides=overrides, **{"alive": False, **kwargs})


def mosaic_switch_3(
    grid: tuple[int, int] = (32, 32),
    colours: Sequence[Sequence[float]] = MOSAIC_COLOURS,
    switch_times: Sequence[int] = (64,),
    depth: int = 3,
    goal_level: str | None = "top",
    **kwargs: Any,
) -> HNCAEnv:
    """``HNCA3-MosaicSwitch-v0``: :func:`mosaic_3` whose layout is drawn anew at ``switch_times``
    (step 64 of 128): the top level must pass on a changed layout. Metrics ``mse`` and
    ``tiles_right`` (final, after the switch) and ``mse_before_switch``."""
    kwargs.setdefault("name", "HNCA3-MosaicSwitch-v0")
    kwargs["default_overrides"] = {"max_steps_in_episode": 128, **(kwargs.get("default_overrides") or {})}
    return mosaic_3(grid, colours, switch_times, depth, goal_level, **kwargs)


register("HNCA3-Mosaic-v0", mosaic_3)
register("HNCA3-MosaicSwitch-v0", mosaic_switch_3)
