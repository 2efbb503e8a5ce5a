"""The ``hnca`` command's entry point: give JAX the CPU devices a run asks for, then run
:func:`agents.cli.main`.

JAX fixes its devices when it starts, and importing the env library starts it (gymnax runs
a computation at import). So a pool run's ``devices`` setting (``hnca train --devices N``,
``--set devices=N``, ``--config FILE`` or, with ``--resume DIR``, the run's record) is read
here first, from the command line alone, and ``jax_num_cpu_devices`` set before anything
else is imported. A process that calls :func:`agents.cli.main` itself after JAX started
must set ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before it starts.
"""

from __future__ import annotations

import argparse
import os
import sys

from agents.rundir import load_json
from agents.settings import load_settings

#: XLA:CPU's rendezvous limits (seconds) for runs on several host devices.
COLLECTIVE_TIMEOUT_FLAGS = (
    "--xla_cpu_collective_call_terminate_timeout_seconds=1800 --xla_cpu_collective_timeout_seconds=1800"
)


def requested_devices(argv: list[str]) -> int:
    """The ``devices`` a ``hnca train`` command line asks for (1 when it does not)."""
    if not argv or argv[0] != "train":
        return 1
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--devices", type=int)
    ap.add_argument("--resume")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[])
    known, _ = ap.parse_known_args(argv[1:])
    n = known.devices
    try:
        if n is None and known.resume:
            path = os.path.join(known.resume, "config.json")
            n = load_json(path).get("devices") if os.path.exists(path) else None
        if n is None and not known.resume:
            n = load_settings(known.config, known.set).get("devices")
    except ValueError:  # a bad file or override: the command itself reports it
        return 1
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    n = requested_devices(argv)
    if n > 1:
        # a device that waits for the other at a gradient's all-reduce gives up after 40 s by
        # default (the process aborts); on a machine with other work one may lag that long
        flags = os.environ.get("XLA_FLAGS", "")
        if "collective_call_terminate_timeout" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {COLLECTIVE_TIMEOUT_FLAGS}".strip()
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", max(n, jax.config.jax_num_cpu_devices))
        except RuntimeError:  # JAX already started: PoolRunConfig.mesh() says what to do
            pass
    from agents.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
