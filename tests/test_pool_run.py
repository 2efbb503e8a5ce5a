"""The pool trainer's run config (agents/pool_run.py): records, YAML, the rules it derives the
PoolConfig by, and the layering (hnca_env never imports agents)."""

import ast
import dataclasses
import json
import pathlib

import pytest

from agents.cli import QUICK, _run_config, build_parser, main
from agents.pool import PoolConfig
from agents.pool_run import TRAINER_SETTINGS, PoolRunConfig, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: A config.json as hnca train wrote it before PoolRunConfig existed (no env_kwargs / trainer).
OLD_RECORD = {
    "task": "HNCA-Grow-v0", "grid": 8, "target": None, "target_size": 6, "iterations": 30,
    "pool_size": 16, "batch_size": 4, "min_steps": 8, "max_steps": 50, "hidden": 16, "lr": 3e-3,
    "seed": 0, "tau_c": 5, "damage": 1, "reseed": 1, "stage": None, "init_child": None,
    "learn_perception": False, "remat": True, "lr_boundary": 20, "checkpoint_every": 200,
    "keep": 3, "log_every": 10,
}  # fmt: skip


def test_hnca_env_never_imports_agents():
    offenders = []
    for path in sorted((ROOT / "hnca_env").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "agents"
            ]
    assert not offenders


def test_an_old_record_builds_the_pool_config_of_the_rules():
    run = PoolRunConfig.from_dict(OLD_RECORD)
    assert run.env_kwargs == {} and run.trainer == {}
    env, env_params, cfg, (p_init, _) = run.build()
    assert env.agent_levels == ("cell", "parent") and int(env_params.tau_c) == 5
    assert cfg.lr_final == 3e-3 / 10 and cfg.lr_boundary == 20
    assert cfg.hidden == {"cell": 16, "parent": 64}  # parents: 4x the cells' width
    assert cfg.remat_segments == 8  # ceil(sqrt(50))
    assert cfg.donate is True and cfg.warmup_steps == 5  # warm-up: tau_c, as the env has parents
    assert (cfg.pool_size, cfg.batch_size, cfg.min_steps, cfg.max_steps, cfg.damage) == (16, 4, 8, 50, 1)
    no_remat = dataclasses.replace(run, remat=False).pool_config(env, env_params)
    assert no_remat.remat_segments == 0 and not no_remat.remat
    flat = PoolRunConfig.from_dict({**OLD_RECORD, "task": "Grow-v0", "tau_c": None}).build()[2]
    assert flat.warmup_steps == 0 and flat.hidden == {"cell": 16}


def test_records_round_trip():
    run = load_config(None, None, {"task": "HNCA-Grow-v0", "hidden": {"cell": 8, "parent": 24},
                                   "env_kwargs": {"clamp": True}, "trainer": {"grad": "clip", "layers": {"cell": 2}}})  # fmt: skip
    record = run.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert PoolRunConfig.from_dict(record) == run
    assert PoolRunConfig.from_dict({**OLD_RECORD, "agent": "pool"}).to_dict() == {
        **OLD_RECORD, "env_kwargs": {}, "trainer": {}, "devices": 1
    }  # fmt: skip
    pool = PoolConfig(hidden={"cell": 8}, learn_perception=("parent",), layers={"cell": 2}, mutate=1)
    assert PoolConfig.from_dict(json.loads(json.dumps(pool.to_dict()))) == pool
    with pytest.raises(ValueError, match="unknown PoolConfig setting"):
        PoolConfig.from_dict({"pool": 3})


def test_new_runs_defaults_are_the_quick_run_and_the_tasks_own():
    assert PoolRunConfig.for_task().to_dict() == {**QUICK, "lr_boundary": 800}
    other = PoolRunConfig.for_task("HNCA-Metamorphosis-v0", iterations=30)
    assert other.target is None and other.target_size is None and other.lr_boundary == 20
    assert PoolRunConfig.for_task("HNCA-Grow-v0", target="disc").target == "disc"


def test_yaml_then_set_then_options(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "task: HNCA-Grow-v0\ngrid: 12\nhidden: 8\niterations: 6\n"
        "trainer:\n  grad: clip\n  mutate: 0\nenv_kwargs:\n  clamp: true\n"
    )
    argv = [
        "train",
        "--config",
        str(path),
        "--set",
        "trainer.clip_norm=0.5",
        "--set",
        "hidden=16",
        "--grid",
        "16",
    ]
    cfg = _run_config(build_parser().parse_args(argv))
    assert (cfg["task"], cfg["grid"], cfg["hidden"], cfg["lr_boundary"]) == ("HNCA-Grow-v0", 16, 16, 4)
    assert cfg["trainer"] == {"grad": "clip", "mutate": 0, "clip_norm": 0.5}
    assert cfg["env_kwargs"] == {"clamp": True} and cfg["target"] is None
    env, env_params, pool_cfg, _ = PoolRunConfig.from_dict(cfg).build()
    assert pool_cfg.grad == "clip" and pool_cfg.clip_norm == 0.5 and env.clamp
    # the same run from options alone is the same record
    same = ["train", "--task", "HNCA-Grow-v0", "--grid", "16", "--hidden", "16", "--iterations", "6",
            "--set", "trainer={grad: clip, mutate: 0, clip_norm: 0.5}", "--set", "env_kwargs.clamp=true"]  # fmt: skip
    assert _run_config(build_parser().parse_args(same)) == cfg


def test_trainer_overrides_the_rules():
    run = PoolRunConfig.from_dict(
        {**OLD_RECORD, "trainer": {"lr_final": 1e-4, "donate": False, "warmup_steps": 0}}
    )
    cfg = run.build()[2]
    assert (cfg.lr_final, cfg.donate, cfg.warmup_steps) == (1e-4, False, 0)
    assert "mutate" in TRAINER_SETTINGS and "lr" not in TRAINER_SETTINGS


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pool_sise": 8}, "unknown pool run setting"),
        ({"trainer": {"pool_size": 8}}, "cannot be set there"),
        ({"env_kwargs": {"grid": [8, 8]}}, "settings of their own"),
        ({"hidden": 0}, "PoolRunConfig.hidden must be"),
        ({"lr": "fast"}, "PoolRunConfig.lr must be a positive number"),
        ({"stage": "parent"}, "needs --init-child"),
        ({"stage": "grandparent"}, "--stage must be"),
        ({"agent": "mappo"}, "not a pool run"),
        ({"learn_perception": ["child"]}, "learn_perception must be"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        PoolRunConfig.from_dict({**OLD_RECORD, **settings})


def test_resume_refuses_a_config_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(OLD_RECORD))
    assert main(["train", "--resume", str(run), "--config", "x.yaml"]) == 2
    assert "only --iterations" in capsys.readouterr().err


def test_the_yaml_example_of_docs_training_builds(tmp_path):
    import re

    text = (ROOT / "docs" / "training.md").read_text()
    section = text[text.index("### A pool run's settings") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "hnca-grow.yaml"
    path.write_text(block)
    run = load_config(None, str(path), ["lr=1e-3"])
    assert (run.task, run.grid, run.lr, run.lr_boundary) == ("HNCA-Grow-v0", 32, 1e-3, 400)
    env, _, cfg, _ = run.build()
    assert env.clamp and cfg.grad == "clip" and cfg.hidden == {"cell": 32, "parent": 128}


def test_floats_without_a_dot_are_numbers(tmp_path):
    """PyYAML alone reads ``1e-3`` as a string; ``--set lr=1e-3`` (docs/rl.md) means the number."""
    from agents.settings import load_settings, parse_overrides

    assert parse_overrides(["lr=1e-3", "x=[2E5, -1.5e-2]", "name=1e"]) == {
        "lr": 1e-3,
        "x": [2e5, -0.015],
        "name": "1e",
    }
    path = tmp_path / "f.yaml"
    path.write_text("lr: 3e-4\n")
    assert load_settings(str(path)) == {"lr": 3e-4}


def test_cells_learn_their_perception_and_layers_take_one_integer():
    """learn_perception=[cell] (a flat task: Digits' learned 3x3 perception) gives the cells the
    raw neighbourhood and learnable kernels; trainer.layers=2 deepens every level; a level
    that does not act is refused by name; the record round-trips."""
    import jax

    run = PoolRunConfig.for_task("Digits-v0", grid=28, hidden=8, learn_perception=["cell"], trainer={"layers": 2})
    env, _, cfg, (init, _) = run.build()
    assert env.level("cell").observer.name == "neighbourhood" and cfg.learn_perception == ("cell",)
    params = jax.eval_shape(init, jax.random.key(0))["cell"]["params"]
    assert {"perception", "pre_0", "hidden", "out"} <= set(params)
    assert PoolRunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    with pytest.raises(ValueError, match="acts with"):
        PoolRunConfig.for_task("Digits-v0", grid=28, learn_perception=["cell", "parent"]).build()
    with pytest.raises(ValueError, match="PoolConfig.layers must be"):
        PoolConfig(layers={"cell": 0})
    with pytest.raises(ValueError, match="grid is fixed at 28x28"):
        PoolRunConfig.for_task("Digits-v0").build()
