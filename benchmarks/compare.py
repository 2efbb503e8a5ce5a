"""hnca-env against a plain-JAX reference NCA and against CAX, side by side in one run.

The workload is Growing NCA (Mordvintsev et al., Distill 2020): 16 channels, identity +
Sobel perception, a 48 -> 128 -> 16 ReLU MLP per cell, fire rate 0.5, alive masking, 72x72
grids, 64 steps. Three implementations of it:

- ``ours``: ``hnca_env.make("Grow-v0")`` and the ``agents.networks`` policy (same MLP
  weights as the others): per step the policy on the observation, then ``env.step_env``, a
  ``lax.scan`` over time per world, the worlds batched by ``hnca_env.rollout.map_worlds``
  with its default ``world_chunk="auto"`` (on a CPU: one world after another, each through
  all its steps, which keeps its state in cache). Rewards are not consumed (XLA drops them).
- ``ours_vmap``: the same with ``world_chunk=None``: one ``vmap`` over the batch inside the
  time scan (what a hand-written loop does; what an accelerator wants).
- ``ref``: the plain-JAX reference step of ``benchmarks/throughput.py`` (slice perception,
  matmul MLP) in a ``lax.scan`` over a ``(B, H, W, C)`` batch.
- ``cax``: CAX's Growing NCA as its example notebook builds it (``ConvPerceive`` depthwise
  conv with identity + gradient kernels, ``NCAUpdate`` with cell dropout 0.5 as the fire
  mask and its alive mask), run with ``cs(state, num_steps=T)`` under ``nnx.vmap`` +
  ``nnx.split_rngs``. For the rollout the module is split (``nnx.split``) and the call
  compiled with ``jax.jit`` like the others, so compile time is measured the same way; the
  compiled XLA program is the one ``nnx.jit`` would run. Differences that do not change the
  cost: CAX pads with zeros (not a torus), scales updates by 1/(1-p) (dropout) and keeps
  alpha in the last channel.

Training: one pool-training iteration (pool 1024, batch 8, 64 steps BPTT, Adam):

- ``ours`` / ``ours_vmap`` / ``ours_noremat``: ``agents.pool.make_pool_trainer(env, params,
  PoolConfig(...))`` with its defaults (``remat=True``: ``jax.checkpoint`` per step;
  ``world_chunk="auto"``: on a CPU the batch's worlds are differentiated one after another
  and their gradients summed), with ``world_chunk=None`` (one vmapped rollout of the whole
  batch) and with ``remat=False``.
- ``ref``: the plain-JAX reference trainer of ``benchmarks/common.py`` (same algorithm, no
  checkpointing).
- ``cax_notebook``: the ``train_step`` of CAX's Growing-NCA notebook (``nnx.jit``,
  ``nnx.Optimizer``, ``cax.nn.pool.Pool``, all 64 states sown, the loss at a random step in
  [32, 64), global-norm clipping + Adam). ``cax_final``: the same with the loss on the final
  state (``sow=False``), the closest to ours. Both are called as the notebook calls them;
  compile time is first call minus the median call (an estimate).

Timing: each program is compiled first (reported apart), warmed up once, then the programs of
a group (one batch size, or the training iteration) are timed *interleaved*, one call of each
per round with ``jax.block_until_ready``, for at least ``--runs`` rounds and ``--min-time`` s
each; medians. Other jobs on a shared machine then slow all of them alike, which keeps the
ratios fair. Throughput is cell updates per second, ``B * H * W * T / median``. If CAX is not
installed (``pip install ".[bench]"``) or its API does not fit, its columns are skipped with
a note.

Usage::

    python benchmarks/compare.py            # full: B 1 8 64 rollouts + training, ~10 min on 2 cores
    python benchmarks/compare.py --quick    # smoke: 24x24, T 8, B 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    compile_program,
    environment_info,
    finish,
    make_ref_trainer,
    print_header,
    program_memory,
    ref_rollout,
    ref_weights,
    seed_state,
    table,
    time_interleaved,
)

import hnca_env  # noqa: E402
from agents.networks import make_policy  # noqa: E402
from agents.pool import PoolConfig, make_pool_trainer  # noqa: E402
from hnca_env.rollout import env_cells, map_worlds  # noqa: E402

DEFAULT_OUT = RESULTS / "compare.json"
CHANNELS, HIDDEN, KERNELS = 16, 128, 3

#: Issue #6 targets.
TARGET_ROLLOUT_VS_CAX = 5.0
TARGET_TRAIN_VS_CAX = 15.0
TARGET_TRAIN_VS_REF = 1.0


# ---------------------------------------------------------------------------------------- ours
def ours_policy_params(env, weights):
    """The ``make_policy`` parameters with the reference MLP's weights."""
    init, _ = make_policy(env)
    p = init(jax.random.key(1))
    layer = p["cell"]["params"]
    layer["hidden"] = {"kernel": weights["w1"], "bias": weights["b1"]}
    layer["out"] = {"kernel": weights["w2"], "bias": jnp.zeros((CHANNELS,))}
    return p


def ours_rollout_program(grid: int, batch: int, steps: int, weights, world_chunk="auto"):
    """The policy + ``env.step_env`` rollout of ``batch`` worlds, batched by
    :func:`hnca_env.rollout.map_worlds`: ``world_chunk="auto"`` (the library's default: on a
    CPU the worlds run one after another, each through all its steps) or ``None`` (one
    ``vmap`` inside the time scan, as a user's hand-written loop would)."""
    env, env_params = hnca_env.make("Grow-v0", grid=(grid, grid))
    _, apply = make_policy(env)
    obs0, state0 = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), batch), env_params
    )

    def one_world(obs, state, key, pparams, env_params):
        def body(carry, k):
            obs, state = carry
            obs, state, _, _, _ = env.step_env(k, state, apply(pparams, obs), env_params)
            return (obs, state), None

        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[0][1].grids["cell"]

    def run(obs, state, key, pparams, env_params):
        keys = jax.random.split(key, batch)
        return map_worlds(
            lambda o, s, k: one_world(o, s, k, pparams, env_params),
            obs,
            state,
            keys,
            world_chunk=world_chunk,
            cells_per_world=env_cells(env),
        )

    return run, (obs0, state0, jax.random.key(0), ours_policy_params(env, weights), env_params)


def ref_rollout_program(grid: int, batch: int, steps: int, weights):
    def run(x, key, w):
        return ref_rollout(w, x, key, steps)

    return run, (seed_state(batch, grid), jax.random.key(0), weights)


# ---------------------------------------------------------------------------------------- CAX
def load_cax() -> tuple[Any, str]:
    """``(module namespace, version)`` of CAX, or raise ImportError with the reason."""
    import importlib.metadata

    import cax  # noqa: F401
    from cax.core import ComplexSystem
    from cax.core.perceive import ConvPerceive, grad_kernel, identity_kernel
    from cax.core.update import NCAUpdate
    from cax.nn.pool import Pool

    ns = {
        "ComplexSystem": ComplexSystem,
        "ConvPerceive": ConvPerceive,
        "grad_kernel": grad_kernel,
        "identity_kernel": identity_kernel,
        "NCAUpdate": NCAUpdate,
        "Pool": Pool,
    }
    return ns, importlib.metadata.version("cax")


def make_cax_nca(cax: dict, weights, seed: int = 0):
    """CAX's Growing NCA module, as in its example notebook, with the reference MLP weights."""
    from flax import nnx

    class GrowingNCA(cax["ComplexSystem"]):
        def __init__(self, *, rngs):
            self.perceive = cax["ConvPerceive"](
                channel_size=CHANNELS,
                perception_size=KERNELS * CHANNELS,
                feature_group_count=CHANNELS,
                rngs=rngs,
            )
            self.update = cax["NCAUpdate"](
                channel_size=CHANNELS,
                perception_size=KERNELS * CHANNELS,
                hidden_layer_sizes=(HIDDEN,),
                cell_dropout_rate=0.5,
                zeros_init=True,
                rngs=rngs,
            )
            kernel = jnp.concatenate([cax["identity_kernel"](ndim=2), cax["grad_kernel"](ndim=2)], axis=-1)
            kernel = jnp.expand_dims(jnp.concatenate([kernel] * CHANNELS, axis=-1), axis=-2)
            self.perceive.conv.kernel[...] = kernel

        def _step(self, state, input=None, *, sow=False):
            perception = self.perceive(state)
            next_state = self.update(state, perception, input)
            if sow:
                self.sow(nnx.Intermediate, "state", next_state)
            return next_state

    cs = GrowingNCA(rngs=nnx.Rngs(seed))
    hidden, out = cs.update.layers[0], cs.update.layers[1]
    hidden.kernel[...] = weights["w1"].reshape(hidden.kernel.shape)
    hidden.bias[...] = weights["b1"]
    out.kernel[...] = weights["w2"].reshape(out.kernel.shape)
    return cs


def cax_seed(batch: int, grid: int):
    x = jnp.zeros((batch, grid, grid, CHANNELS), jnp.float32)
    return x.at[:, grid // 2, grid // 2, -1].set(1.0)


def cax_rollout_program(cax: dict, grid: int, batch: int, steps: int, weights):
    from flax import nnx

    cs = make_cax_nca(cax, weights)
    graphdef, cs_state = nnx.split(cs)

    def run(cs_state, x):
        model = nnx.merge(graphdef, cs_state)
        axes = nnx.StateAxes({nnx.RngState: 0, nnx.Intermediate: 0, ...: None})
        return nnx.split_rngs(splits=batch)(nnx.vmap(lambda m, s: m(s, num_steps=steps), in_axes=(axes, 0)))(
            model, x
        )

    return run, (cs_state, cax_seed(batch, grid))


def cax_train_step(cax: dict, target, grid: int, batch: int, steps: int, pool_size: int, sow: bool):
    """A zero-argument call of the notebook's ``train_step`` that threads its pool and key."""
    import optax
    from flax import nnx

    cs = make_cax_nca(cax, ref_weights(jax.random.key(2)))
    lr = 2e-3
    sched = optax.linear_schedule(init_value=lr, end_value=0.1 * lr, transition_steps=2000)
    update_params = nnx.All(nnx.Param, nnx.PathContains("update"))
    optimizer = nnx.Optimizer(
        cs, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched)), wrt=update_params
    )
    y = jnp.asarray(target, jnp.float32)

    def mse(state):
        return jnp.mean(jnp.square(state[..., -4:] - y))

    def sample_state():
        return cax_seed(1, grid)[0]

    @nnx.jit
    def loss_fn(cs, state, key):
        axes = nnx.StateAxes({nnx.RngState: 0, nnx.Intermediate: 0, ...: None})
        final = nnx.split_rngs(splits=batch)(
            nnx.vmap(lambda cs, s: cs(s, num_steps=steps, sow=sow), in_axes=(axes, 0))
        )(cs, state)
        if sow:
            states = nnx.pop(cs, nnx.Intermediate).state.get_value()[0]
            idx = jax.random.randint(key, (batch,), steps // 2, steps)
            final = states[jnp.arange(batch), idx]
        return mse(final), final

    @nnx.jit
    def train_step(cs, optimizer, pool, key):
        sample_key, loss_key = jax.random.split(key)
        pool_idx, b = pool.sample(sample_key, batch_size=batch)
        current = b["state"]
        sort_idx = jnp.argsort(jax.vmap(mse)(current), descending=True)
        pool_idx = pool_idx[sort_idx]
        current = current[sort_idx].at[0].set(sample_state())
        (loss, current), grad = nnx.value_and_grad(
            loss_fn, has_aux=True, argnums=nnx.DiffState(0, update_params)
        )(cs, current, loss_key)
        optimizer.update(cs, grad)
        pool = pool.update(pool_idx, {"state": current})
        return loss, pool

    box = {"pool": cax["Pool"].create({"state": cax_seed(pool_size, grid)}), "key": jax.random.key(3)}

    def step():
        box["key"], k = jax.random.split(box["key"])
        loss, box["pool"] = train_step(cs, optimizer, box["pool"], k)
        return loss, box["pool"]

    return step


# ---------------------------------------------------------------------------------------- runs
def _timed_group(builders: dict, runs: int, min_time: float, base: dict) -> list[dict[str, Any]]:
    """Compile each program of a group (or note why it was skipped), then time them interleaved.

    ``builders[name]() -> ("jax", fn, args)`` (compiled here) or ``("call", step)`` for a
    function that compiles on its first call (its compile time is estimated as first call
    minus the median call).
    """
    rows: dict[str, dict[str, Any]] = {}
    calls = {}
    for name, build in builders.items():
        row = {**base, "impl": name}
        rows[name] = row
        try:
            kind, *rest = build()
            if kind == "jax":
                fn, fargs = rest
                compiled, row["compile_s"] = compile_program(fn, fargs)
                mem = program_memory(compiled)
                row["mem_gb"] = None if mem is None else mem["total_bytes"] / 2**30
                calls[name] = lambda c=compiled, a=fargs: c(*a)
            else:
                (step,) = rest
                t0 = time.perf_counter()
                jax.block_until_ready(step())
                row["first_call_s"] = time.perf_counter() - t0
                row["compile_estimated"] = True
                calls[name] = step
        except Exception as e:  # noqa: BLE001 - a foreign API that does not fit is a skip
            if not name.startswith("cax"):
                raise
            row["skipped"] = f"CAX failed: {type(e).__name__}: {e}"
    for name, res in time_interleaved(calls, runs, min_time).items():
        rows[name].update(res)
        if rows[name].get("compile_estimated"):
            rows[name]["compile_s"] = max(rows[name]["first_call_s"] - res["median_s"], 0.0)
    for row in rows.values():
        if "median_s" in row:
            row["updates_per_s"] = row["batch"] * row["grid"] ** 2 * row["steps"] / row["median_s"]
    return list(rows.values())


def _print(row):
    head = f"{row['kind']:7s} {row['impl']:13s} B={row['batch']:<3d}"
    if "median_s" not in row:
        print(f"{head} SKIPPED: {row['skipped']}", flush=True)
        return
    print(
        f"{head} compile {row['compile_s']:5.1f} s  {row['updates_per_s'] / 1e6:6.2f} M upd/s  median "
        f"{row['median_s'] * 1e3:8.1f} ms of {len(row['runs_s'])}  cpu/wall {row['cpu_per_wall']:.2f}",
        flush=True,
    )


def rollout_benches(args, cax, weights) -> list[dict[str, Any]]:
    rows = []
    g, steps = args.grid, args.steps
    for batch in args.batches:
        builders = {
            "ours": lambda: ("jax", *ours_rollout_program(g, batch, steps, weights)),
            "ours_vmap": lambda: ("jax", *ours_rollout_program(g, batch, steps, weights, None)),
            "ref": lambda: ("jax", *ref_rollout_program(g, batch, steps, weights)),
        }
        if cax is not None:
            builders["cax"] = lambda: ("jax", *cax_rollout_program(cax, g, batch, steps, weights))
        base = {"kind": "rollout", "batch": batch, "grid": g, "steps": steps}
        for row in _timed_group(builders, args.runs, args.min_time, base):
            _print(row)
            rows.append(row)
    return rows


def perception_benches(args, cax) -> list[dict[str, Any]]:
    """Perception alone, forward and forward + input gradient (what BPTT needs): ours
    (:func:`hnca_env.physics.perceive`, shifted slices) against CAX's ``ConvPerceive``
    (a depthwise ``lax.conv``), on the training batch. Explains where CAX's time goes."""
    from flax import nnx

    from hnca_env import physics

    g, batch = args.grid, args.train_batch
    env, _ = hnca_env.make("Grow-v0", grid=(g, g))
    x = jax.random.uniform(jax.random.key(7), (batch, g, g, CHANNELS), jnp.float32)

    def ours(x):
        return jax.vmap(lambda s: physics.perceive(s, env.kernels))(x)

    fns = {"ours": ours}
    if cax is not None:
        graphdef, conv_state = nnx.split(make_cax_nca(cax, ref_weights(jax.random.key(2))).perceive)

        def cax_perceive(x):
            return nnx.merge(graphdef, conv_state)(x)

        fns["cax"] = cax_perceive
    builders = {}
    for name, f in fns.items():
        builders[f"{name}_fwd"] = lambda f=f: ("jax", f, (x,))
        builders[f"{name}_fwd_bwd"] = lambda f=f: ("jax", jax.grad(lambda x: jnp.sum(jnp.square(f(x)))), (x,))
    base = {"kind": "perception", "batch": batch, "grid": g, "steps": 1}
    rows = _timed_group(builders, args.runs, args.min_time, base)
    for row in rows:
        if "median_s" in row:
            print(f"perception {row['impl']:13s} median {row['median_s'] * 1e3:8.2f} ms", flush=True)
    return rows


def train_benches(args, cax) -> list[dict[str, Any]]:
    g, batch, steps, pool = args.grid, args.train_batch, args.train_steps, args.pool_size
    env, env_params = hnca_env.make("Grow-v0", grid=(g, g))

    def ours(remat, world_chunk="auto"):
        cfg = PoolConfig(
            pool_size=pool,
            batch_size=batch,
            min_steps=steps,
            max_steps=steps,
            remat=remat,
            world_chunk=world_chunk,
        )
        init, iteration, _ = make_pool_trainer(env, env_params, cfg)
        return "jax", iteration, (init(jax.random.key(0)),)

    def ref():
        init, iteration = make_ref_trainer(env_params.target, g, batch, steps, pool)
        return "jax", iteration, (init(jax.random.key(0)),)

    builders = {
        "ours": lambda: ours(True),
        "ours_vmap": lambda: ours(True, None),
        "ours_noremat": lambda: ours(False),
        "ref": ref,
    }
    if cax is not None:
        for name, sow in (("cax_notebook", True), ("cax_final", False)):
            builders[name] = lambda sow=sow: (
                "call",
                cax_train_step(cax, env_params.target, g, batch, steps, pool, sow),
            )
    base = {"kind": "train", "batch": batch, "grid": g, "steps": steps, "pool": pool}
    rows = _timed_group(builders, args.runs, args.min_time, base)
    for row in rows:
        _print(row)
    return rows


# ---------------------------------------------------------------------------------------- report
def _get(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()) and "median_s" in r:
            return r
    return None


def verdicts(rows: list[dict[str, Any]], batches: Sequence[int]) -> list[dict[str, Any]]:
    """Issue #6 targets, pass/fail, from the measured medians."""
    out = []
    for b in batches:
        ours, cax = (
            _get(rows, kind="rollout", impl="ours", batch=b),
            _get(rows, kind="rollout", impl="cax", batch=b),
        )
        ratio = None if ours is None or cax is None else cax["median_s"] / ours["median_s"]
        out.append(
            {
                "target": f"rollout B={b}: ours >= {TARGET_ROLLOUT_VS_CAX:g}x CAX throughput",
                "ratio": ratio,
                "pass": None if ratio is None else ratio >= TARGET_ROLLOUT_VS_CAX,
            }
        )
    ours = _get(rows, kind="train", impl="ours")
    cax_times = [r for r in (_get(rows, kind="train", impl=i) for i in ("cax_notebook", "cax_final")) if r]
    fastest_cax = min(cax_times, key=lambda r: r["median_s"]) if cax_times else None
    ratio = None if ours is None or fastest_cax is None else fastest_cax["median_s"] / ours["median_s"]
    out.append(
        {
            "target": f"training iteration (default remat=True): >= {TARGET_TRAIN_VS_CAX:g}x faster than CAX"
            + (f" (its faster variant, {fastest_cax['impl']})" if fastest_cax else ""),
            "ratio": ratio,
            "pass": None if ratio is None else ratio >= TARGET_TRAIN_VS_CAX,
        }
    )
    ref = _get(rows, kind="train", impl="ref")
    for impl in ("ours", "ours_vmap", "ours_noremat"):
        mine = _get(rows, kind="train", impl=impl)
        ratio = None if mine is None or ref is None else ref["median_s"] / mine["median_s"]
        out.append(
            {
                "target": f"training iteration ({impl}): no slower than the plain-JAX reference",
                "ratio": ratio,
                "pass": None if ratio is None else ratio >= TARGET_TRAIN_VS_REF,
            }
        )
    return out


def report(rows, args, verdict_rows, cax_note) -> str:
    batches = args.batches

    def rate(r):
        return "skip" if r is None else f"{r['updates_per_s'] / 1e6:.2f}"

    def comp(r):
        return "-" if r is None else f"{r['compile_s']:.1f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{b['median_s'] / a['median_s']:.2f}"

    rrows = []
    for b in batches:
        o, v, r, c = (
            _get(rows, kind="rollout", impl=i, batch=b) for i in ("ours", "ours_vmap", "ref", "cax")
        )
        rrows.append(
            [
                str(b),
                rate(o),
                rate(v),
                rate(r),
                rate(c),
                ratio(o, r),
                ratio(o, c),
                ratio(v, c),
                comp(o),
                comp(r),
                comp(c),
            ]
        )
    trows = []
    ours = _get(rows, kind="train", impl="ours")
    for impl in ("ours", "ours_vmap", "ours_noremat", "ref", "cax_notebook", "cax_final"):
        t = _get(rows, kind="train", impl=impl)
        if t is None:
            trows.append([impl, "skip", "-", "-", "-", "-"])
            continue
        mem = t.get("mem_gb")
        trows.append(
            [
                impl,
                f"{t['median_s'] * 1e3:.0f}",
                f"{t['updates_per_s'] / 1e6:.2f}",
                f"{t['compile_s']:.1f}" + ("*" if t.get("compile_estimated") else ""),
                "-" if mem is None else f"{mem:.2f}",
                ratio(ours, t),
            ]
        )
    vrows = [
        [v["target"], "-" if v["ratio"] is None else f"{v['ratio']:.2f}", _pf(v["pass"])]
        for v in verdict_rows
    ]
    out = [
        f"Rollout, million cell updates per second (B x {args.grid}x{args.grid} x {args.steps} steps / "
        "median time); ratios are",
        "time(other) / time(ours), so > 1 means ours is faster; compile seconds:",
        "",
        table(
            [
                "B",
                "ours",
                "ours_vmap",
                "ref",
                "CAX",
                "ours/ref",
                "ours/CAX",
                "ours_vmap/CAX",
                "compile ours",
                "compile ref",
                "compile CAX",
            ],
            rrows,
        ),
        "",
        f"Training iteration (pool {args.pool_size}, batch {args.train_batch}, {args.train_steps} steps "
        "BPTT, Adam); 'speed-up' = time(row) / time(ours);",
        "M upd/s counts forward cell updates; mem = XLA buffer assignment (args + outputs + temps);",
        "* = compile estimated as first call minus the median call:",
        "",
        table(["impl", "median ms", "M upd/s", "compile s", "mem GB", "speed-up of ours"], trows),
        "",
        *perception_table(rows, args),
        "Issue #6 targets:",
        "",
        table(["target", "measured", "verdict"], vrows),
    ]
    if cax_note:
        out += ["", cax_note]
    return "\n".join(out)


def perception_table(rows, args) -> list[str]:
    p = {r["impl"]: r for r in rows if r["kind"] == "perception" and "median_s" in r}
    if not p:
        return []
    prow = []
    for name in ("ours", "cax"):
        f, b = p.get(f"{name}_fwd"), p.get(f"{name}_fwd_bwd")
        if f is None or b is None:
            continue
        prow.append(
            [
                name,
                f"{f['median_s'] * 1e3:.2f}",
                f"{b['median_s'] * 1e3:.2f}",
                f"{f['median_s'] / p['ours_fwd']['median_s']:.1f}",
                f"{b['median_s'] / p['ours_fwd_bwd']['median_s']:.1f}",
            ]
        )
    return [
        f"Perception alone ({args.train_batch} x {args.grid}x{args.grid}x16), median ms; fwd+bwd = forward and the",
        "gradient with respect to the input (what BPTT runs per step); x ours = time / ours' time:",
        "",
        table(["perception", "fwd ms", "fwd+bwd ms", "fwd x ours", "fwd+bwd x ours"], prow),
        "",
    ]


def _pf(p):
    return "n/a" if p is None else "PASS" if p else "FAIL"


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=None, help="rollout batch sizes (1 8 64)")
    p.add_argument("--grid", type=int, default=None, help="grid side (72)")
    p.add_argument("--steps", type=int, default=None, help="rollout steps (64)")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=None, help="BPTT steps of the training iteration (64)")
    p.add_argument("--pool-size", type=int, default=None, help="training pool (1024)")
    p.add_argument("--runs", type=int, default=5, help="timed runs at least (median reported)")
    p.add_argument("--min-time", type=float, default=2.0, help="time each program for at least this long")
    p.add_argument("--no-cax", action="store_true", help="leave CAX out")
    p.add_argument("--no-train", action="store_true", help="no training iteration")
    p.add_argument("--no-perception", action="store_true", help="no perception breakdown")
    p.add_argument("--quick", action="store_true", help="smoke test: 24x24, T 8, B 1 2, pool 16")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    quick = a.quick
    a.batches = a.batches or ([1, 2] if quick else [1, 8, 64])
    a.grid = a.grid or (24 if quick else 72)
    a.steps = a.steps or (8 if quick else 64)
    a.train_steps = a.train_steps or (8 if quick else 64)
    a.pool_size = a.pool_size or (16 if quick else 1024)
    if quick:
        a.runs, a.min_time = min(a.runs, 3), 0.0
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = environment_info()
    print_header(info)
    cax, cax_version, cax_note = None, None, ""
    if not args.no_cax:
        try:
            cax, cax_version = load_cax()
            print(f"CAX {cax_version}", flush=True)
        except Exception as e:  # noqa: BLE001
            cax_note = f'CAX skipped: {type(e).__name__}: {e} (pip install ".[bench]")'
            print(cax_note, flush=True)
    info["cax_version"] = cax_version
    started = time.perf_counter()
    weights = ref_weights(jax.random.key(2))
    rows = rollout_benches(args, cax, weights)
    if not args.no_train:
        rows += train_benches(args, cax)
    if not args.no_perception:
        rows += perception_benches(args, cax)
    v = verdicts(rows, args.batches)
    text = report(rows, args, v, cax_note)
    return finish(args, argv, info, text, started, results=rows, targets=v)


if __name__ == "__main__":
    main()
