"""Up-front memory estimate of a training run, checked before anything compiles.

A run whose batch cannot fit otherwise fails inside XLA (``RESOURCE_EXHAUSTED``)
after a long compile, with a message that names no setting. ``check_memory``
estimates the peak from the shapes alone and raises a ``ValueError`` naming
``num_envs``, ``num_steps`` and the estimate when it exceeds the device's memory.

The estimate counts what an update keeps alive at once: the rollout's stored
transitions, the flattened batch and its per-epoch shuffled copy, the states of
the parallel environments (three copies during the auto-reset step) and one
minibatch's activations through both networks, forward and backward. It is
calibrated against XLA's own ``compiled.memory_analysis()`` on MPE, SMAX and the
stochastic game (``tests/test_reliability.py`` checks it within 15% of XLA's figure
on two MPE batch shapes); it is meant to catch batches that are far too large, not
to budget the last gigabyte.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import jax
import numpy as np

from dpo_jax.config import TrainConfig
from dpo_jax.envs.base import MultiAgentEnv

_FLOAT = 4
# XLA's compiled temp + argument + output bytes over the shape count below, measured
# on mpe_spread (512 envs x 25 steps: 1.43; 64 x 128 with 4 minibatches: 1.16),
# stochastic_game_small (1.43) and smax_3m (1.41)
_CALIBRATION = 1.35


def _itemsize(dtype: object) -> int:
    """Bytes per element; a typed PRNG key counts its raw ``uint32`` words."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return 8  # the default threefry key: two uint32 words
    return np.dtype(dtype).itemsize


def _tree_bytes(tree: object) -> int:
    return sum(int(np.prod(x.shape)) * _itemsize(x.dtype) for x in jax.tree.leaves(tree))


def env_state_bytes(env: MultiAgentEnv) -> int:
    """Bytes of one environment's ``reset`` output (state, observation, mask)."""
    return _tree_bytes(jax.eval_shape(env.reset, jax.random.key(0)))


def estimate_train_bytes(cfg: TrainConfig, env: MultiAgentEnv, num_steps: int,
                         num_runs: int = 1) -> int:
    """Estimated peak bytes of ``num_runs`` vmapped runs of ``cfg`` on ``env``."""
    agents, obs_dim, mask = env.num_agents, env.obs_dim, env.mask_dim
    dist_width = mask if env.is_discrete else 2 * env.action_spec.action_dim
    action_width = 1 if env.is_discrete else env.action_spec.action_dim
    # per agent and sample: obs and next obs, mask, action, log-prob, distribution,
    # value, reward, return bookkeeping, advantage, target
    per_sample = agents * (_FLOAT * (2 * obs_dim + action_width + dist_width + 7) + mask)
    samples = cfg.num_envs * num_steps
    # transitions, the flattened batch and its shuffled copy
    batch = 3 * samples * per_sample
    envs = 3 * cfg.num_envs * env_state_bytes(env)
    minibatch = samples // cfg.num_minibatches
    width = max(cfg.hidden_size, obs_dim)
    # actor + critic, forward activations kept for the backward pass, and gradients
    activations = 2 * 3 * minibatch * agents * width * (cfg.num_hidden_layers + 1) * _FLOAT
    return int(_CALIBRATION * num_runs * (batch + envs + activations))


def proc_kib(path: str, field: str) -> Optional[int]:
    """The ``field: N kB`` value of a ``/proc`` status file (``/proc/meminfo``,
    ``/proc/self/status``), ``None`` where it cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def available_bytes(device: Optional[jax.Device] = None) -> Optional[int]:
    """Memory the default device can use: the accelerator's limit, or the host's
    available RAM on CPU; ``None`` when it cannot be read."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return int(limit) if limit else None
    available = proc_kib("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available * 1024
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GiB"


def check_memory(cfg: TrainConfig, env: MultiAgentEnv, num_steps: int,
                 num_runs: int = 1, limit: Optional[int] = None) -> int:
    """Raise ``ValueError`` when the estimate exceeds ``limit`` (default: the
    device's ``available_bytes``); return the estimate in bytes."""
    estimate = estimate_train_bytes(cfg, env, num_steps, num_runs)
    limit = available_bytes() if limit is None else limit
    if limit is not None and estimate > limit:
        runs = f" x {num_runs} runs" if num_runs > 1 else ""
        fit = max(1, math.floor(cfg.num_envs * limit / estimate))
        raise ValueError(
            f"TrainConfig.num_envs={cfg.num_envs} x num_steps={num_steps}{runs} on "
            f"{env.name!r} needs about {_gib(estimate)} (estimated from the shapes; "
            f"dpo_jax.training.memory) but the device has {_gib(limit)} available: lower num_envs "
            f"(about {fit} would fit), num_steps, the number of runs, or raise "
            "num_minibatches")
    return estimate


# float activations kept per network position and hidden unit: the GRU's gates and
# states for the online and the target network, forward and backward (fitted to
# XLA's memory_analysis of IQL on the paper-size game: tests/test_reliability.py)
_BASELINE_ACTIVATIONS = 16


def estimate_baseline_bytes(cfg: Any, env: MultiAgentEnv, num_runs: int = 1) -> int:
    """Estimated peak bytes of ``num_runs`` vmapped IQL / IDDPG runs on ``env``.

    The state is counted exactly (its shapes, from ``jax.eval_shape`` of the
    trainer's ``init``): it is dominated by the replay buffer (``buffer_size``
    episodes for IQL, transitions for IDDPG), which the chunk program updates in
    place (its state argument is donated). On top of it, per run: the items one
    update collects and adds, a sampled batch with its copies, and the networks'
    activations over a batch (forward and backward, online and target)."""
    from dpo_jax.baselines.config import IQLConfig
    from dpo_jax.training.trainer import make_trainer

    trainer = make_trainer(cfg, env)
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    item = _tree_bytes(state.buffer_state.experience) // cfg.buffer_size
    if isinstance(cfg, IQLConfig):
        collected = cfg.num_envs
        positions = cfg.batch_size * (env.max_steps + 1) * env.num_agents  # GRU steps
    else:
        collected = cfg.num_envs * cfg.num_steps
        positions = cfg.batch_size * env.num_agents * cfg.num_hidden_layers
    temp = (item * (2 * collected + 4 * cfg.batch_size)
            + _BASELINE_ACTIVATIONS * positions * cfg.hidden_size * _FLOAT)
    return int(num_runs * (_tree_bytes(state) + temp))


def check_baseline_memory(cfg: Any, env: MultiAgentEnv, num_runs: int = 1,
                          limit: Optional[int] = None) -> int:
    """Raise ``ValueError`` when the IQL / IDDPG estimate exceeds ``limit`` (default:
    the device's ``available_bytes``), naming ``buffer_size`` and the run count;
    return the estimate in bytes."""
    estimate = estimate_baseline_bytes(cfg, env, num_runs)
    limit = available_bytes() if limit is None else limit
    if limit is not None and estimate > limit:
        name = type(cfg).__name__
        unit = "episodes" if name == "IQLConfig" else "transitions"
        per_run = estimate / num_runs
        fit = int(limit // per_run)
        runs = (f"{num_runs} runs (seeds) need" if num_runs > 1 else "one run needs")
        raise ValueError(
            f"{name}.buffer_size={cfg.buffer_size} {unit} on {env.name!r}: {runs} about "
            f"{_gib(estimate)} ({_gib(per_run)} per run, the replay buffer most of it; "
            f"estimated from the shapes, dpo_jax.training.memory) but the device has "
            f"{_gib(limit)} available: train "
            + (f"at most {fit} seeds per job (several jobs with --seed 0, 1, ...), "
               if fit >= 1 else "")
            + "lower buffer_size (a change of the algorithm's setting), or use a machine "
              "with more memory")
    return estimate
