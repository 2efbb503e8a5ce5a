"""Golden outputs (tests/golden/record.py): rollouts, gradients and trainers match what was
recorded before the levels-as-data refactor, bit for bit on the recording machine and versions,
to float32 round-off on another processor (XLA's CPU code is not bit-portable)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hnca_env.tasks import SMOKE_SETTINGS

_spec = importlib.util.spec_from_file_location("golden_record", Path(__file__).parent / "golden" / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

GOLDEN = dict(np.load(record.GOLDENS))
SAME_MACHINE = json.loads(record.MACHINE.read_text()) == record.machine()


def _compare(got: dict[str, np.ndarray], prefix: str) -> None:
    want = {k: v for k, v in GOLDEN.items() if k == prefix or k.startswith(prefix + "/")}
    assert want, f"no golden entries under {prefix!r}"
    assert sorted(got) == sorted(want), f"{prefix}: entries differ"
    for k, v in want.items():
        assert got[k].shape == v.shape and got[k].dtype == v.dtype, k
        if SAME_MACHINE or v.dtype == bool:
            np.testing.assert_array_equal(got[k], v, err_msg=k)
        else:
            np.testing.assert_allclose(got[k], v, rtol=2e-5, atol=2e-6, err_msg=k)


#: the ids registered when the goldens were recorded (later ids have none)
GOLDEN_IDS = sorted({k.split("/")[1] for k in GOLDEN if k.startswith("rollout/")})


@pytest.mark.parametrize("env_id", GOLDEN_IDS)
def test_rollout_and_gradient_match_the_goldens(env_id):
    _compare(record.rollout_entries(env_id), f"rollout/{env_id}")
    _compare(record.grad_entry(env_id), f"grad/{env_id}")


@pytest.mark.parametrize("env_id", ["Grow-v0", "HNCA-Grow-v0"])
def test_pool_trainer_matches_the_goldens(env_id):
    _compare(record.pool_entries(env_id), f"pool/{env_id}")


def test_two_stage_matches_the_goldens():
    _compare(record.two_stage_entries(), "two_stage")


def test_ppo_matches_the_goldens():
    _compare(record.ppo_entries(), "ppo")


def test_every_golden_entry_is_checked():
    groups = {k.split("/")[0] for k in GOLDEN}
    assert groups == {"rollout", "grad", "pool", "two_stage", "ppo"}
    assert len(GOLDEN_IDS) == 12 and set(GOLDEN_IDS) <= set(SMOKE_SETTINGS)
