"""Orbax checkpoints of the pool trainer's carry, interrupted writes, exact resumption."""

import json
import os

import jax
import numpy as np
import pytest

import hnca_env
from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from agents.loop import METRICS_FILE, read_metrics, train_loop
from agents.pool import PoolConfig, make_pool_trainer


@pytest.fixture(scope="module")
def trainer():
    env, params = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8)
    cfg = PoolConfig(pool_size=8, batch_size=4, min_steps=2, max_steps=4, hidden={"cell": 8}, damage=1)
    init, iteration, _ = make_pool_trainer(env, params, cfg)
    return init, iteration


def leaves(state):
    """Every leaf of a carry as NumPy (PRNG keys as their data)."""
    out = []
    for x in jax.tree.leaves(state):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def assert_same_state(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def run(trainer, key, n):
    init, iteration = trainer
    state = init(key)
    for _ in range(n):
        state, _ = iteration(state)
    return state


def test_roundtrip_restores_the_whole_carry(trainer, tmp_path):
    state = run(trainer, jax.random.key(0), 2)
    with Checkpointer(tmp_path / "ck") as ck:
        assert ck.save(state, {"elapsed": 1.5}) == 2
    with Checkpointer(tmp_path / "ck") as ck:  # a new process would open it afresh
        back, meta, step = ck.restore(jax.eval_shape(trainer[0], jax.random.key(0)))
    assert (step, meta) == (2, {"elapsed": 1.5})
    assert_same_state(back, state)  # params, Adam moments, pool, key, iteration
    assert jax.random.key_impl(back.key) == jax.random.key_impl(state.key)


def test_interrupted_write_keeps_the_last_complete_checkpoint(trainer, tmp_path):
    d = tmp_path / "ck"
    s2 = run(trainer, jax.random.key(0), 2)
    s4 = run(trainer, jax.random.key(0), 4)
    with Checkpointer(d, max_to_keep=2) as ck:
        ck.save(s2)
        ck.save(s4)
    # A write killed before Orbax's final rename leaves a temporary directory; one torn by
    # other means (a copy, a full disk) leaves a step directory without its data.
    partial = d / "6.orbax-checkpoint-tmp-1700000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "half_written").write_bytes(b"\x00" * 10)
    (d / "8" / "state").mkdir(parents=True)
    (d / "8" / "state" / "manifest.ocdbt").write_bytes(b"garbage")
    template = jax.eval_shape(trainer[0], jax.random.key(0))
    with Checkpointer(d, max_to_keep=2) as ck:
        state, _, step = ck.restore(template)
        assert step == 4
        assert_same_state(state, s4)
        ck.discard_after(step)  # what resuming does before it saves again
        assert ck.steps() == [2, 4]
        s6 = run(trainer, jax.random.key(0), 6)
        ck.save(s6)
        assert ck.steps() == [4, 6]
    assert not partial.exists()  # temporary leftovers are cleaned up (in the background)
    with Checkpointer(d) as ck:
        assert_same_state(ck.restore(template)[0], s6)


def test_no_checkpoint_is_a_clear_error(trainer, tmp_path):
    with (
        Checkpointer(tmp_path / "empty") as ck,
        pytest.raises(FileNotFoundError, match="no complete checkpoint"),
    ):
        ck.restore(jax.eval_shape(trainer[0], jax.random.key(0)))


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


def test_resume_equals_uninterrupted(trainer, tmp_path):
    init, iteration = trainer
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


def test_ctrl_c_saves_the_current_carry(trainer, tmp_path):
    init, iteration = trainer

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


def test_fresh_run_replaces_an_old_one(trainer, tmp_path):
    init, iteration = trainer
    kw = dict(log_every=1, checkpoint_every=2, progress=False)
    train_loop(init, iteration, jax.random.key(0), 4, out=tmp_path, **kw)
    train_loop(init, iteration, jax.random.key(0), 2, out=tmp_path, **kw)
    assert [r["iteration"] for r in read_metrics(tmp_path / METRICS_FILE)] == [0, 1]
    assert sorted(os.listdir(tmp_path / CHECKPOINT_SUBDIR)) == ["2"]
    (tmp_path / METRICS_FILE).write_text(json.dumps({"iteration": 0}) + '\n{"iteration": 1, "lo')
    assert read_metrics(tmp_path / METRICS_FILE) == [{"iteration": 0}]  # a torn last line
