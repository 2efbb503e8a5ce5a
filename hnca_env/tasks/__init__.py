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

__all__ = ["Task", "TASK_MODULES"]
