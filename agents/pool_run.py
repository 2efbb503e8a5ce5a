"""A pool-trainer run as data: :class:`PoolRunConfig`.

What ``hnca train`` (``--agent pool``, the default) builds from its options, a YAML file
(``--config FILE``) and ``--set key=value`` overrides, and records, flat, in the run's
``config.json``: the task and its env settings, the trainer's settings and the run's
bookkeeping (iterations, seed, checkpoints, logging). ``hnca train --resume`` and
``hnca eval --run`` read it back with :meth:`PoolRunConfig.from_dict`.

:meth:`PoolRunConfig.build` makes the env, the trainer's :class:`~agents.pool.PoolConfig` and the
policy. The PoolConfig settings a run does not spell out are derived by these rules, each
defined once, here:

- ``lr_final = lr / LR_DECAY`` (÷10, Growing NCA's), from iteration ``lr_boundary``; a run
  created without ``lr_boundary`` gets :func:`default_lr_boundary` (2/3 of its iterations),
  fixed in its record so a longer ``--resume`` keeps it;
- hidden widths (:func:`hidden_widths`): ``hidden`` is the cells'; every acting level above
  them gets ``COORDINATOR_HIDDEN_SCALE`` (4) times it (64 -> 256, the H-NCA reference's);
- ``remat_segments`` (:func:`default_remat_segments`): ``ceil(sqrt(max_steps))`` with ``remat``
  (two-level checkpointing: memory ~ sqrt(steps) instead of ~ steps, the same numbers), else 0;
- ``donate = DONATE`` (True): the iteration updates the pool in place (a third less peak
  memory, docs/benchmarks.md);
- ``warmup_steps`` (:func:`default_warmup_steps`): the env's ``tau_c`` when it has a parent
  level (fresh seeds enter the pool after the child-only phase), else 0;
- ``learn_perception=True`` means ``("parent",)``, with the env's ``parent_obs="neighbourhood"``;
  a list of levels (``[cell]``) learns those levels' kernels, each observing its raw neighbourhood.

``trainer`` sets the derived settings that are not fields of the run (``lr_final``,
``remat_segments``, ``donate``, ``warmup_steps``) and the PoolConfig settings a run has no field
for (:data:`TRAINER_SETTINGS`: ``grad``, ``clip_norm``, ``mutate``, ``layers``,
``action_noise``, ``world_chunk``, ...), directly, over the rules (``hidden`` and
``lr_boundary`` are fields: set them there); ``env_kwargs`` passes other
arguments to ``hnca_env.make``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from agents.pool import PoolConfig
from agents.settings import json_safe, load_settings, python_scalars, tuples

#: ``lr_final = lr / LR_DECAY`` (Growing NCA's 2e-3 -> 2e-4).
LR_DECAY = 10
#: The hidden width of every acting level above the cells, as a multiple of the cells'.
COORDINATOR_HIDDEN_SCALE = 4
#: Runs donate the iteration's carry: the pool is updated in place.
DONATE = True
#: The stages of two-stage H-NCA training (``agents.two_stage``): the cells alone, then the
#: coordinators over the frozen cells of a finished child run (``init_child``).
STAGES = ("child", "parent")

#: PoolConfig settings that a run has a field of its own for.
_POOL_FIELDS = (
    "pool_size", "batch_size", "min_steps", "max_steps", "lr", "lr_boundary", "damage", "reseed",
    "remat", "hidden", "learn_perception",
)  # fmt: skip
#: PoolConfig settings that ``PoolRunConfig.trainer`` may set (over the rules).
TRAINER_SETTINGS = tuple(
    f.name for f in dataclasses.fields(PoolConfig) if f.name not in (*_POOL_FIELDS, "mesh")
)
#: ``hnca_env.make`` arguments that have fields of their own (not in ``env_kwargs``).
_ENV_FIELDS = ("grid", "target", "target_size", "tau_c")


def default_lr_boundary(iterations: int) -> int:
    """The iteration of the learning rate's ÷ ``LR_DECAY`` when a run names none: 2/3 of it."""
    return max(1, iterations * 2 // 3)


def default_remat_segments(max_steps: int, remat: bool) -> int:
    """Checkpoint segments of a rollout of ``max_steps`` steps: ``ceil(sqrt(max_steps))`` with
    ``remat`` (memory ~ sqrt(steps) instead of ~ steps, the same numbers), else 0."""
    return math.ceil(math.sqrt(max_steps)) if remat else 0


def default_warmup_steps(env, env_params) -> int:
    """Child-only steps a fresh seed runs without gradient before it enters the pool: the env's
    ``tau_c`` when it has a parent level, else 0."""
    return int(env_params.tau_c) if env.has_parent else 0


def hidden_widths(hidden: int | Mapping[str, int], levels: Sequence[str]) -> dict[str, int]:
    """Hidden width per acting level: ``hidden`` for the cells, ``COORDINATOR_HIDDEN_SCALE``
    times it above them; a mapping is taken as it is (levels it leaves out get
    ``agents.networks.DEFAULT_HIDDEN``)."""
    if isinstance(hidden, Mapping):
        return dict(hidden)
    return {lvl: hidden if lvl == "cell" else COORDINATOR_HIDDEN_SCALE * hidden for lvl in levels}


def _is_int(v: Any, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


@dataclasses.dataclass(frozen=True)
class PoolRunConfig:
    """One ``hnca train`` run of the pool trainer. The defaults are the embedded quick run of
    ``hnca train`` with no options (Grow-v0, a 16-cell heart on 24x24, a few minutes on 2 CPU
    cores). ``from_dict`` / ``to_dict`` round-trip through ``config.json`` and YAML;
    :meth:`for_task` and :func:`load_config` make a new run's settings."""

    task: str = "Grow-v0"
    grid: int = 24  # side in cells (square)
    target: str | None = "heart"  # a target name or RGBA PNG path; None: the task's own
    target_size: int | None = 16  # the target's side in cells; None: the task's own
    iterations: int = 1200
    pool_size: int = 256
    batch_size: int = 8
    min_steps: int = 32
    max_steps: int = 48
    hidden: int | Mapping[str, int] = 64  # the cells' width (levels above: 4x), or per level
    lr: float = 2e-3  # Adam; ÷ LR_DECAY from iteration lr_boundary
    seed: int = 0
    tau_c: int | None = None  # child-only steps before the parents start; None: the task's
    damage: int = 0  # damage the K best samples of each batch (regeneration training)
    reseed: int = 1  # re-seed the K worst samples of each batch
    stage: str | None = None  # two-stage H-NCA training: "child" or "parent" (STAGES)
    init_child: str | None = None  # stage "parent": the finished stage-"child" run directory
    # the parents learn their 3x3 perception kernels (True), or these levels do (["cell"])
    learn_perception: bool | tuple[str, ...] = False
    remat: bool = True  # jax.checkpoint per step (and per segment of steps)
    lr_boundary: int | None = None  # None: default_lr_boundary(iterations), fixed at creation
    checkpoint_every: int = 200  # Orbax checkpoint every K iterations (0: none)
    keep: int = 3  # checkpoints kept
    log_every: int = 10  # metrics.jsonl every N iterations
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # more make() args
    trainer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # PoolConfig, over rules
    # the pool and each batch split over JAX's first N devices (a worlds mesh, see mesh());
    # on a CPU ``hnca train`` makes N host devices, one thread each
    devices: int = 1

    def __post_init__(self):
        python_scalars(self)
        if not isinstance(self.task, str):
            raise ValueError(f"PoolRunConfig.task must be an env id, got {self.task!r}")
        for name, least in (
            ("grid", 1),
            ("iterations", 0),
            ("checkpoint_every", 0),
            ("keep", 1),
            ("log_every", 1),
            ("devices", 1),
        ):
            if not _is_int(getattr(self, name), least):
                raise ValueError(
                    f"PoolRunConfig.{name} must be an integer >= {least}, got {getattr(self, name)!r}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"PoolRunConfig.seed must be an integer, got {self.seed!r}")
        for name in ("target_size", "tau_c", "lr_boundary"):
            v = getattr(self, name)
            if v is not None and not _is_int(v, 0):
                raise ValueError(f"PoolRunConfig.{name} must be None or an integer >= 0, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ValueError(f"PoolRunConfig.lr must be a positive number, got {self.lr!r}")
        hidden = self.hidden.values() if isinstance(self.hidden, Mapping) else [self.hidden]
        if not all(_is_int(h, 1) for h in hidden):
            raise ValueError(
                f"PoolRunConfig.hidden must be a positive integer (the cells' width) or a mapping "
                f"level -> width, got {self.hidden!r}"
            )
        if not isinstance(self.remat, bool):
            raise ValueError(f"PoolRunConfig.remat must be true or false, got {self.remat!r}")
        lp = self.learn_perception
        if not isinstance(lp, bool) and not (
            isinstance(lp, tuple | list) and lp and all(lvl in ("cell", "parent") for lvl in lp)
        ):
            raise ValueError(
                "PoolRunConfig.learn_perception must be true or false (the parents) or a list of "
                f"levels among ['cell', 'parent'], got {lp!r}"
            )
        if self.stage not in (None, *STAGES):
            raise ValueError(f"--stage must be 'child' or 'parent', got {self.stage!r}")
        if self.stage == "parent" and not self.init_child:
            raise ValueError("--stage parent needs --init-child RUN (a finished --stage child run)")
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"PoolRunConfig.env_kwargs must be a mapping, got {self.env_kwargs!r}")
        own = sorted(set(self.env_kwargs) & set(_ENV_FIELDS))
        if own:
            raise ValueError(f"PoolRunConfig.env_kwargs: {own} are settings of their own, not env_kwargs")
        if not isinstance(self.trainer, Mapping):
            raise ValueError(f"PoolRunConfig.trainer must be a mapping, got {self.trainer!r}")
        unknown = sorted(set(self.trainer) - set(TRAINER_SETTINGS))
        if unknown:
            raise ValueError(
                f"PoolRunConfig.trainer: {unknown} cannot be set there (run settings of their own: "
                f"{list(_POOL_FIELDS)}); it takes {list(TRAINER_SETTINGS)}"
            )

    # ------------------------------------------------------------------ records and YAML
    def to_dict(self) -> dict[str, Any]:
        """The run's record (``config.json``), JSON/YAML-able."""
        return json_safe({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolRunConfig:
        """The settings of a record (``config.json`` of any pool run) or a YAML mapping, as they
        are; settings left out take the defaults; unknown ones are an error naming them."""
        d = dict(d)
        agent = d.pop("agent", "pool")
        if agent != "pool":
            raise ValueError(f"these are the settings of an {agent!r} run, not a pool run")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown pool run setting(s) {unknown}; known: {known}")
        for name in ("env_kwargs", "trainer"):
            if name in d:
                d[name] = tuples(dict(d[name] or {}))
        if isinstance(d.get("learn_perception"), list):
            d["learn_perception"] = tuple(d["learn_perception"])
        if isinstance(d.get("hidden"), Mapping):
            d["hidden"] = dict(d["hidden"])
        return cls(**d)

    @classmethod
    def for_task(cls, task: str | None = None, **settings: Any) -> PoolRunConfig:
        """A new run's settings: the defaults, then ``settings``.

        The defaults' heart is the default task's target: for another task, ``target`` and
        ``target_size`` left out are the task's own (None). ``lr_boundary`` left out is fixed to
        :func:`default_lr_boundary` of the run's iterations and ``init_child`` made absolute,
        so the record means the same whenever and wherever the run is resumed.
        """
        task = task or settings.pop("task", None) or cls.task
        settings.pop("task", None)
        if task != cls.task:
            settings.setdefault("target", None)
            settings.setdefault("target_size", None)
        cfg = cls.from_dict({"task": task, **settings})
        fixed: dict[str, Any] = {}
        if cfg.lr_boundary is None:
            fixed["lr_boundary"] = default_lr_boundary(cfg.iterations)
        if cfg.init_child:
            fixed["init_child"] = os.path.abspath(cfg.init_child)
        return dataclasses.replace(cfg, **fixed) if fixed else cfg

    # ------------------------------------------------------------------ building the run
    def env_overrides(self) -> dict[str, Any]:
        """The ``hnca_env.make`` arguments of the run's env (stage aside)."""
        kwargs: dict[str, Any] = {**self.env_kwargs, "grid": (self.grid, self.grid)}
        for k in ("target", "target_size", "tau_c"):
            if getattr(self, k) is not None:
                kwargs[k] = getattr(self, k)
        for lvl in self.learning_levels():
            kwargs[f"{lvl}_obs"] = "neighbourhood"
        if self.stage == "child":  # the child-only problem has no parents to observe
            kwargs.pop("parent_obs", None)
        return kwargs

    def learning_levels(self) -> tuple[str, ...]:
        """The levels whose perception kernels are learnt (``True``: the parents)."""
        lp = self.learn_perception
        return ("parent",) if lp is True else () if lp is False else tuple(lp)

    def make_env(self):
        """``(env, env_params)``: the task's env, its child-only problem (stage ``"child"``), or
        the task with the frozen cells of ``init_child`` (stage ``"parent"``)."""
        import hnca_env
        from agents import two_stage

        kwargs = self.env_overrides()
        if self.stage == "child":
            return two_stage.child_problem(self.task, **kwargs)
        if self.stage == "parent":
            return two_stage.with_frozen_child(self.task, self.child_params(), **kwargs)
        return hnca_env.make(self.task, **kwargs)

    def child_params(self) -> Any:
        """Stage ``"parent"``: the cell level's variables of the finished child run ``init_child``."""
        import jax

        from agents.rundir import load_json, load_msgpack

        child_cfg = load_json(os.path.join(self.init_child, "config.json"))
        if child_cfg.get("stage") != "child":
            raise ValueError(f"{self.init_child} is not a --stage child run")
        _, _, _, (c_init, _) = PoolRunConfig.from_dict(child_cfg).build()
        template = jax.eval_shape(c_init, jax.random.key(0))
        return load_msgpack(os.path.join(self.init_child, "params.msgpack"), template)["cell"]

    def pool_config(self, env, env_params) -> PoolConfig:
        """The trainer's settings for ``env``: the run's own, the rules' (module docstring),
        then ``trainer`` over them."""
        learn = tuple(lvl for lvl in self.learning_levels() if lvl in env.agent_levels)
        if self.learn_perception is True and not learn:
            raise ValueError("--learn-perception needs a task with an acting parent level")
        if len(learn) < len(self.learning_levels()) and self.learn_perception is not True:
            raise ValueError(
                f"learn_perception names levels {list(self.learning_levels())}; {self.task} acts with "
                f"{list(env.agent_levels)}"
            )
        derived = dict(
            pool_size=self.pool_size,
            batch_size=self.batch_size,
            min_steps=self.min_steps,
            max_steps=self.max_steps,
            lr=self.lr,
            lr_final=self.lr / LR_DECAY,
            lr_boundary=default_lr_boundary(self.iterations)
            if self.lr_boundary is None
            else self.lr_boundary,
            damage=self.damage,
            reseed=self.reseed,
            remat=self.remat,
            hidden=hidden_widths(self.hidden, env.agent_levels),
            learn_perception=learn,
            donate=DONATE,
            remat_segments=default_remat_segments(self.max_steps, self.remat),
            warmup_steps=default_warmup_steps(env, env_params),
        )
        return PoolConfig.from_dict({**derived, **self.trainer})

    def mesh(self):
        """The training mesh: ``None`` with one device, else a worlds mesh over JAX's first
        ``devices`` devices (an error naming the fix when there are fewer)."""
        if self.devices == 1:
            return None
        import jax

        from hnca_env.sharding import world_mesh

        have = jax.devices()
        if len(have) < self.devices:
            raise ValueError(
                f"devices={self.devices} but JAX has {len(have)} {jax.default_backend()} device(s); on a "
                f"CPU, start Python with XLA_FLAGS=--xla_force_host_platform_device_count={self.devices} "
                "(the hnca command does this itself: it reads devices before JAX starts)"
            )
        return world_mesh(have[: self.devices])

    def build(self):
        """``(env, env_params, pool_config, (policy_init, policy_apply))`` of the run."""
        from agents.networks import make_policy

        env, env_params = self.make_env()
        pool_cfg = self.pool_config(env, env_params)
        policy = make_policy(env, pool_cfg.hidden, pool_cfg.learn_perception, pool_cfg.layers)
        return env, env_params, pool_cfg, policy


#: The settings of a pool run (``hnca train`` options of the same names set them).
RUN_SETTINGS = tuple(f.name for f in dataclasses.fields(PoolRunConfig))


def load_config(
    task: str | None = None, path: str | None = None, overrides: Sequence[str] | Mapping = ()
) -> PoolRunConfig:
    """A new run's settings (:meth:`PoolRunConfig.for_task`) from a YAML file, then ``key=value``
    overrides (``trainer.mutate=2``, ``env_kwargs.clamp=true``; both groups merge key by key);
    ``task`` if neither sets it. A file that is missing, unreadable or not YAML raises
    ``ValueError`` naming it."""
    settings = load_settings(path, overrides, what="pool", merge=("env_kwargs", "trainer"))
    return PoolRunConfig.for_task(settings.pop("task", None) or task, **settings)
