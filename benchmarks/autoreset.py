"""Cost of gymnax-style auto-reset under ``vmap``: ``env.step`` with and without it.

Under ``vmap`` the reset branch of every step is computed for every world and selected where
an episode ended, so a reset costs as much as a step unless it is cheap. Ours draws the
H-NCA noise seed with :func:`hnca_env.physics.hash_uniform` (an integer hash) rather than
threefry, and observes only the selected state. This benchmark times the same scanned,
vmapped rollout of zero actions built with ``auto_reset=True`` (the default) and ``False``,
interleaved (one call of each per round, so machine load hits both alike), and prints the
ratio.

Usage::

    python benchmarks/autoreset.py           # Grow-v0 and HNCA-Grow-v0, 32x32x256 and 64x64x64 worlds
    python benchmarks/autoreset.py --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    compile_program,
    environment_info,
    print_header,
    table,
    time_interleaved,
    write_json,
)
from throughput import env_program  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS / "autoreset.json"))
    args = ap.parse_args(argv)
    configs = [(16, 8)] if args.quick else [(32, 256), (64, 64)]
    info = environment_info()
    print_header(info)
    rows, results = [], []
    for env_id in ("Grow-v0", "HNCA-Grow-v0"):
        for grid, worlds in configs:
            calls = {}
            for auto_reset in (True, False):
                fn, fargs = env_program(env_id, grid, worlds, args.steps, auto_reset=auto_reset, policy=False)
                compiled, _ = compile_program(fn, fargs)
                calls[str(auto_reset)] = lambda c=compiled, a=fargs: c(*a)
            res = time_interleaved(calls, runs=3 if args.quick else 7, min_time=0.0 if args.quick else 2.0)
            with_ar, without = res["True"]["median_s"], res["False"]["median_s"]
            results.append(
                {"env_id": env_id, "grid": grid, "worlds": worlds, "steps": args.steps,
                 "with_s": with_ar, "without_s": without, "ratio": with_ar / without}
            )  # fmt: skip
            rows.append(
                [
                    env_id,
                    f"{grid}x{grid}",
                    str(worlds),
                    f"{with_ar:.4f}",
                    f"{without:.4f}",
                    f"{with_ar / without:.2f}",
                ]
            )
            print(rows[-1], flush=True)
    print(table(["env", "grid", "worlds", "with auto-reset (s)", "without (s)", "ratio"], rows, left=3))
    write_json(Path(args.out), {"environment": info, "config": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
