"""Non-finite values found inside the compiled program, and reported on the host.

A compiled program cannot raise, and a host callback that raises can deadlock
XLA's CPU runtime. So every trainer records, per update, a ``fault`` code (a bit
set; 0 is a sound update) and, under ``nan_policy="raise"``, keeps its previous
state from the first faulty update on (``metrics["finite"]`` is False from there).
The host then names the cause: :func:`check_metrics` raises
:class:`NonFiniteError` with the update, the runs, the cause and the metrics that
were not finite. ``running.experiments.run`` checks after every chunk, so a
checkpointed run stops at the chunk where the fault happened.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

INVALID_OBJECTIVE = 1
NONFINITE_REWARD = 2
NONFINITE_OBSERVATION = 4
NONFINITE_LOSS = 8
CAUSES: dict[int, str] = {
    NONFINITE_REWARD: "a non-finite reward from the env",
    NONFINITE_OBSERVATION: "a non-finite observation from the env",
    INVALID_OBJECTIVE: "an invalid ObjectiveParams (see validate_objective_params)",
    NONFINITE_LOSS: "a non-finite loss or gradient",
}
"""Fault bits in the order the message names them (the root cause first)."""


class NonFiniteError(FloatingPointError):
    """A run hit a non-finite value; ``update``, ``runs`` and ``cause`` say where and
    what (``FloatingPointError`` subclass: ``nan_policy="raise"``)."""

    def __init__(self, message: str, update: int, runs: list[int], cause: str,
                 metrics: list[str]) -> None:
        super().__init__(message)
        self.update, self.runs, self.cause, self.metrics = update, runs, cause, metrics


def fault_code(objective_ok: Array | bool = True, rewards: Optional[Array] = None,
               observations: Optional[Array] = None,
               losses_finite: Array | bool = True) -> Array:
    """``[]`` int32 fault bits of one update (inside the program)."""
    code = jnp.where(objective_ok, 0, INVALID_OBJECTIVE)
    if rewards is not None:
        code |= jnp.where(jnp.all(jnp.isfinite(rewards)), 0, NONFINITE_REWARD)
    if observations is not None:
        code |= jnp.where(jnp.all(jnp.isfinite(observations)), 0, NONFINITE_OBSERVATION)
    code |= jnp.where(losses_finite, 0, NONFINITE_LOSS)
    return code.astype(jnp.int32)


def guard(fault: Array, was_finite: Array, new: Any, old: Any, nan_policy: str
          ) -> tuple[Any, Array]:
    """``(kept, finite)``: ``finite`` is False from the first faulty update on; under
    ``nan_policy="raise"`` the update is dropped from there (``old`` is kept)."""
    finite = was_finite & (fault == 0)
    if nan_policy == "raise":
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    return new, finite


def all_finite(tree: Any) -> Array:
    """``[]`` bool: every float leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def describe(fault: int) -> str:
    """The root cause a fault code holds (a NaN reward also makes the loss NaN: the
    reward is named)."""
    return next((text for bit, text in CAUSES.items() if fault & bit), "a non-finite value")


def check_metrics(metrics: Mapping[str, Any], first_update: int = 0,
                  labels: Optional[list[Mapping[str, Any]]] = None) -> None:
    """Raise :class:`NonFiniteError` if any run's ``finite`` metric is False.

    ``metrics`` leaves are ``[runs, updates, ...]`` (``first_update`` is the index of
    the first); the message names the earliest faulty update over all runs, the
    runs that failed (with their ``labels`` when given), the cause from ``fault``
    and the metrics that were not finite at that update."""
    if np.ndim(metrics["finite"]) == 1:  # one run, not vmapped
        metrics = {k: np.asarray(v)[None] for k, v in metrics.items()}
    finite = np.asarray(metrics["finite"]).reshape(np.shape(metrics["finite"])[0], -1)
    if finite.all():
        return
    bad = ~finite
    first_bad = np.where(bad.any(axis=1), np.argmax(bad, axis=1), finite.shape[1])
    runs = [int(r) for r in np.flatnonzero(first_bad < finite.shape[1])]
    first = int(first_bad.min())
    earliest = [r for r in runs if first_bad[r] == first]
    fault = 0
    if "fault" in metrics:
        for r in earliest:
            fault |= int(np.asarray(metrics["fault"])[r, first])
    def turned_nonfinite(value: np.ndarray) -> bool:  # NaN by design before: skipped
        now = np.all(np.isfinite(value[earliest, first]))
        return not now and (first == 0 or bool(np.all(np.isfinite(value[earliest, first - 1]))))

    nonfinite = sorted(name for name, value in metrics.items()
                       if np.asarray(value).dtype.kind == "f"
                       and turned_nonfinite(np.asarray(value)))
    update = first_update + first
    who = ", ".join(f"{r}" + (f" ({_label(labels[r])})" if labels else "") for r in earliest)
    cause = describe(fault)
    shown = f"; non-finite metrics there: {', '.join(nonfinite)}" if nonfinite else ""
    raise NonFiniteError(
        f"{cause} at update {update} in run(s) {who}{shown}; runs that failed: {runs}. "
        "TrainConfig.nan_policy='raise' stopped training there: lower the learning "
        "rates, check the env's rewards and observations, or set nan_policy='ignore'",
        update, runs, cause, nonfinite)


def _label(labels: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in labels.items() if v is not None)
