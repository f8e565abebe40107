"""Joining a multi-process (multi-host) run: ``jax.distributed.initialize`` from
environment variables, done when ``dpo_jax`` is imported.

``jax.distributed.initialize`` must run before anything starts an XLA backend, and
importing JaxMARL does (its modules build arrays at import time). So a script
cannot import ``dpo_jax`` first and then join; instead the launcher sets

- ``DPO_JAX_COORDINATOR``: process 0's ``host:port``, or ``auto`` (JAX reads
  SLURM's or Open MPI's variables);
- ``DPO_JAX_NUM_PROCESSES`` and ``DPO_JAX_PROCESS_ID`` (with ``host:port``),

and ``import dpo_jax`` joins before importing anything else. Without
``DPO_JAX_COORDINATOR`` nothing happens (one process). Scripts may instead call
``jax.distributed.initialize(...)`` themselves before ``import dpo_jax``.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

COORDINATOR = "DPO_JAX_COORDINATOR"
NUM_PROCESSES = "DPO_JAX_NUM_PROCESSES"
PROCESS_ID = "DPO_JAX_PROCESS_ID"


def _int_var(environ: Mapping[str, str], name: str) -> int:
    text = environ.get(name)
    if text is None:
        raise ValueError(f"{COORDINATOR} is a host:port address, so {name} must be set "
                         f"too (an int)")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected an int") from None


def distributed_args(environ: Mapping[str, str]) -> Optional[dict]:
    """The ``jax.distributed.initialize`` keyword arguments the variables ask
    for (``{}`` for ``auto``), or ``None`` when ``DPO_JAX_COORDINATOR`` is unset.
    Raises ``ValueError`` naming the variable that is missing or wrong."""
    coordinator = environ.get(COORDINATOR, "").strip()
    if not coordinator:
        return None
    if coordinator == "auto":
        return {}
    if ":" not in coordinator:
        raise ValueError(f"{COORDINATOR}={coordinator!r}: expected host:port (process "
                         f"0's address) or auto")
    num_processes = _int_var(environ, NUM_PROCESSES)
    process_id = _int_var(environ, PROCESS_ID)
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"{PROCESS_ID}={process_id} must lie in [0, {NUM_PROCESSES}="
                         f"{num_processes})")
    return {"coordinator_address": coordinator, "num_processes": num_processes,
            "process_id": process_id}


def initialize_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Call ``jax.distributed.initialize`` as the ``DPO_JAX_*`` variables say (once
    per process); returns whether it did. On CPU the processes talk through gloo,
    JAX's default CPU collectives."""
    kwargs = distributed_args(environ)
    if kwargs is None:
        return False
    import jax

    if jax.distributed.is_initialized():
        return False
    jax.distributed.initialize(**kwargs)
    return True
