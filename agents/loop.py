"""The host loop around a jitted trainer iteration: progress bar, ``metrics.jsonl``, Orbax
checkpoints and exact resumption.

The iteration itself stays pure (``iteration(state) -> (state, metrics)``, see
:mod:`agents.pool`); this loop only calls it, logs, and saves. Because the whole carry is
checkpointed (:mod:`agents.checkpoint`) and the iteration is a deterministic function of it,
a resumed run computes the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax

from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer

Array = jax.Array

#: One JSON object per logged iteration: ``iteration``, the trainer's metrics, ``time`` (s).
METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (a torn last line, from a crash mid-write, is dropped)."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def _write_rows(path: str, rows: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


def _row(i: int, metrics: dict, elapsed: float) -> dict:
    row: dict[str, Any] = {"iteration": i}
    for k, v in metrics.items():
        v = jax.device_get(v)
        if getattr(v, "dtype", None) is not None and v.dtype.kind in "iu":
            row[k] = int(v)
        else:  # NaN (e.g. no episode ended in this iteration) is written as null: valid JSON
            row[k] = float(v) if math.isfinite(float(v)) else None
    row["time"] = round(elapsed, 3)
    return row


def train_loop(
    init: Callable[[Array], Any],
    iteration: Callable[[Any], tuple[Any, dict]],
    key: Array,
    iterations: int,
    *,
    out: str | os.PathLike | None = None,
    log_every: int = 10,
    checkpoint_every: int = 0,
    max_to_keep: int = 3,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    postfix: tuple[str, ...] = ("loss",),
) -> tuple[Any, list[dict]]:
    """Run ``iteration`` until the carry's ``iteration`` reaches ``iterations``.

    Args:
      init, iteration: a trainer (``agents.pool.make_pool_trainer``); the carry must have an
        integer ``iteration`` field.
      key: PRNG key for ``init`` (unused when resuming: the key is in the checkpoint).
      out: run directory for ``metrics.jsonl`` and ``checkpoints/`` (``None``: nothing written).
      log_every: log iterations ``i`` with ``i % log_every == 0`` and the last one.
      checkpoint_every: save the carry every this many iterations and at the end (0: never).
      max_to_keep: checkpoints kept (oldest deleted first).
      resume: continue from the newest complete checkpoint in ``out``: ``metrics.jsonl`` is cut
        back to the checkpoint's iteration and appended to. Without ``resume`` an existing
        run in ``out`` is overwritten.

    Returns ``(state, history)``: the final carry and every logged row of the run (earlier
    rows included when resuming).
    """
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    if log_every < 1 or checkpoint_every < 0:
        raise ValueError("log_every must be >= 1 and checkpoint_every >= 0")
    if resume and out is None:
        raise ValueError("resume needs a run directory (out)")
    ck = None
    metrics_path = None
    history: list[dict] = []
    elapsed0 = 0.0
    if out is not None:
        os.makedirs(out, exist_ok=True)
        metrics_path = os.path.join(out, METRICS_FILE)
        ck_dir = os.path.join(out, CHECKPOINT_SUBDIR)
        if not resume and os.path.isdir(ck_dir):
            shutil.rmtree(ck_dir)  # a fresh run replaces the old one
        if checkpoint_every or resume:
            ck = Checkpointer(ck_dir, max_to_keep=max_to_keep)
    try:
        if resume:
            state, meta, step = ck.restore(jax.eval_shape(init, key))
            ck.discard_after(step)
            elapsed0 = float(meta.get("elapsed", 0.0))
            history = [r for r in read_metrics(metrics_path) if r["iteration"] < step]
            _write_rows(metrics_path, history)
        else:
            state = init(key)
            if metrics_path is not None:
                _write_rows(metrics_path, [])
        start = int(state.iteration)
        if start > iterations:
            raise ValueError(f"the checkpoint is at iteration {start}, beyond iterations={iterations}")
        t0 = time.perf_counter()
        elapsed = lambda: elapsed0 + time.perf_counter() - t0  # noqa: E731
        mf = open(metrics_path, "a") if metrics_path is not None else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=iterations, initial=start, desc=desc, unit="it")
        try:
            for i in range(start, iterations):
                state, m = iteration(state)
                if i % log_every == 0 or i == iterations - 1:
                    row = _row(i, m, elapsed())
                    history.append(row)
                    if mf is not None:
                        mf.write(json.dumps(row) + "\n")
                        mf.flush()
                    if bar is not None:
                        bar.set_postfix({k: f"{row[k]:.4g}" for k in postfix if row.get(k) is not None})
                n = i + 1
                if ck is not None and checkpoint_every and (n % checkpoint_every == 0 or n == iterations):
                    ck.save(state, {"elapsed": round(elapsed(), 3)})
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            # ``state`` is the carry after the last finished iteration: keep it (unless an
            # iteration that donates its input was interrupted after taking it).
            deleted = any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))
            if ck is not None and not deleted and int(state.iteration) not in ck.steps():
                ck.save(state, {"elapsed": round(elapsed(), 3)})
            raise
        finally:
            if bar is not None:
                bar.close()
            if mf is not None:
                mf.close()
    finally:
        if ck is not None:
            ck.close()
    return state, history
