"""The task suite: one file per task, each registering its versioned ids when imported.

``import hnca_env`` imports every task module listed in ``TASK_MODULES``.
"""

from hnca_env.tasks.base import Task

#: Modules of the suite, imported (and so registered) by ``import hnca_env``.
TASK_MODULES = (
    "hnca_env.tasks.grow",
    "hnca_env.tasks.metamorphosis",
    "hnca_env.tasks.goals",
    "hnca_env.tasks.digits",
    "hnca_env.tasks.density",
    "hnca_env.tasks.locomotion",
)

#: Small settings per suite id (tiny grids, 6-step episodes with their events inside) for
#: smoke tests and ``benchmarks/tasks.py --quick``: ``make(id, **SMOKE_SETTINGS[id])``.
SMOKE_SETTINGS = {
    "Grow-v0": dict(grid=(16, 16), target_size=10, max_steps_in_episode=6),
    "Persist-v0": dict(grid=(16, 16), target_size=10, max_steps_in_episode=6),
    "Regenerate-v0": dict(grid=(16, 16), target_size=10, max_steps_in_episode=6, damage_times=[3]),
    "HNCA-Grow-v0": dict(grid=(16, 16), tau_c=2, max_steps_in_episode=6),
    "HNCA-Metamorphosis-v0": dict(grid=(16, 16), max_steps_in_episode=6),
    "HNCA-Metamorphosis-Fixed-v0": dict(grid=(16, 16), max_steps_in_episode=6),
    "HNCA-Metamorphosis-Motifs-v0": dict(grid=(16, 16), tau_c=2, max_steps_in_episode=6),
    "HNCA-GoalSwitch-v0": dict(grid=(16, 16), switch_times=(3,), max_steps_in_episode=6),
    "Digits-v0": dict(swap_time=3, max_steps_in_episode=6),
    "Density-v0": dict(grid=(16, 16), max_steps_in_episode=6),
    "Density-Flat-v0": dict(grid=(16, 16), max_steps_in_episode=6),
    "HNCA-Locomotion-v0": dict(grid=(16, 16), target_size=8, max_steps_in_episode=6),
    "HNCA3-GoalSwitch-v0": dict(grid=(16, 16), switch_times=(3,), max_steps_in_episode=6),
    "HNCA3-Layout-v0": dict(grid=(16, 16), max_steps_in_episode=6),
    "HNCA3-MosaicSwitch-v0": dict(grid=(16, 16), switch_times=(3,), max_steps_in_episode=6),
    "HNCA3-Mosaic-v0": dict(grid=(16, 16), max_steps_in_episode=6),
}

__all__ = ["Task", "TASK_MODULES", "SMOKE_SETTINGS"]
