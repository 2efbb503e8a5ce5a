"""hnca-env: Hierarchical Neural Cellular Automata as a multi-agent JAX environment suite."""

import importlib as _importlib

from hnca_env import physics, rewards, targets
from hnca_env.env import (
    SEED_NOISE,
    SEED_SINGLE_CELL,
    SEED_STATE,
    EnvParams,
    EnvState,
    HNCAEnv,
)
from hnca_env.registry import make, register, registered_envs
from hnca_env.tasks import TASK_MODULES as _TASK_MODULES
from hnca_env.tasks import Task

for _m in _TASK_MODULES:
    _importlib.import_module(_m)

__version__ = "0.1.0"

__all__ = [
    "HNCAEnv",
    "EnvParams",
    "EnvState",
    "Task",
    "make",
    "register",
    "registered_envs",
    "physics",
    "rewards",
    "targets",
    "SEED_SINGLE_CELL",
    "SEED_NOISE",
    "SEED_STATE",
]
