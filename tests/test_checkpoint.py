"""Orbax checkpoints of the pool trainer's carry: round trip, interrupted writes, clear errors
(resuming a run from them: tests/test_loop.py)."""

import jax
import pytest
from conftest import assert_same_state

from agents.checkpoint import Checkpointer


def run(trainer, key, n):
    init, iteration = trainer
    state = init(key)
    for _ in range(n):
        state, _ = iteration(state)
    return state


def test_roundtrip_restores_the_whole_carry(tiny_pool_trainer, tmp_path):
    state = run(tiny_pool_trainer, jax.random.key(0), 2)
    with Checkpointer(tmp_path / "ck") as ck:
        assert ck.save(state, {"elapsed": 1.5}) == 2
    with Checkpointer(tmp_path / "ck") as ck:  # a new process would open it afresh
        back, meta, step = ck.restore(jax.eval_shape(tiny_pool_trainer[0], jax.random.key(0)))
    assert (step, meta) == (2, {"elapsed": 1.5})
    assert_same_state(back, state)  # params, Adam moments, pool, key, iteration
    assert jax.random.key_impl(back.key) == jax.random.key_impl(state.key)


def test_interrupted_write_keeps_the_last_complete_checkpoint(tiny_pool_trainer, tmp_path):
    d = tmp_path / "ck"
    s2 = run(tiny_pool_trainer, jax.random.key(0), 2)
    s4 = run(tiny_pool_trainer, jax.random.key(0), 4)
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
    template = jax.eval_shape(tiny_pool_trainer[0], jax.random.key(0))
    with Checkpointer(d, max_to_keep=2) as ck:
        state, _, step = ck.restore(template)
        assert step == 4
        assert_same_state(state, s4)
        ck.discard_after(step)  # what resuming does before it saves again
        assert ck.steps() == [2, 4]
        s6 = run(tiny_pool_trainer, jax.random.key(0), 6)
        ck.save(s6)
        assert ck.steps() == [4, 6]
    assert not partial.exists()  # temporary leftovers are cleaned up (in the background)
    with Checkpointer(d) as ck:
        assert_same_state(ck.restore(template)[0], s6)


def test_no_checkpoint_is_a_clear_error(tiny_pool_trainer, tmp_path):
    with (
        Checkpointer(tmp_path / "empty") as ck,
        pytest.raises(FileNotFoundError, match="no complete checkpoint"),
    ):
        ck.restore(jax.eval_shape(tiny_pool_trainer[0], jax.random.key(0)))


