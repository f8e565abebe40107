"""Helpers for scripts (the examples and benchmarks) and the command line:
``argparse`` types that fail at parsing, the device flags, and the process setup
a script does before anything builds an array."""

from __future__ import annotations

import argparse
import pathlib
import tempfile
from typing import Optional

from dpo_jax.parallel.sharding import SHARD_MODES


def setup(cpu_devices: Optional[str] = None) -> dict:
    """What a script does first: join a multi-process run when ``DPO_JAX_COORDINATOR``
    is set (``parallel.distributed``), apply ``dpo_jax.runtime``'s defaults (or
    ``cpu_devices``), and check that JAX's backend starts (a message naming
    ``JAX_PLATFORMS`` if it does not). Returns ``runtime.configure``'s record."""
    from dpo_jax import runtime
    from dpo_jax.parallel import distributed

    distributed.initialize_from_environment()
    done = runtime.configure(cpu_devices=cpu_devices)
    runtime.check_backend()
    return done


def positive_int(text: str) -> int:
    """``argparse`` type: an int >= 1 (``--seeds 0`` fails at parsing, not in a
    ``vmap`` over zero runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def prepare_out_dir(path: str | pathlib.Path) -> pathlib.Path:
    """Create ``path`` and check that files can be written there; raise
    ``ValueError`` naming it otherwise. Call before training, so that a bad
    ``--out`` fails in a second, not after the run."""
    out = pathlib.Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"output folder {str(out)!r} cannot be written: {err}") from None
    return out


def out_dir_arg(text: str) -> pathlib.Path:
    """``argparse`` type for ``--out``: ``prepare_out_dir`` at parse time."""
    try:
        return prepare_out_dir(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """The examples' device flags: ``--shard`` (which axis the devices split) and
    ``--cpu-devices`` (``dpo_jax.runtime``: XLA devices a CPU is split into)."""
    parser.add_argument("--shard", choices=SHARD_MODES, default="runs",
                        help="split the runs (seeds x sweep entries) over all devices, or "
                             "each run's envs (data-parallel; policy-gradient runs only, "
                             "baselines keep the run axis)")
    parser.add_argument("--cpu-devices", default=None,
                        help="XLA devices a CPU is split into: auto (one per usable core, "
                             "the default), a count, or off")
