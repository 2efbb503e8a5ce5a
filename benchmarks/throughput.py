"""Throughput of the H-NCA environment, with a plain-JAX Growing-NCA reference beside it.

One command measures, vmapped over ``W`` worlds and for each grid size:

- ``reset_gnca`` / ``reset_hnca``: ``jax.vmap(env.reset)`` (jitted); its output is the start
  state of the step benchmarks below.
- ``env_gnca`` / ``env_gnca_noar``: ``Grow-v0`` (Growing-NCA mode), a jitted ``lax.scan`` of
  ``T`` steps of ``jax.vmap(env.step)`` with zero actions, with the gymnax-style auto-reset on
  (the default) and off (``make(id, auto_reset=False)``).
- ``env_hnca`` / ``env_hnca_noar``: the same for ``HNCA-Grow-v0`` (two levels, ``tau_c=0`` so
  the coordinators run from the first step).
- ``policy_gnca``: a full rollout on ``Grow-v0``: ``make_policy(env)`` (per-cell MLP
  48 -> 128 -> 16 shared by all cells) on the observation, then ``env.step``, ``T`` times.
- ``ref_conv`` / ``ref_slices``: a plain-JAX Growing-NCA step written here (16 channels,
  identity + Sobel/8 perception, MLP 48 -> 128 -> 16, fire rate 0.5, alive masking before
  and after), with perception as a depthwise ``lax.conv_general_dilated`` on circularly
  padded input or as shifted slices (like :func:`hnca_env.physics.perceive`).

Throughput is cell-agent updates per second, ``W * H * W_grid * T / seconds`` (child cells
only for H-NCA). Each program is compiled first (compile time reported), then run once to
warm up, then timed with ``jax.block_until_ready`` at least ``--runs`` times and until the
runs total ``--min-time`` seconds; the median is reported, with the CPU seconds the process
used per wall second (about the core count when nothing else competed for the cores).
``T`` shrinks for big configurations (``--budget`` cell updates per timed run, never fewer
than ``--min-steps``) and is reported. A configuration whose compiled program needs more
than ``--mem-limit-gb`` (XLA's buffer assignment: arguments + outputs + temporaries) is
skipped, and so, by default, is any configuration with more than ``--max-cells`` cells per
step (W=4096 at 64x64, several seconds per step on 2 CPU cores); skips are printed and recorded.

A perception micro-benchmark compares :func:`hnca_env.physics.perceive` (shifted slices)
with :func:`hnca_env.physics.perceive_conv` (``lax.conv``) on ``(64, 64, 16)`` grids vmapped
over 64 worlds, and times perception of a freshly alive-masked state (what ``get_obs`` does
after a ``Grow-v0`` step) against its two parts apart.

Usage::

    python benchmarks/throughput.py                 # full run, ~10 min on a 2-core CPU
    python benchmarks/throughput.py --quick         # smoke test, about a minute
    python benchmarks/throughput.py --worlds 1 64 --grids 32 --out /tmp/tp.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hnca_env  # noqa: E402
from agents.networks import make_policy  # noqa: E402
from hnca_env import physics  # noqa: E402

Array = jax.Array

#: Benchmarks of the grid, in table order.
BENCHES: tuple[str, ...] = (
    "env_gnca",
    "env_gnca_noar",
    "env_hnca",
    "env_hnca_noar",
    "policy_gnca",
    "ref_conv",
    "ref_slices",
)

#: Timed resets, one per env id; their output is the start state of the step benchmarks.
RESETS: tuple[str, ...] = ("reset_gnca", "reset_hnca")
RESET_ENV = {"reset_gnca": "Grow-v0", "reset_hnca": "HNCA-Grow-v0"}
#: The reset whose state each step benchmark starts from.
NEEDS_RESET = {
    "env_gnca": "reset_gnca",
    "env_gnca_noar": "reset_gnca",
    "policy_gnca": "reset_gnca",
    "env_hnca": "reset_hnca",
    "env_hnca_noar": "reset_hnca",
}

BENCH_HELP = {
    "reset_gnca": "Grow-v0 jax.vmap(env.reset), jitted",
    "reset_hnca": "HNCA-Grow-v0 (tau_c=0) jax.vmap(env.reset), jitted",
    "env_gnca": "Grow-v0 T x vmap(env.step) from the reset state, zero actions, auto-reset on",
    "env_gnca_noar": "Grow-v0, auto_reset=False",
    "env_hnca": "HNCA-Grow-v0 (tau_c=0) T x vmap(env.step), zero actions, auto-reset on",
    "env_hnca_noar": "HNCA-Grow-v0 (tau_c=0), auto_reset=False",
    "policy_gnca": "Grow-v0 T x (make_policy MLP 48-128-16 + env.step), auto-reset on",
    "ref_conv": "plain-JAX Growing-NCA step, depthwise lax.conv perception",
    "ref_slices": "plain-JAX Growing-NCA step, shifted-slice perception",
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "throughput.json"


# ---------------------------------------------------------------------------------------- timing
def time_compiled(
    fn: Callable[..., Any],
    args: Sequence[Any],
    runs: int,
    mem_limit_bytes: float,
    keep_output: bool = False,
    min_time: float = 0.0,
    max_runs: int = 100,
) -> dict[str, Any]:
    """Compile ``jax.jit(fn)`` for ``args``, then time it: median of at least ``runs`` runs
    (after one warm-up), more while the runs total less than ``min_time`` seconds (at most
    ``max_runs``), so a short program's median spans more than a passing disturbance.

    Returns compile time, the memory XLA assigned to the program, the run times and, with
    ``keep_output``, the last output; when the program needs more than ``mem_limit_bytes`` it
    is not run and ``skipped`` says why.
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    mem = _program_bytes(compiled)
    out: dict[str, Any] = {"compile_s": compile_s, "mem_gb": None if mem is None else mem / 2**30}
    if mem is not None and mem > mem_limit_bytes:
        out["skipped"] = f"needs {mem / 2**30:.2f} GB > limit {mem_limit_bytes / 2**30:.2f} GB"
        return out
    jax.block_until_ready(compiled(*args))  # warm-up: first-call allocation, caches
    times = []
    result = None
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    while len(times) < runs or (sum(times) < min_time and len(times) < max_runs):
        del result  # free the previous output before the next run
        t0 = time.perf_counter()
        result = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    # CPU seconds this process used per wall second while timed: near the core count when it
    # had the machine to itself, lower when something else competed for the cores.
    out["cpu_per_wall"] = (_cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    out["runs_s"] = times
    out["median_s"] = statistics.median(times)
    if keep_output:
        out["output"] = result
    return out


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _program_bytes(compiled: Any) -> float | None:
    """Arguments + outputs + temporaries of a compiled program, from XLA's buffer assignment."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if ma is None:
        return None
    return float(
        ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes - ma.alias_size_in_bytes
    )


# ---------------------------------------------------------------------------------------- env programs
def make_env(env_id: str, grid: int, auto_reset: bool = True) -> tuple[Any, Any]:
    """``(env, params)`` of a benchmark env (HNCA-Grow-v0 with ``tau_c=0``: coordinators from step 1)."""
    overrides: dict[str, Any] = {"grid": (grid, grid)}
    if env_id == "HNCA-Grow-v0":
        overrides["tau_c"] = 0
    if not auto_reset:
        overrides["auto_reset"] = False
    return hnca_env.make(env_id, **overrides)


#: ``(env_id, grid, worlds) -> (obs, state)`` from the timed reset, reused by the step programs.
_RESET_CACHE: dict[tuple[str, int, int], Any] = {}


def reset_program(env_id: str, grid: int, worlds: int):
    """``(fn, args)``: ``jax.vmap(env.reset)`` of ``worlds`` worlds."""
    env, params = make_env(env_id, grid)

    def run(keys, env_params):
        return jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)

    return run, (jax.random.split(jax.random.key(0), worlds), params)


def reset_batch(
    env_id: str, grid: int, worlds: int, runs: int, mem_limit: float, min_time: float = 0.0
) -> dict[str, Any]:
    """Time the vmapped reset of one configuration and keep its ``(obs, state)`` for the steps."""
    fn, args = reset_program(env_id, grid, worlds)
    res = time_compiled(fn, args, runs, mem_limit, keep_output=True, min_time=min_time)
    if "output" in res:
        _RESET_CACHE[(env_id, grid, worlds)] = res.pop("output")
    return res


def env_program(env_id: str, grid: int, worlds: int, steps: int, auto_reset: bool, policy: bool):
    """``(fn, args)``: scan ``steps`` vmapped ``env.step`` from the reset ``(obs, state)``.

    Observations and states are carried through the scan and returned, so nothing the env
    computes is dead code. Zero actions are a traced scalar broadcast (not a constant XLA
    could fold away); with ``policy`` the actions come from the shared per-level MLP.
    """
    env, params = make_env(env_id, grid, auto_reset)
    shapes = {lvl: (*env.grid_shape(lvl), env.action_dim(lvl)) for lvl in env.agent_levels}
    v_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    if (env_id, grid, worlds) not in _RESET_CACHE:
        fn, args = reset_program(env_id, grid, worlds)
        _RESET_CACHE[(env_id, grid, worlds)] = jax.jit(fn)(*args)
    obs0, state0 = _RESET_CACHE[(env_id, grid, worlds)]

    if policy:
        init, apply = make_policy(env)
        pparams = init(jax.random.key(1))
        v_apply = jax.vmap(apply, in_axes=(None, 0))

        def act(extra, obs):
            return v_apply(extra, obs)

    else:
        pparams = jnp.zeros((), jnp.float32)

        def act(extra, obs):
            del obs
            return {lvl: jnp.broadcast_to(extra, (worlds, *s)) for lvl, s in shapes.items()}

    def run(obs, state, key, env_params, extra):
        def body(carry, k):
            obs, state = carry
            action = act(extra, obs)
            obs, state, reward, _, _, _ = v_step(jax.random.split(k, worlds), state, action, env_params)
            return (obs, state), reward["cell"].mean()

        (obs, state), rewards = jax.lax.scan(body, (obs, state), jax.random.split(key, steps))
        return obs, state, rewards

    return run, (obs0, state0, jax.random.key(0), params, pparams)


# ---------------------------------------------------------------------------------------- reference NCA
REF_CHANNELS = 16
REF_HIDDEN = 128
REF_FIRE_RATE = 0.5
REF_ALIVE_THRESHOLD = 0.1


def ref_kernels() -> np.ndarray:
    """Identity, Sobel-x/8, Sobel-y/8 as ``(3, 3, 3)`` ``[kernel, row, col]``."""
    ident = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8.0
    return np.stack([ident, sobel_x, sobel_x.T]).astype(np.float32)


def ref_perceive_conv(x: Array, kernels: np.ndarray) -> Array:
    """Depthwise 3x3 perception of ``(B, H, W, C)``: one grouped conv on circularly padded input.

    Output channels are channel-major (``c * K + k``), as TF's depthwise conv gives them.
    """
    c = x.shape[-1]
    rhs = np.tile(np.transpose(kernels, (1, 2, 0))[:, :, None, :], (1, 1, 1, c))  # (3, 3, 1, C*K)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
    return jax.lax.conv_general_dilated(
        xp,
        jnp.asarray(rhs),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def ref_perceive_slices(x: Array, kernels: np.ndarray) -> Array:
    """The same perception from shifted slices of the padded grid (zero taps skipped)."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
    outs = []
    for k in kernels:
        acc = None
        for i in range(3):
            for j in range(3):
                if k[i, j] == 0.0:
                    continue
                term = xp[:, i : i + h, j : j + w, :]
                term = term if k[i, j] == 1.0 else term * float(k[i, j])
                acc = term if acc is None else acc + term
        outs.append(acc)
    return jnp.concatenate(outs, axis=-1)


def ref_alive(x: Array) -> Array:
    """``(B, H, W, 1)`` bool: 3x3 (wrapped) max pool of alpha > threshold."""
    a = jnp.pad(x[..., 3:4], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
    pooled = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "VALID")
    return pooled > REF_ALIVE_THRESHOLD


def ref_step(weights: dict[str, Array], x: Array, key: Array, perceive: Callable[[Array], Array]) -> Array:
    """One Growing-NCA step of a batch ``(B, H, W, C)``."""
    pre = ref_alive(x)
    y = perceive(x)
    h = jax.nn.relu(y @ weights["w1"] + weights["b1"])
    dx = h @ weights["w2"]
    fire = jax.random.bernoulli(key, REF_FIRE_RATE, x.shape[:-1] + (1,)).astype(x.dtype)
    x = x + dx * fire
    life = pre & ref_alive(x)
    return x * life.astype(x.dtype)


def ref_program(grid: int, worlds: int, steps: int, mode: str):
    """``(fn, args)``: scan ``steps`` reference steps from ``worlds`` single-cell seeds."""
    kernels = ref_kernels()
    if mode == "conv":

        def perceive(x):
            return ref_perceive_conv(x, kernels)

    else:

        def perceive(x):
            return ref_perceive_slices(x, kernels)

    n_in = REF_CHANNELS * len(kernels)
    k1, k2 = jax.random.split(jax.random.key(2))
    weights = {
        "w1": jax.random.normal(k1, (n_in, REF_HIDDEN)) / np.sqrt(n_in),
        "b1": jnp.zeros((REF_HIDDEN,)),
        "w2": jax.random.normal(k2, (REF_HIDDEN, REF_CHANNELS)) * 1e-3,
    }

    x0 = jnp.zeros((worlds, grid, grid, REF_CHANNELS), jnp.float32)
    x0 = x0.at[:, grid // 2, grid // 2, 3:].set(1.0)

    def run(x, key, weights):
        def body(x, k):
            return ref_step(weights, x, k, perceive), None

        x, _ = jax.lax.scan(body, x, jax.random.split(key, steps))
        return x

    return run, (x0, jax.random.key(0), weights)


def build(bench: str, grid: int, worlds: int, steps: int):
    """``(fn, args)`` of one benchmark of the grid."""
    if bench == "env_gnca":
        return env_program("Grow-v0", grid, worlds, steps, auto_reset=True, policy=False)
    if bench == "env_gnca_noar":
        return env_program("Grow-v0", grid, worlds, steps, auto_reset=False, policy=False)
    if bench == "env_hnca":
        return env_program("HNCA-Grow-v0", grid, worlds, steps, auto_reset=True, policy=False)
    if bench == "env_hnca_noar":
        return env_program("HNCA-Grow-v0", grid, worlds, steps, auto_reset=False, policy=False)
    if bench == "policy_gnca":
        return env_program("Grow-v0", grid, worlds, steps, auto_reset=True, policy=True)
    if bench == "ref_conv":
        return ref_program(grid, worlds, steps, "conv")
    if bench == "ref_slices":
        return ref_program(grid, worlds, steps, "slices")
    raise ValueError(f"unknown benchmark {bench!r}")


# ---------------------------------------------------------------------------------------- perception
def perception_bench(
    worlds: int, grid: int, channels: int, runs: int, min_time: float = 0.0
) -> list[dict[str, Any]]:
    """``physics.perceive`` vs ``physics.perceive_conv`` on ``(worlds, grid, grid, channels)``."""
    x = jax.random.uniform(jax.random.key(3), (worlds, grid, grid, channels), jnp.float32)
    rows = []
    for name, kernels in (
        ("gnca (identity, sobel/8)", physics.perception_kernels(("identity", "sobel_x", "sobel_y"), 1 / 8)),
        (
            "hnca (identity, sobel, laplacian)",
            physics.perception_kernels(("identity", "sobel_x", "sobel_y", "laplacian"), 1.0),
        ),
    ):
        row: dict[str, Any] = {"kernels": name, "shape": [worlds, grid, grid, channels]}
        outs = {}
        for impl, f in (("slices", physics.perceive), ("conv", physics.perceive_conv)):

            def fn(x, f=f, kernels=kernels):
                return jax.vmap(lambda xi: f(xi, kernels))(x)

            res = time_compiled(fn, (x,), runs, float("inf"), min_time=min_time)
            row[f"{impl}_ms"] = res["median_s"] * 1e3
            row[f"{impl}_compile_s"] = res["compile_s"]
            outs[impl] = jax.jit(fn)(x)
        row["conv_over_slices"] = row["conv_ms"] / row["slices_ms"]
        row["max_abs_diff"] = float(jnp.max(jnp.abs(outs["slices"] - outs["conv"])))
        rows.append(row)
    return rows


def alive_perceive_bench(
    worlds: int, grid: int, channels: int, runs: int, min_time: float = 0.0
) -> dict[str, Any]:
    """Perception of a freshly alive-masked state, as ``Grow-v0``'s ``get_obs`` after a step.

    Times ``x * alive_mask(x)`` and ``perceive(x)`` apart, then ``perceive(x * alive_mask(x))``
    in one program (slices and conv): when XLA fuses the mask into the perception, the cost
    of the whole exceeds the sum of the parts.
    """
    x = jax.random.uniform(jax.random.key(4), (worlds, grid, grid, channels), jnp.float32)
    kernels = physics.perception_kernels(("identity", "sobel_x", "sobel_y"), 1 / 8)

    def masked(xi):
        return xi * physics.alive_mask(xi)

    programs = {
        "mask_ms": masked,
        "perceive_ms": lambda xi: physics.perceive(xi, kernels),
        "perceive_masked_ms": lambda xi: physics.perceive(masked(xi), kernels),
        "perceive_conv_ms": lambda xi: physics.perceive_conv(xi, kernels),
        "perceive_conv_masked_ms": lambda xi: physics.perceive_conv(masked(xi), kernels),
    }
    row: dict[str, Any] = {"shape": [worlds, grid, grid, channels]}
    for name, f in programs.items():
        row[name] = time_compiled(jax.vmap(f), (x,), runs, float("inf"), min_time=min_time)["median_s"] * 1e3
    row["slices_whole_over_parts"] = row["perceive_masked_ms"] / (row["mask_ms"] + row["perceive_ms"])
    row["conv_whole_over_parts"] = row["perceive_conv_masked_ms"] / (row["mask_ms"] + row["perceive_conv_ms"])
    return row


# ---------------------------------------------------------------------------------------- reporting
def steps_for(cells: int, max_steps: int, min_steps: int, budget: int) -> int:
    """Scan length: ``budget // cells`` clipped to ``[min_steps, max_steps]``."""
    return int(max(min_steps, min(max_steps, budget // max(cells, 1))))


def fmt_rate(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if "skipped" in r:
        return "skip"
    return f"{r['updates_per_s'] / 1e6:.2f}"


def fmt_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """``a``'s time over ``b``'s time, if both ran."""
    if a is None or b is None or "median_s" not in a or "median_s" not in b:
        return "-"
    return f"{a['median_s'] / b['median_s']:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def report(
    results: list[dict[str, Any]], perception: list[dict[str, Any]], alive: dict[str, Any] | None = None
) -> str:
    """Markdown tables: step throughput with ratios, reset times, compile times, perception."""
    configs = sorted({(r["grid"], r["worlds"]) for r in results})
    by = {(r["bench"], r["grid"], r["worlds"]): r for r in results}
    head = [
        "grid",
        "W",
        "T",
        "GNCA",
        "GNCA noAR",
        "AR cost",
        "HNCA",
        "HNCA noAR",
        "AR cost",
        "policy+GNCA",
        "ref conv",
        "ref slices",
        "conv/slices",
    ]
    rows, rrows, crows = [], [], []
    for grid, worlds in configs:
        g = {b: by.get((b, grid, worlds)) for b in (*RESETS, *BENCHES)}
        steps = next((g[b]["steps"] for b in BENCHES if g[b] is not None), "-")
        rows.append(
            [
                f"{grid}x{grid}",
                str(worlds),
                str(steps),
                fmt_rate(g["env_gnca"]),
                fmt_rate(g["env_gnca_noar"]),
                fmt_ratio(g["env_gnca"], g["env_gnca_noar"]),
                fmt_rate(g["env_hnca"]),
                fmt_rate(g["env_hnca_noar"]),
                fmt_ratio(g["env_hnca"], g["env_hnca_noar"]),
                fmt_rate(g["policy_gnca"]),
                fmt_rate(g["ref_conv"]),
                fmt_rate(g["ref_slices"]),
                fmt_ratio(g["ref_conv"], g["ref_slices"]),
            ]
        )
        rrows.append(
            [f"{grid}x{grid}", str(worlds)]
            + [
                "-" if g[b] is None else "skip" if "median_s" not in g[b] else f"{g[b]['median_s'] * 1e3:.2f}"
                for b in RESETS
            ]
            + [fmt_rate(g[b]) for b in RESETS]
        )
        crows.append(
            [f"{grid}x{grid}", str(worlds)]
            + [
                "-" if g[b] is None or "compile_s" not in g[b] else f"{g[b]['compile_s']:.1f}"
                for b in (*RESETS, *BENCHES)
            ]
        )
    out = [
        "Step throughput, million cell-agent updates per second (W * H * W_grid * T / median time",
        "of T vmapped steps; child cells only for HNCA). AR cost = time with auto-reset / time",
        "without; conv/slices = reference time with lax.conv perception / with shifted slices.",
        "",
        markdown_table(head, rows),
        "",
        "Reset (jax.vmap(env.reset), jitted): median ms, and million cells per second:",
        "",
        markdown_table(["grid", "W", "GNCA ms", "HNCA ms", "GNCA M/s", "HNCA M/s"], rrows),
        "",
        "Compile time, seconds:",
        "",
        markdown_table(["grid", "W", *RESETS, *BENCHES], crows),
    ]
    if perception:
        prow = [
            [
                p["kernels"],
                "x".join(map(str, p["shape"])),
                f"{p['slices_ms']:.2f}",
                f"{p['conv_ms']:.2f}",
                f"{p['conv_over_slices']:.2f}",
                f"{p['max_abs_diff']:.1e}",
            ]
            for p in perception
        ]
        out += [
            "",
            "Perception, vmapped, median ms per call:",
            "",
            markdown_table(
                ["kernels", "shape", "perceive (slices)", "perceive_conv", "conv/slices", "max abs diff"],
                prow,
            ),
        ]
    if alive:
        arow = [
            "x".join(map(str, alive["shape"])),
            f"{alive['mask_ms']:.2f}",
            f"{alive['perceive_ms']:.2f}",
            f"{alive['perceive_masked_ms']:.2f}",
            f"{alive['slices_whole_over_parts']:.2f}",
            f"{alive['perceive_conv_ms']:.2f}",
            f"{alive['perceive_conv_masked_ms']:.2f}",
            f"{alive['conv_whole_over_parts']:.2f}",
        ]
        out += [
            "",
            "Perception of an alive-masked state (gnca kernels), vmapped, median ms per call;",
            "whole/parts = perceive(mask(x)) / (mask(x) + perceive(x)):",
            "",
            markdown_table(
                [
                    "shape",
                    "mask(x)",
                    "perceive(x)",
                    "perceive(mask(x))",
                    "whole/parts",
                    "conv(x)",
                    "conv(mask(x))",
                    "whole/parts",
                ],
                [arow],
            ),
        ]
    skipped: dict[tuple[int, int, str], list[str]] = {}
    for r in results:
        if "skipped" in r:
            skipped.setdefault((r["grid"], r["worlds"], r["skipped"]), []).append(r["bench"])
    if skipped:
        out += ["", "Skipped:"] + [
            f"- W={w} {g}x{g} ({', '.join(benches)}): {why}" for (g, w, why), benches in skipped.items()
        ]
    return "\n".join(out)


def environment_info() -> dict[str, Any]:
    dev = jax.devices()[0]
    return {
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": list(os.getloadavg()),
        **_git_info(),
    }


def _git_info() -> dict[str, Any]:
    """Commit of the measured code, and whether the working tree differed from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_modified": None}
    return {"git_commit": commit, "git_modified": [line[3:] for line in dirty.splitlines() if line.strip()]}


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--worlds", type=int, nargs="+", default=None, help="vmapped worlds W (default 1 64 1024 4096)"
    )
    p.add_argument("--grids", type=int, nargs="+", default=None, help="square grid sides (default 32 64)")
    p.add_argument(
        "--steps", type=int, default=16, help="scan length T for small configurations (default 16)"
    )
    p.add_argument("--min-steps", type=int, default=1, help="smallest T for big configurations (default 1)")
    p.add_argument(
        "--budget",
        type=int,
        default=2**21,
        help="cell updates per timed run; T = budget // (W*H*W_grid), clipped (default 2**21)",
    )
    p.add_argument(
        "--max-cells",
        type=int,
        default=2**22,
        help="skip configurations with more cells per step W*H*W_grid (0: no limit; default 2**22,\n"
        "which drops W=4096 at 64x64 to keep the default run near 10 minutes on 2 CPU cores)",
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs per configuration, median reported (>= 5)")
    p.add_argument(
        "--min-time",
        type=float,
        default=2.0,
        help="keep timing a program past --runs until its runs total this many seconds (default 2)",
    )
    p.add_argument("--mem-limit-gb", type=float, default=6.0, help="skip programs needing more (default 6)")
    p.add_argument("--benches", nargs="+", choices=BENCHES, default=list(BENCHES), help="subset to run")
    p.add_argument("--no-perception", action="store_true", help="skip the perception micro-benchmark")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (W 1 4, grid 16, T 4)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.quick:
        args.worlds = args.worlds or [1, 4]
        args.grids = args.grids or [16]
        args.steps = min(args.steps, 4)
    args.worlds = args.worlds or [1, 64, 1024, 4096]
    args.grids = args.grids or [32, 64]
    if args.runs < 5:
        p.error("--runs must be >= 5")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = environment_info()
    print(
        f"jax {info['jax_version']} | backend {info['backend']} | device {info['device_kind']} | "
        f"{info['cpu_count']} CPUs | commit {str(info['git_commit'])[:10]}"
        + (f" + changes to {', '.join(info['git_modified'])}" if info["git_modified"] else ""),
        flush=True,
    )
    mem_limit = args.mem_limit_gb * 2**30
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for grid in args.grids:
        for worlds in args.worlds:
            cells = worlds * grid * grid
            steps = steps_for(cells, args.steps, args.min_steps, args.budget)
            resets = [r for r in RESETS if any(NEEDS_RESET.get(b) == r for b in args.benches)]
            for bench in (*resets, *args.benches):
                is_reset = bench in RESETS
                row: dict[str, Any] = {
                    "bench": bench,
                    "grid": grid,
                    "worlds": worlds,
                    "steps": 1 if is_reset else steps,
                }
                if args.max_cells and cells > args.max_cells:
                    row["skipped"] = (
                        f"{cells} cells per step > --max-cells {args.max_cells}, dropped to keep the "
                        "default run near 10 minutes (pass --max-cells 0 to include it)"
                    )
                elif is_reset:
                    row.update(
                        reset_batch(RESET_ENV[bench], grid, worlds, args.runs, mem_limit, args.min_time)
                    )
                else:
                    fn, fargs = build(bench, grid, worlds, steps)
                    row.update(time_compiled(fn, fargs, args.runs, mem_limit, min_time=args.min_time))
                    del fn, fargs
                if "median_s" in row:
                    row["updates_per_s"] = cells * row["steps"] / row["median_s"]
                    msg = (
                        f"{row['updates_per_s'] / 1e6:9.2f} M upd/s  median {row['median_s'] * 1e3:9.1f} ms"
                        f" of {len(row['runs_s']):3d}"
                    )
                    msg = f"compile {row['compile_s']:5.1f} s  {msg}  cpu/wall {row['cpu_per_wall']:.2f}"
                else:
                    msg = f"SKIPPED ({row['skipped']})"
                print(
                    f"{bench:14s} {grid:3d}x{grid:<3d} W={worlds:<5d} T={row['steps']:<3d} {msg}", flush=True
                )
                results.append(row)
            _RESET_CACHE.clear()
    perception: list[dict[str, Any]] = []
    alive: dict[str, Any] | None = None
    if not args.no_perception:
        pw, pg = (4, 16) if args.quick else (64, 64)
        perception = perception_bench(pw, pg, 16, max(args.runs, 20), args.min_time)
        alive = alive_perceive_bench(pw, pg, 16, max(args.runs, 20), args.min_time)
    elapsed = time.perf_counter() - started

    table = report(results, perception, alive)
    print()
    print(table)
    print(f"\ntotal {elapsed:.0f} s")

    payload = {
        "environment": info,
        "config": {
            "worlds": args.worlds,
            "grids": args.grids,
            "max_steps": args.steps,
            "min_steps": args.min_steps,
            "budget": args.budget,
            "max_cells": args.max_cells,
            "runs": args.runs,
            "min_time": args.min_time,
            "mem_limit_gb": args.mem_limit_gb,
            "quick": args.quick,
            "command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        },
        "benchmarks": {b: BENCH_HELP[b] for b in args.benches},
        "results": results,
        "perception": perception,
        "alive_then_perceive": alive,
        "table_markdown": table,
        "total_s": elapsed,
        "load_average_at_end": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
