"""Test-session setup.

- One XLA CPU device per process (``DPO_JAX_CPU_DEVICES=1``): the suite's exact
  comparisons are against one-device runs, whatever machine runs it; the tests of
  several devices start their own processes with their own device count.
- XLA's persistent compilation cache in a temporary folder, so a program compiled
  twice in the suite (a run stopped and resumed, the same settings in two tests) is
  compiled once. The cache lives for this session only (no state shared between
  runs of the suite); programs that compile in under a second are not cached.
- Test files spread over pytest-xdist workers (``-n auto --dist loadfile`` in
  ``pyproject.toml``): most tests trace, compile and run small programs on one
  thread, so a second process uses a second core. ``auto`` means one worker per
  usable core, at most :data:`MAX_WORKERS` (each worker is a JAX process of up to a
  few GB); ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or ``-n K`` choose otherwise, ``-n 0``
  runs the suite in this one process.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

os.environ.setdefault("DPO_JAX_CPU_DEVICES", "1")

import jax  # noqa: E402

_CACHE = tempfile.TemporaryDirectory(prefix="dpo-jax-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE.name)


FULL = os.environ.get("DPO_JAX_FULL") == "1"
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: the variable if set, else one worker per usable core, at most
    ``MAX_WORKERS``; 0 (no workers: the suite runs in this process) on one core."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    from dpo_jax.runtime import usable_cores  # affinity, capped by a cgroup CPU quota

    cores = min(usable_cores(), MAX_WORKERS)
    return cores if cores > 1 else 0


def recorded_seconds() -> dict[str, float]:
    """Each test file's time in the last recorded full run
    (``benchmarks/results/test_durations.json``; empty if absent or unreadable)."""
    import json

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "results" / "test_durations.json"
    try:
        return {name: float(entry["seconds"])
                for name, entry in json.loads(path.read_text())["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def pytest_collection_modifyitems(config, items):
    """Files ordered longest first by their recorded time (new files first of all),
    tests kept in order within a file: the workers take whole files in this order,
    so the last file to start is a short one. ``slow`` tests (the long versions)
    run only with ``DPO_JAX_FULL=1``."""
    import pytest

    seconds = recorded_seconds()
    root = pathlib.Path(str(config.rootpath))

    def file_key(item) -> float:
        name = pathlib.Path(str(item.path)).relative_to(root).as_posix()
        return -seconds.get(name, float("inf"))

    items.sort(key=file_key)  # stable: a file's tests keep their order
    if FULL:
        return
    skip = pytest.mark.skip(reason="the long version: set DPO_JAX_FULL=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
