"""Orbax checkpoints of a trainer's carry (:class:`agents.pool.PoolState`), safe to interrupt.

What is saved is the whole carry — policy parameters, optimiser state, the pool of world
states, the PRNG key and the iteration — as a plain nested dict of arrays
(``flax.serialization.to_state_dict``; PRNG keys as their raw ``key_data``), plus a small JSON
``meta`` record (e.g. the wall time so far). A checkpoint is the step directory
``<dir>/<iteration>/``.

Why an interrupted write never costs the last good checkpoint: Orbax writes each step into a
temporary directory (``<step>.orbax-checkpoint-tmp-*``) and renames it into place only when
every file is written, so a step directory either is complete or does not exist; temporary
leftovers are ignored and cleaned up. Ctrl-C during a save is held until the save (and the
deletion of the oldest step) is done, so an interrupted run keeps ``max_to_keep`` steps.

Damage by other means (a torn copy, a full disk, a bad sector): each step directory gets a
manifest of its files' sizes and CRC-32s (``hnca_files.json``) once it is in place, and
:meth:`Checkpointer.restore` checks it before Orbax reads anything, so a damaged step is
skipped with one short log line instead of Orbax's tracebacks; it falls back to the next older
step, and :meth:`Checkpointer.discard_after` removes such wreckage before training goes on.
Steps without a manifest (written by older versions) are left to Orbax to judge; the
tracebacks a failed Orbax read leaves behind are dropped (:func:`_orbax_quiet`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

log = logging.getLogger(__name__)

#: Where ``hnca train`` keeps checkpoints inside a run directory.
CHECKPOINT_SUBDIR = "checkpoints"
#: Inside a step directory: ``{relative path: [size in bytes, CRC-32]}`` of its other files.
MANIFEST = "hnca_files.json"


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def file_manifest(step_dir: str) -> dict[str, list[int]]:
    """Sizes and CRC-32s of every file under ``step_dir`` (the manifest itself excepted)."""
    out = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel != MANIFEST:
                out[rel] = [os.path.getsize(path), _crc32(path)]
    return out


def damage(step_dir: str) -> str | None:
    """Why ``step_dir`` does not match its manifest, or ``None`` (also when it has none)."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            want = json.load(f)
    except (OSError, ValueError):
        return f"{MANIFEST} is unreadable"
    for rel, (size, crc) in sorted(want.items()):
        file = os.path.join(step_dir, rel)
        if not os.path.isfile(file):
            return f"{rel} is missing"
        if os.path.getsize(file) != size:
            return f"{rel} has {os.path.getsize(file)} bytes, expected {size}"
        if _crc32(file) != crc:
            return f"{rel} does not match its checksum"
    return None


def _short(e: Exception) -> str:
    """One line of an exception: Orbax's carry kilobytes of TensorStore specs."""
    text = (str(e).splitlines() or [""])[0].split(" See full TensorStore details")[0]
    return f"{type(e).__name__}: {text[:160]}"


def _without_orbax_read_noise(previous: Any) -> Any:
    """``previous`` (an unraisable-exception hook) minus the tracebacks a failed Orbax read
    leaves behind: its other reads finish on TensorStore's threads after Orbax has closed its
    event loop and report to it anyway (``RuntimeError: Event loop is closed``, dozens), and
    its read coroutines fail again when they are finalised."""

    def hook(unraisable) -> None:
        closed_loop = isinstance(unraisable.exc_value, RuntimeError) and (
            str(unraisable.exc_value) == "Event loop is closed"
        )
        code = getattr(unraisable.object, "cr_code", None)  # a coroutine being finalised
        orbax_read = code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename
        if not (closed_loop or orbax_read):
            previous(unraisable)

    return hook


@contextlib.contextmanager
def _orbax_quiet(reading: bool = False) -> Iterator[None]:
    """Silence Orbax's log (``absl``) while it lists or reads steps: a damaged step makes it log
    file contents and TensorStore specs, and :meth:`Checkpointer.restore` says why it skipped
    the step in one line of its own. ``reading``: also drop the tracebacks of a failed read,
    for the rest of the process when it fails (they keep coming after the failure)."""
    logger, hook = logging.getLogger("absl"), sys.unraisablehook
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    if reading:
        sys.unraisablehook = _without_orbax_read_noise(hook)
    try:
        yield
    except BaseException:
        hook = sys.unraisablehook  # keep the filter
        raise
    finally:
        logger.setLevel(level)
        sys.unraisablehook = hook


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done, then deliver it.

    Delivered inside Orbax's save, a KeyboardInterrupt landed between writing the new step and
    deleting the oldest (``hnca train --keep 3`` then left 4 steps) or in the middle of the
    write (a temporary directory the loop's own save-on-Ctrl-C then tripped over).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # signal handlers can only be set from the main thread (and from Python)
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        if callable(previous):
            previous(signal.SIGINT, held[0])  # the default handler raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


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
        with _orbax_quiet():  # it reads each step's metadata
            return ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Steps present on disk, oldest first (a damaged one may be among them)."""
        return sorted(self._manager.all_steps())

    def save(self, state: Any, meta: dict | None = None, step: int | None = None) -> int:
        """Write ``state`` (and the JSON-able ``meta``) as ``step`` (default: its iteration),
        then the step's manifest. Ctrl-C meanwhile is raised once the save is complete."""
        step = int(state.iteration) if step is None else int(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(to_tree(state)), meta=ocp.args.JsonSave(dict(meta or {}))
        )
        with _sigint_held():
            self._manager.save(step, args=args, force=True)
            self._manager.wait_until_finished()
            step_dir = os.path.join(self.directory, str(step))
            manifest, tmp = file_manifest(step_dir), os.path.join(step_dir, f"{MANIFEST}.tmp")
            with open(tmp, "w") as f:
                json.dump(manifest, f)
            os.replace(tmp, os.path.join(step_dir, MANIFEST))
        return step

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """Load a checkpoint into ``template``'s structure: ``(state, meta, step)``.

        Without ``step``, the newest step that reads back completely; damaged steps are skipped
        (one log line when an older step is used). Raises ``FileNotFoundError`` when there is
        none, saying why each step was skipped.
        """
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        # onto this process's first device, whatever devices the run was saved from (a run
        # trained on a mesh of host devices reads back in a one-device process; a trainer
        # on a mesh places the carry itself: agents.pool)
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), jax.eval_shape(to_tree, template)
        )
        skipped = []
        for s in candidates:
            why = damage(os.path.join(self.directory, str(s)))  # before Orbax reads anything
            if why is None:
                args = ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                )
                try:
                    with _orbax_quiet(reading=True):
                        out = self._manager.restore(s, args=args)
                except Exception as e:  # damaged without a manifest to tell: try an older step
                    why = _short(e)
            if why is not None:
                skipped.append(f"step {s} is damaged ({why})")
                continue
            if skipped:
                log.warning("checkpoints in %s: %s; restored step %s", self.directory, "; ".join(skipped), s)
            return from_tree(template, out.state), dict(out.meta or {}), int(s)
        detail = f": {'; '.join(skipped)}" if skipped else ""
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
