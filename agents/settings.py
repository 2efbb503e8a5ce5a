"""Trainer settings from YAML files and ``key=value`` overrides (``hnca train --config/--set``).

Shared by the config objects of the trainers (``agents.ppo.PPOConfig``, ``agents.es.ESConfig``,
``agents.pool_run.PoolRunConfig``): a YAML mapping of settings, then overrides such as
``lr=1e-3`` or ``env_kwargs.grid=[16,16]`` (values parsed as YAML), merged with ``env_kwargs``
(and any other group named in ``merge``) combined key by key.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Floats as YAML 1.2 (and JSON) write them: PyYAML's YAML 1.1 rules read ``1e-3`` (no dot) as
#: the string "1e-3".
_FLOAT = re.compile(
    r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))$|^\.(?:nan|NaN|NAN)$""",
    re.X,
)


@functools.cache
def _loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    return Loader


def _yaml_load(text_or_file: Any) -> Any:
    """``yaml.safe_load`` that reads ``1e-3`` as a number (the value ``--set lr=1e-3`` means)."""
    import yaml

    return yaml.load(text_or_file, Loader=_loader())


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-3", "env_kwargs.grid=[16,16]"]`` -> a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        value = _yaml_load(raw)
        parts = key.strip().split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ValueError(f"override {item!r}: {p!r} is not a group of settings")
        d[parts[-1]] = value
    return out


def load_settings(
    path: str | None,
    overrides: Sequence[str] | Mapping = (),
    what: str = "trainer",
    merge: Sequence[str] = ("env_kwargs",),
) -> dict:
    """The settings of a YAML file (``None``: none) with ``overrides`` applied on top; the
    groups of settings named in ``merge`` are combined key by key, others replaced whole.

    A file that is missing, unreadable or not YAML raises ``ValueError`` naming it (``what``
    says whose config it is: ``"PPO config file runs/x.yaml: no such file or directory"``).
    """
    import yaml

    settings: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path) as f:
                loaded = _yaml_load(f) or {}
        except OSError as e:
            raise ValueError(f"{what} config file {path}: {(e.strerror or str(e)).lower()}") from e
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ValueError(f"{what} config file {path} is not valid YAML{at}: {problem}") from e
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: a {what} config file must be a mapping of settings")
        settings.update(loaded)
    more = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    for group in merge:
        if isinstance(more.get(group), Mapping) and isinstance(settings.get(group), Mapping):
            more[group] = {**settings[group], **more[group]}
    settings.update(more)
    return settings


def check_task_id(owner: str, task: Any) -> None:
    """Raise unless ``task`` is a registered env id (``owner``: the config class, for the message)."""
    import hnca_env

    if not isinstance(task, str) or task not in hnca_env.registered_envs():
        raise ValueError(f"{owner}.task: unknown env id {task!r}; registered: {hnca_env.registered_envs()}")


def python_scalars(config: Any) -> None:
    """Replace the NumPy scalars among a (frozen) config dataclass's fields by Python numbers
    (``np.int64(16)`` -> ``16``): a sweep over ``np.arange`` passes its checks and writes plain
    JSON. Called first in each trainer config's ``__post_init__``."""
    for field in dataclasses.fields(config):
        v = getattr(config, field.name)
        if isinstance(v, np.generic):
            object.__setattr__(config, field.name, v.item())


def json_safe(x: Any) -> Any:
    """``x`` as JSON/YAML writes it: mappings as dicts, tuples as lists, NumPy scalars as numbers."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        return x.item()
    return x


def tuples(x: Any) -> Any:
    """Lists (from JSON/YAML) back to tuples, so env settings like ``grid`` are hashable."""
    if isinstance(x, Mapping):
        return {k: tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(tuples(v) for v in x)
    return x
