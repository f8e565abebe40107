"""Compiled programs kept in memory between calls, so that a second ``train`` call
that changes only numbers (a learning rate, an entropy coefficient: every
``config.SWEEPABLE_FIELDS`` value, which the program takes as data) starts without
compiling.

A program is looked up by what it was compiled from: the static config
(``config.static_config``: every number replaced by a placeholder), the env, the
chunk length and device layout, and the shapes, dtypes and shardings of its
arguments. An env that is a pytree of arrays (the stochastic games) is keyed by its
tree structure (the arrays are arguments); any other env by its identity, so a
fresh ``make_env`` gives a fresh program unless the env object is reused --
``cached_env`` reuses it for a registered name and keyword arguments (envs are
immutable). The cache holds a bounded number of programs and envs
(least recently used first out); :func:`clear` empties it.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Hashable, Mapping

import jax
import numpy as np

from dpo_jax.envs.base import MultiAgentEnv

MAX_PROGRAMS = 16
"""Compiled programs kept (an init and a chunk program count as two)."""

MAX_ENVS = 2
"""Envs kept by :func:`cached_env` (a paper-size stochastic game holds 625 MB)."""


class _LRU:
    """A small least-recently-used map, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, bool]:
        """The value of ``key`` (made with ``make`` if absent) and whether it was
        found."""
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self.items[key], True
        value = make()
        with self.lock:
            self.misses += 1
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value, False

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_PROGRAMS = _LRU(MAX_PROGRAMS)
_ENVS = _LRU(MAX_ENVS)


def env_key(env: MultiAgentEnv) -> Hashable:
    """How the cache tells envs apart: a pytree of arrays by its structure (its
    arrays are program arguments, compared by shape), any other by identity."""
    leaves = jax.tree.leaves(env)
    if leaves and all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves):
        return ("pytree", jax.tree.structure(env))
    return ("object", type(env), id(env))


def signature(args: Any) -> Hashable:
    """The tree structure, shapes, dtypes and shardings of a program's arguments."""
    leaves, tree = jax.tree.flatten(args)
    return (tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x))),
                         getattr(x, "sharding", None)) for x in leaves))


def compiled(key: Hashable, env: MultiAgentEnv, compile_fn: Callable[[], Any]
             ) -> tuple[Any, bool]:
    """The compiled program of ``key`` (``compile_fn()`` when absent) and whether it
    was cached. An env keyed by identity is kept alive with the entry, so that its
    identity stays its own; a pytree env (its arrays are arguments) is not kept."""
    keep = env if env_key(env)[0] == "object" else None
    (program, _), found = _PROGRAMS.get_or_make(key, lambda: (compile_fn(), keep))
    return program, found


def cached_env(name: str, kwargs: Mapping[str, Any], make: Callable[[], MultiAgentEnv]
               ) -> MultiAgentEnv:
    """The env registered as ``name`` with ``kwargs``: the one made last time for the
    same arguments when the cache still holds it, else ``make()``."""
    key = (name, repr(sorted(dict(kwargs).items())))
    env, _ = _ENVS.get_or_make(key, make)
    return env


def entries() -> list[tuple[Hashable, Any]]:
    """The cached ``(key, compiled program)`` pairs, least recently used first: to
    inspect a program (``memory_analysis()``, ``input_shardings``)."""
    with _PROGRAMS.lock:
        return [(key, program) for key, (program, _) in _PROGRAMS.items.items()]


def info() -> dict[str, int]:
    """The program cache's ``hits``, ``misses`` (compiles) and ``size`` so far."""
    return {"hits": _PROGRAMS.hits, "misses": _PROGRAMS.misses, "size": len(_PROGRAMS.items)}


def clear() -> None:
    """Forget every cached program and env."""
    _PROGRAMS.clear()
    _ENVS.clear()
