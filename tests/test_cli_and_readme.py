"""The hnca command and the README's quickstart, run as a user would."""

import json
import pathlib
import re

import pytest

import hnca_env
from hnca_env.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_hnca_tasks_lists_ids(capsys):
    assert main(["tasks"]) == 0
    assert capsys.readouterr().out.split() == hnca_env.registered_envs()


def test_hnca_info(capsys):
    assert main(["info", "HNCA-Grow-v0"]) == 0
    out = capsys.readouterr().out
    assert "level 'parent': agents (32, 32), obs 60, action 21" in out


def test_hnca_train_tiny_run_writes_outputs(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--iterations", "3", "--grid", "12", "--target-size", "8", "--pool-size", "8"]
    args += ["--min-steps", "2", "--max-steps", "3", "--hidden", "8", "--out", str(out), "--log-every", "1"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert all({"iteration", "loss", "time"} <= set(r) for r in rows)
    for name in ("rollout.gif", "params.msgpack", "config.json", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("*.tmp"))


def test_hnca_errors_are_clear(capsys):
    assert main(["train", "--task", "Nope-v0", "--iterations", "1"]) == 2
    assert "unknown env id 'Nope-v0'" in capsys.readouterr().err
    assert main(["train", "--agent", "ippo"]) == 2


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
