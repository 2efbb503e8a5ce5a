"""agents/es.py: flattening round trip, determinism per key, config errors, learning."""

import jax
import numpy as np
import pytest

from agents.es import ESConfig, flatten, make_es

SMALL = dict(
    task="Grow-v0",
    env_kwargs={"grid": (12, 12), "target": "disc", "target_size": 8},
    population=8,
    worlds=2,
    steps=6,
    hidden={"cell": 8},
)


def test_flatten_round_trip():
    _, _, init, _, apply = make_es(ESConfig(**SMALL))
    params = init(jax.random.key(0)).params
    flat, unravel = flatten(params)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert flat.shape == (n,)
    back = unravel(flat)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("algorithm", ["open_es", "snes", "sep_cma_es"])
def test_deterministic_per_key_and_finite(algorithm):
    _, _, init, iteration, _ = make_es(ESConfig(**SMALL, algorithm=algorithm))
    runs = []
    for _ in range(2):
        s = init(jax.random.key(3))
        for _ in range(2):
            s, m = iteration(s)
        runs.append((flatten(s.params)[0], m))
    np.testing.assert_array_equal(np.asarray(runs[0][0]), np.asarray(runs[1][0]))
    assert all(np.isfinite(float(v)) for v in runs[0][1].values())
    assert int(s.iteration) == 2
    other = init(jax.random.key(4))
    assert not np.array_equal(np.asarray(flatten(iteration(other)[0].params)[0]), np.asarray(runs[0][0]))


def test_open_es_lowers_the_loss():
    env, env_params, init, iteration, apply = make_es(
        ESConfig(**{**SMALL, "population": 16}, sigma=0.1, lr=0.05)
    )
    s = init(jax.random.key(0))
    first = None
    for _ in range(15):
        s, m = iteration(s)
        first = float(m["loss"]) if first is None else first
    assert float(m["loss"]) < first


def test_return_fitness_runs():
    _, _, init, iteration, _ = make_es(ESConfig(**SMALL, fitness="return"))
    s, m = iteration(init(jax.random.key(0)))
    assert float(m["loss"]) >= 0.0  # the cost: minus the mean team reward (a pattern task's is <= 0)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"algorithm": "cma"}, "algorithm"),
        ({"fitness": "reward"}, "fitness"),
        ({"population": 7}, "even"),
        ({"population": 0}, "population"),
        ({"worlds": 0}, "worlds"),
        ({"steps": 0}, "steps"),
        ({"sigma": 0.0}, "sigma"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ESConfig(**{**SMALL, **bad})


def test_config_round_trip():
    cfg = ESConfig(**SMALL, algorithm="snes")
    assert ESConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ESConfig"):
        ESConfig.from_dict({"populaton": 8})
