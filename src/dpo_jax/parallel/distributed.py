"""Joining a multi-process (multi-host) run: ``jax.distributed.initialize`` from
environment variables, checked first, with a time limit.

``jax.distributed.initialize`` must run before anything starts an XLA backend, so
the ``dpo-jax`` command line and the examples call :func:`initialize_from_environment`
first thing; a script of your own calls it (or ``jax.distributed.initialize``)
before it builds an env or an array. The launcher sets

- ``DPO_JAX_COORDINATOR``: process 0's ``host:port``, or ``auto`` (JAX reads
  SLURM's or Open MPI's variables; refused outside such a job);
- ``DPO_JAX_NUM_PROCESSES`` and ``DPO_JAX_PROCESS_ID`` (with ``host:port``);
- ``DPO_JAX_INIT_TIMEOUT`` (seconds, default 120): how long to wait for the other
  processes before giving up with a message naming the coordinator.

Without ``DPO_JAX_COORDINATOR`` nothing happens (one process). Every bad value is a
``DistributedError`` naming the variable, raised before JAX is asked to connect.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

COORDINATOR = "DPO_JAX_COORDINATOR"
NUM_PROCESSES = "DPO_JAX_NUM_PROCESSES"
PROCESS_ID = "DPO_JAX_PROCESS_ID"
INIT_TIMEOUT = "DPO_JAX_INIT_TIMEOUT"
DEFAULT_TIMEOUT_S = 120
CLUSTER_VARIABLES = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                     "MV2_COMM_WORLD_SIZE")
"""Variables of a job launcher that ``jax.distributed.initialize()`` can read."""


class DistributedError(ValueError):
    """A multi-process setting that is wrong, or a coordinator that did not answer."""


def _int_var(environ: Mapping[str, str], name: str) -> int:
    text = environ.get(name)
    if text is None:
        raise DistributedError(f"{COORDINATOR} is a host:port address, so {name} must be "
                               f"set too (an int)")
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name}={text!r}: expected an int") from None


def _address(text: str) -> str:
    """``host:port`` checked: a non-empty host and a port in 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise DistributedError(f"{COORDINATOR}={text!r}: expected host:port (process 0's "
                               f"address, e.g. 10.0.0.1:12345) or auto")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 1 <= number <= 65535:
        raise DistributedError(f"{COORDINATOR}={text!r}: the port {port!r} is not a "
                               f"number in 1..65535")
    return text


def distributed_args(environ: Mapping[str, str]) -> Optional[dict]:
    """The ``jax.distributed.initialize`` keyword arguments the variables ask
    for (``{}`` for ``auto``), or ``None`` when ``DPO_JAX_COORDINATOR`` is unset.
    Raises ``DistributedError`` naming the variable that is missing or wrong."""
    coordinator = environ.get(COORDINATOR, "").strip()
    if not coordinator:
        return None
    timeout = environ.get(INIT_TIMEOUT, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = int(timeout)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise DistributedError(f"{INIT_TIMEOUT}={timeout!r}: expected a whole number of "
                               f"seconds >= 1")
    if coordinator == "auto":
        if not any(environ.get(v) for v in CLUSTER_VARIABLES):
            raise DistributedError(f"{COORDINATOR}=auto reads the process layout from a "
                                   f"job launcher (SLURM or MPI: one of "
                                   f"{', '.join(CLUSTER_VARIABLES)}), and none is set: "
                                   f"give host:port with {NUM_PROCESSES} and {PROCESS_ID}")
        return {"initialization_timeout": seconds}
    address = _address(coordinator)
    num_processes = _int_var(environ, NUM_PROCESSES)
    process_id = _int_var(environ, PROCESS_ID)
    if num_processes < 1:
        raise DistributedError(f"{NUM_PROCESSES}={num_processes}: expected an int >= 1")
    if not 0 <= process_id < num_processes:
        raise DistributedError(f"{PROCESS_ID}={process_id} must lie in [0, {NUM_PROCESSES}="
                               f"{num_processes})")
    return {"coordinator_address": address, "num_processes": num_processes,
            "process_id": process_id, "initialization_timeout": seconds}


def probe_coordinator(address: str, process_id: int, timeout_s: float) -> None:
    """Check the coordinator before JAX connects to it, since JAX's client ends the
    process (an abort, no Python error) when the connection fails. Process 0 must be
    able to listen on ``address``; the others wait up to ``timeout_s`` seconds for
    something to accept a connection there. ``DistributedError`` otherwise."""
    import socket
    import time

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if process_id == 0:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, int(port)))
        except OSError as err:
            raise DistributedError(
                f"{COORDINATOR}={address}: process 0 cannot listen there ({err}): the "
                f"address must be this machine's and the port free") from None
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"joining the multi-process run at {address} failed after at most "
                    f"{timeout_s:g} s ({INIT_TIMEOUT}): nothing answered there ({err}); "
                    f"is process 0 running, and the address reachable from here?") from None
            time.sleep(0.25)


def initialize_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Call ``jax.distributed.initialize`` as the ``DPO_JAX_*`` variables say (once
    per process); returns whether it did. On CPU the processes talk through gloo,
    JAX's default CPU collectives. A coordinator that does not answer within the
    time limit raises ``DistributedError`` naming it."""
    kwargs = distributed_args(environ)
    if kwargs is None:
        return False
    import jax

    if jax.distributed.is_initialized():
        return False
    if "coordinator_address" in kwargs:  # JAX aborts the process when it cannot connect
        probe_coordinator(kwargs["coordinator_address"], kwargs["process_id"],
                          kwargs["initialization_timeout"])
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:  # JAX raises several types (RuntimeError, XlaRuntimeError)
        where = kwargs.get("coordinator_address", "the launcher's coordinator")
        raise DistributedError(
            f"joining the multi-process run at {where} failed after at most "
            f"{kwargs['initialization_timeout']} s ({INIT_TIMEOUT}): is process 0 "
            f"running, is the address reachable from here and the port free there? "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return True
