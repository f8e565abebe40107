"""Runs spread over devices with ``jax.sharding``: the run axis (seeds x sweep
entries), or the env axis of each run, on one host or many.

**Run axis** (``experiments.run(..., shard="runs")``, the default).

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

**Env axis** (``shard="envs"``): data-parallel PPO. Every run's parallel envs are
split over the devices (``with_sharding_constraint`` on the env batch after each
step, and on the sample axis of every minibatch); parameters, optimiser states and
betas are replicated. XLA's partitioner then computes each minibatch's loss as
per-device partial sums joined by an all-reduce: for shared parameters that is the
gradient averaged over devices, for independent agents each agent's gradient (the
agent axis is part of the parameters, never split). The program is the
single-device one, so the minibatches hold the same samples and, with
``jax_threefry_partitionable`` (on by default), the sampled actions and env noise
are the same bits whatever the sharding: results equal the one-device run with the
same total batch up to float summation order. ``num_envs`` and the minibatch size
must divide by the device count (a ``ValueError`` says which does not).

**Many hosts.** After ``jax.distributed.initialize`` (``dpo_jax.parallel.distributed``:
set ``DPO_JAX_COORDINATOR`` and friends before ``import dpo_jax``), ``jax.devices()`` lists every process's devices
and both modes span them all: every process runs the same program with the same
arguments, inputs are placed with ``jax.make_array_from_callback`` (``device_put``
cannot address other hosts' devices), and :func:`gather` brings the sharded
results back to every process (``process_allgather``); ``results.save_metrics``
and ``plot_curves`` then write on process 0 only.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUN_AXIS = "runs"
ENV_AXIS = "envs"
SHARD_MODES = ("runs", "envs")

EnvConstraint = Callable[[Any, int], Any]
"""``constrain(tree, axis)``: every leaf of ``tree`` laid out with its ``axis``-th
dimension split over the env-axis mesh (identity without one)."""


def no_constraint(tree: Any, axis: int = 0) -> Any:
    """The single-device :data:`EnvConstraint`: ``tree`` unchanged."""
    return tree


def resolve_devices(devices: Optional[Sequence[jax.Device]]) -> list[jax.Device]:
    """``devices``, or every device of the default backend (with several
    processes, theirs too: ``jax.devices()`` is global)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return devices


def put(x: Any, sharding: jax.sharding.Sharding) -> Any:
    """Place the host value ``x`` (the same on every process) with ``sharding``.
    One process: ``device_put``; several: ``make_array_from_callback``, since
    ``device_put`` cannot place onto another host's devices."""
    if x is None:
        return None
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.tree.map(
        lambda leaf: jax.make_array_from_callback(jax.numpy.shape(leaf), sharding,
                                                  lambda index: leaf[index]), x)


def replicate(args: tuple, devices: list[jax.Device]) -> tuple:
    """Every argument replicated on ``devices`` (the env-axis mode's inputs)."""
    if len(devices) == 1 and jax.process_count() == 1:
        return args
    everywhere = NamedSharding(Mesh(np.asarray(devices), (ENV_AXIS,)), PartitionSpec())
    return tuple(put(arg, everywhere) for arg in args)


def env_constraint(devices: list[jax.Device]) -> EnvConstraint:
    """The :data:`EnvConstraint` that splits one axis over ``devices``."""
    if len(devices) == 1:
        return no_constraint
    mesh = Mesh(np.asarray(devices), (ENV_AXIS,))

    def constrain(tree: Any, axis: int = 0) -> Any:
        def one(x: jax.Array) -> jax.Array:
            spec = [None] * x.ndim
            spec[axis] = ENV_AXIS
            return jax.lax.with_sharding_constraint(
                x, NamedSharding(mesh, PartitionSpec(*spec)))

        return jax.tree.map(one, tree)

    return constrain


def check_env_axis(num_envs: int, minibatch_size: int, num_devices: int) -> None:
    """Raise ``ValueError`` unless the env-axis mode can split ``num_envs`` envs and
    ``minibatch_size`` samples evenly over ``num_devices`` devices."""
    for name, size in (("num_envs", num_envs), ("the minibatch size (num_envs x "
                                                 "num_steps / num_minibatches)",
                                                 minibatch_size)):
        if size % num_devices:
            raise ValueError(f'shard="envs" splits {name} = {size} over {num_devices} '
                             f"devices, which does not divide it: choose a multiple of "
                             f"{num_devices}, fewer devices, or shard=\"runs\"")


def gather(tree: Any) -> Any:
    """``tree`` with every leaf readable on this process: arrays spread over other
    hosts' devices are all-gathered (``process_allgather``); a single-process tree
    is returned as is."""
    leaves = jax.tree.leaves(tree)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """Whether this process writes results (process 0 of a multi-host run)."""
    return jax.process_index() == 0


def balanced_devices(num_runs: int, devices: list[jax.Device]) -> list[jax.Device]:
    """The fewest of ``devices`` that finish ``num_runs`` runs as soon as all of them
    would: ``ceil(R / ceil(R / D))``. Runs per device stay ``ceil(R / D)`` and the
    padding (copies of the last run, which cost device time but not wall time) is
    the least possible: 5 runs on 4 devices use 3 (2 + 2 + 2, one padded run
    instead of 3); 1 run uses 1 device. In a multi-process run every device is
    kept (each process must hold a share)."""
    if jax.process_count() > 1 or num_runs >= len(devices):
        if jax.process_count() > 1:
            return devices
        per_device = -(-num_runs // len(devices))
        return devices[:-(-num_runs // per_device)]
    return devices[:num_runs]


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


class PaddingWarning(UserWarning):
    """The run axis was padded to the device count (copies of the last run)."""


def place_runs(args: tuple, run_args: Sequence[bool], num_runs: int,
               devices: list[jax.Device],
               note: Optional[Callable[[str], None]] = None) -> tuple[tuple, int]:
    """Shard the arguments flagged in ``run_args`` along their leading run axis over
    ``devices`` (padded to a multiple of the device count) and replicate the rest.
    Returns the placed arguments and the padded run count. The padding is said once,
    through ``note`` (a line of the caller's report) or else a ``PaddingWarning``."""
    if len(devices) == 1 and jax.process_count() == 1:
        return args, num_runs
    size = padded_size(num_runs, len(devices))
    if size != num_runs:
        text = (f"{num_runs} runs do not divide over {len(devices)} devices: padded to "
                f"{size} with copies of the last run, dropped from the results")
        if note is not None:
            note(text)
        else:
            warnings.warn(text, PaddingWarning, stacklevel=3)
    mesh = Mesh(np.asarray(devices), (RUN_AXIS,))
    by_run = NamedSharding(mesh, PartitionSpec(RUN_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    placed = tuple(
        put(pad_runs(arg, num_runs, size), by_run) if sharded else put(arg, replicated)
        for arg, sharded in zip(args, run_args))
    return placed, size


def run_sharding(devices: list[jax.Device]) -> Optional[NamedSharding]:
    """The sharding of a vmapped run state on ``devices`` under ``shard="runs"``:
    every leaf split along its leading run axis; ``None`` on one device of one
    process (nothing to split). ``place_runs`` places the run arguments so, and
    the initial state is made so: left to XLA's propagation, the leaves that do not
    depend on the keys (a replay buffer's zeros, Adam's moments) come out
    replicated, a whole copy of every run's buffer on each device."""
    if len(devices) == 1 and jax.process_count() == 1:
        return None
    return NamedSharding(Mesh(np.asarray(devices), (RUN_AXIS,)), PartitionSpec(RUN_AXIS))


def drop_padding(tree: Any, num_runs: int) -> Any:
    """The first ``num_runs`` entries of every leaf's leading axis."""
    return jax.tree.map(lambda x: x[:num_runs], tree)
