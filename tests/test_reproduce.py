"""benchmarks/reproduce.py: each experiment's --quick mode end to end, the pinned evaluation key,
and the bars' arithmetic."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import reproduce  # noqa: E402


def test_the_evaluation_key_is_hnca_evals_default():
    from agents.cli import build_parser

    args = build_parser().parse_args(["eval", "--run", "x"])
    assert reproduce.EVAL_SEED == 0 == args.seed


def test_bars():
    b = reproduce.Bar("persist", "late", ratio_of="early", ratio=1.5)
    assert b.met({"late": 0.0149, "early": 0.01}) and not b.met({"late": 0.0151, "early": 0.01})
    assert not b.met({"late": float("nan"), "early": 0.01})
    assert reproduce.Bar("grow", "mse", limit=0.003).threshold({}) == 0.003
    acc = reproduce.Bar("cell accuracy", "cell_accuracy", limit=0.85, higher=True)
    assert acc.met({"cell_accuracy": 0.85}) and not acc.met({"cell_accuracy": 0.849})
    assert acc.describe() == "cell_accuracy >= 0.85"


def test_a_run_on_several_devices_trains_in_a_process_of_its_own(monkeypatch):
    """JAX runs here already with its devices fixed, so a ``--devices 2`` run (the Digits
    recipe) is started as the hnca command would be, in a fresh process; others in-process."""
    calls = []
    done = type("Done", (), {"returncode": 0})
    monkeypatch.setattr(reproduce.subprocess, "run", lambda argv, **kw: calls.append(argv) or done)
    args = reproduce.EXPERIMENTS["digits"].train_args(False)
    assert args[args.index("--devices") + 1] == "2"
    assert reproduce._cli(["train", *args, "--out", "x"]) == 0
    assert calls == [[sys.executable, "-m", "agents.launch", "train", *args, "--out", "x"]]


@pytest.mark.parametrize("name", sorted(reproduce.EXPERIMENTS))
def test_quick_mode_writes_the_record(tmp_path, name):
    record = reproduce.run_experiment(name, tmp_path, quick=True)
    on_disk = json.loads((tmp_path / name / f"reproduce_{name}.json").read_text())
    assert on_disk["experiment"] == name and on_disk["eval"] == {"worlds": 2, "seed": 0}
    assert set(on_disk["bars"]) == {b.name for b in reproduce.EXPERIMENTS[name].bars}
    assert "do-nothing" in on_disk["baselines"] and len(on_disk["baselines"]) >= 3
    assert [r["iteration"] for r in on_disk["curve"]] == sorted(r["iteration"] for r in on_disk["curve"])
    assert all(Path(reproduce.ROOT / g).exists() for g in on_disk["gifs"])
    assert record["metrics"] == on_disk["metrics"]
    if name == "main":  # run again: the finished run is found, not retrained
        stamp = (tmp_path / name / "params.msgpack").stat().st_mtime_ns
        cfg, run = reproduce.train(reproduce.EXPERIMENTS[name], tmp_path / name, quick=True)
        assert run == tmp_path / name and cfg["iterations"] == record["iterations"]
        assert (run / "params.msgpack").stat().st_mtime_ns == stamp


def test_the_summary_puts_each_bar_beside_the_best_trivial_baseline():
    bar = {"bar": "cell_accuracy >= 0.85 (goal 0.953)", "value": 0.9, "threshold": 0.85, "met": True,
           "first_checkpoint_meeting_it": {"iteration": 16000, "train_seconds": 2826.4}}  # fmt: skip
    low = {"bar": "mse <= 0.004", "value": 0.005, "threshold": 0.004, "met": False, "first_checkpoint_meeting_it": None}
    records = {
        "digits": {"bars": {"acc": bar}, "baselines": {"do-nothing": {"cell_accuracy": 0.07},
                   "always 3": {"cell_accuracy": 0.10}, "ours on the training split": {"cell_accuracy": 0.95}}},
        "main": {"bars": {"grow": low}, "baselines": {"do-nothing": {"mse": 0.1}, "disc": {"mse": 0.014}}},
    }  # fmt: skip
    rows = reproduce._summary(records).splitlines()[2:]
    assert rows[0] == "| digits | `cell_accuracy >= 0.85 (goal 0.953)` | 0.9 | always 3: 0.1 | **met** | 16,000, 47 min |"
    assert rows[1] == "| main | `mse <= 0.004` | 0.005 | disc: 0.014 | **missed** | — |"
