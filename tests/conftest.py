"""Shared fixtures, and the compiler settings the suite runs under.

The suite compiles hundreds of small XLA programs on grids of a few hundred cells, and on the CPU
compiling is most of its time, running them little. So it compiles with two of XLA's settings
changed (``TEST_XLA_FLAGS``):

- the backend (LLVM) optimisation level 0 instead of the default 3: each compile takes about half
  as long, the code it makes runs slower, and the suite as a whole takes about a quarter less time
  (one run of four test files, one core each: 538 s at level 2, 398 s at level 0);
- XLA's older CPU code generator for fusions instead of the newer "fusion emitters"
  (``--xla_cpu_use_fusion_emitters=false``): at level 0 it makes far less code for LLVM to
  compile (benchmarks/reproduce.py's quick Metamorphosis run, one core: 33.6 s -> 13.8 s;
  tests/test_golden.py: 98 s -> 49 s). At XLA's default level it is the slower of the two (75.7 s
  on that run), so it goes only with level 0. A jaxlib that no longer knows the flag would abort
  on it, so it is added only after a subprocess has started JAX with it.

Results change only at float32 round-off: every golden entry stays within the cross-machine
tolerance of tests/test_golden.py (measured with both settings: the largest deviation is 0.45 of
it, the same as without the second). On the machine that recorded the goldens they must match
bit for bit what users run, so there tests/test_golden.py compares them in subprocesses at XLA's
defaults (``HNCA_TESTS_XLA_DEFAULTS=1``, which also turns the settings off here). An
``XLA_FLAGS`` that already names the level is left alone.

The tests also share one on-disk XLA compilation cache per run (below).
"""

import os

#: the XLA settings the suite compiles under (see above); tests/test_golden.py removes them for its
#: bit-for-bit subprocesses
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
XLA_DEFAULTS = os.environ.get("HNCA_TESTS_XLA_DEFAULTS") == "1"


def _jax_starts_with(flags: str) -> bool:
    import subprocess
    import sys

    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(2)).block_until_ready()"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.SubprocessError):  # could not tell: leave the setting out
        return False


if not XLA_DEFAULTS and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # must precede jax's first use of its CPU backend (this file is imported before any test);
    # the xdist workers and the tests' subprocesses inherit the result and skip this
    level0 = (os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS[0]).strip()
    both = level0 + " " + TEST_XLA_FLAGS[1]
    os.environ["XLA_FLAGS"] = both if _jax_starts_with(both) else level0

# One on-disk XLA compilation cache per test run, shared by the xdist workers and the
# subprocesses the tests start (they inherit the environment from the process that made it):
# many tests build the same small programs anew (a trainer per test, an `hnca train` per run),
# which then compile once. It starts empty on every run, so every program still compiles at
# least once in each run; a hit loads the executable that the same compile produced. Removed
# when the run ends. HNCA_TESTS_COMPILE_CACHE=0 turns it off; a JAX_COMPILATION_CACHE_DIR
# already set is used as it is (and kept).
OWN_COMPILE_CACHE = None
if os.environ.get("HNCA_TESTS_COMPILE_CACHE", "1") != "0" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    OWN_COMPILE_CACHE = tempfile.mkdtemp(prefix="hnca-tests-xla-cache-")
    # at the exit of the process that made it (the xdist controller, or the only process), after
    # the workers have stopped; also when the run fails before it starts
    atexit.register(shutil.rmtree, OWN_COMPILE_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = OWN_COMPILE_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import hnca_env  # noqa: E402


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


def suite_ids() -> set[str]:
    """Ids registered by the task modules (not by tests that register their own, such as
    tests/test_registry_and_errors.py, whose ids stay in the process's registry)."""
    import hnca_env
    from hnca_env import registry

    def module(f):
        return getattr(getattr(f, "func", f), "__module__", "")

    return {i for i, f in registry._REGISTRY.items() if module(f) in hnca_env.tasks.TASK_MODULES}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished 4-iteration ``hnca train`` run (checkpoints 2 and 4), shared by
    tests/test_cli_and_readme.py and tests/test_reliability.py (which damage copies of it)."""
    from agents.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["train", "--iterations", "4", "--out", str(out), *TINY_TRAIN]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_pool_trainer():
    """``(init, iteration)`` of a tiny pool trainer (12x12 Grow, pool of 8, hidden 8), shared by
    tests/test_checkpoint.py and tests/test_loop.py."""
    from agents.pool import PoolConfig, make_pool_trainer

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


def assert_trees_close(a, b, **tol):
    """Two pytrees of the same structure, leaf for leaf within ``np.testing.assert_allclose``'s
    tolerances ``tol``."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def assert_same_state(a, b):
    """Two carries (pytrees) equal leaf for leaf: structure, dtypes and bits."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


#: the slowest tests (``pytest --durations``), started first so that the two xdist workers do
#: not end on one long test each while the other idles; the order within is by duration
SLOW_FIRST = (
    "test_golden.py::test_goldens_at_xla_defaults",
    "test_sharding.py::test_sharded_equals_unsharded",
    "test_ppo.py::test_hnca_train_ppo_resume_and_eval",
    "test_reproduce.py::test_quick_mode_writes_the_record",
    "test_levels.py::test_both_trainers_train_a_three_level_env",
    "test_es.py::test_hnca_train_es_resume",
    "test_es.py::test_es_scales_quick",
    "test_ppo.py::test_docs_rl_ppo_block_runs",
    "test_benchmark.py::test_hnca_bench_quick",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return next((i for i, name in enumerate(SLOW_FIRST) if name in item.nodeid), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
