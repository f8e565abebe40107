"""Process-level defaults applied once, before the first array is built.

dpo-jax changes two pieces of process-wide JAX state, each only if the user has not
set it, each with an environment variable (read once, at the first use):

- **Every CPU core as a device** (``DPO_JAX_CPU_DEVICES``: ``auto`` (default), a
  count, or ``0``/``off``). XLA:CPU runs the small networks of RL on about one core
  per device, so on a CPU backend the host is split into as many XLA devices as the
  process may use (its CPU affinity, capped by a cgroup CPU quota) and
  ``running.experiments.run`` spreads the run axis (seeds x sweep entries) over
  them. Left alone when ``XLA_FLAGS`` already holds
  ``--xla_force_host_platform_device_count``, when ``jax_num_cpu_devices`` was
  set, under ``jax.distributed`` (``DPO_JAX_COORDINATOR``), or when the backend had
  already started. Only the CPU backend is split; on a GPU or TPU nothing changes.
- **A persistent compilation cache** (``DPO_JAX_CACHE_DIR``: a folder, or
  ``off``; default ``$XDG_CACHE_HOME/dpo-jax/xla``, i.e. ``~/.cache/dpo-jax/xla``),
  so a program compiled once is loaded from disk by later processes. Left alone
  when ``jax_compilation_cache_dir`` (or ``JAX_COMPILATION_CACHE_DIR``) is set.

:func:`configure` applies them; every subpackage that builds arrays calls it on
import (``import dpo_jax`` alone does not, so ``dpo-jax --help`` stays fast). Call
``configure(cpu_devices=..., cache_dir=...)`` yourself, before anything else
builds an array, to choose other values from Python.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
from typing import Optional, Union

log = logging.getLogger("dpo_jax")

CPU_DEVICES_VAR = "DPO_JAX_CPU_DEVICES"
CACHE_DIR_VAR = "DPO_JAX_CACHE_DIR"
_OFF = ("0", "off", "false", "no", "none")
_state: dict[str, object] = {"configured": False}


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup
    CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``) when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cgroup_quota() -> Optional[float]:
    """CPUs allowed by the cgroup's quota, or ``None`` when unlimited or unknown."""
    try:
        text = pathlib.Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(pathlib.Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(pathlib.Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def parse_cpu_devices(text: Union[str, int, None],
                      source: str = CPU_DEVICES_VAR) -> Optional[int]:
    """``DPO_JAX_CPU_DEVICES`` / ``--cpu-devices`` as a device count: ``auto`` (or
    unset) -> ``usable_cores()``, ``0``/``off`` -> ``None`` (leave JAX's default),
    a positive int -> itself. Raises ``ValueError`` naming ``source`` (the variable
    or the flag the text came from) otherwise."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "auto")):
        return usable_cores()
    if isinstance(text, str) and text.strip().lower() in _OFF:
        return None
    try:
        count = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{source}={text!r}: expected auto, off (or 0), or a "
                         f"positive number of CPU devices") from None
    if count < 0:
        raise ValueError(f"{source}={text!r}: expected auto, off (or 0), or a "
                         f"positive number of CPU devices")
    return count or None


def default_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/dpo-jax/xla`` (``~/.cache/dpo-jax/xla``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "dpo-jax" / "xla"


def backend_started() -> bool:
    """Whether JAX has already created its backends (after which device counts are
    fixed)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _user_forced_devices() -> bool:
    return "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")


def configure(cpu_devices: Union[str, int, None] = None,
              cache_dir: Union[str, os.PathLike, None] = None) -> dict[str, object]:
    """Apply the defaults of this module (once; a later call with explicit values,
    made before the backend starts, changes them). Returns what was done:
    ``{"cpu_devices": n or None, "cache_dir": path or None, "notes": [...]}``.

    ``cpu_devices``: ``"auto"``, a count or ``"off"`` (default: the
    ``DPO_JAX_CPU_DEVICES`` variable, else auto). ``cache_dir``: a folder or
    ``"off"`` (default: ``DPO_JAX_CACHE_DIR``, else :func:`default_cache_dir`)."""
    explicit = cpu_devices is not None or cache_dir is not None
    if _state["configured"] and not explicit:
        return _state  # type: ignore[return-value]
    import jax

    notes: list[str] = []
    count = parse_cpu_devices(os.environ.get(CPU_DEVICES_VAR) if cpu_devices is None
                              else cpu_devices)
    applied: Optional[int] = None
    if count is not None:
        if _user_forced_devices():
            notes.append("XLA_FLAGS sets --xla_force_host_platform_device_count: kept")
        elif os.environ.get("DPO_JAX_COORDINATOR") or jax.distributed.is_initialized():
            notes.append("jax.distributed: one CPU device per process kept")
        elif backend_started():
            if jax.config.jax_num_cpu_devices != count:
                notes.append("the JAX backend had started: CPU device count unchanged")
        elif jax.config.jax_num_cpu_devices not in (-1, count) and cpu_devices is None:
            notes.append(f"jax_num_cpu_devices={jax.config.jax_num_cpu_devices} kept")
        else:
            jax.config.update("jax_num_cpu_devices", count)
            applied = count
    folder = os.environ.get(CACHE_DIR_VAR) if cache_dir is None else os.fspath(cache_dir)
    cache: Optional[str] = None
    if folder is not None and folder.strip().lower() in _OFF:
        if cache_dir is not None:
            jax.config.update("jax_compilation_cache_dir", None)
    elif jax.config.jax_compilation_cache_dir and cache_dir is None and folder is None:
        cache = jax.config.jax_compilation_cache_dir  # the user's own
    else:
        path = pathlib.Path(folder).expanduser() if folder else default_cache_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(path))
            cache = str(path)
        except OSError as err:
            notes.append(f"compilation cache off: {path} cannot be created ({err})")
    for note in notes:
        log.info(note)
    _state.update(configured=True, cpu_devices=applied, cache_dir=cache, notes=notes)
    return _state  # type: ignore[return-value]


def check_backend() -> None:
    """Start JAX's backend now, turning a failure into one message that names
    ``JAX_PLATFORMS`` (e.g. ``cuda`` on a machine without a CUDA JAX)."""
    import jax

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as err:  # JAX asserts when no backend is left
        platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms
        wanted = f"JAX_PLATFORMS={platforms!r}" if platforms else "JAX's default platform"
        first = str(err).splitlines()[0] if str(err) else "no backend could be started"
        hint = (" (CUDA needs pip install -U 'jax[cuda12]' and an NVIDIA driver)"
                if platforms and "cuda" in str(platforms) else "")
        raise RuntimeError(f"{wanted}: no such backend here{hint}; unset JAX_PLATFORMS or "
                           f"set it to cpu. JAX said: {first}") from None
