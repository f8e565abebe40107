"""Test-session setup: XLA's persistent compilation cache in a temporary folder,
so a program compiled twice in the suite (a run stopped and resumed, the same
settings in two tests) is compiled once. The cache lives for this session only
(no state shared between runs of the suite); programs that compile in under a
second are not cached (JAX's default threshold)."""

from __future__ import annotations

import tempfile

import jax

_CACHE = tempfile.TemporaryDirectory(prefix="dpo-jax-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE.name)
