"""The benchmark protocol (agents/benchmark.py, hnca bench): pinned keys, normalisation by
hand, a user's policy and trainer scored on the suite's terms, the quick bench end to end."""

import json

import jax
import numpy as np
import pytest

from agents import benchmark
from agents.cli import main as hnca
from hnca_env.evaluate import zero_policy


def test_the_suite_keys_are_pinned():
    """Changing the evaluation or training keys changes every published number: pinned."""
    s = benchmark.get_suite("cpu-small")
    assert jax.random.key_data(s.eval_key(0)).tolist() == [1751636439, 139336245]
    assert jax.random.key_data(s.eval_key(9)).tolist() == [3746193377, 2060899257]
    assert jax.random.key_data(s.train_key(1)).tolist() == [928981903, 3453687069]
    assert (s.seeds, s.eval_worlds) == (10, 32)
    from conftest import suite_ids

    assert sorted(t.task for t in s.tasks) == sorted(suite_ids())  # every id of the task suite


def test_normalisation_by_hand():
    s = benchmark.get_suite("cpu-small")
    grow, digits = s.task("Grow-v0"), s.task("Digits-v0")
    assert (grow.reference, grow.higher_is_better) == (0.0, False)
    assert (digits.reference, digits.higher_is_better) == (1.0, True)
    # an error: do-nothing 0.08 -> 0, perfect 0 -> 1, 0.02 -> 0.75, 0.16 -> -1
    np.testing.assert_allclose(benchmark.normalised(grow, [0.08, 0.0, 0.02, 0.16], 0.08), [0, 1, 0.75, -1])
    # an accuracy: do-nothing 0.25 -> 0, 1 -> 1, 0.625 -> 0.5; a diverged run counts as FAILED
    np.testing.assert_allclose(
        benchmark.normalised(digits, [0.25, 1.0, 0.625, float("nan")], 0.25), [0, 1, 0.5, benchmark.FAILED]
    )


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        benchmark.get_suite("nope")
    with pytest.raises(ValueError, match="has no task 'Nope-v0'"):
        benchmark.get_suite("cpu-small").task("Nope-v0")
    with pytest.raises(ValueError, match="unknown algorithm"):
        benchmark.bench("cpu-small", ["sarsa"], "/tmp/never-written")
    with pytest.raises(ValueError, match="exactly one of"):
        benchmark.run_algorithm("cpu-small", "random", task="Grow-v0", policy_maker=zero_policy)


def test_a_users_policy_and_trainer_get_a_row():
    """docs/protocol.md's example runs: a policy (no training) and a trainer, scored as ours
    are. The do-nothing policy given as a user's policy normalises to exactly 0."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    calls = []
    scope = {"__name__": "docs_protocol"}
    code = block.replace("    return zero_policy(env)", "    calls.append(budget)\n    return zero_policy(env)")
    scope["calls"] = calls
    exec(compile(code, "docs/protocol.md", "exec"), scope)
    assert scope["row"]["tasks"]["Grow-v0"]["normalised"] == [0.0, 0.0] and scope["row"]["iqm"] == 0.0
    assert calls == [1024, 1024]  # one training per seed, at the suite's budget


def test_hnca_bench_quick_runs_resumes_and_reports(tmp_path, capsys):
    """hnca bench --quick end to end: do-nothing first, a baseline and a trained algorithm."""
    out = tmp_path / "bench"
    argv = ["bench", "--quick", "--tasks", "Grow-v0", "--algorithms", "random,pool", "--out", str(out)]
    assert hnca(argv) == 0
    algos = ("random", "do-nothing", "pool")
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs == sorted(f"Grow-v0__{a}.json" for a in algos)
    for name in ("scoreboard.md", "scoreboard.json", "marl_eval.json", "scores.png", "aggregate.png", "profiles.png"):
        assert (out / name).stat().st_size > 0, name
    raw = json.loads((out / "marl_eval.json").read_text())["hnca_env"]
    step = raw["Grow-v0"]["pool"]["run_1"]["step_0"]
    assert step["step_count"] == 1024 and len(step["mse"]) == 1
    board = json.loads((out / "scoreboard.json").read_text())
    assert board["rows"]["do-nothing"]["iqm"] == 0.0 and list(board["rows"]) == list(algos)
    # a second call finds every run done: nothing is retrained (the files stay as they were)
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert hnca(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamp
    capsys.readouterr()
    assert hnca(["bench", "--report", str(out)]) == 0
    assert "| Grow-v0 | mse ↓ |" in capsys.readouterr().out


def test_the_report_and_its_ablation_table_from_saved_runs(tmp_path):
    """write_report on hand-made run records: the raw table, the IQM, one-way probabilities of
    improvement and the ablation table with P(intact > ablated) computed by hand."""
    suite = benchmark.quick_suite()
    out = tmp_path / "b"
    (out / "runs").mkdir(parents=True)
    (out / "suite.json").write_text(json.dumps({"suite": suite.name}))
    scores = {"do-nothing": [0.2, 0.2], "pool": [0.05, 0.1], "pool@no-broadcast": [0.15, 0.1],
              "pool@rewired": [0.05, 0.02]}  # fmt: skip
    for algo, v in scores.items():
        rec = {"task": "HNCA-Grow-v0", "algorithm": algo, "budget": 1024, "scores": v,
               "per_seed": [{"mse": x} for x in v], "commit": "abc"}  # fmt: skip
        benchmark._atomic_json(benchmark.run_path(out, "HNCA-Grow-v0", algo), rec)
    board = benchmark.write_report(out, reps=50)
    # normalised: 1 - mse / 0.2: pool [0.75, 0.5], no-broadcast [0.25, 0.5], rewired [0.75, 0.9]
    assert board["rows"]["pool"]["tasks"]["HNCA-Grow-v0"]["normalised"] == pytest.approx([0.75, 0.5])
    assert set(board["probability_of_improvement"]) == {
        "pool > do-nothing", "pool@no-broadcast > do-nothing", "pool@rewired > do-nothing",
        "pool@no-broadcast > pool", "pool@rewired > pool", "pool@rewired > pool@no-broadcast",
    }  # fmt: skip
    # pool vs no-broadcast: pairs (0.75>0.25, 0.75>0.5, 0.5>0.25, 0.5=0.5 half) -> 3.5/4
    text = (out / "scoreboard.md").read_text()
    row = [line for line in text.splitlines() if line.startswith("| HNCA-Grow-v0 | mse ↓ | pool |")]
    assert row and row[0].endswith("| 0.88 | 0.12 |")  # P(intact > no-broadcast), P(intact > rewired)


def test_algorithm_names_and_ablated_specs():
    assert benchmark.split_name("pool") == ("pool", "intact")
    assert benchmark.split_name("ippo@rewired") == ("ippo", "rewired")
    with pytest.raises(ValueError, match="an ablation is a trained algorithm"):
        benchmark.split_name("random@rewired")
    with pytest.raises(ValueError, match="an ablation is a trained algorithm"):
        benchmark.split_name("pool@cut")
    suite = benchmark.quick_suite()
    with pytest.raises(ValueError, match="has one level"):
        benchmark.ablated(suite.task("Grow-v0"), "rewired")
    env, _ = benchmark.ablated(suite.task("HNCA-Grow-v0"), "rewired").make(evaluation=True)
    assert env.coupling == "rewired"
    assert benchmark.ablated(suite.task("Grow-v0"), "intact") is suite.task("Grow-v0")


def test_held_out_splits_are_scored_and_tabled(tmp_path):
    """A split (a larger grid than trained on) is scored with the same policy beside the
    headline; the generalisation table normalises it against do-nothing on that split."""
    spec = benchmark.TaskSpec("Grow-v0", "mse", {"grid": (8, 8), "target_size": 5, "max_steps_in_episode": 4},
                              budget=64, splits={"12x12": {"grid": (12, 12)}})  # fmt: skip
    suite = benchmark.Suite("tiny", (spec,), seeds=2, eval_worlds=2)
    assert spec.make(split="12x12")[0].grid_shape("cell")[:2] == (12, 12)
    with pytest.raises(ValueError, match="has no split 'huge'"):
        spec.make(split="huge")
    rec = benchmark.run_algorithm(suite, "do-nothing", task="Grow-v0")
    mine = benchmark.run_algorithm(suite, policy_maker=zero_policy, task="Grow-v0")
    for r in (rec, mine):
        big = r["splits"]["12x12"]["scores"]
        # the empty canvas: the same heart on a canvas 2.25x larger -> its MSE 2.25x smaller
        np.testing.assert_allclose(np.asarray(big) * 2.25, r["scores"], rtol=1e-5)
    out = tmp_path / "g"
    for algo, small, big in (("do-nothing", [0.2, 0.2], [0.1, 0.1]), ("pool", [0.05, 0.1], [0.05, 0.02])):
        r = {"task": "Grow-v0", "algorithm": algo, "budget": 64, "scores": small,
             "splits": {"12x12": {"scores": big}}}  # fmt: skip
        benchmark._atomic_json(benchmark.run_path(out, "Grow-v0", algo), r)
    table = benchmark.generalisation_table(suite, benchmark.load_runs(out))
    (row,) = [line for line in table.splitlines() if "| pool |" in line]
    assert row.endswith("| 0.650 |")  # 1 - mean([0.05, 0.02]) / 0.1


def test_depth_ablations_of_the_three_level_tasks(tmp_path):
    """ALGO@two-level / ALGO@flat: the HNCA3 task built two and one level deep; refused on
    shallower tasks; tabled under "Does the third level help?"."""
    suite = benchmark.quick_suite()
    assert benchmark.split_name("ippo@flat") == ("ippo", "flat")
    spec = suite.task("HNCA3-Layout-v0")
    assert len(spec.make()[0].levels) == 3
    for cut, depth in (("two-level", 2), ("flat", 1)):
        env, _ = benchmark.ablated(spec, cut).make(evaluation=True)
        assert len(env.levels) == depth
    with pytest.raises(ValueError, match="cuts a three-level task"):
        benchmark.ablated(suite.task("HNCA-Grow-v0"), "flat")
    out = tmp_path / "d"
    (out / "runs").mkdir(parents=True)
    (out / "suite.json").write_text(json.dumps({"suite": suite.name}))
    for algo, v in (("do-nothing", [0.3, 0.3]), ("pool", [0.1, 0.1]), ("pool@two-level", [0.2, 0.2]),
                    ("pool@flat", [0.05, 0.05])):  # fmt: skip
        rec = {"task": "HNCA3-Layout-v0", "algorithm": algo, "budget": 1024, "scores": v,
               "per_seed": [{"mse": x} for x in v], "commit": "abc"}  # fmt: skip
        benchmark._atomic_json(benchmark.run_path(out, "HNCA3-Layout-v0", algo), rec)
    benchmark.write_report(out, reps=20)
    text = (out / "scoreboard.md").read_text()
    assert "Does the third level help?" in text and "| intact | two-level | flat |" in text
    (row,) = [x for x in text.splitlines() if x.startswith("| HNCA3-Layout-v0 | mse ↓ | pool | 0.1")]
    assert row.endswith("| 1.00 | 0.00 |")  # P(3 levels > 2 levels), P(3 levels > flat)
