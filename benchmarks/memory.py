"""Peak memory of one pool-training iteration against rollout length, with and without
``jax.checkpoint``, next to the plain-JAX reference trainer.

Configurations (Growing NCA on 72x72, batch 8, pool 1024, the rollout length fixed at ``T``):

- ``ours_remat``: ``agents.pool.make_pool_trainer(env, params, PoolConfig(remat=True))``
  (the defaults: ``jax.checkpoint`` around each step of the scan; ``world_chunk="auto"``,
  which on a CPU differentiates the batch's worlds one after another and sums their
  gradients, so one world's residuals are alive at a time);
- ``ours_remat_vmap``: the same with ``world_chunk=None`` (the whole batch in one vmap: the
  default before ``world_chunk`` existed, and the default off the CPU);
- ``ours_remat_donate``: the same with ``PoolConfig(donate=True)``: the iteration donates its
  input, so the new pool may reuse the old one's buffer;
- ``ours_sqrt_donate``: ``PoolConfig(remat_segments=ceil(sqrt(T)), donate=True)``: two-level
  checkpointing (per segment of steps and per step), memory ~ (S + T/S) states = O(sqrt T)
  (what ``hnca train`` runs: ``agents.pool_run``);
- ``ours_noremat``: ``remat=False``;
- ``ref``: the plain-JAX reference trainer of ``benchmarks/common.py`` (no checkpointing).

Two measures, reported apart because they measure different things:

- **XLA**: ``compiled.memory_analysis()`` of the jitted iteration: arguments (the pool
  ``1024 x 72x72x16`` float32 = 340 MB, parameters, optimiser state), outputs (a new pool: the
  iteration does not donate its input), temporaries (what the rollout and its backward pass
  keep), total = arguments + outputs + temporaries - aliased. Exact buffer sizes, no runtime.
- **RSS**: each configuration runs in its own subprocess; ``ru_maxrss`` (peak resident set)
  is read after building the trainer and its state (``base``: Python, JAX, the pool), after
  compiling, and after running the iteration three times. ``peak`` is the whole process;
  ``peak - base`` is what compiling and running added (it includes the compiler's own memory).

Usage::

    python benchmarks/memory.py             # full: T 16 32 64 96, ~6 min on 2 CPU cores
    python benchmarks/memory.py --quick     # smoke: 24x24, T 4 8 12, pool 16
    python benchmarks/memory.py --plot docs/memory.png
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment_info, finish, print_header, table  # noqa: E402

DEFAULT_OUT = RESULTS / "memory.json"
IMPLS = ("ours_remat", "ours_remat_vmap", "ours_remat_donate", "ours_sqrt_donate", "ours_noremat", "ref")
TARGET_BYTES = 1e9  # issue #6: under 1 GB for batch 8 x 96 steps at 72x72 with checkpointing
MB = 1e6


# ---------------------------------------------------------------------------------------- child
def _rss_bytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def child(impl: str, steps: int, grid: int, batch: int, pool: int) -> dict[str, Any]:
    """Build, compile and run one configuration in this process; report its memory."""
    import jax
    from common import make_ref_trainer, program_memory

    import hnca_env
    from agents.pool import PoolConfig, make_pool_trainer

    env, env_params = hnca_env.make("Grow-v0", grid=(grid, grid))
    if impl == "ref":
        init, iteration = make_ref_trainer(env_params.target, grid, batch, steps, pool)
        iteration = jax.jit(iteration)
    else:
        cfg = PoolConfig(
            pool_size=pool,
            batch_size=batch,
            min_steps=steps,
            max_steps=steps,
            remat=impl.startswith(("ours_remat", "ours_sqrt")),
            remat_segments=math.ceil(math.sqrt(steps)) if impl == "ours_sqrt_donate" else 0,
            donate=impl.endswith("_donate"),
            world_chunk=None if impl.endswith("_vmap") else "auto",
        )
        init, iteration, _ = make_pool_trainer(env, env_params, cfg)
    state = jax.block_until_ready(init(jax.random.key(0)))
    rss_base = _rss_bytes()
    t0 = time.perf_counter()
    compiled = iteration.lower(state).compile()
    compile_s = time.perf_counter() - t0
    rss_compiled = _rss_bytes()
    xla = program_memory(compiled)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state))
        times.append(time.perf_counter() - t0)
    return {
        "impl": impl,
        "steps": steps,
        "xla": xla,
        "rss_base_bytes": rss_base,
        "rss_after_compile_bytes": rss_compiled,
        "rss_peak_bytes": _rss_bytes(),
        "compile_s": compile_s,
        "iteration_s": times,
        "iteration_median_s": statistics.median(times),
    }


def run_child(impl: str, steps: int, args) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        impl,
        str(steps),
        "--grid",
        str(args.grid),
        "--batch",
        str(args.batch),
        "--pool-size",
        str(args.pool_size),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "steps": steps, "skipped": f"> {args.timeout} s (timeout)"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "impl": impl,
            "steps": steps,
            "skipped": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}",
        }
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------- report
def slope(rows, key) -> float | None:
    """Least-squares bytes per rollout step of ``key(row)`` over the measured lengths."""
    pts = [(r["steps"], key(r)) for r in rows if "skipped" not in r and key(r) is not None]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def _temp(r):
    return None if not r.get("xla") else r["xla"]["temp_bytes"]


def _total(r):
    return None if not r.get("xla") else r["xla"]["total_bytes"]


def verdicts(rows, steps_list) -> list[dict[str, Any]]:
    out = []
    t_max = max(steps_list)
    for impl in ("ours_remat", "ours_remat_vmap", "ours_remat_donate", "ours_sqrt_donate"):
        r = next((x for x in rows if x["impl"] == impl and x["steps"] == t_max and "skipped" not in x), None)
        if r is None or not r.get("xla"):
            continue
        tot = r["xla"]["total_bytes"]
        out.append(
            {
                "target": f"{impl}, batch 8 x {t_max} steps: XLA total < 1 GB",
                "measured": f"{tot / MB:.0f} MB = {tot / 2**30:.3f} GiB",
                "pass": tot < TARGET_BYTES,
            }
        )
        rss = r["rss_peak_bytes"]
        out.append(
            {
                "target": f"{impl}, batch 8 x {t_max} steps: process peak RSS < 1 GB",
                "measured": f"{rss / MB:.0f} MB (incl. Python + JAX; {(rss - r['rss_base_bytes']) / MB:.0f} over base)",
                "pass": rss < TARGET_BYTES,
            }
        )
    for impl in ("ours_remat", "ours_remat_vmap", "ours_sqrt_donate"):
        rs = sorted((x for x in rows if x["impl"] == impl and "skipped" not in x), key=lambda x: x["steps"])
        if len(rs) < 3 or not all(x.get("xla") for x in rs):
            continue

        # Sub-linear means the cost of one more step falls as T grows: compare the marginal
        # bytes per step over the first and the last interval. (temp/T falls for any affine
        # function with an offset, so it is not the test.)
        def marginal(a, b):
            return (_temp(b) - _temp(a)) / (b["steps"] - a["steps"])

        first, last = marginal(rs[0], rs[1]), marginal(rs[-2], rs[-1])
        out.append(
            {
                "target": f"{impl}: memory sub-linear in rollout length",
                "measured": f"marginal temp {first / MB:.2f} MB/step (T {rs[0]['steps']}-{rs[1]['steps']}) "
                f"-> {last / MB:.2f} MB/step (T {rs[-2]['steps']}-{rs[-1]['steps']})",
                "pass": last < 0.9 * first,
            }
        )
    return out


def report(rows, steps_list, v) -> str:
    trows = []
    for impl in IMPLS:
        for t in steps_list:
            r = next((x for x in rows if x["impl"] == impl and x["steps"] == t), None)
            if r is None:
                continue
            if "skipped" in r:
                trows.append(
                    [impl, str(t), "skip", "", "", "", "", "", "", r["skipped"].strip().splitlines()[-1][:60]]
                )
                continue
            x = r.get("xla") or {}

            def mb(k, x=x):
                return "-" if k not in x else f"{x[k] / MB:.0f}"

            trows.append(
                [
                    impl,
                    str(t),
                    mb("argument_bytes"),
                    mb("output_bytes"),
                    mb("temp_bytes"),
                    mb("total_bytes"),
                    f"{r['rss_base_bytes'] / MB:.0f}",
                    f"{r['rss_peak_bytes'] / MB:.0f}",
                    f"{(r['rss_peak_bytes'] - r['rss_base_bytes']) / MB:.0f}",
                    f"{r['iteration_median_s'] * 1e3:.0f}",
                ]
            )
    srows = []
    for impl in IMPLS:
        rs = [x for x in rows if x["impl"] == impl]
        st, sr = slope(rs, _temp), slope(rs, lambda r: r.get("rss_peak_bytes"))
        srows.append([impl, "-" if st is None else f"{st / MB:.2f}", "-" if sr is None else f"{sr / MB:.2f}"])
    vrows = [[x["target"], x["measured"], "PASS" if x["pass"] else "FAIL"] for x in v]
    return "\n".join(
        [
            "One pool-training iteration, MB (1 MB = 10^6 bytes). XLA = compiled.memory_analysis()",
            "(args, outputs, temporaries, total = args + outputs + temps - aliased); RSS = ru_maxrss of a",
            "fresh subprocess: base (after building the trainer and pool), peak (after compile + 3 runs),",
            "peak - base; ms = median of the 3 iterations:",
            "",
            table(
                [
                    "impl",
                    "T",
                    "XLA args",
                    "XLA out",
                    "XLA temp",
                    "XLA total",
                    "RSS base",
                    "RSS peak",
                    "peak-base",
                    "ms",
                ],
                trows,
            ),
            "",
            "Growth per rollout step (least squares over T), MB/step:",
            "",
            table(["impl", "XLA temp", "RSS peak"], srows),
            "",
            "Issue #6 targets:",
            "",
            table(["target", "measured", "verdict"], vrows),
        ]
    )


def plot(rows, path: Path) -> None:
    """XLA total and temporaries against T, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    styles = dict(zip(IMPLS, ("o-", "v-.", "s--", "d-", "^-", "x:")))  # some lines overlap: tell them apart
    for impl in IMPLS:
        rs = sorted((r for r in rows if r["impl"] == impl and r.get("xla")), key=lambda r: r["steps"])
        if not rs:
            continue
        t = [r["steps"] for r in rs]
        axes[0].plot(t, [r["xla"]["total_bytes"] / MB for r in rs], styles[impl], label=impl)
        axes[1].plot(t, [r["xla"]["temp_bytes"] / MB for r in rs], styles[impl], label=impl)
    axes[0].axhline(TARGET_BYTES / MB, color="grey", ls="--", lw=1, label="1 GB target")
    axes[0].set_title("XLA total (args + out + temp)")
    axes[1].set_title("XLA temporaries")
    for ax in axes:
        ax.set_xlabel("rollout steps T")
        ax.set_ylabel("MB")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("One pool-training iteration, 72x72, batch 8, pool 1024", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=None, help="rollout lengths (16 32 64 96)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--grid", type=int, default=None, help="grid side (72)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--pool-size", type=int, default=None, help="pool (1024)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--plot", type=Path, default=None, help="also write a PNG of memory against T here")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "STEPS"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    a.steps = a.steps or ([4, 8, 12] if a.quick else [16, 32, 64, 96])
    a.grid = a.grid or (24 if a.quick else 72)
    a.pool_size = a.pool_size or (16 if a.quick else 1024)
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        impl, steps = args.child[0], int(args.child[1])
        print(json.dumps(child(impl, steps, args.grid, args.batch, args.pool_size)))
        return None
    info = environment_info()
    print_header(info)
    started = time.perf_counter()
    rows = []
    for impl in args.impls:
        for steps in args.steps:
            r = run_child(impl, steps, args)
            rows.append(r)
            if "skipped" in r:
                print(f"{impl:13s} T={steps:<3d} SKIPPED: {r['skipped']}", flush=True)
                continue
            x = r.get("xla") or {}
            print(
                f"{impl:13s} T={steps:<3d} XLA temp {x.get('temp_bytes', float('nan')) / MB:8.1f} MB  "
                f"total {x.get('total_bytes', float('nan')) / MB:8.1f} MB  RSS peak {r['rss_peak_bytes'] / MB:7.0f} MB "
                f"(base {r['rss_base_bytes'] / MB:.0f})  {r['iteration_median_s'] * 1e3:.0f} ms/iter",
                flush=True,
            )
    v = verdicts(rows, args.steps)
    text = report(rows, args.steps, v)
    payload = finish(args, argv, info, text, started, results=rows, targets=v)
    if args.plot:
        plot(rows, args.plot)
    return payload


if __name__ == "__main__":
    main()
