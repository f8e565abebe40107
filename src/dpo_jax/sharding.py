"""Runs spread over devices: the run axis (seeds x sweep entries) sharded with
``jax.sharding``.

``experiments.run(..., devices=...)`` places the keys and the ``ObjectiveParams`` of
its runs on a one-axis mesh (``"runs"``) with ``NamedSharding``; the compiled
``vmap`` over runs is then partitioned by XLA's SPMD partitioner, each device
training its share of runs with no communication (runs are independent).
Environments that travel as arguments (the stochastic game's tables) are
replicated. Each run computes the same thing whatever the device count, up to
float rounding: a device's batch of runs has another shape, so its matmuls may sum in
another order (last-bit differences, which training amplifies over many updates;
``benchmarks/scaling.py`` measures them, ``tests/test_sharding.py`` checks the first
updates on forced CPU devices).

A run count that does not divide over the devices is padded with copies of the
last run, which are dropped from the results (a warning says so).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUN_AXIS = "runs"


def resolve_devices(devices: Optional[Sequence[jax.Device]]) -> list[jax.Device]:
    """``devices``, or every local device of the default backend."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return devices


def padded_size(num_runs: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` that holds ``num_runs``."""
    return -(-num_runs // num_devices) * num_devices


def pad_runs(tree: Any, num_runs: int, size: int) -> Any:
    """Pad every leaf's leading (run) axis from ``num_runs`` to ``size`` with copies
    of the last run; ``None`` stays ``None``."""
    if size == num_runs or tree is None:
        return tree

    def pad(x: jax.Array) -> jax.Array:
        extra = jax.numpy.repeat(x[-1:], size - num_runs, axis=0)
        return jax.numpy.concatenate([x, extra], axis=0)

    return jax.tree.map(pad, tree)


def place_runs(args: tuple, run_args: Sequence[bool], num_runs: int,
               devices: list[jax.Device]) -> tuple[tuple, int]:
    """Shard the arguments flagged in ``run_args`` along their leading run axis over
    ``devices`` (padded to a multiple of the device count) and replicate the rest.
    Returns the placed arguments and the padded run count."""
    if len(devices) == 1:
        return args, num_runs
    size = padded_size(num_runs, len(devices))
    if size != num_runs:
        warnings.warn(f"{num_runs} runs do not divide over {len(devices)} devices: padded "
                      f"to {size} with copies of the last run, dropped from the results",
                      UserWarning, stacklevel=3)
    mesh = Mesh(np.asarray(devices), (RUN_AXIS,))
    by_run = NamedSharding(mesh, PartitionSpec(RUN_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    placed = tuple(
        None if arg is None else jax.device_put(pad_runs(arg, num_runs, size) if sharded
                                                else arg, by_run if sharded else replicated)
        for arg, sharded in zip(args, run_args))
    return placed, size


def drop_padding(tree: Any, num_runs: int) -> Any:
    """The first ``num_runs`` entries of every leaf's leading axis."""
    return jax.tree.map(lambda x: x[:num_runs], tree)
