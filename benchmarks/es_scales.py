"""Why does ES diverge on HNCA-Grow-v0? Per-level search scales (``ESConfig.level_scale``).

On ``es_compare.py``'s HNCA-Grow-v0 settings (population 32, 2 worlds, sigma 0.05, Adam lr 0.03,
seed 0), the first generation's population cost (the task's loss; do-nothing's is about 0.28)
with the cells' and the coordinators' parameters searched at ``factor x sigma``; then one
longer run (both factors 0.05) traced every 8 generations over 64 evaluation worlds::

    python benchmarks/es_scales.py            # writes benchmarks/results/es_scales.json
    python benchmarks/es_scales.py --quick    # a tiny grid, 2 of the pairs, 2 generations (tests)

One seed each: a diagnosis, not a result (docs/es.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import es_compare  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from agents.es import ESConfig, make_es  # noqa: E402
from hnca_env.evaluate import evaluate_worlds, policy_from_apply  # noqa: E402

TASK = "HNCA-Grow-v0"
FACTORS = ((1.0, 1.0), (1.0, 0.01), (1.0, 0.001), (0.1, 1.0), (0.1, 0.01))  # (cells, coordinators)


def config(cells: float, parent: float, quick: bool) -> ESConfig:
    kwargs = dict(es_compare.TASKS[TASK]["env_kwargs"])
    hidden = es_compare.HIDDEN
    es = dict(es_compare.ES)
    if quick:
        kwargs.update(grid=(8, 8), target_size=6, tau_c=2, max_steps_in_episode=4)
        hidden, es = {"cell": 8, "parent": 8}, {**es, "population": 4, "worlds": 1}
    return ESConfig(task=TASK, env_kwargs=kwargs, hidden=hidden, **es, level_scale={"cell": cells, "parent": parent})


def generation_zero(cells: float, parent: float, quick: bool) -> dict[str, float]:
    _, _, init, iteration, _ = make_es(config(cells, parent, quick))
    _, metrics = iteration(init(jax.random.key(0)))
    return {k: float(v) for k, v in metrics.items()}


def trace(cells: float, parent: float, generations: int, every: int, worlds: int, quick: bool) -> list[dict]:
    env, params, init, iteration, apply = make_es(config(cells, parent, quick))
    score = jax.jit(lambda p: evaluate_worlds(env, policy_from_apply(apply, p), jax.random.key(7), params,
                                              n_worlds=worlds, world_chunk=None))  # fmt: skip
    state, out = init(jax.random.key(0)), []
    for g in range(generations + 1):
        if g % every == 0:
            out.append({"generation": g, "mse": float(np.mean(score(state.params)["mse"]))})
        if g < generations:
            state, _ = iteration(state)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    factors = (FACTORS[0], FACTORS[-1]) if args.quick else FACTORS  # each pair builds its own search
    rows = [{"cells": c, "coordinators": p, **generation_zero(c, p, args.quick)} for c, p in factors]
    gens, every, worlds = (2, 1, 2) if args.quick else (32, 8, 64)
    record = {
        "task": TASK,
        "command": "python benchmarks/es_scales.py" + (" --quick" if args.quick else ""),
        "settings": config(1.0, 1.0, args.quick).to_dict(),
        "generation_zero": rows,
        "trace_both_0.05": trace(0.05, 0.05, gens, every, worlds, args.quick),
    }
    out = args.out or (ROOT / "benchmarks" / "results" / ("es_scales_quick.json" if args.quick else "es_scales.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("| cells | coordinators | population cost, generation 0 | best member |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cells']:g} | {r['coordinators']:g} | {r['population_cost']:.4g} | {r['best_cost']:.4g} |")
    print("trace (both 0.05):", [(t["generation"], round(t["mse"], 4)) for t in record["trace_both_0.05"]])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
