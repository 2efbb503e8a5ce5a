"""One pool-training iteration of the Digits recipe on a 2-core CPU: one device or two.

``python benchmarks/pool_devices.py [--out benchmarks/results/pool_devices.json]``

XLA runs a small program on one core, so a 28x28 pool run leaves the second core idle.
Three ways to run the same iteration (docs/reproductions.md's Digits recipe: learned
perception, hidden 80, batch 8, 20 steps, noise and mutation):

- ``one device, vmap``: the defaults (``world_chunk="auto"`` is one ``vmap`` for a batch of
  8 784-cell worlds);
- ``one device, world_chunk=1``: the worlds differentiated one after another;
- ``2 devices, world_chunk=1``: the batch split over 2 CPU host devices (one thread each,
  ``devices=2``), each differentiating its 4 worlds one after another.

Each runs in a fresh process (the device count is fixed when JAX starts): the iteration is
compiled and run once, then timed over ``--reps`` blocks of ``--iters`` iterations
(``block_until_ready``); the median block is reported, and all three are run twice,
interleaved, so the machine's drift shows.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = dict(
    task="Digits-v0", grid=28, target=None, target_size=None, reseed=1, lr=2e-3, hidden=80,
    env_kwargs={"cell_obs": "neighbourhood"}, learn_perception=["cell"], remat=False,
    pool_size=1024, batch_size=8, min_steps=20, max_steps=20,
)  # fmt: skip
VARIANTS = {
    "one device, vmap": dict(devices=1, trainer={"action_noise": 0.02, "mutate": 2}),
    "one device, world_chunk=1": dict(devices=1, trainer={"action_noise": 0.02, "mutate": 2, "world_chunk": 1}),
    "2 devices, world_chunk=1": dict(devices=2, trainer={"action_noise": 0.02, "mutate": 2, "world_chunk": 1}),
}  # fmt: skip

CHILD = """
import json, sys, time, statistics
import jax
settings, iters, reps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
from agents.pool import make_pool_trainer
from agents.pool_run import PoolRunConfig
import dataclasses
cfg = PoolRunConfig.from_dict(settings)
env, env_params, pool_cfg, _ = cfg.build()
pool_cfg = dataclasses.replace(pool_cfg, mesh=cfg.mesh())
init, iteration, _ = make_pool_trainer(env, env_params, pool_cfg)
state = init(jax.random.key(0))
t = time.perf_counter(); state, _ = iteration(state); jax.block_until_ready(state)
first = time.perf_counter() - t
blocks = []
for _ in range(reps):
    t = time.perf_counter()
    for _ in range(iters):
        state, _ = iteration(state)
    jax.block_until_ready(state)
    blocks.append((time.perf_counter() - t) / iters)
print(json.dumps({"first_call_s": first, "blocks_s_per_it": blocks, "devices": jax.device_count()}))
"""


def measure(name: str, iters: int, reps: int) -> dict:
    v = VARIANTS[name]
    env = dict(os.environ)
    if v["devices"] > 1:
        flag = f"--xla_force_host_platform_device_count={v['devices']}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    settings = {**SETTINGS, **v}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings), str(iters), str(reps)],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            r = measure(name, args.iters, args.reps)
            rows[name].append(statistics.median(r["blocks_s_per_it"]))
            print(f"{name:28s} {rows[name][-1]:.3f} s/it (devices {r['devices']})", flush=True)
    base = statistics.median(rows["one device, vmap"])
    table = {
        name: {"s_per_it_by_round": v, "median_s_per_it": statistics.median(v),
               "speedup_vs_defaults": base / statistics.median(v)}
        for name, v in rows.items()
    }  # fmt: skip
    for name, r in table.items():
        print(f"{name:28s} median {r['median_s_per_it']:.3f} s/it, {r['speedup_vs_defaults']:.2f}x the defaults")
    if args.out:
        record = {
            "settings": SETTINGS, "variants": VARIANTS, "iters_per_block": args.iters, "blocks": args.reps,
            "results": table, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "load": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
