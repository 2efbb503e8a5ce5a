"""The Growing-NCA life mask, before and after a83e19f, timed side by side.

``physics.stochastic_update`` zeroes the cells that are dead before or after an update. Until
commit a83e19f it computed that mask as ``alive_mask(x) & alive_mask(new)`` (two 3×3 max
pools, two compares, an and); since then as one max pool over the stacked "alpha > threshold"
maps and a min over the pair (``physics._life``). The mask is the same; the XLA program is
not: on a CPU, XLA fused the compares and the and into every read of the next state's
perception (8 taps per cell) and recomputed them there, while the min is a reduction, which it
computes once.

This script builds the Growing-NCA rollout of ``compare.py`` (``Grow-v0`` + the
``agents.networks`` policy, 72×72, 64 steps, ``B`` worlds) and the pool-training iteration
twice, once with the old ``stochastic_update`` patched in (``before``) and once as the library
has it (``after``), checks that both give the same bytes, and times them interleaved with the
plain-JAX reference of ``compare.py`` (medians, after compilation, ``block_until_ready``)::

    python benchmarks/life_mask.py            # B 1 8 64 + training -> benchmarks/results/life_mask.json
    python benchmarks/life_mask.py --quick    # seconds: 24x24, 8 steps, B 1 2, no training
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    compile_program,
    environment_info,
    finish,
    print_header,
    ref_weights,
    table,
    time_interleaved,
)
from compare import ours_rollout_program, ref_rollout_program  # noqa: E402

import hnca_env  # noqa: E402
from agents.pool import PoolConfig, make_pool_trainer  # noqa: E402
from hnca_env import physics  # noqa: E402

AFTER = physics.stochastic_update


def before(x, delta, mask, *, alive=False, alive_threshold=0.1, alpha_channel=3):
    """``physics.stochastic_update`` as it was before a83e19f."""
    new = x + delta * mask
    if alive:
        life = physics.alive_mask(x, alive_threshold, alpha_channel) & physics.alive_mask(
            new, alive_threshold, alpha_channel
        )
        new = new * life.astype(new.dtype)
    return new


def build(update, make):
    """Compile ``make()``'s ``(fn, args)`` with ``update`` as ``physics.stochastic_update``."""
    physics.stochastic_update = update
    try:
        fn, args = make()
        compiled, _ = compile_program(fn, args)
    finally:
        physics.stochastic_update = AFTER
    return compiled, args


def same_bytes(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(x.tobytes() == y.tobytes() for x, y in zip(la, lb) if hasattr(x, "tobytes"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batches", default=None, help="comma-separated B (default 1,8,64; quick 1,2)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "life_mask.json")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    info = environment_info()
    print_header(info)
    grid, steps = (24, 8) if args.quick else (72, 64)
    batches = [int(b) for b in (args.batches or ("1,2" if args.quick else "1,8,64")).split(",")]
    weights = ref_weights(jax.random.key(0))
    rows, records = [], []
    for b in batches:
        progs = {
            "before": build(before, lambda b=b: ours_rollout_program(grid, b, steps, weights)),
            "after": build(AFTER, lambda b=b: ours_rollout_program(grid, b, steps, weights)),
            "ref": build(AFTER, lambda b=b: ref_rollout_program(grid, b, steps, weights)),
        }
        outs = {k: c(*a) for k, (c, a) in progs.items()}
        equal = same_bytes(outs["before"], outs["after"])
        timed = time_interleaved({k: (lambda c=c, a=a: c(*a)) for k, (c, a) in progs.items()}, args.runs, args.min_time)
        mups = {k: b * grid * grid * steps / v["median_s"] / 1e6 for k, v in timed.items()}
        records.append({"kind": "rollout", "batch": b, "same_bytes": equal, "M_updates_per_s": mups, "timing": timed})
        rows.append([f"rollout B = {b}", f"{mups['before']:.2f}", f"{mups['after']:.2f}",
                     f"{mups['after'] / mups['before']:.3f}", f"{mups['after'] / mups['ref']:.3f}", str(equal)])  # fmt: skip
        print(rows[-1], flush=True)
    if not (args.no_train or args.quick):
        env, env_params = hnca_env.make("Grow-v0", grid=(grid, grid))

        def trainer():
            cfg = PoolConfig(pool_size=1024, batch_size=8, min_steps=steps, max_steps=steps)
            init, iteration, _ = make_pool_trainer(env, env_params, cfg)
            return iteration, (init(jax.random.key(0)),)

        progs = {"before": build(before, trainer), "after": build(AFTER, trainer)}
        equal = same_bytes(*(c(*a) for c, a in progs.values()))
        timed = time_interleaved({k: (lambda c=c, a=a: c(*a)) for k, (c, a) in progs.items()}, 5, 10.0)
        ms = {k: v["median_s"] * 1e3 for k, v in timed.items()}
        records.append({"kind": "train", "batch": 8, "same_bytes": equal, "median_ms": ms, "timing": timed})
        rows.append(["pool-training iteration (ms)", f"{ms['before']:.0f}", f"{ms['after']:.0f}",
                     f"{ms['before'] / ms['after']:.3f}", "", str(equal)])  # fmt: skip
    text = table(["program", "before (M upd/s)", "after (M upd/s)", "after / before", "after / ref", "same bytes"], rows)
    finish(args, argv, info, text, started, results=records)
    return 0 if all(r["same_bytes"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
