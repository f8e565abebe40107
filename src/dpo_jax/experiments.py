"""Seeds and hyperparameter sweeps as one compiled call, progress, results files, plots."""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import sys
import tempfile
import time
import warnings
from typing import Any, Mapping, NamedTuple, Optional, Sequence, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax import checkpoint, sharding
from dpo_jax.baselines import BaselineResult
from dpo_jax.config import TrainConfig, is_int
from dpo_jax.envs.base import MultiAgentEnv, validate_env
from dpo_jax.loggers import Logger
from dpo_jax.memory import check_memory
from dpo_jax.objectives import ObjectiveParams, stack_params, validate_objective_params
from dpo_jax.train import (
    AnyConfig,
    TrainResult,
    check_finite,
    make_train,
    make_trainer,
    num_updates,
    resolve_config,
    rollout_length,
)

# Two-sided 95% Student-t quantiles by degrees of freedom (n_seeds - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(num_samples: int) -> float:
    """Two-sided 95% Student-t quantile for a mean of ``num_samples`` values."""
    df = num_samples - 1
    if df < 1:
        return float("nan")
    for bound in sorted(_T95):
        if df <= bound:
            return _T95[bound]
    return 1.96


def mean_ci95(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and the half-width of its 95% confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    with warnings.catch_warnings():  # all-NaN columns (no episode ended yet) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        if n < 2:
            return mean, np.zeros_like(mean)
        sem = np.nanstd(values, axis=0, ddof=1) / math.sqrt(n)
    return mean, t95(n) * sem


class ProgressPrinter:
    """Host-side progress for ``make_train(progress=...)``.

    Under ``vmap`` over R runs the callback fires once per run and update; the
    printer waits for all R, then prints one line with the mean over runs of the
    episode return, the KL and the betas (IQL: the greedy return and epsilon), and
    the env steps per second (all runs, wall time since the first update finished).

    ``bar``: a tqdm progress bar over updates (the same numbers as its postfix)
    instead of lines; default (``None``): a bar when ``stream`` is a terminal,
    plain lines otherwise (logs, pipes, notebooks' captured output).
    """

    def __init__(self, num_runs: int, total_updates: int, every: int = 1,
                 stream: TextIO = sys.stdout, bar: Optional[bool] = None) -> None:
        self.num_runs = num_runs
        self.total_updates = total_updates
        self.every = max(1, every)
        self.stream = stream
        if bar is None:
            bar = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = bar
        self._tqdm: Any = None
        self._pending: dict[int, list[Mapping[str, np.ndarray]]] = {}
        self._t0: Optional[float] = None
        self._steps0 = 0.0

    def __call__(self, metrics: Mapping[str, np.ndarray]) -> None:
        update = int(metrics["update"])
        rows = self._pending.setdefault(update, [])
        rows.append(metrics)
        if len(rows) < self.num_runs:
            return
        del self._pending[update]
        steps = float(rows[0]["env_steps"]) * self.num_runs
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._steps0 = now, steps
        last = update + 1 == self.total_updates
        if update % self.every and not last and not self.bar:
            return
        elapsed = now - self._t0
        rate = (steps - self._steps0) / elapsed if elapsed > 0 else float("nan")
        with warnings.catch_warnings():  # no episode finished yet: NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            ret = np.nanmean([float(r["episode_return"]) for r in rows])
            extra = {}
            for name, label, fmt in (("kl", "kl", ".4f"), ("beta_kl", "beta2", ".3g"),
                                     ("greedy_return", "greedy", ".3f"),
                                     ("epsilon", "eps", ".3f"),
                                     ("optimality_ratio", "J/J*", ".3f")):
                if name in rows[0]:
                    value = np.nanmean([np.mean(r[name]) for r in rows])
                    extra[label] = f"{value:{fmt}}"
        if self.bar:
            self._show_bar(update, rate, ret, extra, last)
            return
        extra_text = "".join(f"  {label} {value}" for label, value in extra.items())
        print(
            f"update {update + 1:>5}/{self.total_updates}  env steps "
            f"{int(rows[0]['env_steps']):>10,}  steps/s {rate:>9,.0f}  "
            f"return {ret:>9.3f}{extra_text}",
            file=self.stream, flush=True,
        )

    def _show_bar(self, update: int, rate: float, ret: float, extra: Mapping[str, str],
                  last: bool) -> None:
        from tqdm.auto import tqdm

        if self._tqdm is None:  # created at the first update seen (later on resume)
            self._tqdm = tqdm(total=self.total_updates, initial=update, unit="update",
                              file=self.stream, dynamic_ncols=True)
        self._tqdm.update(update + 1 - self._tqdm.n)
        self._tqdm.set_postfix({"return": f"{ret:.3f}", **extra,
                                "steps/s": f"{rate:,.0f}"}, refresh=False)
        if last:
            self._tqdm.close()
            self._tqdm = None


class _Discard:
    """A text stream that drops what it is given (progress of processes > 0)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class RunOutput(NamedTuple):
    """Results of :func:`run`; ``result`` and ``metrics`` have a leading run axis."""

    result: TrainResult | BaselineResult
    metrics: dict[str, np.ndarray]
    compile_s: float
    run_s: float
    env_steps_per_s: float


def env_is_pytree(env: MultiAgentEnv) -> bool:
    """Whether ``env`` is a JAX pytree of arrays (and can be a ``jit`` argument)."""
    leaves = jax.tree.leaves(env)
    return bool(leaves) and all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)


def run(
    cfg: AnyConfig,
    env: MultiAgentEnv,
    keys: jax.Array,
    obj: Optional[ObjectiveParams] = None,
    progress: bool | int = True,
    stream: TextIO = sys.stdout,
    devices: Optional[Sequence[jax.Device]] = None,
    shard: str = "runs",
    checkpoint_dir: Optional[str | pathlib.Path] = None,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    stop_after: Optional[int] = None,
    chunk_updates: Optional[int] = None,
    loggers: Sequence[Logger] = (),
) -> RunOutput:
    """Train ``len(keys)`` runs as one compiled ``vmap`` (seeds, and sweeps via ``obj``
    with a matching leading axis). ``progress``: False, True (every update) or a
    print interval in updates. Compile and run times are measured separately.

    Checkpoints (every trainer: the policy-gradient family, IQL, IDDPG, whose
    states include their replay buffers): with ``checkpoint_dir`` the updates run in
    chunks of ``checkpoint_every`` (default: all of them) by one compiled program
    called repeatedly (``train.make_trainer``), and after each chunk the state of
    every run and the metrics so far are saved there with orbax
    (``dpo_jax.checkpoint``). ``resume=True`` continues from the folder's latest
    checkpoint (the folder records the run's settings; another config, env, keys
    or ``obj`` is refused); a folder that already holds checkpoints needs
    ``resume=True``. ``stop_after`` ends the run at the first checkpoint at or
    after that many updates (e.g. to fit a job's time limit; resume later); the
    metrics then cover only the updates done. On CPU a stopped and resumed run
    gives exactly the metrics of the uninterrupted one (``tests/test_checkpoint.py``).

    Chunks without checkpoints: ``chunk_updates`` runs the updates in chunks of
    that many (the same program as with ``checkpoint_dir``, nothing saved), e.g.
    to feed ``loggers`` as training goes; ``checkpoint_every`` is its other name.

    ``loggers`` (``dpo_jax.loggers``) get the metrics of each chunk from the host
    after it has run (a run in one piece: once, at the end), with the exact int64
    ``env_steps``; ``start(first_update)`` is called before the first chunk
    (``first_update > 0`` on resume) and ``close()`` at the end, also on error.
    Only process 0 of a multi-process run logs.

    ``devices`` (default: every device, of every process after
    ``jax.distributed.initialize``) share the work (``dpo_jax.sharding``):

    - ``shard="runs"``: the run axis is split over them; the same keys give the
      same metrics on any number of devices (up to float rounding). A run count
      that does not divide is padded (with a warning) and the padding dropped.
    - ``shard="envs"``: each run's envs are split over them (data-parallel PPO,
      parameters replicated, gradients all-reduced); equal to the one-device run
      with the same ``num_envs`` up to float rounding. Policy-gradient family
      only; ``num_envs`` and the minibatch size must divide by the device count.

    With several processes every process calls ``run`` with the same arguments
    and gets all the results back.

    ``cfg`` selects the trainer as ``make_train`` does: the policy-gradient family,
    or IQL / IDDPG (``IQLConfig``, ``IDDPGConfig`` or ``TrainConfig(algo="iql" |
    "iddpg")``), which take no ``obj``."""
    cfg = resolve_config(cfg)
    validate_env(env, where="experiments.run")
    if obj is not None and not isinstance(cfg, TrainConfig):
        raise ValueError(f"obj (ObjectiveParams) applies to the policy-gradient family "
                         f"only; algo={cfg.algo!r} takes none: pass obj=None")
    keys = jnp.asarray(keys)
    key_ndim = 1 if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else 2  # raw uint32 keys
    if keys.ndim != key_ndim or keys.shape[0] < 1:
        raise ValueError(f"keys must be a 1-D array of at least one PRNG key (stack_keys), "
                         f"got shape {keys.shape}")
    num_runs = keys.shape[0]
    if obj is not None:
        validate_objective_params(obj)
        sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(obj)}
        if sizes != {num_runs}:
            raise ValueError(f"obj must have a leading axis of {num_runs} entries, one per "
                             f"key (stack_params), got leading sizes {sorted(map(str, sizes))}")
    if isinstance(cfg, TrainConfig):
        check_memory(cfg, env, rollout_length(cfg, env), num_runs)
    n_updates = num_updates(cfg, env)
    devices = sharding.resolve_devices(devices)
    if shard not in sharding.SHARD_MODES:
        raise ValueError(f"shard={shard!r}: expected one of {sharding.SHARD_MODES}")
    if shard == "envs" and not isinstance(cfg, TrainConfig):
        raise ValueError(f'shard="envs" supports the policy-gradient family only, '
                         f'not algo={cfg.algo!r}: use shard="runs"')
    constrain = sharding.no_constraint
    if shard == "envs" and len(devices) > 1:
        steps = rollout_length(cfg, env)
        sharding.check_env_axis(cfg.num_envs, cfg.num_envs * steps // cfg.num_minibatches,
                                len(devices))
        constrain = sharding.env_constraint(devices)
    if (checkpoint_every is not None and chunk_updates is not None
            and checkpoint_every != chunk_updates):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} and chunk_updates="
                         f"{chunk_updates!r} name the same chunk size: pass one")
    chunk_updates = checkpoint_every if chunk_updates is None else chunk_updates
    if checkpoint_dir is None and (resume or stop_after is not None):
        raise ValueError("resume and stop_after need checkpoint_dir")
    loggers = list(loggers) if sharding.is_main_process() else []
    obj_axis = None if obj is None else 0
    described = None if checkpoint_dir is None else {  # from the host inputs, unplaced
        "keys": np.asarray(jax.random.key_data(keys) if jnp.issubdtype(
            keys.dtype, jax.dtypes.prng_key) else keys).tolist(),
        "obj": None if obj is None else jax.tree.map(lambda x: np.asarray(x).tolist(),
                                                     obj._asdict())}
    # large tables travel as an argument, not a closure: see make_train
    env_as_arg = env_is_pytree(env)
    if env_as_arg:
        args, run_args = (keys, obj, env), (True, True, False)
    else:
        args, run_args = (keys, obj), (True, True)
    if constrain is sharding.no_constraint:
        args, padded = sharding.place_runs(args, run_args, num_runs, devices)
    else:
        args, padded = sharding.replicate(args, devices), num_runs
    printer = None
    if progress:
        every = 1 if progress is True else int(progress)
        # every process runs the same program (callback included); process 0 prints
        printer = ProgressPrinter(padded, n_updates, every,
                                  stream if sharding.is_main_process() else _Discard())
    try:
        if checkpoint_dir is not None or chunk_updates is not None:
            folder = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir)
            return _run_in_chunks(cfg, env, args, obj_axis, env_as_arg, num_runs, padded,
                                  printer, constrain, folder, chunk_updates, resume,
                                  stop_after, described, loggers)
        out = _run_whole(cfg, env, args, obj_axis, env_as_arg, num_runs, printer,
                         constrain)
        for logger in loggers:
            logger.start(0)
            logger.write(0, out.metrics)
        return out
    finally:
        for logger in loggers:
            logger.close()


def _run_whole(cfg: AnyConfig, env: MultiAgentEnv, args: tuple, obj_axis: Any,
               env_as_arg: bool, num_runs: int, printer: Any, constrain: Any) -> RunOutput:
    """``run`` in one compiled call (no chunks)."""
    train = make_train(cfg, env, progress=printer, env_constraint=constrain)
    if env_as_arg:
        vmapped = jax.vmap(train, in_axes=(0, obj_axis, None))
    else:
        vmapped = jax.vmap(lambda k, o: train(k, o), in_axes=(0, obj_axis))
    t0 = time.perf_counter()
    compiled = jax.jit(vmapped).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result: TrainResult = jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    return _finish(cfg, result, num_runs, compile_s, run_s)


def _finish(cfg: AnyConfig, result: Any, num_runs: int, compile_s: float,
            run_s: float) -> RunOutput:
    """Gather, drop padding, check finiteness and count steps: ``run``'s output."""
    result = sharding.drop_padding(sharding.gather(result), num_runs)
    if cfg.nan_policy == "raise":
        check_finite(result)
    metrics = jax.tree.map(np.asarray, result.metrics)
    metrics["env_steps"] = exact_env_steps(metrics)
    # IQL counts only the steps of its episodes, not their padding
    total_steps = float(np.sum(metrics["env_steps"][:, -1]))
    return RunOutput(result=result, metrics=metrics, compile_s=compile_s, run_s=run_s,
                     env_steps_per_s=total_steps / run_s if run_s > 0 else float("nan"))


def _run_in_chunks(cfg: AnyConfig, env: MultiAgentEnv, args: tuple, obj_axis: Any,
                   env_as_arg: bool, num_runs: int, padded: int, printer: Any,
                   constrain: Any, folder: Optional[pathlib.Path], every: Optional[int],
                   resume: bool, stop_after: Optional[int],
                   described: Optional[Mapping[str, Any]],
                   loggers: Sequence[Logger]) -> RunOutput:
    """``run`` in chunks, with checkpoints in ``folder`` unless it is ``None``: see
    its docstring. ``described``: the keys and ``obj`` as ``run.json`` records
    them."""
    n_updates = num_updates(cfg, env)
    every = n_updates if every is None else every
    if not is_int(every) or every < 1:
        raise ValueError(f"checkpoint_every={every!r}: expected an int >= 1")
    every = min(int(every), n_updates)
    if stop_after is not None and (not is_int(stop_after) or stop_after < 1):
        raise ValueError(f"stop_after={stop_after!r}: expected an int >= 1 (updates)")
    done = None if folder is None else checkpoint.latest(folder)
    if done is not None and not resume:
        raise ValueError(f"checkpoint folder {str(folder)!r} already holds a run (update "
                         f"{done}): pass resume=True (--resume) to continue it, or use a "
                         f"new folder")
    if folder is not None:
        checkpoint.check_run(folder, {
            "config": cfg.__dict__, "env": repr(env), "runs": num_runs,
            "padded_runs": padded, "checkpoint_every": every, **described})
    in_axes = (0, obj_axis, None) if env_as_arg else (0, obj_axis)
    trainer = make_trainer(cfg, env, every, progress=printer, env_constraint=constrain)
    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init, in_axes=in_axes)).lower(*args).compile()(*args)
    compile_s = time.perf_counter() - t0
    programs: dict[int, Any] = {}  # chunk length -> its program, compiled once

    def chunk_program(chunk: int) -> Any:
        nonlocal compile_s
        if chunk not in programs:
            pieces = trainer if chunk == every else make_trainer(
                cfg, env, chunk, progress=printer, env_constraint=constrain)
            t0 = time.perf_counter()
            programs[chunk] = jax.jit(jax.vmap(pieces.run, in_axes=(0, None) + in_axes[1:])
                                      ).lower(state, jnp.int32(0), *args[1:]).compile()
            compile_s += time.perf_counter() - t0
        return programs[chunk]

    parts: list[dict[str, np.ndarray]] = []
    start = 0
    if done is not None:
        like = checkpoint.metrics_like(chunk_program(every).out_info[1], done)
        state, saved = checkpoint.restore(folder, done, state, like)
        parts, start = [saved], done
    run_s = 0.0
    end = n_updates if stop_after is None else min(n_updates, stop_after)
    for logger in loggers:
        logger.start(start)
    while start < end:
        chunk = min(every, n_updates - start)
        compiled = chunk_program(chunk)
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, jnp.int32(start), *args[1:]))
        run_s += time.perf_counter() - t0
        parts.append(jax.tree.map(np.asarray, sharding.gather(metrics)))
        joined = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
        parts = [joined]
        if folder is not None:
            checkpoint.save(folder, start + chunk, state, joined)
        if loggers:
            fresh = {k: v[:num_runs, start:] for k, v in joined.items()}
            fresh["env_steps"] = exact_env_steps(joined)[:num_runs, start:]
            for logger in loggers:
                logger.write(start, fresh)
        start += chunk
    metrics = parts[0] if parts else {}
    return _finish(cfg, trainer.result(state, metrics), num_runs, compile_s, run_s)


def exact_env_steps(metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """The exact int64 env-step count after each update, ``[runs, updates]``: the
    running sum of ``update_steps`` (the float32 ``env_steps`` of the program is
    rounded beyond 2**24 steps)."""
    return np.cumsum(np.asarray(metrics["update_steps"], dtype=np.int64), axis=-1)


def run_sweep(
    cfg: TrainConfig,
    env: MultiAgentEnv,
    params: Mapping[str, ObjectiveParams],
    seeds: int,
    seed: int = 0,
    progress: bool | int = True,
    devices: Optional[Sequence[jax.Device]] = None,
    shard: str = "runs",
) -> tuple[RunOutput, dict[str, dict[str, np.ndarray]]]:
    """Every ``params`` entry (an algorithm, a ``d_target``, ...) x ``seeds`` seeds as
    ONE compiled ``run`` (``devices`` and ``shard`` as there); each entry reuses the
    same ``seeds`` keys. Returns the run and its metrics split by entry name, each
    with leading axis ``seeds``."""
    names = list(params)
    obj = stack_params([params[name] for name in names for _ in range(seeds)])
    keys = jnp.concatenate([stack_keys(seed, seeds)] * len(names))
    out = run(cfg, env, keys, obj=obj, progress=progress, devices=devices, shard=shard)
    by_name = {
        name: jax.tree.map(lambda x: x[i * seeds:(i + 1) * seeds], out.metrics)
        for i, name in enumerate(names)
    }
    return out, by_name

def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.where(np.isfinite(x), x, np.nan).tolist() if x.dtype.kind == "f" else x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Mapping):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def save_metrics(out_dir: str | pathlib.Path, name: str,
                 metrics: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> list[pathlib.Path]:
    """Write ``{name}.json`` (all metrics, every run) and ``{name}.csv`` (per update:
    env steps and the mean over runs, and over agents, of every metric). In a
    multi-process run only process 0 writes (the others return ``[]``)."""
    if not sharding.is_main_process():
        return []
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(
        {"meta": _jsonable(dict(meta)), "metrics": _jsonable(dict(metrics))},
        allow_nan=True))
    csv_path = out / f"{name}.csv"
    keys = sorted(metrics)
    columns = {}
    for k in keys:
        v = np.asarray(metrics[k], dtype=np.float64)
        # [runs, updates, ...] -> per update mean over runs and trailing axes; all-NaN
        # updates (no episode finished, a baseline not learning yet) stay NaN quietly
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            columns[k] = np.nanmean(v.reshape(v.shape[0], v.shape[1], -1), axis=(0, 2))
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for i in range(len(columns[keys[0]])):
            writer.writerow([f"{columns[k][i]:.6g}" for k in keys])
    return [json_path, csv_path]


def plot_curves(
    path: str | pathlib.Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    ylabel: str = "episode return",
    hlines: Optional[Mapping[str, float]] = None,
    smooth: Optional[int] = None,
) -> pathlib.Path:
    """Learning curves, mean over runs with a 95% confidence band.

    ``curves`` maps a label to ``(env_steps [U], values [runs, U])``; ``hlines``
    maps a label to a constant drawn as a dashed line (e.g. a random policy).
    Each run is first smoothed by a trailing moving average over ``smooth``
    updates (default: U / 40, at least 1); the band is the 95% CI over runs.
    In a multi-process run only process 0 draws.
    """
    path = pathlib.Path(path)
    if not sharding.is_main_process():
        return path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (steps, values) in curves.items():
        window = smooth if smooth is not None else max(1, len(steps) // 40)
        mean, half = mean_ci95(moving_average(np.asarray(values, np.float64), window))
        line, = ax.plot(steps, mean, label=f"{label} (n={np.asarray(values).shape[0]})")
        ax.fill_between(steps, mean - half, mean + half, alpha=0.2, color=line.get_color())
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="gray" if "random" in label else "black",
                   label=label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis, ignoring NaNs (same length)."""
    if window <= 1:
        return values
    finite = np.isfinite(values)
    csum = np.cumsum(np.where(finite, values, 0.0), axis=-1)
    ccount = np.cumsum(finite, axis=-1)
    pad = np.zeros(values.shape[:-1] + (window,))
    csum = np.concatenate([pad, csum], axis=-1)
    ccount = np.concatenate([pad, ccount], axis=-1)
    total = csum[..., window:] - csum[..., :-window]
    count = ccount[..., window:] - ccount[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def summarize_final(values: np.ndarray, last_fraction: float = 0.1) -> tuple[float, float]:
    """Mean and 95% CI half-width over runs of each run's mean over its last
    ``last_fraction`` of updates (at least one)."""
    values = np.asarray(values, dtype=np.float64)
    k = max(1, int(round(values.shape[1] * last_fraction)))
    with warnings.catch_warnings():  # a run with no episode ended in its tail: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_run = np.nanmean(values[:, -k:], axis=1)
    mean, half = mean_ci95(per_run)
    return float(mean), float(half)


def positive_int(text: str) -> int:
    """``argparse`` type: an int >= 1 (``--seeds 0`` fails at parsing, not in a
    ``vmap`` over zero runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def prepare_out_dir(path: str | pathlib.Path) -> pathlib.Path:
    """Create ``path`` and check that files can be written there; raise
    ``ValueError`` naming it otherwise. Call before training, so that a bad
    ``--out`` fails in a second, not after the run."""
    out = pathlib.Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"output folder {str(out)!r} cannot be written: {err}") from None
    return out


def out_dir_arg(text: str) -> pathlib.Path:
    """``argparse`` type for ``--out``: ``prepare_out_dir`` at parse time."""
    try:
        return prepare_out_dir(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """The examples' ``--shard`` flag: which axis the devices split (a multi-host
    run is joined through ``DPO_JAX_COORDINATOR``, see ``dpo_jax.distributed``)."""
    parser.add_argument("--shard", choices=sharding.SHARD_MODES, default="runs",
                        help="split the runs (seeds x sweep entries) over all devices, or "
                             "each run's envs (data-parallel; policy-gradient runs only, "
                             "baselines keep the run axis)")


def save_json(path: str | pathlib.Path, data: Any) -> Optional[pathlib.Path]:
    """Write ``data`` as indented JSON (NaN-safe); on process 0 only."""
    if not sharding.is_main_process():
        return None
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(data), indent=2))
    return path


def stack_keys(seed: int, num: int) -> jax.Array:
    """``num`` independent run keys from one integer seed."""
    return jax.random.split(jax.random.key(seed), num)

