import jax
import pytest

import hnca_env


@pytest.fixture(scope="session")
def grow_env():
    """Small Growing-NCA mode env (one level, RGBA, alive mask)."""
    return hnca_env.make("Grow-v0", grid=(16, 16), target_size=10)


@pytest.fixture(scope="session")
def hnca_small():
    """Small H-NCA mode env (two levels), parent starting after 2 child-only steps."""
    return hnca_env.make("HNCA-Grow-v0", grid=(16, 16), tau_c=2, max_steps_in_episode=12)


def random_action(env, params, key):
    return dict(env.action_space(params).sample(key))


@pytest.fixture
def key():
    return jax.random.key(0)


#: ``hnca train`` options of a tiny pool run (12x12 Grow, pool of 8, 2-3 steps, checkpoints 2 and 4)
TINY_TRAIN = ["--grid", "12", "--target-size", "8", "--pool-size", "8", "--hidden", "8"]
TINY_TRAIN += ["--min-steps", "2", "--max-steps", "3", "--log-every", "1", "--checkpoint-every", "2"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished 4-iteration ``hnca train`` run (checkpoints 2 and 4), shared by
    tests/test_cli_and_readme.py and tests/test_reliability.py (which damage copies of it)."""
    from agents.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["train", "--iterations", "4", "--out", str(out), *TINY_TRAIN]) == 0
    return out
