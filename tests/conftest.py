"""Test-session setup.

- One XLA CPU device per process (``DPO_JAX_CPU_DEVICES=1``): the suite's exact
  comparisons are against one-device runs, whatever machine runs it; the tests of
  several devices start their own processes with their own device count.
- XLA's persistent compilation cache in a temporary folder, so a program compiled
  twice in the suite (a run stopped and resumed, the same settings in two tests) is
  compiled once. The cache lives for this session only (no state shared between
  runs of the suite); programs that compile in under a second are not cached.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DPO_JAX_CPU_DEVICES", "1")

import jax  # noqa: E402

_CACHE = tempfile.TemporaryDirectory(prefix="dpo-jax-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE.name)


FULL = os.environ.get("DPO_JAX_FULL") == "1"


def pytest_collection_modifyitems(config, items):
    """``slow`` tests (the long versions) run only with ``DPO_JAX_FULL=1``."""
    import pytest

    if FULL:
        return
    skip = pytest.mark.skip(reason="the long version: set DPO_JAX_FULL=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
