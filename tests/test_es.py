"""agents/es.py: flattening round trip, determinism per key, config errors, learning."""

import jax
import jax.numpy as jnp
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
        ({"level_scale": {"cell": 0.0}}, "level_scale"),
    ],
)
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        ESConfig(**{**SMALL, **bad})


def test_config_round_trip():
    cfg = ESConfig(**SMALL, algorithm="snes")
    assert ESConfig.from_dict(cfg.to_dict()) == cfg
    scaled = ESConfig(**SMALL, level_scale={"cell": 0.5})
    assert ESConfig.from_dict(scaled.to_dict()) == scaled
    with pytest.raises(ValueError, match="unknown ESConfig"):
        ESConfig.from_dict({"populaton": 8})


def test_level_scale_scales_a_levels_search():
    """OpenAI-ES's first Adam step moves every searched coordinate by lr (m / sqrt(v) = sign):
    with the cells' scale 0.1 their parameters move by 0.1 x lr; the mean starts at the same
    rule. A level the env does not act with is refused."""
    moves = {}
    for scale in (None, {"cell": 0.1}):
        _, _, init, iteration, _ = make_es(ESConfig(**SMALL, level_scale=scale))
        s0 = init(jax.random.key(1))
        s1, _ = iteration(s0)
        moves[scale is None] = float(jnp.max(jnp.abs(flatten(s1.params)[0] - flatten(s0.params)[0])))
        if scale:
            ref = make_es(ESConfig(**SMALL))[2](jax.random.key(1)).params
            np.testing.assert_allclose(flatten(s0.params)[0], flatten(ref)[0], rtol=1e-6)
    assert moves[True] == pytest.approx(0.03, rel=1e-3) and moves[False] == pytest.approx(0.003, rel=1e-3)
    with pytest.raises(ValueError, match="not acting levels"):
        make_es(ESConfig(**SMALL, level_scale={"parent": 0.1}))


ES_TINY_CLI = [
    "--task", "Grow-v0", "--grid", "10", "--set", "env_kwargs.target=disc", "--set", "env_kwargs.target_size=6",
    "--set", "population=4", "--set", "worlds=1", "--set", "steps=4", "--set", "hidden.cell=4",
    "--set", "env_kwargs.max_steps_in_episode=6",
]  # fmt: skip


def test_hnca_train_es_resume_equals_uninterrupted_and_eval(tmp_path, monkeypatch, capsys):
    """``hnca train --agent es``: outputs, an exact resume after an interruption, ``hnca eval``."""
    from agents import loop
    from agents.cli import main
    from agents.loop import read_metrics

    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["train", "--agent", "es", "--iterations", "4", "--checkpoint-every", "2", "--log-every", "1"]
    assert main([*common, "--out", str(full), *ES_TINY_CLI]) == 0
    for name in ("config.json", "metrics.jsonl", "params.msgpack", "rollout.gif", "summary.json", "loss.png"):
        assert (full / name).exists(), name
    rows = read_metrics(full / "metrics.jsonl")
    real = loop.train_loop

    def interrupted(init, iteration, *a, **kw):  # Ctrl-C during the third generation
        calls = {"n": 0}

        def it(state):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return iteration(state)

        return real(init, it, *a, **kw)

    monkeypatch.setattr(loop, "train_loop", interrupted)
    assert main([*common, "--out", str(cut), *ES_TINY_CLI]) == 130
    monkeypatch.setattr(loop, "train_loop", real)
    assert main(["train", "--resume", str(cut)]) == 0
    resumed = read_metrics(cut / "metrics.jsonl")
    assert [r["iteration"] for r in resumed] == [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert [{k: v for k, v in r.items() if k != "time"} for r in resumed] == [
        {k: v for k, v in r.items() if k != "time"} for r in rows
    ]
    assert (cut / "params.msgpack").read_bytes() == (full / "params.msgpack").read_bytes()
    assert main(["train", "--resume", str(cut), "--set", "lr=1"]) == 2
    assert main(["train", "--agent", "es", "--hidden", "8", "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    assert main(["eval", "--run", str(full), "--worlds", "2"]) == 0
    out = capsys.readouterr().out
    assert "mse" in out and "es" in out


def test_docs_es_blocks_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "es.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        scope = {}
        exec(compile(block, "docs/es.md", "exec"), scope)
    assert int(scope["state"].iteration) == 5 and np.isfinite(float(scope["metrics"]["loss"]))


def test_es_compare_reads_its_curves_at_the_budget():
    """benchmarks/es_compare.py: scoring points, the equal-budget figure and the verdicts, on a
    hand-made record (its --quick run takes minutes: it is a benchmark, not a test)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import es_compare

    assert es_compare._points(10, 4) == {2, 5, 8, 10} and es_compare._points(3, 8) == {1, 2, 3}
    curve = [{"env_steps": s, "seconds": s / 100, "mse": m} for s, m in ((0, 0.08), (100, 0.05), (200, 0.01))]
    assert es_compare.at_budget(curve, 150)["mse"] == 0.05  # the last score within the budget
    seeds = [[dict(p, mse=p["mse"] + d) for p in curve] for d in (0.0, 0.001, 0.002)]
    record = {
        "Grow-v0": {
            "reference": {"do-nothing": [{"mse": 0.08}] * 3},
            "trainers": {"pool": {"budget_world_steps": 200, "curves": seeds, "final": [c[-1] for c in seeds]}},
        }
    }
    text, verdicts = es_compare.report(record, 200)
    assert "| pool       | 0.011 ± 0.0025 |" in text
    assert verdicts == ["Grow-v0 mse pool: beats do-nothing"]


def test_es_scales_quick_writes_its_record(tmp_path):
    """benchmarks/es_scales.py --quick: the generation-0 table and the trace, on a tiny grid."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import es_scales

    assert es_scales.main(["--quick", "--out", str(tmp_path / "s.json")]) == 0
    rec = json.loads((tmp_path / "s.json").read_text())
    assert [(r["cells"], r["coordinators"]) for r in rec["generation_zero"]] == [es_scales.FACTORS[i] for i in (0, -1)]
    assert all(np.isfinite(r["population_cost"]) for r in rec["generation_zero"])
    assert [t["generation"] for t in rec["trace_both_0.05"]] == [0, 1, 2]
