"""Spread the worlds axis over devices with ``jax.sharding`` (a ``Mesh`` and ``NamedSharding``).

Worlds are the batch axis, and every function of the env works on one world, so scaling out
is a matter of placing the leading (worlds) axis of the batched arrays across devices and
letting ``jax.jit`` partition the vmapped program (GSPMD). No code is forked: the same
``reset``/``step``, the same rollouts and trainers run sharded or not.

Example (4 devices; on a CPU try ``XLA_FLAGS=--xla_force_host_platform_device_count=4``)::

    mesh = world_mesh()                                   # all devices, axis "worlds"
    keys = shard_worlds(jax.random.split(key, 1024), mesh)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    # obs, state are now sharded over the 4 devices, 256 worlds each; step them the same way.

Many hosts: call ``jax.distributed.initialize()`` first on every host; ``world_mesh()`` then
spans all hosts' devices (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

WORLDS = "worlds"


def world_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh named ``"worlds"`` over ``devices`` (default: every device)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("world_mesh needs at least one device")
    return Mesh(np.asarray(devices), (WORLDS,))


def world_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh's ``"worlds"`` axis, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(WORLDS))


def _check_divisible(tree: Any, mesh: Mesh) -> None:
    n = mesh.shape[WORLDS]
    for leaf in jax.tree.leaves(tree):
        shape = np.shape(leaf)
        if not shape or shape[0] % n:
            raise ValueError(
                f"cannot shard an array of shape {shape} over {n} devices: its leading (worlds) "
                f"axis must be a multiple of {n}"
            )


def shard_worlds(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf's leading axis across the mesh (``None``: leave as is)."""
    if mesh is None:
        return tree
    _check_divisible(tree, mesh)
    return jax.device_put(tree, world_sharding(mesh))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Put a full copy of every leaf on every device of the mesh (``None``: leave as is)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def constrain_worlds(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Inside ``jit``: ask for the leading axis (or ``axis``) of every leaf to be split over
    the mesh.

    A no-op without a mesh, so a trainer can call it unconditionally.
    """
    if mesh is None:
        return tree
    if axis == 0:
        _check_divisible(tree, mesh)
        return jax.lax.with_sharding_constraint(tree, world_sharding(mesh))
    spec = NamedSharding(mesh, PartitionSpec(*([None] * axis), WORLDS))
    return jax.lax.with_sharding_constraint(tree, spec)
