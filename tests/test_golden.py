"""Golden outputs (tests/golden/record.py): rollouts, gradients and trainers match what was
recorded before the levels-as-data refactor, bit for bit on the recording machine and versions,
to float32 round-off on another processor (XLA's CPU code is not bit-portable).

The suite compiles at XLA's backend (LLVM) optimisation level 0 with the older CPU fusion code
generator (tests/conftest.py), which moves float32 round-off (within the cross-machine tolerance
here, measured on every entry: at most 0.45 of it). Where the bits must
match (the recording machine: its CPU model, core count and versions), the comparisons run at
XLA's defaults instead, in :func:`test_goldens_at_xla_defaults`' subprocesses
(``HNCA_TESTS_XLA_DEFAULTS=1``); elsewhere they run in-process, to the tolerance.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS

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


AT_XLA_DEFAULTS = os.environ.get("HNCA_TESTS_XLA_DEFAULTS") == "1"
#: bit for bit here, so at XLA's defaults: in test_goldens_at_xla_defaults' subprocesses
IN_SUBPROCESS = SAME_MACHINE and not AT_XLA_DEFAULTS
at_defaults = pytest.mark.skipif(
    IN_SUBPROCESS, reason="bit for bit on the recording machine: at XLA's defaults, in test_goldens_at_xla_defaults"
)

#: the ids registered when the goldens were recorded (later ids have none)
GOLDEN_IDS = sorted({k.split("/")[1] for k in GOLDEN if k.startswith("rollout/")})


@at_defaults
@pytest.mark.parametrize("env_id", GOLDEN_IDS)
def test_rollout_and_gradient_match_the_goldens(env_id):
    _compare(record.rollout_entries(env_id), f"rollout/{env_id}")
    _compare(record.grad_entry(env_id), f"grad/{env_id}")


@at_defaults
@pytest.mark.parametrize("env_id", ["Grow-v0", "HNCA-Grow-v0"])
def test_pool_trainer_matches_the_goldens(env_id):
    _compare(record.pool_entries(env_id), f"pool/{env_id}")


@at_defaults
def test_two_stage_matches_the_goldens():
    _compare(record.two_stage_entries(), "two_stage")


@at_defaults
def test_ppo_matches_the_goldens():
    _compare(record.ppo_entries(), "ppo")


def test_every_golden_entry_is_checked():
    groups = {k.split("/")[0] for k in GOLDEN}
    assert groups == {"rollout", "grad", "pool", "two_stage", "ppo"}
    assert len(GOLDEN_IDS) == 12 and set(GOLDEN_IDS) <= set(SMOKE_SETTINGS)


#: the subprocesses' test selections (two, so that the two xdist workers can share them)
GROUPS = {"rollouts": ("rollout_and_gradient", 12), "trainers": ("pool_trainer or two_stage or ppo_matches", 4)}


@pytest.mark.skipif(not IN_SUBPROCESS, reason="compared in-process (another machine: to the tolerance)")
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_goldens_at_xla_defaults(group):
    expr, n = GROUPS[group]
    env = {**os.environ, "HNCA_TESTS_XLA_DEFAULTS": "1"}
    flags = env.get("XLA_FLAGS", "")
    for flag in TEST_XLA_FLAGS:  # the suite's compile settings (tests/conftest.py): back to XLA's defaults
        flags = re.sub(re.escape(flag.split("=")[0]) + r"=\S*", "", flags)
    env["XLA_FLAGS"] = " ".join(flags.split())
    cmd = [sys.executable, "-m", "pytest", __file__, "-n", "0", "-p", "no:cacheprovider", "-k", expr]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0 and f"{n} passed" in out.stdout, out.stdout[-5000:] + out.stderr[-3000:]


def test_a_compile_setting_jax_does_not_know_is_left_out():
    """tests/conftest.py adds the older fusion code generator only after a subprocess started JAX
    with it: XLA aborts on a flag it does not know, which would otherwise end every test."""
    from conftest import _jax_starts_with

    assert not _jax_starts_with("--xla_no_such_flag_hnca=1")
