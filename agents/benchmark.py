"""A frozen benchmark protocol over every task id, and any algorithm scored on its terms.

A :class:`Suite` fixes, per task id, the env settings, the training budget in world steps, the
number of seeds, the evaluation worlds, steps and keys, and the headline metric. Scores are
normalised per task so that doing nothing is 0 and a reference solution is 1 (the metric's
perfect value, which an oracle that paints the target attains: an error of 0, an accuracy of 1),
then aggregated over (task, seed) runs with the interquartile mean and 95% stratified-bootstrap
intervals, performance profiles and the probability of improvement (:mod:`hnca_env.stats`,
rliable's recipe, tested against rliable in ``benchmarks/stats_vs_rliable.py``).

Algorithms are scored by :func:`run_algorithm`: a built-in name (:data:`ALGORITHMS`), a
``policy_maker(env) -> policy`` that needs no training, or a ``trainer(env, env_params,
budget, key) -> policy`` trained anew for every seed. :func:`score_algorithm` gives the row of
the table (raw metric per task, normalised scores, IQM with its interval) for any of them, so a
new algorithm is compared exactly as ours are (docs/protocol.md).

``hnca bench`` (:mod:`agents.cli`) runs a suite for several algorithms into a directory, saving
each (task, algorithm) as it finishes, and writes the scoreboard (:func:`write_report`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import hnca_env
from hnca_env import stats
from hnca_env.evaluate import evaluate_worlds, policy_from_apply, random_policy, zero_policy

#: Metrics where a higher value is better; every other headline metric is an error.
HIGHER_IS_BETTER = frozenset({"all_correct", "cell_accuracy", "all_right", "all_agree"})
#: The built-in algorithms ``hnca bench`` knows by name.
ALGORITHMS = ("random", "do-nothing", "pool", "ippo", "mappo", "es")
#: The hierarchy's ablations (``HNCAEnv(coupling=...)``): ``ALGO@COUPLING`` trains and scores
#: ``ALGO`` with the coordinators' broadcast zeroed or their clusters rewired at random.
ABLATIONS = ("no-broadcast", "rewired")
#: The depth ablations of the tasks three levels deep that take ``depth=`` (HNCA3-*): the same
#: task two levels deep (the coordinators see what the top level saw) and flat (nobody does).
DEPTHS = ("two-level", "flat")
_DEPTH = {"two-level": 2, "flat": 1}


def split_name(algorithm: str) -> tuple[str, str]:
    """``"pool@rewired" -> ("pool", "rewired")``; a plain name has the ``intact`` coupling."""
    base, _, coupling = algorithm.partition("@")
    coupling = coupling or "intact"
    if base not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {base!r}; built in: {ALGORITHMS}")
    if coupling != "intact" and (coupling not in ABLATIONS + DEPTHS or base in ("random", "do-nothing")):
        raise ValueError(
            f"{algorithm!r}: an ablation is a trained algorithm @ one of {ABLATIONS + DEPTHS} (e.g. pool@rewired)"
        )
    return base, coupling


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of a suite: how it is made, trained, scored and normalised."""

    task: str
    metric: str  # the headline metric (hnca_env.evaluate's name)
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # training env
    eval_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # on top, for scoring
    budget: int = 12_288  # world steps of training per seed
    #: Named held-out evaluations, each env kwargs on top of the scoring env's (e.g. a larger
    #: grid than trained on: ``{"64x64": {"grid": (64, 64)}}``). Recorded beside the headline.
    splits: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    @property
    def reference(self) -> float:
        """The score that normalises to 1: the metric's perfect value (an oracle's)."""
        return 1.0 if self.higher_is_better else 0.0

    def make(self, evaluation: bool = False, split: str | None = None):
        """The training env, the scoring env (``evaluation``), or a held-out ``split``'s env."""
        if split is not None and split not in self.splits:
            raise ValueError(f"{self.task} has no split {split!r}; it has {sorted(self.splits)}")
        kwargs = {**dict(self.env_kwargs), **(dict(self.eval_kwargs) if evaluation or split else {})}
        return hnca_env.make(self.task, **{**kwargs, **(dict(self.splits[split]) if split else {})})


@dataclasses.dataclass(frozen=True)
class Suite:
    """A frozen protocol: the tasks, the seeds, the evaluation worlds and keys."""

    name: str
    tasks: tuple[TaskSpec, ...]
    seeds: int = 10
    eval_worlds: int = 32
    eval_seed: int = 20_251  # root of the evaluation keys (pinned by tests/test_benchmark.py)
    train_seed: int = 0  # root of the training keys
    description: str = ""

    def task(self, task_id: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.task == task_id:
                return spec
        raise ValueError(f"suite {self.name!r} has no task {task_id!r}; it has {[t.task for t in self.tasks]}")

    def eval_key(self, seed: int) -> jax.Array:
        """The evaluation key of seed ``seed``: every algorithm is scored on the same worlds."""
        return jax.random.fold_in(jax.random.key(self.eval_seed), seed)

    def train_key(self, seed: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.train_seed), seed)


def _small(task, metric, budget=12_288, eval_kwargs=None, splits=None, **env_kwargs) -> TaskSpec:
    return TaskSpec(task, metric, env_kwargs, eval_kwargs or {}, budget, splits or {})


#: 32-step episodes on 16x16 grids (Digits: its fixed 28x28), events inside the episode.
_CPU_SMALL = (
    _small("Grow-v0", "mse", grid=(16, 16), target="heart", target_size=10, max_steps_in_episode=32),
    _small("Persist-v0", "mse", grid=(16, 16), target="heart", target_size=10, max_steps_in_episode=48),
    _small(
        "Regenerate-v0", "mse_after_damage", grid=(16, 16), target="heart", target_size=10,
        max_steps_in_episode=48, damage_times=[24], task_params={"recover_steps": 16},
    ),  # fmt: skip
    _small("HNCA-Grow-v0", "mse", grid=(16, 16), target="heart", target_size=12, tau_c=8,
           max_steps_in_episode=32, clamp=True),  # fmt: skip
    _small("HNCA-Metamorphosis-v0", "mse_255", grid=(16, 16), max_steps_in_episode=32, clamp=True),
    _small("HNCA-Metamorphosis-Fixed-v0", "mse_255", grid=(16, 16), max_steps_in_episode=32, clamp=True),
    _small("HNCA-Metamorphosis-Motifs-v0", "mse_255", grid=(16, 16), tau_c=8, max_steps_in_episode=32,
           clamp=True),  # fmt: skip
    _small("HNCA-GoalSwitch-v0", "mse_after_switch", grid=(16, 16), switch_times=(16,),
           max_steps_in_episode=32, clamp=True),  # fmt: skip
    _small("Digits-v0", "cell_accuracy", max_steps_in_episode=32, eval_kwargs={"split": "test"}),
    _small("Density-v0", "all_correct", grid=(16, 16), max_steps_in_episode=32, clamp=True),
    _small("Density-Flat-v0", "all_correct", grid=(16, 16), max_steps_in_episode=32, clamp=True),
    _small("HNCA-Locomotion-v0", "centre_error", grid=(16, 16), target_size=8, max_steps_in_episode=32,
           clamp=True),  # fmt: skip
    _small("HNCA3-GoalSwitch-v0", "mse_after_switch", grid=(16, 16), switch_times=(16,),
           max_steps_in_episode=32, clamp=True),  # fmt: skip
    _small("HNCA3-Layout-v0", "mse", grid=(16, 16), max_steps_in_episode=32, clamp=True),
    _small("HNCA3-Mosaic-v0", "mse", grid=(16, 16), max_steps_in_episode=32),
    _small("HNCA3-MosaicSwitch-v0", "mse", grid=(16, 16), switch_times=(16,), max_steps_in_episode=32),
)

SUITES: dict[str, Suite] = {
    "cpu-small": Suite(
        "cpu-small",
        _CPU_SMALL,
        seeds=10,
        eval_worlds=32,
        description="every id on 16x16 grids (Digits 28x28), 32-48-step episodes, 12,288 world steps "
        "of training per seed, 10 seeds, 32 evaluation worlds per seed",
    ),
    "cpu-generalise": Suite(
        "cpu-generalise",
        (
            _small("Grow-v0", "mse", grid=(32, 32), target="heart", target_size=20, max_steps_in_episode=32,
                   splits={"64x64": {"grid": (64, 64)}}),
            _small("HNCA-Grow-v0", "mse", grid=(32, 32), target="heart", target_size=24, tau_c=8,
                   max_steps_in_episode=32, clamp=True, splits={"64x64": {"grid": (64, 64)}}),
            _small("Density-v0", "all_correct", grid=(32, 32), max_steps_in_episode=32, clamp=True,
                   splits={"64x64": {"grid": (64, 64), "max_steps_in_episode": 64}}),
            _small("Density-Flat-v0", "all_correct", grid=(32, 32), max_steps_in_episode=32, clamp=True,
                   splits={"64x64": {"grid": (64, 64), "max_steps_in_episode": 64}}),
            _small("Digits-v0", "cell_accuracy", max_steps_in_episode=32, eval_kwargs={"split": "test"},
                   splits={"train-digits": {"split": "train"}}),
        ),  # fmt: skip
        seeds=10,
        eval_worlds=32,
        description="generalisation: trained on 32x32 (Digits: its training digits), scored on 32x32 and "
        "on a 64x64 split with the same rule (Density: 64 steps there, twice the distance to carry "
        "the vote; Digits: held-out digits, and its training digits as the split); 12,288 world "
        "steps per seed, 10 seeds, 32 evaluation worlds",
    ),
    "gpu-full": Suite(
        "gpu-full",
        tuple(
            dataclasses.replace(
                t,
                env_kwargs={k: v for k, v in t.env_kwargs.items() if k != "grid"}
                | ({"grid": (64, 64)} if "grid" in t.env_kwargs else {}),
                budget=786_432,
            )
            for t in _CPU_SMALL
        ),
        seeds=10,
        eval_worlds=128,
        description="cpu-small's tasks at 64x64 with 64x the budget (786,432 world steps per seed) "
        "and 128 evaluation worlds: for a GPU; not run yet",
    ),
}


def get_suite(suite: str | Suite) -> Suite:
    if isinstance(suite, Suite):
        return suite
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {sorted(SUITES)}")
    return SUITES[suite]


def quick_suite(suite: str | Suite = "cpu-small", tasks: Sequence[str] | None = None) -> Suite:
    """A smoke-test version of a suite: 8-step episodes, 2 seeds, 4 worlds, 1,024 world steps
    (two PPO updates)."""
    base = get_suite(suite)
    chosen = [t for t in base.tasks if tasks is None or t.task in tasks]
    small = []
    for t in chosen:
        kw = dict(t.env_kwargs)
        kw["max_steps_in_episode"] = 8
        for name, at in (("switch_times", (4,)), ("damage_times", [4])):
            if name in kw:
                kw[name] = at
        if "tau_c" in kw:
            kw["tau_c"] = 2
        if "task_params" in kw:
            kw["task_params"] = {"recover_steps": 2}
        splits = {n: {k: (8 if k == "max_steps_in_episode" else v) for k, v in sp.items()} for n, sp in t.splits.items()}
        small.append(dataclasses.replace(t, env_kwargs=kw, budget=1024, splits=splits))
    return dataclasses.replace(
        base, name=base.name + "-quick", tasks=tuple(small), seeds=2, eval_worlds=4,
        description=f"the smoke version of {base.name}: 8-step episodes, 1,024 world steps, 2 seeds x 4 worlds",
    )  # fmt: skip


# ------------------------------------------------------------------------------- scoring
def _metrics_of(per_world: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(np.mean(np.asarray(v))) for k, v in per_world.items()}


def evaluate_policy(
    suite: Suite, spec: TaskSpec, policy, seed: int, split: str | None = None
) -> dict[str, float]:
    """Every metric of ``policy`` on seed ``seed``'s evaluation worlds (of ``split``; means over worlds)."""
    env, params = spec.make(evaluation=True, split=split)
    per_world = evaluate_worlds(env, policy, suite.eval_key(seed), params, n_worlds=suite.eval_worlds)
    return _metrics_of(per_world)


def _per_seed(per_world: Mapping[str, Any], n: int) -> list[dict[str, float]]:
    return [_metrics_of({k: v[i] for k, v in per_world.items()}) for i in range(n)]


def _split_record(per_seed: list[dict[str, float]], metric: str) -> dict:
    return {"per_seed": per_seed, "scores": [s[metric] for s in per_seed]}


def _score_seeds(
    suite: Suite, spec: TaskSpec, policy, seeds: Sequence[int], split: str | None = None
) -> list[dict[str, float]]:
    """One policy on every seed's evaluation worlds (of ``split``), in one compiled program."""
    env, params = spec.make(evaluation=True, split=split)
    keys = jnp.stack([suite.eval_key(s) for s in seeds])

    def one(key):
        return evaluate_worlds(env, policy, key, params, n_worlds=suite.eval_worlds, world_chunk=None)

    return _per_seed(jax.jit(jax.vmap(one))(keys), len(seeds))


def _score_maker(suite: Suite, spec: TaskSpec, policy_maker, seeds: Sequence[int]) -> tuple[list[dict], dict]:
    """A policy that needs no training, made for the scoring env and for each split's env:
    ``(per_seed, info)`` with ``info["splits"]`` where ``spec`` has splits."""
    per_seed = _score_seeds(suite, spec, policy_maker(spec.make(evaluation=True)[0]), seeds)
    splits = {
        n: _split_record(_score_seeds(suite, spec, policy_maker(spec.make(True, n)[0]), seeds, n), spec.metric)
        for n in spec.splits
    }  # fmt: skip
    return per_seed, ({"splits": splits} if splits else {})


def _check_budget(spec: TaskSpec, per_iteration: int, what: str) -> int:
    iters = spec.budget // per_iteration
    if iters < 1:
        raise ValueError(
            f"{spec.task}: the budget ({spec.budget} world steps) is below one {what} ({per_iteration})"
        )
    return iters


def _builtin(name: str, suite: Suite, spec: TaskSpec, seeds: Sequence[int]) -> tuple[list[dict], dict]:
    """Train (where needed) and score a built-in algorithm on every seed; ``(per_seed, info)``;
    ``info["splits"]`` holds the held-out splits' scores of the same trained parameters."""
    env, env_params = spec.make()
    eval_env, eval_params = spec.make(evaluation=True)
    if name in ("random", "do-nothing"):
        return _score_maker(suite, spec, random_policy if name == "random" else zero_policy, seeds)
    keys = jnp.stack([suite.train_key(s) for s in seeds])
    eval_keys = jnp.stack([suite.eval_key(s) for s in seeds])
    episode = int(env_params.max_steps_in_episode)
    t0 = time.perf_counter()
    if name == "pool":
        from agents.pool import PoolConfig, make_pool_trainer

        batch = 8
        iters = _check_budget(spec, batch * episode, "pool iteration (8 full episodes)")
        cfg = PoolConfig(
            pool_size=64, batch_size=batch, min_steps=episode, max_steps=episode, reseed=batch // 2,
            hidden={lvl: 64 if lvl == "cell" else 256 for lvl in env.agent_levels},
            lr=2e-3, lr_final=2e-4, lr_boundary=max(1, 2 * iters // 3), world_chunk=None,
        )  # fmt: skip
        init, iteration, apply = make_pool_trainer(env, env_params, cfg)

        def train(key):
            return jax.lax.fori_loop(0, iters, lambda i, s: iteration(s)[0], init(key)).params

        def policy_of(params, env, env_params):  # an NCA rule: the same on any grid
            return policy_from_apply(apply, params)

        info = {"iterations": iters, "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "mesh"}}
    elif name in ("ippo", "mappo"):
        from agents import ppo as ppo_lib

        cfg = ppo_lib.PPOConfig.for_task(spec.task, algo=name, env_kwargs=dict(spec.env_kwargs),
                                         total_timesteps=spec.budget)  # fmt: skip
        _check_budget(spec, cfg.num_envs * cfg.num_steps, "PPO update")
        ppo = ppo_lib.make_ppo(cfg, env, env_params)

        def train(key):
            return ppo.train(key)["state"].params

        def policy_of(params, env, env_params):
            return _rebind_ppo_policy(ppo, env, env_params, params)

        info = {"updates": cfg.num_updates, "config": cfg.to_dict()}
    elif name == "es":
        from agents.es import ESConfig, make_es

        ecfg = ESConfig(task=spec.task, env_kwargs=dict(spec.env_kwargs), population=16, worlds=1)
        env, env_params, init, iteration, apply = make_es(ecfg)
        gens = _check_budget(spec, ecfg.population * ecfg.worlds * episode, "ES generation")

        def train(key):
            return jax.lax.fori_loop(0, gens, lambda i, s: iteration(s)[0], init(key)).params

        def policy_of(params, env, env_params):  # an NCA rule: the same on any grid
            return policy_from_apply(apply, params)

        info = {"generations": gens, "config": ecfg.to_dict()}
    else:
        raise ValueError(f"unknown algorithm {name!r}; built in: {ALGORITHMS}")

    def scored(e, ep):
        def score(params, key):
            return evaluate_worlds(e, policy_of(params, e, ep), key, ep, n_worlds=suite.eval_worlds, world_chunk=None)

        return lambda params: _per_seed(jax.jit(jax.vmap(score))(params, eval_keys), len(seeds))

    params = jax.block_until_ready(jax.jit(jax.vmap(train))(keys))
    info["train_s"] = time.perf_counter() - t0  # compilation included (one program for every seed)
    per_seed = scored(eval_env, eval_params)(params)
    if spec.splits:
        info["splits"] = {s: _split_record(scored(*spec.make(True, s))(params), spec.metric) for s in spec.splits}
    return per_seed, info


def _rebind_ppo_policy(ppo, env, env_params, params):
    """PPO's deterministic policy on ``env`` (the evaluation env may differ from the training
    env in data only, e.g. Digits' held-out split: same shapes, so the same network)."""
    if env is ppo.env:
        return ppo.policy(params, True)
    from agents import ppo as ppo_lib

    return ppo_lib.make_ppo(ppo.config, env, env_params).policy(params, True)


Trainer = Callable[[Any, Any, int, jax.Array], Any]  # (env, env_params, budget, key) -> policy
PolicyMaker = Callable[[Any], Any]  # env -> policy


def _applies(levels: int, coupling: str) -> bool:
    """Whether an ablation applies to a task ``levels`` deep (links: 2+; a lower depth: 3)."""
    return coupling == "intact" or levels >= (3 if coupling in DEPTHS else 2)


def ablated(spec: TaskSpec, coupling: str) -> TaskSpec:
    """``spec`` with its links ablated (:data:`ABLATIONS`) or its depth cut (:data:`DEPTHS`);
    ``intact``: ``spec`` itself."""
    if coupling == "intact":
        return spec
    levels = len(spec.make()[0].levels)
    if levels < 2:
        raise ValueError(f"{spec.task} has one level, no links to ablate ({coupling!r})")
    if coupling in DEPTHS:
        if levels < 3:
            raise ValueError(f"{spec.task} has {levels} levels; {coupling!r} cuts a three-level task")
        cut = dataclasses.replace(spec, env_kwargs={**spec.env_kwargs, "depth": _DEPTH[coupling]})
        try:
            cut.make()
        except TypeError as e:
            raise ValueError(f"{spec.task} takes no depth= argument, so it has no {coupling!r} version") from e
        return cut
    return dataclasses.replace(spec, env_kwargs={**spec.env_kwargs, "coupling": coupling})


def run_algorithm(
    suite: str | Suite,
    algorithm: str | None = None,
    *,
    task: str,
    policy_maker: PolicyMaker | None = None,
    trainer: Trainer | None = None,
    seeds: Sequence[int] | None = None,
) -> dict:
    """One (task, algorithm) of ``suite``: the per-seed metrics, as :func:`score_algorithm`
    and ``hnca bench`` record them. Give exactly one of ``algorithm`` (a built-in name),
    ``policy_maker(env) -> policy`` or ``trainer(env, env_params, budget, key) -> policy``."""
    suite = get_suite(suite)
    spec = suite.task(task)
    given = [x is not None for x in (algorithm, policy_maker, trainer)]
    if sum(given) != 1:
        raise ValueError("run_algorithm: give exactly one of algorithm, policy_maker, trainer")
    seeds = list(range(suite.seeds)) if seeds is None else list(seeds)
    t0 = time.perf_counter()
    if algorithm is not None:
        base, coupling = split_name(algorithm)
        per_seed, info = _builtin(base, suite, ablated(spec, coupling), seeds)
    elif policy_maker is not None:
        per_seed, info = _score_maker(suite, spec, policy_maker, seeds)
    else:  # the trained policy is scored as it is on the splits' envs (an NCA rule is size-agnostic)
        env, env_params = spec.make()
        per_seed, info, splits = [], {}, {n: [] for n in spec.splits}
        for s in seeds:
            pol = trainer(env, env_params, spec.budget, suite.train_key(s))
            per_seed.append(evaluate_policy(suite, spec, pol, s))
            for n in spec.splits:
                splits[n].append(evaluate_policy(suite, spec, pol, s, split=n))
        if splits:
            info["splits"] = {n: _split_record(v, spec.metric) for n, v in splits.items()}
    if spec.metric not in per_seed[0]:
        raise ValueError(f"{task}: the evaluation gave no {spec.metric!r}; it gave {sorted(per_seed[0])}")
    return {
        "suite": suite.name,
        "task": task,
        "metric": spec.metric,
        "budget": spec.budget,
        "seeds": seeds,
        "per_seed": per_seed,
        "scores": [s[spec.metric] for s in per_seed],
        "seconds": time.perf_counter() - t0,
        **info,
    }


#: The normalised score of a run whose metric is not finite (a diverged run).
FAILED = -10.0


def normalised(spec: TaskSpec, scores: Sequence[float], do_nothing: float) -> np.ndarray:
    """Scores on the 0 = do-nothing, 1 = reference scale (:func:`hnca_env.stats.normalise`);
    a non-finite score (a run that diverged) counts as :data:`FAILED`."""
    out = stats.normalise(scores, do_nothing, spec.reference)
    return np.where(np.isfinite(out), out, FAILED)


def score_algorithm(
    suite: str | Suite,
    algorithm: str | None = None,
    *,
    policy_maker: PolicyMaker | None = None,
    trainer: Trainer | None = None,
    tasks: Sequence[str] | None = None,
    do_nothing: Mapping[str, float] | None = None,
    reps: int = 2000,
) -> dict:
    """The scoreboard row of one algorithm over ``suite``'s tasks (or ``tasks``): per task the
    raw metric per seed, its mean and the normalised scores; over tasks the IQM with its 95%
    stratified-bootstrap interval. ``do_nothing``: each task's do-nothing mean (measured here
    when not given, by the same protocol)."""
    suite = get_suite(suite)
    chosen = [t.task for t in suite.tasks] if tasks is None else list(tasks)
    runs = {t: run_algorithm(suite, algorithm, task=t, policy_maker=policy_maker, trainer=trainer) for t in chosen}
    if do_nothing is None:
        do_nothing = {t: float(np.mean(run_algorithm(suite, "do-nothing", task=t)["scores"])) for t in chosen}
    return row_of(suite, runs, do_nothing, reps=reps)


def row_of(suite: Suite, runs: Mapping[str, dict], do_nothing: Mapping[str, float], reps: int = 2000) -> dict:
    """A row from ``{task: run_algorithm record}`` and each task's do-nothing mean."""
    per_task, norm = {}, {}
    for task, run in runs.items():
        spec = suite.task(task)
        norm[task] = normalised(spec, run["scores"], do_nothing[task])
        per_task[task] = {
            "metric": spec.metric,
            "mean": float(np.mean(run["scores"])),
            "scores": list(map(float, run["scores"])),
            "normalised": norm[task].tolist(),
        }
    point, low, high = stats.stratified_bootstrap(norm, stats.iqm, reps=reps)
    return {"tasks": per_task, "iqm": point, "iqm_ci": [low, high]}


# --------------------------------------------------------------------------- bench runs
def _atomic_json(path: Path, payload) -> None:
    from agents.rundir import atomic_write  # temporary file, fsync, rename

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(payload, indent=1).encode())


def run_path(out: Path, task: str, algorithm: str) -> Path:
    return Path(out) / "runs" / f"{task}__{algorithm}.json"


def bench(
    suite: str | Suite,
    algorithms: Sequence[str],
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Run every (task, algorithm) of ``suite`` not yet in ``out`` (each saved as it finishes,
    so a stopped run resumes where it stopped), then write the report. do-nothing always runs
    (it is the normalisation's zero)."""
    suite = get_suite(suite)
    out = Path(out)
    for a in algorithms:
        split_name(a)
    chosen = [t.task for t in suite.tasks] if tasks is None else list(tasks)
    levels = {t: len(suite.task(t).make()[0].levels) for t in chosen}
    algos = ["do-nothing", *[a for a in algorithms if a != "do-nothing"]]
    meta = out / "suite.json"
    record = {"suite": suite.name, "seeds": suite.seeds, "eval_worlds": suite.eval_worlds,
              "tasks": [dataclasses.asdict(t) | {"env_kwargs": _jsonable(t.env_kwargs)} for t in suite.tasks]}  # fmt: skip
    if meta.exists() and json.loads(meta.read_text())["suite"] != suite.name:
        raise ValueError(f"{out} holds a run of suite {json.loads(meta.read_text())['suite']!r}, not {suite.name!r}")
    _atomic_json(meta, _jsonable(record))
    todo = [
        (t, a)
        for t in chosen
        for a in algos
        if not run_path(out, t, a).exists() and _applies(levels[t], split_name(a)[1])
    ]  # an ablation runs on the tasks with coordinators only (a depth cut: three levels deep)
    from tqdm import tqdm

    bar = tqdm(todo, desc=f"hnca bench {suite.name}", disable=not progress, unit="run")
    failed = []
    for task, algo in bar:
        bar.set_postfix_str(f"{task} {algo}")
        try:
            rec = run_algorithm(suite, algo, task=task)
        except Exception as e:  # one broken run must not stop a run of hours: record it, go on
            failed.append(f"{task} {algo}: {type(e).__name__}: {e}")
            tqdm.write(f"hnca bench: {failed[-1]}")
            continue
        rec["algorithm"] = algo
        rec["commit"] = _commit()
        _atomic_json(run_path(out, task, algo), _jsonable(rec))
    board = write_report(out)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed (rerun the command to retry them): " + "; ".join(failed))
    return board


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray | jax.Array):
        return np.asarray(x).tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def load_runs(out: str | Path) -> dict[str, dict[str, dict]]:
    """``{task: {algorithm: record}}`` of every finished run in ``out``."""
    runs: dict[str, dict[str, dict]] = {}
    for path in sorted((Path(out) / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        runs.setdefault(rec["task"], {})[rec["algorithm"]] = rec
    return runs


def marl_eval_json(runs: Mapping[str, Mapping[str, dict]]) -> dict:
    """marl-eval's raw-data layout: ``{env: {task: {algorithm: {run_i: {step_0: {step_count,
    metric: [per-world means]}, absolute_metrics: {...}}}}}}`` (one evaluation at the end of
    training; the metric values are the seed's means over its evaluation worlds)."""
    out: dict = {"hnca_env": {}}
    for task, algos in runs.items():
        for algo, rec in algos.items():
            steps = rec["budget"] if rec["algorithm"] not in ("random", "do-nothing") else 0
            per_run = {}
            for i, m in enumerate(rec["per_seed"]):
                vals = {k: [v] for k, v in m.items()}
                per_run[f"run_{i}"] = {"step_0": {"step_count": int(steps), **vals}, "absolute_metrics": vals}
            out["hnca_env"].setdefault(task, {})[algo] = per_run
    return out


def write_report(out: str | Path, reps: int = 2000) -> dict:
    """From ``out``'s saved runs: ``marl_eval.json``, ``scoreboard.json``, ``scoreboard.md`` and
    the plots (``scores.png``, ``aggregate.png``, ``profiles.png``). Returns the scoreboard."""
    out = Path(out)
    meta = json.loads((out / "suite.json").read_text())
    name = meta["suite"]
    suite = quick_suite(name.removesuffix("-quick")) if name.endswith("-quick") else get_suite(name)
    runs = load_runs(out)
    do_nothing = {t: float(np.mean(a["do-nothing"]["scores"])) for t, a in runs.items() if "do-nothing" in a}
    algos = sorted({a for algos in runs.values() for a in algos}, key=_order)
    rows = {}
    for algo in algos:
        done = {t: a[algo] for t, a in runs.items() if algo in a and t in do_nothing}
        if done:
            rows[algo] = row_of(suite, done, do_nothing, reps=reps)
    scores = {a: {t: np.asarray(r["tasks"][t]["normalised"]) for t in r["tasks"]} for a, r in rows.items()}
    names = list(rows)
    improvement = {
        f"{b} > {a}": stats.probability_of_improvement(scores[b], scores[a])
        for i, a in enumerate(names) for b in names[i + 1 :] if set(scores[a]) & set(scores[b])
    }  # fmt: skip (one direction: P(a > b) = 1 - P(b > a))
    board = {"suite": meta["suite"], "rows": rows, "probability_of_improvement": improvement,
             "do_nothing": do_nothing, "commits": sorted({r.get("commit") or "?" for a in runs.values()
                                                          for r in a.values()})}  # fmt: skip
    _atomic_json(out / "marl_eval.json", marl_eval_json(runs))
    _atomic_json(out / "scoreboard.json", board)
    (out / "scoreboard.md").write_text(markdown(suite, runs, board))
    _plots(out, suite, rows, scores)
    return board


def _order(algorithm: str) -> tuple[int, int]:
    base, coupling = split_name(algorithm)
    return ALGORITHMS.index(base), ("intact", *ABLATIONS, *DEPTHS).index(coupling)


def ablation_table(suite: Suite, runs, do_nothing, ablations: Sequence[str] = ABLATIONS) -> str:
    """Per task with coordinators and per trained algorithm: the intact hierarchy beside its
    ``ablations`` (raw metric, mean ± 1.96 standard errors over seeds), and the probability that
    an intact run beats an ablated one (normalised scores of that task; :data:`DEPTHS`: the
    three-level task beside its two-level and flat versions)."""
    cols = tuple(ablations)
    lines = []
    for task, per in runs.items():
        spec = suite.task(task)
        for base in ALGORITHMS[2:]:
            if base not in per or not any(f"{base}@{c}" in per for c in cols):
                continue
            cells, probs = [], []
            for name in (base, *[f"{base}@{c}" for c in cols]):
                rec = per.get(name)
                cells.append(_mean_ci(rec["scores"]) if rec else "")
                if rec and name != base and task in do_nothing:
                    a = normalised(spec, per[base]["scores"], do_nothing[task])
                    b = normalised(spec, rec["scores"], do_nothing[task])
                    probs.append(f"{stats.probability_of_improvement({task: a}, {task: b}):.2f}")
                elif name != base:
                    probs.append("")
            arrow = "↑" if spec.higher_is_better else "↓"
            lines.append(f"| {task} | {spec.metric} {arrow} | {base} | " + " | ".join(cells + probs) + " |")
    if not lines:
        return ""
    head = ["| task | metric | algorithm | intact | " + " | ".join(cols) + " | "
            + " | ".join(f"P(intact > {c})" for c in cols) + " |",
            "|---|---|---|" + "---:|" * (1 + 2 * len(cols))]  # fmt: skip
    return "\n".join(head + lines)


def generalisation_table(suite: Suite, runs) -> str:
    """Per task with held-out splits and per algorithm: the headline metric on the scoring env
    beside each split's (the same trained parameters), mean ± 1.96 standard errors over seeds,
    and the split's normalised mean (do-nothing on that split = 0, the perfect value = 1)."""
    lines = []
    for task, per in runs.items():
        spec = suite.task(task)
        if not spec.splits:
            continue
        zero = {n: float(np.mean(per["do-nothing"]["splits"][n]["scores"])) for n in spec.splits
                if "splits" in per.get("do-nothing", {})}  # fmt: skip
        arrow = "↑" if spec.higher_is_better else "↓"
        for algo in sorted(per, key=_order):
            rec = per[algo]
            if "splits" not in rec:
                continue
            cells = [_mean_ci(rec["scores"])]
            for n in spec.splits:
                sc = rec["splits"][n]["scores"]
                # round, then + 0.0: a mean that rounds to zero prints 0.000, not -0.000
                norm = f"{round(float(np.mean(normalised(spec, sc, zero[n]))), 3) + 0.0:.3f}" if n in zero else ""
                cells += [f"{n}: {_mean_ci(sc)}", norm]
            lines.append(f"| {task} | {spec.metric} {arrow} | {algo} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = ["| task | metric | algorithm | as trained | held-out split | normalised on the split |",
            "|---|---|---|---:|---:|---:|"]  # fmt: skip
    return "\n".join(head + lines)


def _mean_ci(scores) -> str:
    v = np.asarray(scores, np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return f"{v.mean():.4g} ± {half:.2g}"


def markdown(suite: Suite, runs, board) -> str:
    algos = list(board["rows"])
    lines = [f"Suite `{board['suite']}`: {suite.description or ''}", ""]
    lines.append("| task | metric | " + " | ".join(algos) + " |")
    lines.append("|---|---|" + "---:|" * len(algos))
    for task, per in runs.items():
        spec = suite.task(task)
        cells = []
        for a in algos:
            if a not in per:
                cells.append("")
                continue
            cells.append(_mean_ci(per[a]["scores"]))
        arrow = "↑" if spec.higher_is_better else "↓"
        lines.append(f"| {task} | {spec.metric} {arrow} | " + " | ".join(cells) + " |")
    lines += ["", "Normalised (do-nothing = 0, the metric's perfect value = 1), over every (task, seed) run:", ""]
    lines.append("| algorithm | IQM | 95% stratified-bootstrap interval | tasks |")
    lines.append("|---|---:|---|---:|")
    for a, r in board["rows"].items():
        lo, hi = r["iqm_ci"]
        lines.append(f"| {a} | {r['iqm']:.3g} | [{lo:.3g}, {hi:.3g}] | {len(r['tasks'])} |")
    if board["probability_of_improvement"]:
        lines += ["", "Probability of improvement P(X > Y) (P(Y > X) = 1 − P(X > Y)):", ""]
        lines += [f"- {k}: {v:.2f}" for k, v in board["probability_of_improvement"].items()]
    ablations = ablation_table(suite, runs, board["do_nothing"])
    if ablations:
        lines += ["", "Does the hierarchy help? The same trainer and budget with the coordinators' broadcast "
                  "zeroed (`no-broadcast`) and their clusters rewired at random (`rewired`):", "", ablations]  # fmt: skip
    depths = ablation_table(suite, runs, board["do_nothing"], DEPTHS)
    if depths:
        lines += ["", "Does the third level help? The same trainer and budget on the task three levels deep "
                  "(`intact`), two levels deep (`two-level`: the coordinators see what the top level saw) "
                  "and flat (`flat`: nobody sees it):", "", depths]  # fmt: skip
    general = generalisation_table(suite, runs)
    if general:
        lines += ["", "Generalisation: the same trained parameters scored on held-out splits:", "", general]
    lines += ["", "Raw cells: mean over seeds ± 1.96 standard errors (seeds' spread).",
              f"Commits: {', '.join(c[:12] for c in board['commits'])}", ""]  # fmt: skip
    return "\n".join(lines)


def _plots(out: Path, suite: Suite, rows: dict, scores: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    tasks = sorted({t for r in rows.values() for t in r["tasks"]})
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(tasks) * len(rows) / 2), 4))
    width = 0.8 / len(rows)
    for i, (a, r) in enumerate(rows.items()):
        x = np.arange(len(tasks)) + i * width
        vals = [np.asarray(r["tasks"][t]["normalised"]) if t in r["tasks"] else np.array([np.nan]) for t in tasks]
        means = [np.nanmean(v) for v in vals]
        errs = [1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0 for v in vals]
        ax.bar(x, np.clip(means, -2, 2), width, yerr=errs, label=a)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("normalised score (clipped to [-2, 2])")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.4 * len(rows)))
    for i, (_, r) in enumerate(rows.items()):
        lo, hi = r["iqm_ci"]
        ax.plot([lo, hi], [i, i], color="C0", lw=6, alpha=0.5)
        ax.plot([r["iqm"]], [i], "k|", ms=12)
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlabel("IQM of normalised scores (95% stratified bootstrap)")
    fig.tight_layout()
    fig.savefig(out / "aggregate.png", dpi=100)
    plt.close(fig)

    taus = np.linspace(-1, 1.2, 89)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for a, s in scores.items():
        ax.plot(taus, stats.performance_profile(s, taus), label=a)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs > τ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "profiles.png", dpi=100)
    plt.close(fig)


__all__ = [
    "ABLATIONS", "ALGORITHMS", "DEPTHS", "SUITES", "ablation_table", "generalisation_table", "split_name", "Suite", "TaskSpec", "bench", "evaluate_policy", "get_suite", "load_runs",
    "marl_eval_json", "normalised", "quick_suite", "row_of", "run_algorithm", "score_algorithm",
    "write_report",
]  # fmt: skip
