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
