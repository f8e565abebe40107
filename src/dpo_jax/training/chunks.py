"""A training run in pieces: ``init``, then ``run`` K updates at a time, all pure.

Every trainer (the policy-gradient family, IQL, IDDPG) is an ``init(key, obj,
env) -> state`` and an ``update(state, update_idx, obj, env) -> (state,
metrics)``; :func:`chunked_trainer` builds from them the one-scan ``train`` and
the chunk runner ``run`` that ``experiments.run`` calls between checkpoints.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from dpo_jax.config import is_int

Array = jax.Array


class Trainer(NamedTuple):
    """A training run in pieces (``train.make_trainer``), all pure.

    - ``init(key, obj=None, env=env) -> state``: the state before update 0.
    - ``run(state, start, obj=None, env=env) -> (state, metrics)``: updates
      ``start .. start + chunk_updates - 1`` (``start`` may be traced, so one
      compile serves every chunk); metric leaves ``[chunk_updates, ...]``. When
      ``chunk_updates`` does not divide ``num_updates``, indices from
      ``num_updates`` on leave the state unchanged (a ``lax.cond`` skips the
      update) and their metric rows are zeros with ``update = -1``: the last,
      shorter chunk runs in the same compiled program, and the caller drops those
      rows (:func:`valid_rows`).
    - ``train(key, obj=None, env=env) -> result``: ``init`` then all
      ``num_updates`` updates in one scan (what ``make_train`` returns).
    - ``result(state, metrics) -> result``: ``TrainResult`` (policy-gradient
      family) or ``BaselineResult``.

    Running ``init`` and then ``run`` chunk after chunk executes the same update
    function on the same carry as ``train``: on CPU the metrics are identical
    (tested in ``tests/test_checkpoint.py``).
    """

    init: Callable[..., Any]
    run: Callable[..., tuple[Any, dict[str, Array]]]
    train: Callable[..., Any]
    num_updates: int
    chunk_updates: int
    result: Callable[[Any, dict[str, Array]], Any]


def chunked_trainer(init: Callable[..., Any], update: Callable[..., tuple[Any, dict]],
                    num_updates: int, chunk_updates: Optional[int],
                    result: Callable[[Any, dict[str, Array]], Any], env: Any,
                    prepare_obj: Callable[[Any], Any] = lambda obj: obj) -> Trainer:
    """The :class:`Trainer` of ``init(key, obj, env)`` and ``update(state, idx, obj,
    env)``; ``prepare_obj`` maps the ``obj`` argument to what ``update`` takes (a
    default, a validation); ``chunk_updates`` default: all updates."""
    chunk = num_updates if chunk_updates is None else chunk_updates
    if not is_int(chunk) or not 1 <= chunk <= num_updates:
        raise ValueError(f"chunk_updates={chunk_updates!r}: expected an int in [1, "
                         f"num_updates={num_updates}]")

    def run_updates(state: Any, indices: Array, obj: Any, env: Any) -> tuple[Any, dict]:
        obj = prepare_obj(obj)
        return jax.lax.scan(lambda s, i: update(s, i, obj, env), state, indices)

    def run_masked(state: Any, indices: Array, obj: Any, env: Any) -> tuple[Any, dict]:
        obj = prepare_obj(obj)
        shapes = jax.eval_shape(lambda s: update(s, indices[0], obj, env)[1], state)

        def skip(s: Any, i: Array) -> tuple[Any, dict]:
            rows = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
            return s, {**rows, "update": jnp.full_like(rows["update"], -1)}

        def step(s: Any, i: Array) -> tuple[Any, dict]:
            return jax.lax.cond(i < num_updates, lambda s: update(s, i, obj, env),
                                lambda s: skip(s, i), s)

        return jax.lax.scan(step, state, indices)

    masked = num_updates % chunk != 0

    def run(state: Any, start: Array, obj: Any = None, env: Any = env
            ) -> tuple[Any, dict[str, Array]]:
        runner = run_masked if masked else run_updates
        return runner(state, start + jnp.arange(chunk), obj, env)

    def start(key: Array, obj: Any = None, env: Any = env) -> Any:
        return init(key, obj, env)

    def train(key: Array, obj: Any = None, env: Any = env) -> Any:
        state, metrics = run_updates(init(key, obj, env), jnp.arange(num_updates), obj, env)
        return result(state, metrics)

    return Trainer(start, run, train, num_updates, int(chunk), result)


def emit_progress(progress: Optional[Callable[[dict], None]], metrics: dict[str, Array]
                  ) -> None:
    """Hand an update's metrics to the host's progress function, if any (from inside
    the program: ``jax.debug.callback``; under ``vmap``, once per run)."""
    if progress is not None:
        jax.debug.callback(progress, metrics)


def valid_rows(start: int, chunk: int, num_updates: int) -> int:
    """How many of a chunk's metric rows are real updates (the rest were skipped)."""
    return max(0, min(chunk, num_updates - start))
