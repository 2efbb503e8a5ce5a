"""Shared pieces of the benchmarks in this folder: environment info, timing, tables, JSON, and
the plain-JAX Growing-NCA reference (rollout and pool trainer).

The reference NCA step is the one of ``throughput.py`` (imported, not copied): 16 channels,
identity + Sobel/8 perception from shifted slices of the wrapped grid, dense 48 -> 128 -> 16
ReLU MLP, per-cell Bernoulli(0.5) fire mask, alive masking before and after. This module adds
its pool trainer, written the way a researcher would write it without the env: the same
algorithm as :func:`agents.pool.make_pool_trainer` (sample without replacement, re-seed the
worst, BPTT through ``steps`` steps, per-parameter gradient normalisation, Adam), without
``jax.checkpoint``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
for _p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from throughput import (  # noqa: E402
    REF_CHANNELS,
    REF_HIDDEN,
    environment_info,
    markdown_table,
    ref_kernels,
    ref_perceive_slices,
    ref_step,
    time_compiled,
)

Array = jax.Array

__all__ = [
    "REF_CHANNELS",
    "REF_HIDDEN",
    "RESULTS",
    "compile_program",
    "environment_info",
    "markdown_table",
    "program_memory",
    "ref_rollout",
    "ref_weights",
    "make_ref_trainer",
    "seed_state",
    "table",
    "time_compiled",
    "time_interleaved",
    "write_json",
    "finish",
]


# ---------------------------------------------------------------------------------------- timing
def compile_program(fn: Callable[..., Any], args: Sequence[Any]) -> tuple[Any, float]:
    """``(compiled, seconds)``: trace, lower and compile ``jax.jit(fn)`` for ``args``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_interleaved(
    calls: dict[str, Callable[[], Any]], runs: int, min_time: float = 0.0, max_runs: int = 100
) -> dict[str, dict[str, Any]]:
    """Time several programs in rounds, one call of each per round, so that a change in what
    else runs on the machine hits all of them alike and their ratios stay fair.

    Each call is warmed up once, then rounds run until every program has ``runs`` times and
    at least ``min_time`` seconds of them (at most ``max_runs`` rounds). Per program: run
    times, median, and the CPU seconds this process used per wall second while it ran (near
    the core count when nothing else competed).
    """
    for call in calls.values():
        jax.block_until_ready(call())
    times: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
    while True:
        for k, call in calls.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            out = jax.block_until_ready(call())
            times[k].append(time.perf_counter() - t0)
            cpu[k] += _cpu_seconds() - c0
            del out
        n = len(times[next(iter(calls))])
        if n >= max_runs or (n >= runs and all(sum(v) >= min_time for v in times.values())):
            break
    return {
        k: {"runs_s": v, "median_s": statistics.median(v), "cpu_per_wall": cpu[k] / sum(v)}
        for k, v in times.items()
    }


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def program_memory(compiled: Any) -> dict[str, float] | None:
    """XLA's buffer assignment of a compiled program, in bytes (None where unsupported)."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if ma is None:
        return None
    out = {
        "argument_bytes": float(ma.argument_size_in_bytes),
        "output_bytes": float(ma.output_size_in_bytes),
        "temp_bytes": float(ma.temp_size_in_bytes),
        "alias_bytes": float(ma.alias_size_in_bytes),
        "generated_code_bytes": float(ma.generated_code_size_in_bytes),
    }
    out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    return out


# ---------------------------------------------------------------------------------------- output
def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def cell(i, c, w):
        return c.ljust(w) if i < left else c.rjust(w)

    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = (
        "|"
        + "|".join(("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":") for i, w in enumerate(widths))
        + "|"
    )
    body = ["| " + " | ".join(cell(i, c, w) for i, (c, w) in enumerate(zip(r, widths))) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with the end-of-run load average added to its environment)."""
    payload.setdefault("environment", {})["load_average_at_end"] = list(os.getloadavg())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed: never half a file
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable))
    os.replace(tmp, path)
    print(f"wrote {path}")


def finish(
    args: Any, argv: Sequence[str] | None, info: dict[str, Any], text: str, started: float, **fields: Any
) -> dict[str, Any]:
    """End a benchmark run: print its table and total time, write the JSON (environment, config,
    command, ``fields``, table, total seconds) to ``args.out`` and return the payload."""
    elapsed = time.perf_counter() - started
    print()
    print(text)
    print(f"\ntotal {elapsed:.0f} s")
    payload = {
        "environment": info,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        **fields,
        "table_markdown": text,
        "total_s": elapsed,
    }
    write_json(Path(args.out), payload)
    return payload


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return str(x)


def print_header(info: dict[str, Any]) -> None:
    print(
        f"jax {info['jax_version']} | backend {info['backend']} | {info['cpu_count']} CPUs | "
        f"load {', '.join(f'{v:.2f}' for v in info['load_average_at_start'])} | "
        f"commit {str(info['git_commit'])[:10]}"
        + (f" + changes to {', '.join(info['git_modified'])}" if info["git_modified"] else ""),
        flush=True,
    )


# ---------------------------------------------------------------------------------------- reference
def ref_weights(key: Array, n_in: int = 3 * REF_CHANNELS, out_scale: float = 1e-3) -> dict[str, Array]:
    """Reference MLP weights ``w1 (48, 128)``, ``b1 (128,)``, ``w2 (128, 16)`` (small, nonzero,
    so a rollout changes the state)."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (n_in, REF_HIDDEN)) / np.sqrt(n_in),
        "b1": jnp.zeros((REF_HIDDEN,)),
        "w2": jax.random.normal(k2, (REF_HIDDEN, REF_CHANNELS)) * out_scale,
    }


def seed_state(batch: int, grid: int) -> Array:
    """``(batch, grid, grid, 16)`` single-cell seeds (channels 3.. of the centre set to 1)."""
    x = jnp.zeros((batch, grid, grid, REF_CHANNELS), jnp.float32)
    return x.at[:, grid // 2, grid // 2, 3:].set(1.0)


def _perceive(x: Array) -> Array:
    return ref_perceive_slices(x, ref_kernels())


def ref_rollout(weights: dict[str, Array], x: Array, key: Array, steps: int) -> Array:
    """``steps`` reference steps of a batch ``(B, H, W, C)`` in a ``lax.scan``."""

    def body(x, k):
        return ref_step(weights, x, k, _perceive), None

    x, _ = jax.lax.scan(body, x, jax.random.split(key, steps))
    return x


def make_ref_trainer(
    target: Array,
    grid: int,
    batch_size: int = 8,
    steps: int = 64,
    pool_size: int = 1024,
    lr: float = 2e-3,
) -> tuple[Callable[[Array], dict], Callable[[dict], tuple[dict, Array]]]:
    """Plain-JAX Growing-NCA pool trainer: ``(init, iteration)``, iteration not jitted.

    ``init(key) -> state`` (``params``, ``opt_state``, ``pool (P, H, W, 16)``, ``key``);
    ``iteration(state) -> (state, loss)``: sample ``batch_size`` pool states without
    replacement, sort by loss, replace the worst by a seed, roll out ``steps`` steps,
    loss = mean squared error of RGBA against ``target (H, W, 4)``, per-parameter gradient
    normalisation, Adam, write the final states back. No ``jax.checkpoint``.
    """
    target = jnp.asarray(target, jnp.float32)
    opt = optax.adam(lr)

    def loss_of(x):
        return jnp.mean(jnp.square(x[..., :4] - target), axis=(-3, -2, -1))

    def init(key):
        k_w, key = jax.random.split(key)
        params = ref_weights(k_w, out_scale=0.0)  # zero output layer, as Growing NCA
        return {
            "params": params,
            "opt_state": opt.init(params),
            "pool": seed_state(pool_size, grid),
            "key": key,
        }

    def iteration(state):
        key, k_idx, k_roll = jax.random.split(state["key"], 3)
        idx = jax.random.choice(k_idx, pool_size, (batch_size,), replace=False)
        batch = state["pool"][idx]
        order = jnp.argsort(-loss_of(batch))
        idx, batch = idx[order], batch[order]
        batch = batch.at[0].set(seed_state(1, grid)[0])

        def loss_fn(params):
            final = ref_rollout(params, batch, k_roll, steps)
            return jnp.mean(loss_of(final)), final

        (loss, final), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        grads = jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + 1e-8), grads)
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        pool = state["pool"].at[idx].set(final)
        return {"params": params, "opt_state": opt_state, "pool": pool, "key": key}, loss

    return init, iteration
