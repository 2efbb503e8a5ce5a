"""The training loop (agents.loop.train_loop): metrics, checkpoints, exact resumption, Ctrl-C."""

import json
import os

import jax
import pytest
from conftest import assert_same_state

from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from agents.loop import METRICS_FILE, read_metrics, train_loop


class Crash(Exception):
    pass


def crashing(iteration, at_call):
    calls = {"n": 0}

    def it(state):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Crash
        return iteration(state)

    return it


def test_resume_equals_uninterrupted(tiny_pool_trainer, tmp_path):
    init, iteration = tiny_pool_trainer
    key = jax.random.key(3)
    kw = dict(log_every=1, checkpoint_every=2, progress=False)
    straight, hist = train_loop(init, iteration, key, 6, out=tmp_path / "a", **kw)

    # stop during iteration 3: iterations 0-2 are logged, the newest checkpoint is at 2
    with pytest.raises(Crash):
        train_loop(init, crashing(iteration, 4), key, 6, out=tmp_path / "b", **kw)
    assert [r["iteration"] for r in read_metrics(tmp_path / "b" / METRICS_FILE)] == [0, 1, 2]
    resumed, hist_b = train_loop(
        init, iteration, jax.random.key(99), 6, out=tmp_path / "b", resume=True, **kw
    )

    assert_same_state(resumed, straight)
    rows_a = read_metrics(tmp_path / "a" / METRICS_FILE)
    rows_b = read_metrics(tmp_path / "b" / METRICS_FILE)
    assert [r["iteration"] for r in rows_b] == list(range(6))  # cut back to 2, then appended
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(rows_b) == strip(rows_a) == strip(hist) == strip(hist_b)
    assert all(b["time"] >= a["time"] for a, b in zip(rows_b, rows_b[1:]))  # the clock carries on
    assert sorted(os.listdir(tmp_path / "b" / CHECKPOINT_SUBDIR)) == ["2", "4", "6"]


def test_ctrl_c_saves_the_current_carry(tiny_pool_trainer, tmp_path):
    init, iteration = tiny_pool_trainer

    def interrupt_at_3(state):
        if int(state.iteration) == 3:
            raise KeyboardInterrupt
        return iteration(state)

    with pytest.raises(KeyboardInterrupt):
        train_loop(
            init, interrupt_at_3, jax.random.key(0), 10, out=tmp_path, checkpoint_every=100, progress=False
        )
    with Checkpointer(tmp_path / CHECKPOINT_SUBDIR) as ck:
        assert ck.steps() == [3]


def test_fresh_run_replaces_an_old_one(tiny_pool_trainer, tmp_path):
    init, iteration = tiny_pool_trainer
    kw = dict(log_every=1, checkpoint_every=2, progress=False)
    train_loop(init, iteration, jax.random.key(0), 4, out=tmp_path, **kw)
    train_loop(init, iteration, jax.random.key(0), 2, out=tmp_path, **kw)
    assert [r["iteration"] for r in read_metrics(tmp_path / METRICS_FILE)] == [0, 1]
    assert sorted(os.listdir(tmp_path / CHECKPOINT_SUBDIR)) == ["2"]
    (tmp_path / METRICS_FILE).write_text(json.dumps({"iteration": 0}) + '\n{"iteration": 1, "lo')
    assert read_metrics(tmp_path / METRICS_FILE) == [{"iteration": 0}]  # a torn last line
