"""The hnca command and the README's quickstart, run as a user would."""

import json
import pathlib
import re

import numpy as np
import pytest
from conftest import TINY_TRAIN as TINY  # the options of `tiny_run` (conftest.py)

import hnca_env
from agents.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_hnca_tasks_lists_ids(capsys):
    assert main(["tasks"]) == 0
    assert capsys.readouterr().out.split() == hnca_env.registered_envs()


def test_hnca_info(capsys):
    assert main(["info", "HNCA-Grow-v0"]) == 0
    out = capsys.readouterr().out
    assert "level 'parent': agents (32, 32), obs 60, action 21" in out


def test_hnca_train_tiny_run_writes_outputs(tiny_run):
    out = tiny_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert all({"iteration", "loss", "time"} <= set(r) for r in rows)
    for name in ("rollout.gif", "regen.gif", "loss.png", "params.msgpack", "config.json", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2", "4"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["regen_loss"]) == {"grown", "damaged", "regrown"}
    assert not list(out.glob("*.tmp"))


def test_hnca_train_resume_equals_uninterrupted(tiny_run, tmp_path, monkeypatch):
    import agents.pool

    real = agents.pool.make_pool_trainer

    def crashing(*a, **k):  # the process dies during iteration 3 (after the checkpoint at 2)
        init, iteration, apply = real(*a, **k)

        def it(state):
            if int(state.iteration) == 3:
                raise RuntimeError("killed")
            return iteration(state)

        return init, it, apply

    out = tmp_path / "run"
    monkeypatch.setattr(agents.pool, "make_pool_trainer", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        main(["train", "--iterations", "4", "--out", str(out), *TINY])
    monkeypatch.setattr(agents.pool, "make_pool_trainer", real)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert main(["train", "--resume", str(out)]) == 0

    def rows(d):
        return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in (d / "metrics.jsonl").open()]

    assert rows(out) == rows(tiny_run)  # iteration 2 logged once, numbers identical
    assert (out / "params.msgpack").read_bytes() == (tiny_run / "params.msgpack").read_bytes()
    s_a, s_b = (json.loads((d / "summary.json").read_text()) for d in (tiny_run, out))
    assert s_a["eval_metrics"] == s_b["eval_metrics"] and s_a["regen_loss"] == s_b["regen_loss"]


def test_hnca_resume_refuses_new_settings(tiny_run, capsys):
    assert main(["train", "--resume", str(tiny_run), "--grid", "16"]) == 2
    assert "only --iterations" in capsys.readouterr().err
    assert main(["train", "--resume", str(tiny_run.parent / "nothing")]) == 2


def test_hnca_eval_prints_the_task_metrics(tiny_run, capsys):
    assert main(["eval", "--run", str(tiny_run), "--worlds", "2", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tiny_run / "eval.json").read_text())
    assert record["n_worlds"] == 2 and record["steps"] == 5 and record["params"] == "params.msgpack"
    assert "mse" in record["metrics"] and np.isfinite(record["metrics"]["mse"])
    assert f"mse: {record['metrics']['mse']:.6g}" in out


def test_two_stage_and_learned_perception_runs_are_built_from_their_config(tmp_path):
    """`--stage child`, then `--stage parent --init-child RUN` (built, not trained: fast)."""
    import jax
    from flax import serialization

    from agents.cli import QUICK, _build_run

    base = {**QUICK, "task": "HNCA-Grow-v0", "grid": 8, "target": None, "target_size": 6}
    base.update(tau_c=5, lr_boundary=10, hidden=8)
    child_cfg = {**base, "stage": "child"}
    env, _, pool_cfg, (p_init, _) = _build_run(child_cfg)
    assert env.levels == ("cell",) and pool_cfg.warmup_steps == 0
    child_dir = tmp_path / "child"
    child_dir.mkdir()
    (child_dir / "config.json").write_text(json.dumps(child_cfg))
    child_params = p_init(jax.random.key(0))
    (child_dir / "params.msgpack").write_bytes(serialization.to_bytes(child_params))

    parent_cfg = {**base, "stage": "parent", "init_child": str(child_dir), "learn_perception": True}
    env, env_params, pool_cfg, (p_init, _) = _build_run(parent_cfg)
    assert env.agent_levels == ("parent",) and env.parent_obs == "neighbourhood"
    assert pool_cfg.warmup_steps == 5 and pool_cfg.learn_perception == ("parent",)
    assert "perception" in p_init(jax.random.key(0))["parent"]["params"]
    frozen = env_params.rule_params["cell"]
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(child_params["cell"]))
    )
    with pytest.raises(ValueError, match="needs --init-child"):
        _build_run({**base, "stage": "parent"})


def test_quick_target_applies_to_the_quick_task_only():
    from agents.cli import _run_config, build_parser

    cfg = _run_config(build_parser().parse_args(["train"]))
    assert (cfg["task"], cfg["target"], cfg["target_size"], cfg["lr_boundary"]) == (
        "Grow-v0",
        "heart",
        16,
        800,
    )
    cfg = _run_config(
        build_parser().parse_args(["train", "--task", "HNCA-Metamorphosis-v0", "--iterations", "30"])
    )
    assert cfg["target"] is None and cfg["target_size"] is None and cfg["lr_boundary"] == 20
    cfg = _run_config(build_parser().parse_args(["train", "--iterations", "30", "--lr-boundary", "7"]))
    assert cfg["lr_boundary"] == 7


def test_hnca_errors_are_clear(capsys):
    assert main(["train", "--task", "Nope-v0", "--iterations", "1"]) == 2
    assert "unknown env id 'Nope-v0'" in capsys.readouterr().err
    assert main(["train", "--agent", "ippo", "--pool-size", "8"]) == 2
    assert "set the pool trainer, not --agent ippo" in capsys.readouterr().err
    assert main(["train", "--agent", "ippo", "--set", "lr=-1"]) == 2
    assert "PPOConfig.lr must be a positive number" in capsys.readouterr().err
    assert main(["train", "--config", "x.yaml"]) == 2
    assert "pool config file x.yaml: no such file" in capsys.readouterr().err
    assert main(["train", "--set", "trainer.lr=1"]) == 2
    assert "PoolRunConfig.trainer: ['lr'] cannot be set there" in capsys.readouterr().err


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Quickstart\s+```python\n(.*?)```", text, re.S).group(1)
    assert "n_worlds, n_steps = 1024, 20" in code
    code = code.replace("n_worlds, n_steps = 1024, 20", "n_worlds, n_steps = 4, 3")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["team_reward"].shape == (3, 4)
    assert (tmp_path / "world0.png").stat().st_size > 0


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = 'python -m pip install ".[test]" && python -m pytest'
    assert test_cmd in readme and test_cmd in ci
    assert "python -m pip install . && hnca train" in readme


@pytest.mark.parametrize("env_id", hnca_env.registered_envs())
def test_every_registered_id_builds(env_id):
    env, params = hnca_env.make(env_id)
    env.check_params(params)


def test_train_summary_is_what_hnca_eval_measures(tiny_run):
    from agents.cli import main

    assert main(["eval", "--run", str(tiny_run)]) == 0
    evaluated = json.loads((tiny_run / "eval.json").read_text())["metrics"]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["eval_metrics"] == evaluated and summary["eval_worlds"] == 32
