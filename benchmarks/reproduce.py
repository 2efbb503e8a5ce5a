"""Published results, reproduced with the library's own trainer and CLI, beside trivial baselines.

One command per experiment::

    python benchmarks/reproduce.py main       # the README's main job: `hnca train` on its default
    python benchmarks/reproduce.py growing    # Growing NCA at 40×40 (24 px target): grow, persist, regenerate
    python benchmarks/reproduce.py EXP --quick   # a tiny version (tests; minutes -> seconds)

Each experiment trains with ``hnca train`` into ``--runs DIR/<experiment>`` (default ``runs/reproduce``),
so a stopped run resumes from its checkpoints when the command is run again; then it scores every
kept checkpoint and the final policy over pinned evaluation worlds (``jax.random.key(EVAL_SEED)``,
the key ``hnca eval`` uses), scores the trivial answers of :mod:`hnca_env.baselines` and the
do-nothing policy with the same metric code, prints a table, and writes
``benchmarks/results/reproduce_<experiment>.json`` (settings, commit, machine load, iterations
and wall-clock to reach each bar, every metric with its baselines, the curve), GIFs and a curve
plot into ``docs/reproductions/``. ``--quick`` writes into the run directory instead, so it never
touches the committed results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import hnca_env  # noqa: E402
from hnca_env import baselines, render  # noqa: E402
from hnca_env.evaluate import policy_from_apply  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "reproductions"
#: The evaluation key of every experiment (``hnca eval``'s default ``--seed 0``).
EVAL_SEED = 0


@dataclasses.dataclass(frozen=True)
class Bar:
    """A pass/fail bar on one metric: ``metric <= limit`` (or ``metric <= ratio × other``);
    ``higher=True``: ``metric >= limit`` (accuracies)."""

    name: str
    metric: str
    limit: float | None = None
    ratio_of: str | None = None
    ratio: float | None = None
    goal: float | None = None
    higher: bool = False

    def threshold(self, m: dict[str, float]) -> float:
        return self.limit if self.ratio_of is None else self.ratio * m[self.ratio_of]

    def met(self, m: dict[str, float]) -> bool:
        v = m.get(self.metric)
        if v is None or not np.isfinite(v):
            return False
        return v >= self.threshold(m) if self.higher else v <= self.threshold(m)

    def describe(self) -> str:
        op = ">=" if self.higher else "<="
        if self.ratio_of is None:
            return f"{self.metric} {op} {self.limit:g}" + (f" (goal {self.goal:g})" if self.goal else "")
        return f"{self.metric} {op} {self.ratio:g} x {self.ratio_of}"


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What to train (``hnca train`` options), how to score a policy, the bars, the baselines."""

    name: str
    reference: str
    train_args: Callable[[bool], list[str]]
    score: Callable[
        [dict, Any, int], Callable[[Any], dict[str, float]]
    ]  # (cfg, key, worlds) -> score(params)
    baselines: Callable[[dict, Any, int], dict[str, dict[str, float]]]  # trivial answers' rows
    gifs: Callable[[dict, Any, Path], list[str]]
    bars: tuple[Bar, ...]
    eval_worlds: int = 32
    #: two-stage experiments: the ``hnca train`` options of stage 1 (``--stage child``);
    #: ``train_args`` are then stage 2's (``--stage parent``), given ``--init-child``
    child_args: Callable[[bool], list[str]] | None = None
    #: two-stage experiments: ``(cfg of the child run, child params, key, worlds) -> metrics``
    child_score: Callable[[dict, Any, Any, int], dict[str, float]] | None = None
    #: more rows of the trained policy scored another way: ``(cfg, params, key, worlds) -> rows``
    extra: Callable[[dict, Any, Any, int], dict[str, dict[str, float]]] | None = None
    #: score every k-th kept checkpoint for the curve (and always the last): slow evaluations
    curve_every: int = 1


# ------------------------------------------------------------------------------ running a run
def _cli(argv: list[str]) -> int:
    from agents.launch import requested_devices

    if requested_devices(argv) > 1:
        # JAX already runs in this process with its devices fixed: a run on several (CPU)
        # devices needs a process of its own, started by the hnca command's entry point
        return subprocess.run([sys.executable, "-m", "agents.launch", *argv], check=False).returncode
    from agents.cli import main

    return main(argv)


def _train_one(args: list[str], run: Path) -> dict:
    """``hnca train ARGS --out RUN`` (or resume it, or find it finished); returns its config.json."""
    cfg_path = run / "config.json"
    iterations = int(args[args.index("--iterations") + 1])
    if cfg_path.exists():
        done = (run / "summary.json").exists() and json.loads((run / "summary.json").read_text()).get(
            "iterations"
        ) == iterations
        if not done:
            rc = _cli(["train", "--resume", str(run), "--iterations", str(iterations)])
            if rc:
                raise SystemExit(f"hnca train --resume {run} failed ({rc})")
    else:
        rc = _cli(["train", *args, "--out", str(run)])
        if rc:
            raise SystemExit(f"hnca train failed ({rc})")
    return json.loads(cfg_path.read_text())


def train(exp: Experiment, run: Path, quick: bool) -> tuple[dict, Path]:
    """Train (or resume, or find finished) the experiment's run(s); returns the scored run's
    config.json and directory. A two-stage experiment trains ``run/child`` first, then
    ``run/parent`` from it (``--stage parent --init-child run/child``), and scores the parent."""
    if exp.child_args is None:
        return _train_one(exp.train_args(quick), run), run
    _train_one(exp.child_args(quick), run / "child")
    parent = run / "parent"
    return _train_one([*exp.train_args(quick), "--init-child", str(run / "child")], parent), parent


def pool_policy(cfg: dict, params: Any):
    """The run's deterministic policy ``policy(key, obs)`` for ``params``."""
    from agents.cli import _build_run

    _, _, _, (_, apply) = _build_run(cfg)
    return policy_from_apply(apply, params)


def carry_template(cfg: dict):
    """The abstract trainer carry of a run (``PoolState``), to read its files into."""
    from agents.cli import _build_run
    from agents.pool import make_pool_trainer

    env, env_params, pool_cfg, _ = _build_run(cfg)
    init, _, _ = make_pool_trainer(env, env_params, pool_cfg)
    return jax.eval_shape(init, jax.random.key(0))


def checkpoints(run: Path, cfg: dict, every: int = 1) -> list[tuple[int, Any]]:
    """``(iteration, policy params)`` of every ``every``-th checkpoint the run kept (and the
    last), oldest first."""
    from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer

    template = carry_template(cfg)
    out = []
    with Checkpointer(run / CHECKPOINT_SUBDIR, max_to_keep=10_000) as ck:
        steps = sorted(ck.steps())
        for step in [s for i, s in enumerate(steps) if i % every == every - 1 or i == len(steps) - 1]:
            state, _, s = ck.restore(template, step)
            out.append((s, state.params))
    return out


def _zero_output(params):
    """Parameters of the do-nothing policy: every weight zero, so every action is zero."""
    return jax.tree.map(np.zeros_like, params)


def _times(run: Path) -> Callable[[int], float]:
    """Training seconds after ``n`` iterations, interpolated between the logged rows (row ``i``
    is logged after iteration index ``i``, i.e. after ``i + 1`` iterations)."""
    from agents.loop import METRICS_FILE, read_metrics

    rows = read_metrics(run / METRICS_FILE)
    xs = [r["iteration"] + 1 for r in rows]
    ys = [r["time"] for r in rows]
    return lambda n: float(np.interp(n, xs, ys)) if rows else float("nan")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------ pattern tasks
def _pattern_kwargs(cfg: dict) -> dict:
    return {"grid": (cfg["grid"], cfg["grid"]), "target": cfg["target"], "target_size": cfg["target_size"]}


def _static_rows(env, params, key, n_worlds: int, columns: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The same-area disc and the silhouette in the target's mean colour: images that never
    change, so their MSE is the same at every step (each of ``columns``)."""
    rows = {}
    for name, answer in (
        ("mean-colour disc (same area)", baselines.disc_answer),
        ("silhouette in mean colour", baselines.silhouette_answer),
    ):
        mse = baselines.evaluate_answer(env, answer, key, params, n_worlds=n_worlds)["mse"]
        rows[name] = dict.fromkeys(columns, mse)
    return rows


def _scorer(env, env_params, apply, key, n_worlds: int, steps: int | None = None):
    """``score(policy_params) -> {metric: mean over worlds}``, compiled once for every checkpoint."""
    from hnca_env.evaluate import evaluate_worlds

    @jax.jit
    def per_world(policy_params):
        act = policy_from_apply(apply, policy_params)
        return evaluate_worlds(env, act, key, env_params, n_worlds=n_worlds, steps=steps)

    return lambda p: {k: float(np.mean(v)) for k, v in per_world(p).items()}


def _apply(cfg: dict):
    from agents.cli import _build_run

    return _build_run(cfg)[3][1]


def _grow_score(cfg: dict, key, n_worlds: int):
    env, env_params = hnca_env.make("Grow-v0", **_pattern_kwargs(cfg))
    return _scorer(env, env_params, _apply(cfg), key, n_worlds)


def _growing_score(cfg: dict, key, n_worlds: int):
    """Grow (96 steps), Persist (288) and Regenerate (a hole cut at step 96, scored 48 later)."""
    apply, kw = _apply(cfg), _pattern_kwargs(cfg)
    grow = _scorer(*hnca_env.make("Grow-v0", **kw), apply, key, n_worlds)
    persist = _scorer(*hnca_env.make("Persist-v0", **kw), apply, key, n_worlds)
    regen = _scorer(*hnca_env.make("Regenerate-v0", **kw), apply, key, n_worlds, steps=96 + 48)

    def score(p):
        r = regen(p)
        return {"mse_96": grow(p)["mse"], "mse_288": persist(p)["mse"],
                "mse_before_cut": r["mse_before_damage"], "mse_cut_plus_48": r["mse_after_damage"]}  # fmt: skip

    return score


def _main_baselines(cfg: dict, key, n_worlds: int):
    env, params = hnca_env.make("Grow-v0", **_pattern_kwargs(cfg))
    return _static_rows(env, params, key, n_worlds, ("mse",))


def _growing_baselines(cfg: dict, key, n_worlds: int):
    env, params = hnca_env.make("Grow-v0", **_pattern_kwargs(cfg))
    return _static_rows(env, params, key, n_worlds, ("mse_96", "mse_288", "mse_before_cut"))


def _gif(env, act, params, steps: int, path: Path, scale: int = 3, fps: int = 20) -> str:
    frames = render.rollout_frames(env, act, jax.random.key(1), params, steps=steps, scale=scale, target=True)
    return render.write_gif(np.asarray(frames)[::2], str(path), fps=fps // 2)


def _main_gifs(cfg: dict, params, out: Path) -> list[str]:
    env, p = hnca_env.make("Grow-v0", **_pattern_kwargs(cfg))
    return [_gif(env, pool_policy(cfg, params), p, 96, out / "main_grow.gif", scale=4)]


def _growing_gifs(cfg: dict, params, out: Path) -> list[str]:
    act, kw = pool_policy(cfg, params), _pattern_kwargs(cfg)
    paths = []
    for task, steps, name in (
        ("Grow-v0", 96, "grow"),
        ("Persist-v0", 288, "persist"),
        ("Regenerate-v0", 192, "regenerate"),
    ):
        env, p = hnca_env.make(task, **kw)
        paths.append(_gif(env, act, p, steps, out / f"growing_{name}.gif"))
    return paths


def _main_args(quick: bool) -> list[str]:
    # the README's main job is `hnca train` with no options: its embedded default
    return ["--iterations", "4", "--grid", "16", "--target-size", "10", "--log-every", "1",
            "--checkpoint-every", "2"] if quick else [
        "--iterations", _default_iterations()]  # fmt: skip


def _default_iterations() -> str:
    from agents.cli import QUICK

    return str(QUICK["iterations"])


def _growing_args(quick: bool) -> list[str]:
    common = ["--task", "Grow-v0", "--target", "heart", "--damage", "3", "--reseed", "1", "--lr", "2e-3"]
    if quick:
        return [*common, "--grid", "16", "--target-size", "10", "--hidden", "16", "--pool-size", "16",
                "--batch-size", "4", "--min-steps", "8", "--max-steps", "12", "--iterations", "4",
                "--checkpoint-every", "4", "--keep", "10", "--log-every", "1"]  # fmt: skip
    return [*common, "--grid", "40", "--target-size", "24", "--hidden", "128", "--pool-size", "1024",
            "--batch-size", "8", "--min-steps", "64", "--max-steps", "96", "--iterations", "2400",
            "--lr-boundary", "2000",
            "--checkpoint-every", "100", "--keep", "40", "--log-every", "10"]  # fmt: skip


# ------------------------------------------------------------------------------ metamorphosis
MOTIFS = "HNCA-Metamorphosis-Motifs-v0"


def _run_env(cfg: dict):
    """The env, env params and policy ``apply`` a run trained on (its own ``_build_run``)."""
    from agents.cli import _build_run

    env, env_params, _, (_, apply) = _build_run(cfg)
    return env, env_params, apply


def _with_nmse(metrics: dict[str, float], target) -> dict[str, float]:
    return {**metrics, "nmse": baselines.normalised_mse(metrics["mse"], np.asarray(target)[..., :3])}


def _metamorphosis_score(cfg: dict, key, n_worlds: int):
    """The parent stage's env (child frozen) over its whole episode: MSE and normalised MSE to B."""
    env, env_params, apply = _run_env(cfg)
    score = _scorer(env, env_params, apply, key, n_worlds)
    return lambda p: _with_nmse(score(p), env_params.target)


def _pattern_a(cfg: dict):
    env, _, _ = _run_env(cfg)
    return getattr(env, "motif_a", None)


def _metamorphosis_baselines(cfg: dict, key, n_worlds: int):
    """A itself (the children never change) and B's mean colour everywhere, scored on the
    parent stage's env by the same metric code."""
    env, env_params, _ = _run_env(cfg)
    a = _pattern_a(cfg)
    if a is None:  # the circles -> rings pair: A is the children's start state
        a = np.asarray(env_params.seed_state)[..., :3]
    rows = {}
    for name, answer in (("A itself", baselines.image_answer(a)), ("mean colour of B", baselines.mean_colour_answer)):
        rows[name] = _with_nmse(baselines.evaluate_answer(env, answer, key, env_params, n_worlds=n_worlds),
                                env_params.target)  # fmt: skip
    return rows


def _metamorphosis_child_score(child_cfg: dict, child_params, key, n_worlds: int) -> dict[str, dict[str, float]]:
    """Stage 1: the child growing A from the fixed noise seed, beside do-nothing and A's mean colour."""
    env, env_params, apply = _run_env(child_cfg)
    score = _scorer(env, env_params, apply, key, n_worlds)
    rows = {"child (trained)": _with_nmse(score(child_params), env_params.target)}
    rows["do-nothing"] = _with_nmse(score(_zero_output(child_params)), env_params.target)
    rows["mean colour of A"] = _with_nmse(
        baselines.evaluate_answer(env, baselines.mean_colour_answer, key, env_params, n_worlds=n_worlds),
        env_params.target,
    )
    return rows


def _metamorphosis_gifs(cfg: dict, params, out: Path) -> list[str]:
    env, env_params, _ = _run_env(cfg)
    name = "metamorphosis" if cfg["task"] == MOTIFS else "metamorphosis_rings"
    steps = int(env_params.max_steps_in_episode)
    return [_gif(env, pool_policy(cfg, params), env_params, steps, out / f"{name}.gif", scale=2)]


def _motifs_child_args(quick: bool) -> list[str]:
    common = ["--task", MOTIFS, "--stage", "child", "--reseed", "1", "--lr", "1e-3"]
    if quick:
        return [*common, "--grid", "16", "--hidden", "8", "--pool-size", "8", "--batch-size", "2",
                "--min-steps", "4", "--max-steps", "6", "--tau-c", "4", "--iterations", "2",
                "--checkpoint-every", "2", "--log-every", "1",
                "--set", "env_kwargs.max_steps_in_episode=8"]  # fmt: skip
    return [*common, "--grid", "64", "--hidden", "64", "--pool-size", "1024", "--batch-size", "4",
            "--min-steps", "32", "--max-steps", "96", "--iterations", "1200", "--lr-boundary", "1000",
            "--checkpoint-every", "100", "--keep", "40", "--log-every", "10"]  # fmt: skip


def _motifs_parent_args(quick: bool) -> list[str]:
    common = ["--task", MOTIFS, "--stage", "parent", "--reseed", "1", "--lr", "1e-3"]
    if quick:
        return [*common, "--grid", "16", "--hidden", "8", "--pool-size", "8", "--batch-size", "2",
                "--min-steps", "2", "--max-steps", "4", "--tau-c", "4", "--iterations", "2",
                "--checkpoint-every", "2", "--log-every", "1",
                "--set", "env_kwargs.max_steps_in_episode=8"]  # fmt: skip
    return [*common, "--grid", "64", "--hidden", "64", "--pool-size", "256", "--batch-size", "4",
            "--min-steps", "20", "--max-steps", "60", "--iterations", "1200", "--lr-boundary", "1000",
            "--checkpoint-every", "100", "--keep", "40", "--log-every", "10"]  # fmt: skip


def _rings_args(quick: bool) -> list[str]:
    common = ["--task", "HNCA-Metamorphosis-v0", "--reseed", "1", "--lr", "1e-3"]
    if quick:
        return [*common, "--grid", "16", "--hidden", "8", "--pool-size", "8", "--batch-size", "2",
                "--min-steps", "2", "--max-steps", "4", "--iterations", "2",
                "--checkpoint-every", "2", "--log-every", "1",
                "--set", "env_kwargs.max_steps_in_episode=8"]  # fmt: skip
    return [*common, "--grid", "64", "--hidden", "64", "--pool-size", "256", "--batch-size", "4",
            "--min-steps", "32", "--max-steps", "64", "--iterations", "1200", "--lr-boundary", "1000",
            "--checkpoint-every", "100", "--keep", "40", "--log-every", "10"]  # fmt: skip


# ------------------------------------------------------------------------------ digits
def _digits_cfg(cfg: dict, split: str, **more) -> dict:
    """The run's settings with its env on another split of the digits (``more``: other options)."""
    return {**cfg, "env_kwargs": {**(cfg.get("env_kwargs") or {}), "split": split, **more}}


def _digits_score(cfg: dict, key, n_worlds: int):
    """Cell accuracy, both agreement figures and the MSE at step 200 on the held-out split."""
    env, env_params, apply = _run_env(_digits_cfg(cfg, "test"))
    return _scorer(env, env_params, apply, key, n_worlds)


def _digits_baselines(cfg: dict, key, n_worlds: int):
    """Chance (every cell a random label), the best constant label of the held-out split,
    and the trained rule on the training split (how much of its skill is memory)."""
    from hnca_env.tasks import digits

    env, env_params, apply = _run_env(_digits_cfg(cfg, "test"))
    lo, hi = digits.SPLITS["test"]
    common = int(np.bincount(digits.load_digits()[1][lo:hi]).argmax())
    rows = {
        "chance (random labels)": baselines.evaluate_answer(env, digits.random_label_answer, key, env_params,
                                                            n_worlds=n_worlds),
        f"always {common} (the held-out split's commonest label)": baselines.evaluate_answer(
            env, digits.constant_label_answer(common), key, env_params, n_worlds=n_worlds),
    }  # fmt: skip
    return rows


def _digits_extra(cfg: dict, params, key, n_worlds: int) -> dict[str, dict[str, float]]:
    """The trained rule on the training split, beside its held-out score (same worlds' keys)."""
    env, env_params, apply = _run_env(_digits_cfg(cfg, "train"))
    return {"ours on the training split (not held out)": _scorer(env, env_params, apply, key, n_worlds)(params)}


def _digits_gifs(cfg: dict, params, out: Path) -> list[str]:
    """A held-out digit classified from step 0, swapped for another at step 100."""
    env, env_params, _ = _run_env(_digits_cfg(cfg, "test", swap_time=100))
    steps = int(env_params.max_steps_in_episode)
    return [_gif(env, pool_policy(cfg, params), env_params, steps, out / "digits.gif", scale=4)]


def _digits_args(quick: bool) -> list[str]:
    # Self-classifying MNIST's recipe, CPU-sized: the cells learn their 3x3 perception kernels
    # (from the raw neighbourhood; they start at identity + Sobel), N(0, 0.02) noise on the
    # updates, a quarter of each batch's digits swapped under their cells (mutation), pool
    # training on the training split, the test split held out
    common = ["--task", "Digits-v0", "--grid", "28", "--reseed", "1", "--lr", "2e-3",
              "--set", "env_kwargs.cell_obs=neighbourhood", "--set", "learn_perception=[cell]",
              "--set", "trainer.action_noise=0.02", "--set", "remat=false"]  # fmt: skip
    if quick:
        return [*common, "--hidden", "8", "--pool-size", "16", "--batch-size", "8", "--min-steps", "2",
                "--max-steps", "3", "--iterations", "2", "--checkpoint-every", "2", "--log-every", "1",
                "--set", "trainer.mutate=2", "--set", "env_kwargs.max_steps_in_episode=8"]  # fmt: skip
    # both cores: the batch split over 2 CPU devices, each differentiating its worlds one at
    # a time (world_chunk=1: 784-cell worlds stay in cache), 20 steps as the reference
    # hidden 128 (not the reference's 80): the rule under-fits at 80 (training-split accuracy
    # 0.80 against 0.78 held out), and 128 costs 6% more time an iteration here
    return [*common, "--hidden", "128", "--pool-size", "1024", "--batch-size", "8", "--min-steps", "20",
            "--max-steps", "20", "--iterations", "20000", "--lr-boundary", "14000", "--set", "trainer.mutate=2",
            "--set", "trainer.world_chunk=1", "--devices", "2", "--checkpoint-every", "500", "--keep", "50",
            "--log-every", "50"]  # fmt: skip


EXPERIMENTS: dict[str, Experiment] = {
    "main": Experiment(
        name="main",
        reference="README's main job: a recognisable heart, MSE after 96 steps <= 0.004 over hnca eval's 32 worlds",
        train_args=_main_args,
        score=_grow_score,
        baselines=_main_baselines,
        gifs=_main_gifs,
        bars=(Bar("grow", "mse", limit=0.004),),
        eval_worlds=32,
    ),
    "growing": Experiment(
        name="growing",
        reference="Growing NCA (Mordvintsev et al., Distill 2020): grow, persist and regenerate a pattern",
        train_args=_growing_args,
        score=_growing_score,
        baselines=_growing_baselines,
        gifs=_growing_gifs,
        bars=(
            Bar("grow", "mse_96", limit=0.003, goal=0.001),
            Bar("persist", "mse_288", ratio_of="mse_96", ratio=1.5),
            Bar("regenerate", "mse_cut_plus_48", ratio_of="mse_before_cut", ratio=1.5),
        ),
        eval_worlds=64,
    ),
    "digits": Experiment(
        name="digits",
        reference="Self-classifying MNIST digits (Randazzo et al., Distill 2020): 95.3% cell accuracy, "
        "88.1% of digits whose cells all agree on one label (best over the first 200 steps, MNIST test set)",
        train_args=_digits_args,
        score=_digits_score,
        baselines=_digits_baselines,
        extra=_digits_extra,
        gifs=_digits_gifs,
        bars=(
            Bar("cell accuracy", "cell_accuracy", limit=0.85, goal=0.953, higher=True),
            Bar("all right", "all_right", limit=0.6, goal=0.881, higher=True),
        ),
        eval_worlds=512,
        curve_every=4,
    ),
    "metamorphosis": Experiment(
        name="metamorphosis",
        reference="H-NCA Metamorphosis (Pande & Grattarola, ALIFE 2023): coordinators turn the child's "
        "pattern A into B, B made of A's own motifs rearranged (reference: normalised MSE 0.07-0.26, "
        "final training losses)",
        train_args=_motifs_parent_args,
        child_args=_motifs_child_args,
        child_score=_metamorphosis_child_score,
        score=_metamorphosis_score,
        baselines=_metamorphosis_baselines,
        gifs=_metamorphosis_gifs,
        bars=(Bar("metamorphosis", "nmse", limit=0.5, goal=0.26),),
        eval_worlds=16,
    ),
    "metamorphosis-rings": Experiment(
        name="metamorphosis-rings",
        reference="HNCA-Metamorphosis-v0's circles -> rings pair (not the reference's: B shares no motif with A)",
        train_args=_rings_args,
        score=_metamorphosis_score,
        baselines=_metamorphosis_baselines,
        gifs=_metamorphosis_gifs,
        bars=(Bar("metamorphosis", "nmse", limit=0.6),),
        eval_worlds=16,
    ),
}


# ------------------------------------------------------------------------------ the report
def _plot(curve: list[dict], exp: Experiment, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metrics = sorted({b.metric for b in exp.bars})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, x in zip(axes, ("iteration", "time")):
        for m in metrics:
            ax.plot([r[x] for r in curve], [r[m] for r in curve], marker=".", label=m)
        for b in exp.bars:
            if b.limit is not None:
                ax.axhline(b.limit, ls="--", c="grey", lw=0.8)
        if any(b.higher for b in exp.bars):  # accuracies: fractions on a linear axis
            ax.set_ylim(0, 1)
            ax.set_ylabel("fraction (higher is better)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("normalised MSE" if metrics == ["nmse"] else "MSE")
        ax.set_xlabel("iteration" if x == "iteration" else "training wall-clock (s)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"reproduce {exp.name}: evaluation over {exp.eval_worlds} worlds per checkpoint", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def run_experiment(name: str, runs: Path, quick: bool = False, results: Path | None = None,
                   docs: Path | None = None) -> dict:  # fmt: skip
    """Train, score and report one experiment; returns the JSON record it writes."""
    exp = EXPERIMENTS[name]
    commit = _commit()  # before this run writes its own GIFs and curve into the tree
    run = runs / name
    results = results or (run if quick else RESULTS)
    docs = docs or (run if quick else DOCS)
    results.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    cfg, run = train(exp, run, quick)
    wall_train = time.perf_counter() - t0
    n = 2 if quick else exp.eval_worlds
    key = jax.random.key(EVAL_SEED)
    times = _times(run)
    score = exp.score(cfg, key, n)
    curve = []
    for it, params in checkpoints(run, cfg, exp.curve_every):
        row = {"iteration": it, "time": times(it), **score(params)}
        row["bars_met"] = [b.name for b in exp.bars if b.met(row)]
        curve.append(row)
        print(f"  checkpoint {it}: " + ", ".join(f"{k}={v:.5g}" for k, v in row.items()
                                                  if isinstance(v, float)))  # fmt: skip
    from flax import serialization

    with open(run / "params.msgpack", "rb") as f:
        final_params = serialization.from_bytes(carry_template(cfg).params, f.read())
    final = score(final_params)
    # do-nothing: a network of zeros outputs zero updates, scored by the same compiled scorer
    base = {"do-nothing": score(_zero_output(final_params)), **exp.baselines(cfg, key, n)}
    if exp.extra is not None:
        base.update(exp.extra(cfg, final_params, key, n))
    bars = {}
    for b in exp.bars:
        first = next((r for r in curve if b.name in r["bars_met"]), None)
        bars[b.name] = {
            "bar": b.describe(),
            "value": final[b.metric],
            "threshold": b.threshold(final),
            "met": bool(b.met(final)),
            "first_checkpoint_meeting_it": None if first is None else {"iteration": first["iteration"],
                                                                       "train_seconds": first["time"]},
        }  # fmt: skip
    gifs = [os.path.relpath(p, ROOT) for p in exp.gifs(cfg, final_params, docs)]
    plot = _plot(curve, exp, docs / f"{name}_curve.png")
    summary = json.loads((run / "summary.json").read_text())
    child = None
    if exp.child_args is not None:
        child_run = run.parent / "child"
        child_cfg = json.loads((child_run / "config.json").read_text())
        with open(child_run / "params.msgpack", "rb") as f:
            child_params = serialization.from_bytes(carry_template(child_cfg).params, f.read())
        child = {
            "train_command": "hnca train " + " ".join(exp.child_args(quick)),
            "config": child_cfg,
            "iterations": child_cfg["iterations"],
            "train_seconds": json.loads((child_run / "summary.json").read_text()).get("train_seconds"),
            "scores": exp.child_score(child_cfg, child_params, key, n),
        }
    record = {
        "experiment": name,
        "reference": exp.reference,
        "command": f"python benchmarks/reproduce.py {name}" + (" --quick" if quick else ""),
        "train_command": "hnca train " + " ".join(exp.train_args(quick)),
        "config": cfg,
        "commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "backend": jax.default_backend(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },  # fmt: skip
        "iterations": cfg["iterations"],
        "train_seconds": summary.get("train_seconds"),
        "seconds_this_invocation": round(wall_train, 1),
        "eval": {"worlds": n, "seed": EVAL_SEED},
        "metrics": final,
        "baselines": base,
        "bars": bars,
        "curve": curve,
        "gifs": gifs,
        "plot": None if plot is None else os.path.relpath(plot, ROOT),
        "child_stage": child,
    }
    path = results / f"reproduce_{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    os.replace(tmp, path)
    _print_table(record)
    return record


def _print_table(record: dict) -> None:
    print(f"\n{record['experiment']}: {record['reference']}")
    print(f"trained {record['iterations']} iterations in {record['train_seconds']:.0f} s; "
          f"evaluated over {record['eval']['worlds']} worlds (seed {record['eval']['seed']})")  # fmt: skip
    names = list(record["metrics"])
    print("| policy | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    print("| **ours (trained)** | " + " | ".join(f"{record['metrics'][k]:.5f}" for k in names) + " |")
    for b, m in record["baselines"].items():
        print(f"| {b} | " + " | ".join(f"{m[k]:.5f}" if k in m else "" for k in names) + " |")
    for b in record["bars"].values():
        first = b["first_checkpoint_meeting_it"]
        when = (
            "never" if first is None else f"iteration {first['iteration']} ({first['train_seconds']:.0f} s)"
        )
        print(f"bar {b['bar']}: {b['value']:.5f} vs {b['threshold']:.5f} -> "
              f"{'MET' if b['met'] else 'MISSED'}; first met at {when}")  # fmt: skip


#: The hand-written part of docs/reproductions.md; the tables below it come from the JSON.
DOC_INTRO = """# Reproductions

Published results, reproduced on this package with its own trainer (`hnca train`) and scored
over pinned evaluation worlds beside trivial baselines computed by the same metric code
(`hnca_env.baselines`). Each section comes from `benchmarks/results/reproduce_<experiment>.json`,
written by `python benchmarks/reproduce.py <experiment>` (which trains, or resumes, the run
in `runs/reproduce/<experiment>`); `python benchmarks/reproduce.py --report` rewrites this page
from the JSON files, so page and JSON agree. A bar missed is reported as missed.

Baselines: *do-nothing* is the policy whose every update is zero; the *same-area disc* is a disc
with the target silhouette's area at its centroid, in the silhouette's mean colour; the
*silhouette in mean colour* is the target's own shape (alpha >= 0.5) painted in that colour. Both
images never change, so their MSE is the same at every step. A trained rule that does not beat the
disc has learnt a blob, not the pattern.
"""


#: What the JSON cannot say about a run: how it was run, and what it means.
NOTES = {
    "main": (
        "This is `hnca train` with no options (its embedded default: 24×24 grid, 16×16 heart, "
        "pool 256, batch 8, 32–48 steps, hidden 64, 1,200 iterations); `--iterations 1200` above is "
        "that default spelled out. The old default (32×32, 20×20 heart, 600 iterations) scored "
        "0.0126 over 32 worlds: no better than the same-area disc. This record is a rerun at a "
        "later commit on idle cores (189 s of training); the first run, on 2 cores shared with "
        "other jobs (load ≈ 5), took 413 s and scored the same MSE to every printed digit "
        "(0.0020727), across the levels-as-data refactor. The README's first command "
        "(`python -m pip install . && hnca train --out runs/quickstart`) from a fresh clone in a "
        "fresh virtualenv, on the same 2-core machine otherwise idle (load 0.6 at the start), took "
        "**244 s including the install** (bar: 6 minutes; training ran at 6 iterations/s) and printed "
        "`mse = 0.002073 after 96 steps from the seed, over 32 worlds`, the same number as above."
    ),
    "growing": (
        "Growing NCA's recipe at 40×40 with a 24 px heart: pool 1024, batch 8, the worst sample "
        "re-seeded, the 3 best damaged, 64–96 steps, Adam 2e-3 → 2e-4 at iteration 2,000, "
        "per-parameter gradient normalisation, hidden 128, 16 channels, alive masking. Planned for "
        "3,000 iterations and stopped at 2,400 (a checkpoint, then `--resume --iterations 2400`) "
        "to fit a session; Growing NCA trains 8,000 at 72×72. Persist runs the rule for 288 steps "
        "from the seed; Regenerate cuts Regenerate-v0's hole (radius 10–20 % of the side) at "
        "step 96 and scores 48 steps later. The ratio bars hold trivially while the MSE is high, "
        "so *all bars together* is the figure that counts: first at iteration 1,100. Training "
        "began at commit a049326 (the scoring and GIFs ran at the commit above); the changes "
        "between them add trainer options that are off here and checks that compile to nothing. "
        "Training shared the 2 cores with other jobs (load 3–7), so its wall-clock is about "
        "twice an idle machine's."
    ),
    "digits": (
        "`Digits-v0` (scikit-learn's 8×8 digits scaled ×3 and padded to 28×28, 20 channels, fire "
        "rate 0.5; trained on the first 1,437 digits, scored on the held-out 360) with a CPU-sized "
        "version of Self-classifying MNIST's recipe: the cells observe their raw 3×3 "
        "neighbourhood and learn their perception kernels (a depthwise 3×3 per channel, started "
        "at identity + Sobel; `learn_perception=[cell]`), hidden 128, N(0, 0.02) noise on every "
        "update in training, pool 1,024, batch 8 with 2 digits swapped under their cells "
        "(mutation) and 1 re-seeded, 20 steps, per-parameter gradient normalisation, Adam "
        "2e-3 → 2e-4 at iteration 14,000, 20,000 iterations, on both cores: `--devices 2` splits "
        "each batch over 2 CPU host devices, one core each, and `world_chunk=1` has each device "
        "differentiate its 4 worlds one at a time (0.175 s an iteration in this run; "
        "benchmarks/pool_devices.py measures 0.185 s this way against 0.287 s for the defaults on "
        "the same 2 cores at hidden 80). Scored at step 200 (the "
        "deterministic rule, no noise) over 512 worlds drawn from the held-out split. **Names:** "
        "`cell_accuracy` is the mean over digits of the fraction of alive cells naming the right "
        "label; `all_right` is the fraction of digits whose alive cells *all* name the right "
        "label; `all_agree` the fraction whose alive cells all name one label, right or not. The "
        "paper's 88.1% \"total agreement\" is `all_agree` (the notebook counts a digit when all its "
        "cells name the same label), best over the first 200 steps, on MNIST; its 95.3% accuracy "
        "is pooled over all alive cells. The do-nothing rule names label 0 everywhere (its class "
        "channels stay zero), so it \"agrees\" on every digit: `all_agree` alone says nothing. "
        "**Departures:** the reference's `Conv2D(80, 3)` + `Conv2D(80, 1)` (a full learned 3×3 "
        "convolution and a second hidden layer) is replaced by learned depthwise kernels and one "
        "hidden layer of 128 (see the history below), batch 16 by 8, 100,000 iterations by "
        "20,000; scikit-learn's 8×8 digits stand in for MNIST (nothing downloads). "
        "**Result: both bars are met.** After 20,000 iterations (58 min 22 s of training) "
        "held-out cell accuracy is 0.89 and all-right 0.81 (bars 0.85 and 0.6; the paper's "
        "95.3% / 88.1%, whose 88.1% is `all_agree`: ours 0.86); on the training digits 0.94 / "
        "0.88. Both bars are first met at the 16,000 checkpoint (47 min 6 s: 0.90 / 0.80); the "
        "18,000 one scored 0.92 / 0.84. Before the decay (2,000–14,000) cell accuracy climbs to "
        "0.73–0.79 and all-right stays at 0.55–0.57; the decay at 14,000 lifts both within "
        "2,000 iterations. History, each run of this command with nothing else on the machine: "
        "the same recipe at hidden 80 ended at 0.78 / 0.66 with the decay at 8,000 (20,000 "
        "iterations, 53 min 43 s; cell accuracy 0.73 at 10,000–14,000, still rising at the end) "
        "and at 0.79 / 0.64 with the decay at 14,000 (21,000 iterations, 61 min 19 s; its "
        "18,000 and 20,000 checkpoints 0.82 / 0.67 and 0.82 / 0.70). Hidden 80 under-fitted "
        "(0.80 on the training digits against 0.78 held out), and hidden 128 costs 6% more "
        "time an iteration (0.1705 against 0.1604 s over 250 iterations), so 128 it is: at "
        "equal iterations its training loss was lower from iteration 1,000 on. Earlier "
        "recipes: 16–24 steps, decay at 4,000, 8,000 iterations, pinned to one core at 0.43 s "
        "an iteration (58 min): 0.64 / 0.47; 5,000 iterations at a constant 2e-3 (48 min): "
        "0.48 / 0.35. Tried before those, each on one core: the reference's two-layer "
        "model on the raw neighbourhood stayed at chance for 400 iterations at batch 16 (1.1 s an "
        "iteration), and its training loss had not moved after 1,200 iterations at "
        "batch 8 or 650 at batch 16, where the depthwise model's was falling; fixed perception "
        "reached 0.31 accuracy at step 20 after 4,000 iterations; the raw neighbourhood with one "
        "layer was at chance after 500; Adam 1e-2 did not help. "
        "Nothing else ran on the machine during training but two Python processes of a few "
        "seconds each, pinned to one core, in its second minute. The `+dirty` commit: the tree differed "
        "from the commit only in tests/conftest.py (edited while the run went; the run does not "
        "load it)."
    ),
    "metamorphosis": (
        "`HNCA-Metamorphosis-Motifs-v0` (the `dots-rosettes` pair: 20 dots in three colours "
        "scattered on a dark background in A, the same dots regrouped into five rosettes in B), "
        "64×64 children, 16×16 coordinators over 4×4 clusters, 12 channels, the reference's "
        "perception and adder multiplexer. Stage 1 trains the child alone to grow A from one fixed "
        "U[0, 1) noise array (the reference reuses one stored noise seed; a noise drawn afresh per "
        "world would leave a translation-equivariant rule on a torus no way to place the motifs); "
        "stage 2 freezes it and trains the coordinators (hidden 256) on 20–60 coupled steps after "
        "τ_c = 64 child-only steps, run without gradient, pool episodes starting from the child's "
        "end states (the reseeded worlds). The score is the whole episode: 64 child-only steps "
        "then 60 coupled ones, over 16 worlds. **Departures:** the child's loss is the pixel MSE "
        "to A, not the reference's VGG style loss (no pretrained network is shipped or "
        "downloaded); 64×64 instead of 128×128; τ_c 64 instead of 100; evaluated after 60 coupled "
        "steps, not 200. The reference's 0.07–0.26 are final *training* losses divided by B's "
        "variance; ours is an evaluation. Both stages shared the 2 cores with other jobs (load "
        "3–5); each took under the 2-hour bar (child 56 min, coordinators 29 min). The goal (0.26) is met too. "
        "Both stages ran, and were scored, in one process started at commit 95be0d7; the commit "
        "above is the tree when the JSON was written (its later changes move code without "
        "changing a number: tests/test_golden.py)."
    ),
    "metamorphosis-rings": (
        "`HNCA-Metamorphosis-v0` as registered: both levels act and train together in one stage "
        "(children 64×64×12 start in pattern A, the circles; coordinators over 4×4 clusters, "
        "hidden 256; 32–64 steps per pool episode, pool 256, batch 4, Adam 1e-3 → 1e-4 at "
        "iteration 1,000), scored after the task's 64 steps over 16 worlds. This pair is ours, "
        "not the reference's: B (rings) shares no motif with A, and the children are trained "
        "with the coordinators instead of pretrained and frozen, so it is an easier problem "
        "than `metamorphosis` above and its number is not comparable with the reference's. The "
        "earlier figure for this task (5,061 on the 0–255 scale, a normalised MSE of 0.87) was "
        "one training run's loss, not this evaluation. It ran pinned to one core, with other "
        "training jobs on the other (load ≈ 2). The `+dirty` commit: the run's "
        "process started at the commit shown, and the tree was edited (the digits experiment) "
        "while it ran; the edits were to code it had already loaded."
    ),
}


def _summary(records: dict[str, dict]) -> str:
    """One row per bar: ours, the best trivial baseline on the bar's metric, met, time to it."""
    rows = ["| experiment | bar (goal: the published figure) | ours | best trivial baseline | met | "
            "first met (iteration, training time) |", "|---|---|---:|---|---|---|"]  # fmt: skip
    for name, r in records.items():
        for b in r["bars"].values():
            metric, higher = b["bar"].split()[0], ">=" in b["bar"]
            trivial = {k: m[metric] for k, m in r["baselines"].items() if metric in m and not k.startswith("ours")}
            best = (max if higher else min)(trivial, key=trivial.get) if trivial else None
            first = b["first_checkpoint_meeting_it"]
            when = "—" if first is None else f"{first['iteration']:,}, {first['train_seconds'] / 60:.0f} min"
            rows.append(
                f"| {name} | `{b['bar']}` | {b['value']:.3g} | "
                + ("—" if best is None else f"{best}: {trivial[best]:.3g}")
                + f" | {'**met**' if b['met'] else '**missed**'} | {when} |"
            )
    return "\n".join(rows) + "\n"


def write_doc(results: Path = RESULTS, path: Path = ROOT / "docs" / "reproductions.md") -> str:
    """docs/reproductions.md from every ``reproduce_*.json`` in ``results``."""
    parts = [DOC_INTRO]
    records = {n: json.loads((results / f"reproduce_{n}.json").read_text())
               for n in EXPERIMENTS if (results / f"reproduce_{n}.json").exists()}  # fmt: skip
    if records:
        parts.append("## Summary\n\nEvery bar of every experiment, from the records below; the details, "
                     "baselines and GIFs are in each experiment's section.\n")  # fmt: skip
        parts.append(_summary(records))
    for name in EXPERIMENTS:
        f = results / f"reproduce_{name}.json"
        if not f.exists():
            parts.append(
                f"\n## {name}\n\nNot run yet at this commit (`python benchmarks/reproduce.py {name}`).\n"
            )
            continue
        r = json.loads(f.read_text())
        parts.append(f"\n<a id=\"{name}\"></a>\n\n## {name}: {r['reference']}\n")  # anchor: reproductions.md#{name}
        if name in NOTES:
            parts.append(NOTES[name] + "\n")
        parts.append(
            f"`{r['command']}` at commit `{r['commit'][:12]}` ({r['machine']['cpus']} CPUs, "
            f"{r['machine']['backend']}, load {r['machine']['load_before'][0]:.1f} at the start). "
            f"Trained with `{r['train_command']}`: {r['iterations']} iterations in "
            f"{r['train_seconds']:.0f} s of training; evaluated over {r['eval']['worlds']} worlds "
            f"(key {r['eval']['seed']}).\n"
        )
        names = list(r["metrics"])
        rows = ["| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
        rows.append(
            "| **ours (trained)** | " + " | ".join(f"**{r['metrics'][n]:.5g}**" for n in names) + " |"
        )
        for b, m in r["baselines"].items():
            rows.append(f"| {b} | " + " | ".join(f"{m[n]:.5g}" if n in m else "" for n in names) + " |")
        parts.append("\n".join(rows) + "\n")
        rows = ["| bar | ours | threshold | met | first checkpoint meeting it |", "|---|---:|---:|---|---|"]
        for b in r["bars"].values():
            first = b["first_checkpoint_meeting_it"]
            when = (
                "none" if first is None else f"iteration {first['iteration']}, {first['train_seconds']:.0f} s"
            )
            rows.append(f"| `{b['bar']}` | {b['value']:.5g} | {b['threshold']:.5g} | "
                        f"{'**met**' if b['met'] else '**missed**'} | {when} |")  # fmt: skip
        every = [b for b in r["bars"]]
        together = next((c for c in r["curve"] if set(every) <= set(c["bars_met"])), None)
        if len(every) > 1:
            rows.append(
                "| all bars together | | | "
                + ("**met**" if all(b["met"] for b in r["bars"].values()) else "**missed**")
                + " | "
                + (
                    "none"
                    if together is None
                    else f"iteration {together['iteration']}, {together['time']:.0f} s"
                )
                + " |"
            )
        parts.append("\n".join(rows) + "\n")
        child = r.get("child_stage")
        if child:
            rows = [f"Stage 1 (child), `{child['train_command']}`: {child['iterations']} iterations in "
                    f"{child['train_seconds']:.0f} s; the child growing pattern A from the fixed noise seed "
                    f"(the parent stage's start), over the same worlds:\n",
                    "| | `mse` | `nmse` (÷ variance of A) |", "|---|---:|---:|"]  # fmt: skip
            for b, m in child["scores"].items():
                rows.append(f"| {b} | {m['mse']:.5g} | {m['nmse']:.4g} |")
            parts.append("\n".join(rows) + "\n")
        for g in r["gifs"]:
            parts.append(f"![{os.path.basename(g)}]({os.path.relpath(ROOT / g, path.parent)})")
        if r.get("plot"):
            parts.append(f"\n![curve]({os.path.relpath(ROOT / r['plot'], path.parent)})\n")
    text = "\n".join(parts) + "\n"
    path.write_text(text)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiment", nargs="?", choices=sorted(EXPERIMENTS))
    ap.add_argument("--report", action="store_true", help="only rewrite docs/reproductions.md from the JSON")
    ap.add_argument(
        "--runs", default=str(ROOT / "runs" / "reproduce"), help="where the runs live (resumable)"
    )
    ap.add_argument("--quick", action="store_true", help="a tiny version (seconds), written into the run dir")
    ap.add_argument("--fresh", action="store_true", help="delete the experiment's run directory first")
    args = ap.parse_args(argv)
    if args.report:
        print(write_doc())
        return 0
    if args.experiment is None:
        ap.error("name an experiment (or --report)")
    runs = Path(args.runs)
    if args.fresh:
        shutil.rmtree(runs / args.experiment, ignore_errors=True)
    run_experiment(args.experiment, runs, quick=args.quick)
    if not args.quick:
        print(write_doc())
    return 0


if __name__ == "__main__":
    sys.exit(main())
