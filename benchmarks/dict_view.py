"""Level-keyed arrays against the JaxMARL-style dict-per-agent view, at 256, 1024 and 4096 agents.

One ``Grow-v0`` world of ``N = H*W`` cell agents (16x16, 32x32, 64x64), one jitted ``step``:

- ``arrays``: ``env.step(key, state, action, params)`` with ``action = {"cell": (H, W, 16)}``,
  observations and rewards as level-keyed arrays (the API of this package);
- ``dict``: :class:`hnca_env.wrappers.DictAgentView` (``max_agents`` raised to ``N``):
  ``actions = {"cell_y_x": (16,)}`` for every agent, returning per-agent dicts of
  observations, rewards and dones (JaxMARL's convention).

Each (grid, API) runs in its own subprocess with a timeout (``--timeout``), so a compilation
that takes too long is reported as ``> N s`` instead of stalling the run. Compile time covers
tracing, lowering and XLA compilation (``jax.jit(f).lower(...).compile()``); step time is the
median after a warm-up, with ``jax.block_until_ready`` (it includes the host-side flattening
of the ``N``-entry dicts, which a user of the dict view pays on every call).

Usage::

    python benchmarks/dict_view.py           # full: 256 1024 4096 agents
    python benchmarks/dict_view.py --quick   # smoke: 16 64 agents
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment_info, finish, print_header, table  # noqa: E402

DEFAULT_OUT = RESULTS / "dict_view.json"
APIS = ("arrays", "dict")


def child(api: str, side: int, runs: int, min_time: float) -> dict[str, Any]:
    """Compile and time one step of one API on a ``side x side`` world, in this process."""
    import jax
    import jax.numpy as jnp
    from common import time_compiled

    import hnca_env
    from hnca_env.wrappers import DictAgentView

    env, params = hnca_env.make("Grow-v0", grid=(side, side))
    _, state = env.reset(jax.random.key(0), params)
    key = jax.random.key(1)
    if api == "arrays":
        action = {"cell": jnp.zeros((side, side, env.action_dim("cell")), jnp.float32)}

        def step(key, state, action):
            return env.step(key, state, action, params)

    else:
        view = DictAgentView(env, max_agents=side * side)
        action = {a: jnp.zeros((env.action_dim("cell"),), jnp.float32) for a in view.agents}

        def step(key, state, action):
            return view.step(key, state, action, params)

    res = time_compiled(step, (key, state, action), runs, float("inf"), min_time=min_time)
    leaves_in = len(jax.tree.leaves((key, state, action)))
    leaves_out = len(jax.tree.leaves(jax.eval_shape(step, key, state, action)))
    return {
        "api": api,
        "agents": side * side,
        "grid": side,
        "leaves_in": leaves_in,
        "leaves_out": leaves_out,
        **{k: res[k] for k in ("compile_s", "median_s", "runs_s", "cpu_per_wall")},
    }


def run_child(api: str, side: int, args) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        api,
        str(side),
        "--runs",
        str(args.runs),
        "--min-time",
        str(args.min_time),
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {
            "api": api,
            "agents": side * side,
            "grid": side,
            "timeout_s": args.timeout,
            "skipped": f"> {args.timeout:.0f} s (did not finish compiling and timing; killed)",
        }
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "api": api,
            "agents": side * side,
            "grid": side,
            "skipped": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}",
        }
    out = json.loads(lines[-1])
    out["subprocess_wall_s"] = wall
    return out


def report(rows, sides, timeout) -> str:
    def get(api, side):
        return next((r for r in rows if r["api"] == api and r["grid"] == side), None)

    trows = []
    for side in sides:
        a, d = get("arrays", side), get("dict", side)

        def ms(r):
            return (
                "-"
                if r is None
                else (f"> {timeout:.0f} s" if "skipped" in r else f"{r['median_s'] * 1e3:.2f}")
            )

        def cs(r):
            return "-" if r is None else (f"> {timeout:.0f}" if "skipped" in r else f"{r['compile_s']:.1f}")

        both = a is not None and d is not None and "skipped" not in a
        step_ratio = f"{d['median_s'] / a['median_s']:.1f}" if both and "skipped" not in d else "-"
        if both and "skipped" in d:
            comp_ratio = f"> {timeout / a['compile_s']:.0f}"
        else:
            comp_ratio = f"{d['compile_s'] / a['compile_s']:.0f}" if both else "-"
        trows.append(
            [
                str(side * side),
                f"{side}x{side}",
                ms(a),
                ms(d),
                step_ratio,
                cs(a),
                cs(d),
                comp_ratio,
                "-" if d is None or "leaves_in" not in d else f"{d['leaves_in']}/{d['leaves_out']}",
            ]
        )
    return "\n".join(
        [
            "One Grow-v0 step, one world: level-keyed arrays vs DictAgentView (JaxMARL-style dicts).",
            "Step = median ms per jitted call; compile = trace + lower + XLA compile, seconds;",
            "ratios dict / arrays; leaves = pytree leaves in/out of the dict step:",
            "",
            table(
                [
                    "agents",
                    "grid",
                    "arrays ms",
                    "dict ms",
                    "step ratio",
                    "arrays compile s",
                    "dict compile s",
                    "compile ratio",
                    "dict leaves in/out",
                ],
                trows,
                left=2,
            ),
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=None, help="grid sides (16 32 64)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per (grid, API) subprocess")
    p.add_argument("--quick", action="store_true", help="smoke test: 4x4 and 8x8")
    p.add_argument("--child", nargs=2, metavar=("API", "SIDE"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    a.sides = a.sides or ([4, 8] if a.quick else [16, 32, 64])
    if a.quick:
        a.runs, a.min_time = min(a.runs, 3), 0.0
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.runs, args.min_time)))
        return None
    info = environment_info()
    print_header(info)
    started = time.perf_counter()
    rows = []
    for side in args.sides:
        for api in APIS:
            r = run_child(api, side, args)
            rows.append(r)
            if "skipped" in r:
                print(f"{api:6s} {side * side:5d} agents  SKIPPED: {r['skipped']}", flush=True)
            else:
                print(
                    f"{api:6s} {side * side:5d} agents  compile {r['compile_s']:7.1f} s  step "
                    f"{r['median_s'] * 1e3:8.2f} ms  cpu/wall {r['cpu_per_wall']:.2f}",
                    flush=True,
                )
    text = report(rows, args.sides, args.timeout)
    return finish(args, argv, info, text, started, results=rows)


if __name__ == "__main__":
    main()
