"""Versioned environment ids: ``make(id, **overrides)``, ``register(id, factory)``.

A factory takes constructor keyword arguments and returns an :class:`~hnca_env.HNCAEnv`.
``make`` sends each override to the constructor (structure) or to ``EnvParams`` (numbers) by
name, so ``make("Grow-v0", grid=(32, 32), fire_rate=0.75, reward="team")`` just works.

The numbers become the env's own ``default_params`` too (and ``make`` returns that very
object): loops that never pass params (PureJaxRL's ``env_params=None``, JaxMARL's
``reset(key)``, ``env.step(key, state, action)``) run the settings that were asked for.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from hnca_env.env import EnvParams, HNCAEnv

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*-v\d+$")
_REGISTRY: dict[str, Callable[..., HNCAEnv]] = {}


def register(env_id: str, factory: Callable[..., HNCAEnv], *, overwrite: bool = False) -> None:
    """Register ``factory`` under a versioned id such as ``"MyTask-v0"``."""
    if not isinstance(env_id, str) or not _ID.match(env_id):
        raise ValueError(f"env id {env_id!r} must look like 'Name-v0' (a name and a version)")
    if env_id in _REGISTRY and not overwrite:
        raise ValueError(f"env id {env_id!r} is already registered (pass overwrite=True)")
    if not callable(factory):
        raise TypeError("factory must be callable")
    _REGISTRY[env_id] = factory


def registered_envs() -> list[str]:
    """All registered ids, sorted."""
    return sorted(_REGISTRY)


def make(env_id: str, **overrides: Any) -> tuple[HNCAEnv, EnvParams]:
    """Build a registered env and its default params, with overrides applied.

    Overrides named like an ``EnvParams`` field go to the params; the rest go to the factory
    (the constructor). The params overrides are the env's ``default_params`` as well (given to
    the constructor as ``default_overrides``, after any the caller passed there), so
    ``env.reset(key)`` without params runs them; the returned params are
    ``env.default_params``. An unknown id or name raises ``ValueError``.
    """
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown env id {env_id!r}; registered: {registered_envs()}")
    factory = _REGISTRY[env_id]
    param_fields = set(EnvParams.__dataclass_fields__)
    p_over = {k: v for k, v in overrides.items() if k in param_fields}
    c_over = {k: v for k, v in overrides.items() if k not in param_fields}
    accepted = _accepted_kwargs(factory)
    if accepted is not None:
        bad = set(c_over) - accepted
        if bad:
            raise ValueError(
                f"unknown option(s) {sorted(bad)} for {env_id!r}; constructor options: "
                f"{sorted(accepted)}; EnvParams fields: {sorted(param_fields)}"
            )
    if not p_over:
        env = factory(**c_over)
        return env, env.default_params
    if accepted is None or "default_overrides" in accepted:
        c_over["default_overrides"] = {**(c_over.get("default_overrides") or {}), **p_over}
        env = factory(**c_over)
    else:
        # A factory with a closed signature cannot take them: set them on the built env.
        env = factory(**c_over)
        env._default_params = env.make_params(**p_over)
    return env, env.default_params


def _accepted_kwargs(factory: Callable) -> set[str] | None:
    """Keyword names a factory accepts (``**kwargs`` is followed into HNCAEnv)."""
    sig = inspect.signature(factory)
    names = {p.name for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        names |= set(inspect.signature(HNCAEnv.__init__).parameters) - {"self"}
    return names
