"""Orbax checkpoints of a trainer's carry (:class:`agents.pool.PoolState`), safe to interrupt.

What is saved is the whole carry — policy parameters, optimiser state, the pool of world
states, the PRNG key and the iteration — as a plain nested dict of arrays
(``flax.serialization.to_state_dict``; PRNG keys as their raw ``key_data``), plus a small JSON
``meta`` record (e.g. the wall time so far). A checkpoint is the step directory
``<dir>/<iteration>/``.

Why an interrupted write never costs the last good checkpoint: Orbax writes each step into a
temporary directory (``<step>.orbax-checkpoint-tmp-*``) and renames it into place only when
every file is written, so a step directory either is complete or does not exist; temporary
leftovers are ignored and cleaned up. On top of that, :meth:`Checkpointer.restore` falls back
to the next older step when the newest one cannot be read (a directory damaged by other
means), and :meth:`Checkpointer.discard_after` removes such wreckage before training goes on.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

log = logging.getLogger(__name__)

#: Where ``hnca train`` keeps checkpoints inside a run directory.
CHECKPOINT_SUBDIR = "checkpoints"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_tree(state: Any) -> dict:
    """A carry as a nested dict of plain arrays (PRNG keys as ``key_data``)."""
    state = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
    return serialization.to_state_dict(state)


def from_tree(template: Any, tree: dict) -> Any:
    """Inverse of :func:`to_tree`: rebuild ``template``'s structure from ``tree``.

    ``template`` may be abstract (``jax.eval_shape`` of the trainer's ``init``).
    """
    keys = [_is_key(x) for x in jax.tree.leaves(template)]
    plain = jax.tree.map(lambda x: jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x, template)
    state = serialization.from_state_dict(plain, tree)
    leaves, treedef = jax.tree.flatten(state)
    leaves = [jax.random.wrap_key_data(x) if k else x for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints of a carry in ``directory``.

    Example::

        with Checkpointer("runs/x/checkpoints") as ck:
            ck.save(state, meta={"elapsed": 12.5})      # step = int(state.iteration)
            state, meta = ck.restore(template)          # the newest readable step
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be a positive integer, got {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep,
            create=True,
            cleanup_tmp_directories=True,  # leftovers of interrupted writes
            enable_async_checkpointing=False,  # a save returns once the step is in place
        )
        return ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Steps present on disk, oldest first (a damaged one may be among them)."""
        return sorted(self._manager.all_steps())

    def save(self, state: Any, meta: dict | None = None, step: int | None = None) -> int:
        """Write ``state`` (and the JSON-able ``meta``) as ``step`` (default: its iteration)."""
        step = int(state.iteration) if step is None else int(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(to_tree(state)), meta=ocp.args.JsonSave(dict(meta or {}))
        )
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return step

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """Load a checkpoint into ``template``'s structure: ``(state, meta, step)``.

        Without ``step``, the newest step that reads back completely; a step that fails to read
        is logged and skipped. Raises ``FileNotFoundError`` when there is none.
        """
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        abstract = jax.eval_shape(to_tree, template)
        errors = []
        for s in candidates:
            try:
                out = self._manager.restore(
                    s,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
            except Exception as e:  # a damaged or incomplete step: try the next older one
                log.warning(
                    "checkpoint step %s in %s is unreadable (%s); trying an older one", s, self.directory, e
                )
                errors.append(f"{s}: {type(e).__name__}")
                continue
            return from_tree(template, out.state), dict(out.meta or {}), int(s)
        detail = f" (unreadable: {', '.join(errors)})" if errors else ""
        raise FileNotFoundError(f"no complete checkpoint in {self.directory}{detail}")

    def discard_after(self, step: int) -> None:
        """Delete every step directory newer than ``step`` (wreckage of an interrupted run)."""
        newer = [s for s in self.steps() if s > step]
        if not newer:
            return
        self._manager.close()
        for s in newer:
            shutil.rmtree(os.path.join(self.directory, str(s)), ignore_errors=True)
        self._manager = self._open()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
