"""How close the Growing-NCA rollout comes to the machine's dense matmul rate.

One command:

1. counts the FLOPs of one cell update of the Growing-NCA step by hand from the shapes
   (perception, the 48 -> 128 -> 16 MLP, the update, alive masking) and cross-checks the count
   with XLA's ``compiled.cost_analysis()`` of one vmapped step (ours and the plain-JAX
   reference);
2. measures, in the same process, the dense float32 matmul rate (a large ``jnp.dot``, median),
   the rate of the per-cell MLP alone at the rollout's own shapes (tall and skinny:
   ``relu((B*H*W, 48) @ (48, 128)) @ (128, 16)``), and the memory bandwidth
   (in-place ``x + 1`` on a large array: bytes read + written per second);
3. times the rollout of ``benchmarks/compare.py`` (``Grow-v0`` + policy, 72x72, 64 steps;
   ``ours`` with the library's default world batching, ``ours_vmap`` with one ``vmap``) and
   the plain-JAX reference, and reports achieved FLOP/s = cell updates/s x FLOPs per update,
   as a fraction of the matmul rate (issue #6 target: >= 50 %), with the arithmetic intensity
   from XLA's cost analysis for a roofline reading.

Usage::

    python benchmarks/roofline.py           # full, ~3 min on 2 CPU cores
    python benchmarks/roofline.py --quick   # smoke: 24x24, T 8, B 2, matmul 512
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REF_CHANNELS,
    REF_HIDDEN,
    RESULTS,
    compile_program,
    environment_info,
    finish,
    print_header,
    ref_kernels,
    ref_perceive_slices,
    ref_step,
    ref_weights,
    seed_state,
    table,
    time_interleaved,
)
from compare import ours_policy_params, ours_rollout_program, ref_rollout_program  # noqa: E402

import hnca_env  # noqa: E402
from agents.networks import make_policy  # noqa: E402

DEFAULT_OUT = RESULTS / "roofline.json"
TARGET_FRACTION = 0.5


# ---------------------------------------------------------------------------------------- counting
def flops_by_hand(channels: int = REF_CHANNELS, hidden: int = REF_HIDDEN) -> dict[str, int]:
    """FLOPs of one cell update of the Growing-NCA step, from the shapes.

    Perception: identity is a copy (0); each Sobel/8 kernel has 6 nonzero taps, none equal to
    1: 6 multiplies + 5 adds per channel. MLP: 2 FLOPs per multiply-add, plus bias adds and
    ReLU (counted as 1 each). Update ``x + dx * m``: 2 per channel. Alive masking, before and
    after: a 3x3 max (8 comparisons) and a threshold each, an ``and``, and the multiply of 16
    channels. The fire mask's random bits (integer work) are not counted; its compare is.
    """
    n_in = 3 * channels
    kernels = ref_kernels()
    taps = [int(np.count_nonzero(k)) for k in kernels]
    perception = sum(0 if (t == 1 and float(k.max()) == 1.0) else 2 * t - 1 for t, k in zip(taps, kernels))
    return {
        "perception": perception * channels,
        "mlp_hidden_matmul": 2 * n_in * hidden,
        "mlp_hidden_bias_relu": 2 * hidden,
        "mlp_out_matmul": 2 * hidden * channels,
        "mlp_out_bias": channels,
        "fire_mask_compare": 1,
        "update": 2 * channels,
        "alive_mask": 2 * (8 + 1) + 1 + channels,
    }


def cost_per_cell(fn, args, cells: int) -> dict[str, float] | None:
    """XLA's cost analysis of ``jax.jit(fn)`` on ``args``, per cell (None where unsupported)."""
    try:
        ca = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return {
        "flops_per_cell": float(ca["flops"]) / cells,
        "bytes_per_cell": float(ca.get("bytes accessed", float("nan"))) / cells,
    }


def ours_one_step(grid: int, batch: int):
    """One vmapped ``Grow-v0`` step (policy on the observation, ``env.transition``, observation)."""
    env, env_params = hnca_env.make("Grow-v0", grid=(grid, grid))
    _, apply = make_policy(env)
    pparams = ours_policy_params(env, ref_weights(jax.random.key(2)))
    _, state = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), batch), env_params
    )

    def one(key, state):
        obs = env.get_obs(state, env_params)
        new, *_ = env.transition(key, state, apply(pparams, obs), env_params)
        return new.grids["cell"]

    def fn(keys, state):
        return jax.vmap(one)(keys, state)

    return fn, (jax.random.split(jax.random.key(1), batch), state)


def ref_one_step(grid: int, batch: int):
    w = ref_weights(jax.random.key(2))
    kernels = ref_kernels()

    def fn(x, key):
        return ref_step(w, x, key, lambda y: ref_perceive_slices(y, kernels))

    return fn, (seed_state(batch, grid), jax.random.key(1))


# ---------------------------------------------------------------------------------------- rates
def matmul_program(n: int, reps: int):
    """``(fn, args, flops)``: ``reps`` chained float32 ``(n, n) @ (n, n)`` in one ``fori_loop``
    (each product depends on the last, so none is hoisted; no fresh buffer per product)."""
    ka, kb = jax.random.split(jax.random.key(5))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32) / np.sqrt(n)  # keeps the chain's values O(1)

    def chain(a, b):
        return jax.lax.fori_loop(0, reps, lambda i, c: c @ b, a)

    return chain, (a, b), 2.0 * n**3 * reps


def mlp_program(cells: int):
    """``(fn, args, flops)``: the per-cell MLP alone at the rollout's shapes,
    ``relu(x @ w1 + b1) @ w2`` with ``x (cells, 48)``."""
    n_in = 3 * REF_CHANNELS
    w = ref_weights(jax.random.key(2))
    x = jax.random.normal(jax.random.key(6), (cells, n_in), jnp.float32)

    def mlp(x, w):
        return jax.nn.relu(x @ w["w1"] + w["b1"]) @ w["w2"]

    flops = cells * (2.0 * n_in * REF_HIDDEN + 2 * REF_HIDDEN + 2.0 * REF_HIDDEN * REF_CHANNELS)
    return mlp, (x, w), flops


def bandwidth(n_floats: int, runs: int) -> dict[str, Any]:
    """In-place ``x + 1`` (donated buffer) on ``n_floats`` float32: bytes read + written per
    second. Donation matters: a fresh output buffer each call is dominated by first-touch page
    faults on this VM (about 10x slower), which is not bandwidth."""
    step = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    x = jax.block_until_ready(step(jnp.ones((n_floats,), jnp.float32)))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        x = jax.block_until_ready(step(x))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"bytes": 8.0 * n_floats, "median_s": med, "runs_s": times, "bytes_per_s": 8.0 * n_floats / med}


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=int, default=None, help="grid side (72)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="rollout batch sizes (8 64)")
    p.add_argument("--steps", type=int, default=None, help="rollout steps (64)")
    p.add_argument("--matmul-n", type=int, default=None, help="side of the square matmul (2048)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    a.grid = a.grid or (24 if a.quick else 72)
    a.batches = a.batches or ([2] if a.quick else [8, 64])
    a.steps = a.steps or (8 if a.quick else 64)
    a.matmul_n = a.matmul_n or (512 if a.quick else 2048)
    if a.quick:
        a.runs, a.min_time = min(a.runs, 3), 0.0
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = environment_info()
    print_header(info)
    started = time.perf_counter()
    g, steps = args.grid, args.steps

    hand = flops_by_hand()
    hand_total = sum(hand.values())
    matmul_share = (hand["mlp_hidden_matmul"] + hand["mlp_out_matmul"]) / hand_total
    print(f"FLOPs per cell update by hand: {hand_total} ({matmul_share:.1%} in the two matmuls)", flush=True)

    cb = args.batches[0]
    xla = {
        "ours": cost_per_cell(*ours_one_step(g, cb), cb * g * g),
        "ref": cost_per_cell(*ref_one_step(g, cb), cb * g * g),
    }
    for k, v in xla.items():
        print(f"XLA cost analysis, one {k} step: {v}", flush=True)

    n = args.matmul_n
    mm_fn, mm_args, mm_flops = matmul_program(n, 8)
    mm_compiled, _ = compile_program(mm_fn, mm_args)
    bw = bandwidth(2**24 if args.quick else 2**26, max(args.runs, 10))
    print(
        f"bandwidth (in-place x + 1, {bw['bytes'] / 2**20:.0f} MiB moved): {bw['bytes_per_s'] / 1e9:.1f} GB/s",
        flush=True,
    )

    # Per batch size: the matmul, the MLP alone and both rollouts, timed interleaved so the
    # fractions compare programs that saw the same machine.
    rows: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for batch in args.batches:
        cells = batch * g * g
        mlp_fn, mlp_args, mlp_flops = mlp_program(cells)
        mlp_compiled, _ = compile_program(mlp_fn, mlp_args)
        calls = {
            "matmul": lambda: mm_compiled(*mm_args),
            "mlp": lambda c=mlp_compiled, a=mlp_args: c(*a),
        }
        compile_s = {}
        for impl, build in (
            ("ours", ours_rollout_program),
            ("ours_vmap", lambda *a: ours_rollout_program(*a, world_chunk=None)),
            ("ref", ref_rollout_program),
        ):
            fn, fargs = build(g, batch, steps, ref_weights(jax.random.key(2)))
            compiled, compile_s[impl] = compile_program(fn, fargs)
            calls[impl] = lambda c=compiled, a=fargs: c(*a)
        res = time_interleaved(calls, args.runs, args.min_time)
        mm_rate = mm_flops / res["matmul"]["median_s"]
        mlp_rate = mlp_flops / res["mlp"]["median_s"]
        groups.append(
            {
                "batch": batch,
                "matmul": {"shape": [n, n, n], "reps": 8, "flops_per_s": mm_rate, **res["matmul"]},
                "mlp_alone": {
                    "shape": [cells, 3 * REF_CHANNELS, REF_HIDDEN, REF_CHANNELS],
                    "flops_per_s": mlp_rate,
                    **res["mlp"],
                },
            }
        )
        print(
            f"B={batch:<3d} matmul {mm_rate / 1e9:6.1f} GFLOP/s  MLP alone {mlp_rate / 1e9:6.1f} GFLOP/s",
            flush=True,
        )
        for impl in ("ours", "ours_vmap", "ref"):
            r = res[impl]
            ups = cells * steps / r["median_s"]
            achieved = ups * hand_total
            row = {
                "impl": impl,
                "batch": batch,
                "grid": g,
                "steps": steps,
                "compile_s": compile_s[impl],
                **r,
                "updates_per_s": ups,
                "achieved_flops_per_s": achieved,
                "matmul_flops_per_s": mm_rate,
                "mlp_alone_flops_per_s": mlp_rate,
                "fraction_of_matmul": achieved / mm_rate,
                "fraction_of_mlp_alone": achieved / mlp_rate,
            }
            print(
                f"{impl:9s} B={batch:<3d} {ups / 1e6:6.2f} M upd/s  {achieved / 1e9:6.1f} GFLOP/s  "
                f"{row['fraction_of_matmul']:.1%} of matmul  {row['fraction_of_mlp_alone']:.1%} of "
                f"the MLP alone  cpu/wall {r['cpu_per_wall']:.2f}",
                flush=True,
            )
            rows.append(row)

    # roofline reading: attainable = min(peak, intensity * bandwidth), intensity from XLA's count
    roof = {}
    for impl, c in xla.items():
        if c and c["bytes_per_cell"] == c["bytes_per_cell"] and c["bytes_per_cell"] > 0:
            intensity = hand_total / c["bytes_per_cell"]
            roof[impl] = {
                "intensity_flops_per_byte": intensity,
                "attainable_flops_per_s": min(
                    max(gr["matmul"]["flops_per_s"] for gr in groups), intensity * bw["bytes_per_s"]
                ),
            }

    hrows = [[k, str(v), f"{v / hand_total:.1%}"] for k, v in hand.items()] + [
        ["total", str(hand_total), "100%"]
    ]
    xrows = [
        [
            k,
            "-" if v is None else f"{v['flops_per_cell']:.0f}",
            "-" if v is None else f"{v['flops_per_cell'] / hand_total:.2f}",
            "-" if v is None else f"{v['bytes_per_cell']:.0f}",
            "-" if k not in roof else f"{roof[k]['intensity_flops_per_byte']:.1f}",
        ]
        for k, v in xla.items()
    ]
    rrows = [
        [
            r["impl"],
            str(r["batch"]),
            f"{r['updates_per_s'] / 1e6:.2f}",
            f"{r['achieved_flops_per_s'] / 1e9:.1f}",
            f"{r['matmul_flops_per_s'] / 1e9:.1f}",
            f"{r['fraction_of_matmul']:.1%}",
            f"{r['mlp_alone_flops_per_s'] / 1e9:.1f}",
            f"{r['fraction_of_mlp_alone']:.1%}",
            "PASS" if r["fraction_of_matmul"] >= TARGET_FRACTION else "FAIL",
        ]
        for r in rows
    ]
    text = "\n".join(
        [
            "FLOPs per cell update, counted by hand:",
            "",
            table(["part", "FLOPs", "share"], hrows),
            "",
            f"XLA cost analysis of one vmapped step (B={cb}, {g}x{g}), per cell; 'xla/hand' > 1 where XLA",
            "counts work the hand count leaves out (random bits, padding, selects); intensity = hand",
            "FLOPs / XLA bytes accessed:",
            "",
            table(["step", "XLA FLOPs", "xla/hand", "XLA bytes", "FLOP/byte"], xrows),
            "",
            f"Machine, same run: dense float32 matmul = 8 chained {n}^3 products, timed interleaved with "
            f"the rollouts of each B; bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s (in-place x + 1).",
            "",
            f"Rollout ({g}x{g}, {steps} steps): achieved FLOP/s = updates/s x {hand_total} FLOPs; target >= "
            f"{TARGET_FRACTION:.0%} of the matmul rate; 'MLP alone' = relu(x @ w1 + b1) @ w2 at the "
            "rollout's shapes (B*H*W rows), no perception, no env:",
            "",
            table(
                [
                    "impl",
                    "B",
                    "M upd/s",
                    "GFLOP/s",
                    "matmul GFLOP/s",
                    "of matmul",
                    "MLP alone GFLOP/s",
                    "of MLP alone",
                    "target",
                ],
                rrows,
            ),
        ]
    )
    return finish(
        args,
        argv,
        info,
        text,
        started,
        flops_by_hand=hand,
        flops_per_update=hand_total,
        xla_cost_per_cell=xla,
        groups=groups,
        bandwidth={k: bw[k] for k in ("bytes", "median_s", "runs_s", "bytes_per_s")},
        roofline=roof,
        results=rows,
    )


if __name__ == "__main__":
    main()
