"""Many runs (seeds x algorithms x ``d_target``) as one compiled program, on every
device, in one piece or in checkpointed chunks.

:func:`run` is the engine under ``dpo_jax.train`` (``running.jobs``), the command
line and the examples: it places the runs on the devices (``parallel.sharding``),
compiles the program once, runs it, and, in chunks, checks every chunk for
non-finite values, saves a checkpoint (``running.checkpoint``) and feeds the
loggers (``running.loggers``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import warnings
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.baselines import BaselineResult
from dpo_jax.config import TrainConfig, is_int, static_config
from dpo_jax.core.objectives import (
    ObjectiveParams,
    check_switched_on,
    objective_params,
    stack_params,
    validate_objective_params,
)
from dpo_jax.envs.base import MultiAgentEnv, validate_env
from dpo_jax.parallel import sharding
from dpo_jax.running import checkpoint, program_cache
from dpo_jax.running.loggers import Logger
from dpo_jax.running.progress import DISCARD, ProgressPrinter, interval
from dpo_jax.running.results import exact_env_steps
from dpo_jax.training import faults
from dpo_jax.training.chunks import valid_rows
from dpo_jax.training.memory import check_baseline_memory, check_memory
from dpo_jax.training.trainer import (
    AnyConfig,
    TrainResult,
    make_train,
    make_trainer,
    num_updates,
    resolve_config,
    rollout_length,
)


class RunOutput(NamedTuple):
    """Results of :func:`run`; ``result`` and ``metrics`` have a leading run axis.
    ``env_steps_per_s``: the env steps this call trained (not those restored from a
    checkpoint) over its training time, all runs together."""

    result: TrainResult | BaselineResult
    metrics: dict[str, np.ndarray]
    compile_s: float
    run_s: float
    env_steps_per_s: float


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """How a chunked run goes: ``chunk`` updates per call of the compiled program
    (progress, logs and fault checks after each), a checkpoint in ``folder`` every
    ``every`` updates (a multiple of ``chunk``; ``folder=None``: no saves)."""

    folder: Optional[pathlib.Path]
    chunk: int
    every: int
    resume: bool = False
    stop_after: Optional[int] = None
    keep: int = 2


class Placement(NamedTuple):
    """The program's arguments placed on the devices: ``args`` is ``(keys, obj)``
    or ``(keys, obj, env)`` (a pytree env travels as an argument), ``in_axes`` the
    ``vmap`` axes, ``padded`` the run count after padding to the devices."""

    args: tuple
    in_axes: tuple
    padded: int
    constrain: Any
    devices: list
    shard: str = "runs"


def env_is_pytree(env: MultiAgentEnv) -> bool:
    """Whether ``env`` is a JAX pytree of arrays (and can be a ``jit`` argument)."""
    leaves = jax.tree.leaves(env)
    return bool(leaves) and all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)


def check_inputs(cfg: AnyConfig, env: MultiAgentEnv, keys: Any,
                 obj: Optional[ObjectiveParams]) -> tuple[AnyConfig, jax.Array, int]:
    """Validate ``run``'s inputs; returns the resolved config, the keys and the run
    count. Every error names the argument."""
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
    num_runs = int(keys.shape[0])
    if obj is not None:
        if not isinstance(obj, ObjectiveParams):
            validate_objective_params(obj)  # names the type
        sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(obj)}
        if sizes != {num_runs}:
            raise ValueError(f"obj must have a leading axis of {num_runs} entries, one per "
                             f"key (stack_params), got leading sizes {sorted(map(str, sizes))}")
        validate_objective_params(obj, num_agents=env.num_agents, runs=num_runs)
    if isinstance(cfg, TrainConfig):
        check_memory(cfg, env, rollout_length(cfg, env), num_runs)
    else:
        check_baseline_memory(cfg, env, num_runs)
    return cfg, keys, num_runs


def place(cfg: AnyConfig, env: MultiAgentEnv, keys: jax.Array,
          obj: Optional[ObjectiveParams], num_runs: int,
          devices: Optional[Sequence[jax.Device]], shard: str,
          note: Optional[Callable[[str], None]] = None) -> Placement:
    """Spread the runs (``shard="runs"``) or each run's envs (``"envs"``) over the
    devices; see ``parallel.sharding``. The run axis uses no more devices than
    balance the runs (``sharding.balanced_devices``)."""
    devices = sharding.resolve_devices(devices)
    if shard not in sharding.SHARD_MODES:
        raise ValueError(f"shard={shard!r}: expected one of {sharding.SHARD_MODES}")
    env_as_arg = env_is_pytree(env)  # large tables travel as an argument: make_train
    args = (keys, obj, env) if env_as_arg else (keys, obj)
    obj_axis = None if obj is None else 0
    in_axes = (0, obj_axis, None) if env_as_arg else (0, obj_axis)
    if shard == "envs":
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f'shard="envs" supports the policy-gradient family only, '
                             f'not algo={cfg.algo!r}: use shard="runs"')
        if len(devices) > 1:
            steps = rollout_length(cfg, env)
            sharding.check_env_axis(cfg.num_envs,
                                    cfg.num_envs * steps // cfg.num_minibatches, len(devices))
            return Placement(sharding.replicate(args, devices), in_axes, num_runs,
                             sharding.env_constraint(devices), devices, shard)
    devices = sharding.balanced_devices(num_runs, devices)
    run_args = (True, True, False) if env_as_arg else (True, True)
    placed, padded = sharding.place_runs(args, run_args, num_runs, devices, note)
    return Placement(placed, in_axes, padded, sharding.no_constraint, devices, shard)


def run(
    cfg: AnyConfig,
    env: MultiAgentEnv,
    keys: jax.Array,
    obj: Optional[ObjectiveParams] = None,
    progress: bool | int = True,
    stream: Optional[TextIO] = None,
    devices: Optional[Sequence[jax.Device]] = None,
    shard: str = "runs",
    checkpoint_dir: Optional[str | pathlib.Path] = None,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    stop_after: Optional[int] = None,
    chunk_updates: Optional[int] = None,
    loggers: Sequence[Logger] = (),
    keep_checkpoints: int = 2,
    labels: Optional[Sequence[Mapping[str, Any]]] = None,
    note: Optional[Callable[[str], None]] = None,
) -> RunOutput:
    """Train ``len(keys)`` runs as one compiled ``vmap`` (seeds, and sweeps via ``obj``
    with a matching leading axis). Compile and run times are measured separately.

    Chunks: the updates run in chunks of ``chunk_updates`` updates, all by ONE
    compiled program (a shorter last chunk too), with the host between chunks:
    ``progress`` (False, True for a bar of about a hundred steps, or an interval in
    updates, which is then the default chunk) is shown, ``loggers`` are fed, and the
    chunk is checked for non-finite values. Nothing runs on the host from inside the
    program, so XLA's persistent compilation cache can keep it. Without progress,
    loggers or checkpoints the run is one call of ``make_train``'s program.

    Checkpoints: with ``checkpoint_dir`` the state of every run and the metrics are
    saved there every ``checkpoint_every`` updates (default: at the end; rounded up
    to a multiple of the chunk), by ``running.checkpoint`` (digests, fallback to the
    newest sound checkpoint, ``keep_checkpoints`` state folders kept).
    ``resume=True`` continues from the newest sound checkpoint (the folder records
    the run's settings; another config, env, keys or ``obj`` is refused); a folder
    that already holds checkpoints needs ``resume=True``. ``stop_after`` ends the
    run at the first checkpoint at or after that many updates; the metrics then
    cover only the updates done. On CPU a stopped and resumed run gives exactly the
    metrics of the uninterrupted one.

    Non-finite values (``nan_policy="raise"``): after every chunk (or at the end of
    a run in one piece) ``faults.NonFiniteError`` names the update, the runs
    (``labels``), the cause and the metrics; a checkpointed run stops there and
    keeps its last sound checkpoint.

    ``loggers`` (``running.loggers``) get each chunk's metrics with the exact int64
    ``env_steps``; on resume ``start(first_update, history)`` hands them the
    checkpoint's metrics of every earlier update. Only process 0 logs and prints.

    ``devices`` (default: every device, of every process after
    ``jax.distributed.initialize``; on a CPU ``dpo_jax.runtime`` makes one per core)
    share the work (``parallel.sharding``):

    - ``shard="runs"``: the run axis is split over as many devices as balance it
      (5 runs on 4 devices: 3 devices of 2 runs, one copy of the last run as
      padding, dropped from the results, said once through ``note`` or a
      ``sharding.PaddingWarning``); the same keys give the same metrics on any
      number of devices up to float rounding.
    - ``shard="envs"``: each run's envs are split over them (data-parallel PPO,
      parameters replicated, gradients all-reduced). Policy-gradient family only;
      ``num_envs`` and the minibatch size must divide by the device count.

    ``cfg`` selects the trainer as ``make_train`` does: the policy-gradient family,
    or IQL / IDDPG (``IQLConfig``, ``IDDPGConfig`` or ``TrainConfig(algo="iql" |
    "iddpg")``), which take no ``obj``."""
    cfg, keys, num_runs = check_inputs(cfg, env, keys, obj)
    described = _describe(keys, obj)
    if isinstance(cfg, TrainConfig):
        if obj is None:  # the numbers as data, so that other values reuse the program
            obj = stack_params([objective_params(cfg, env.num_agents)] * num_runs)
        check_switched_on(obj, cfg)
    placement = place(cfg, env, keys, obj, num_runs, devices, shard, note)
    if checkpoint_dir is None and (resume or stop_after is not None
                                   or checkpoint_every is not None):
        raise ValueError("resume, stop_after and checkpoint_every need checkpoint_dir")
    loggers = list(loggers) if sharding.is_main_process() else []
    labels = list(labels) if labels is not None else None
    n_updates = num_updates(cfg, env)
    printer = None
    if progress:
        printer = ProgressPrinter(num_runs, n_updates,
                                  stream if sharding.is_main_process() else DISCARD)
    try:
        if checkpoint_dir is None and chunk_updates is None and not progress and not loggers:
            return _run_whole(cfg, env, placement, num_runs, labels)
        plan = _checkpointing(n_updates, chunk_updates, progress, checkpoint_dir,
                              checkpoint_every, resume, stop_after, keep_checkpoints)
        return _ChunkedRun(cfg, env, placement, num_runs, printer, plan, loggers,
                           labels, described).run()
    finally:
        if printer is not None:
            printer.close()
        for logger in loggers:
            logger.close()


def check_update_counts(**counts: Optional[int]) -> None:
    """``ValueError`` naming the first of ``counts`` (``chunk_updates``,
    ``checkpoint_every``, ``stop_after``) that is neither ``None`` nor an int >= 1."""
    for name, value in counts.items():
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"{name}={value!r}: expected an int >= 1 (updates)")


def _checkpointing(n_updates: int, chunk: Optional[int], progress: bool | int,
                   folder: Optional[str | pathlib.Path], every: Optional[int], resume: bool,
                   stop_after: Optional[int], keep: int) -> Checkpointing:
    """The chunk size (``chunk_updates``; else the progress interval; else the
    checkpoint interval; else the whole run) and the checkpoint interval (a multiple
    of the chunk), checked."""
    check_update_counts(chunk_updates=chunk, checkpoint_every=every, stop_after=stop_after)
    if not is_int(keep) or keep < 1:
        raise ValueError(f"keep_checkpoints={keep!r}: expected an int >= 1")
    if chunk is None:
        chunk = interval(progress, n_updates) if progress else (every or n_updates)
        chunk = min(chunk, every) if every else chunk
    chunk = min(int(chunk), n_updates)
    every = n_updates if every is None else int(every)
    every = min(-(-every // chunk) * chunk, -(-n_updates // chunk) * chunk)
    folder = None if folder is None else pathlib.Path(folder)
    if folder is not None and checkpoint.has_any(folder) and not resume:
        raise ValueError(f"checkpoint folder {str(folder)!r} already holds a run: pass "
                         f"resume=True (--resume) to continue it, or use a new folder")
    return Checkpointing(folder, chunk, every, resume, stop_after, keep)


def _describe(keys: jax.Array, obj: Optional[ObjectiveParams]) -> dict[str, Any]:
    """The keys and ``obj`` as ``run.json`` records them (from the host inputs)."""
    raw = jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys
    return {"keys": np.asarray(raw).tolist(),
            "obj": None if obj is None else jax.tree.map(lambda x: np.asarray(x).tolist(),
                                                         obj._asdict())}


def _logged(metrics: Mapping[str, np.ndarray], num_runs: int) -> dict[str, np.ndarray]:
    """What loggers receive: the real runs, with the exact int64 ``env_steps``."""
    rows = {k: np.asarray(v)[:num_runs] for k, v in metrics.items()}
    rows["env_steps"] = exact_env_steps(rows)
    return rows


def _by_names(ranges: Sequence[tuple[int, int, tuple[str, ...]]]) -> dict[tuple[str, ...], str]:
    """``Restored.unlogged`` as text by metric names: ``{("extra",): "0..3, 8..9"}``,
    adjacent ranges joined."""
    joined: dict[tuple[str, ...], list[list[int]]] = {}
    for start, end, names in ranges:
        spans = joined.setdefault(names, [])
        if spans and spans[-1][1] == start:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return {names: ", ".join(f"{a}..{b - 1}" for a, b in spans)
            for names, spans in joined.items()}


def _unused_betas_as_nan(rows: dict[str, np.ndarray], described: Mapping[str, Any]
                         ) -> dict[str, np.ndarray]:
    """The logged rows with ``beta_sqrt`` / ``beta_kl`` NaN (``null`` in the logs) for
    the runs whose objective has that penalty switched off (IPPO has neither, DPO
    w/o kl no ``beta_kl``): a coefficient that does not act is not reported as if it
    did. The program's own metrics are untouched."""
    obj = described.get("obj")
    if not obj:
        return rows
    rows = dict(rows)
    for name, switch in (("beta_sqrt", "sqrt_on"), ("beta_kl", "kl_on")):
        if name in rows and switch in obj:
            on = np.asarray(obj[switch], np.float64)[:rows[name].shape[0]] > 0
            on = on.reshape(on.shape + (1,) * (rows[name].ndim - 1))
            value = np.asarray(rows[name])
            rows[name] = np.where(on, value, np.nan).astype(value.dtype)
    return rows


def _run_whole(cfg: AnyConfig, env: MultiAgentEnv, placement: Placement, num_runs: int,
               labels: Optional[list]) -> RunOutput:
    """``run`` in one compiled call (no chunks)."""
    def compile_whole() -> Any:
        train = make_train(cfg, env, env_constraint=placement.constrain)
        if len(placement.in_axes) == 3:
            vmapped = jax.vmap(train, in_axes=placement.in_axes)
        else:
            vmapped = jax.vmap(lambda k, o: train(k, o), in_axes=placement.in_axes)
        return jax.jit(vmapped).lower(*placement.args).compile()

    t0 = time.perf_counter()
    compiled, _ = program_cache.compiled(
        _program_key("whole", cfg, env, placement, num_updates(cfg, env)), env,
        compile_whole)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = jax.block_until_ready(compiled(*placement.args))
    run_s = time.perf_counter() - t0
    result = sharding.drop_padding(sharding.gather(result), num_runs)
    metrics = jax.tree.map(np.asarray, result.metrics)
    if cfg.nan_policy == "raise":
        faults.check_metrics(metrics, 0, labels)
    return _output(result, metrics, compile_s, run_s, 0)


def _program_key(kind: str, cfg: AnyConfig, env: MultiAgentEnv, placement: Placement,
                 updates: int) -> tuple:
    """What a compiled program of ``run`` depends on (``program_cache``): its kind,
    the static config (numbers are data for the policy-gradient family; a baseline's
    config is compiled in whole), the env, the updates per call, the layout and the
    arguments' signature."""
    static = static_config(cfg) if isinstance(cfg, TrainConfig) else cfg
    return (kind, static, program_cache.env_key(env), updates, placement.shard,
            tuple(placement.devices), placement.in_axes,
            program_cache.signature(placement.args))


def _output(result: Any, metrics: dict[str, np.ndarray], compile_s: float, run_s: float,
            start: int) -> RunOutput:
    """``run``'s output: exact step counts, and the rate of the updates from ``start``
    (those this call trained)."""
    metrics["env_steps"] = exact_env_steps(metrics)
    # IQL counts only the steps of its episodes, not their padding
    trained = float(np.sum(np.asarray(metrics["update_steps"], np.int64)[:, start:]))
    return RunOutput(result=result, metrics=metrics, compile_s=compile_s, run_s=run_s,
                     env_steps_per_s=trained / run_s if run_s > 0 else float("nan"))


class _ChunkedRun:
    """``run`` in chunks of ``plan.every`` updates by one compiled program, with
    checkpoints in ``plan.folder`` unless it is ``None``."""

    def __init__(self, cfg: AnyConfig, env: MultiAgentEnv, placement: Placement,
                 num_runs: int, printer: Any, plan: Checkpointing,
                 loggers: Sequence[Logger], labels: Optional[list],
                 described: Mapping[str, Any]) -> None:
        self.cfg, self.env, self.placement, self.num_runs = cfg, env, placement, num_runs
        self.printer, self.plan, self.loggers, self.labels = printer, plan, loggers, labels
        self.n_updates = num_updates(cfg, env)
        self.described = described
        self.identity = {"config": cfg.__dict__, "env": repr(env), "runs": num_runs,
                         **described}
        self.layout = {"devices": len(placement.devices), "padded_runs": placement.padded,
                       "shard": placement.shard, "chunk_updates": plan.chunk,
                       "checkpoint_every": plan.every}
        self.saved_run = None
        if plan.folder is not None:  # checked now, written once the run has resumed
            defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
            self.saved_run = checkpoint.check_run(plan.folder, self.identity, defaults)
        self.trainer = make_trainer(cfg, env, plan.chunk, env_constraint=placement.constrain)

    def _compile(self) -> tuple[Any, Any, float]:
        """The initial state and the chunk program (compiled once), and the compile
        time of both."""
        args, in_axes = self.placement.args, self.placement.in_axes
        # the initial state split along the run axis (None: one device, or env sharding)
        state_sharding = (None if self.placement.shard == "envs"
                          else sharding.run_sharding(self.placement.devices))
        t0 = time.perf_counter()
        init, _ = program_cache.compiled(
            _program_key("init", self.cfg, self.env, self.placement, self.plan.chunk),
            self.env, lambda: jax.jit(jax.vmap(self.trainer.init, in_axes=in_axes),
                                      out_shardings=state_sharding
                                      ).lower(*args).compile())
        self._initial_state = lambda: init(*args)
        state = init(*args)
        program, _ = program_cache.compiled(
            _program_key("run", self.cfg, self.env, self.placement, self.plan.chunk),
            self.env, lambda: jax.jit(jax.vmap(self.trainer.run,
                                               in_axes=(0, None) + in_axes[1:]),
                                      donate_argnums=0).lower(state, jnp.int32(0), *args[1:]).compile())
        return state, program, time.perf_counter() - t0

    def _resume(self, target: Any, like: Mapping[str, Any]
                ) -> tuple[Any, int, list[dict[str, np.ndarray]]]:
        """The state, first update and metrics to continue from a checkpoint folder.
        ``target``: the initial state's shapes (``checkpoint.shape_of``), so that no
        initial state is held while a saved one is read; the initial state is made
        again when there is nothing to resume."""
        restored = checkpoint.restore_latest(self.plan.folder, target, like, self.num_runs)
        if restored is None:
            return self._initial_state(), 0, []
        for line in restored.skipped:
            warnings.warn(f"skipped a checkpoint: {line}", checkpoint.CheckpointWarning,
                          stacklevel=4)
        if restored.skipped:
            warnings.warn(f"resuming from the newest sound checkpoint, after "
                          f"{restored.updates_done} updates", checkpoint.CheckpointWarning,
                          stacklevel=4)
        for start, end, why in restored.lost:
            warnings.warn(f"the metrics of updates {start}..{end - 1} are lost ({why}); "
                          f"the logs keep the rows their files still hold, else null",
                          checkpoint.CheckpointWarning, stacklevel=4)
        for names, ranges in _by_names(restored.unlogged).items():
            warnings.warn(f"updates {ranges} were saved by a version that did not log "
                          f"{list(names)}: those metrics are null there, the others are "
                          f"kept", checkpoint.CheckpointWarning, stacklevel=4)
        self.lost = [(start, end) for start, end, _ in restored.lost]
        self._say_layout(restored.updates_done)
        return restored.state, restored.updates_done, [restored.metrics]

    def _say_layout(self, updates_done: int) -> None:
        """One line when the run continues on another device layout than the one
        that saved it (its numbers can then differ from an uninterrupted run's)."""
        if self.saved_run is None:
            return
        before = self.saved_run["layouts"][-1]
        changed = checkpoint.layout_changes(before, self.layout,
                                            checkpoint.DEVICE_LAYOUT_KEYS)
        if changed:
            warnings.warn(f"resuming after {updates_done} updates on another device layout "
                          f"({'; '.join(changed)}): each run continues from its saved "
                          f"state, but from here its numbers can differ from an "
                          f"uninterrupted job's by float rounding, which training "
                          f"amplifies (docs/checkpoints.md says how much)",
                          checkpoint.CheckpointWarning, stacklevel=5)

    def run(self) -> RunOutput:
        state, program, compile_s = self._compile()
        like = checkpoint.metrics_like(program.out_info[1])
        self.lost: list[tuple[int, int]] = []
        if self.plan.folder is None or not self.plan.resume:
            start, parts = 0, []
        else:  # the initial state is freed before a saved one is read
            target = checkpoint.shape_of(state)
            del state
            state, start, parts = self._resume(target, like)
        if self.plan.folder is not None:
            checkpoint.record_run(self.plan.folder, self.identity, self.layout, start,
                                  self.saved_run)
        resumed_at = saved_at = start
        history = (_unused_betas_as_nan(_logged(parts[0], self.num_runs), self.described)
                   if parts else None)
        for logger in self.loggers:
            logger.start(start, history, lost=self.lost)
        end = self.n_updates
        if self.plan.stop_after is not None:  # the first checkpoint at or after it
            end = min(end, -(-self.plan.stop_after // self.plan.every) * self.plan.every)
        state_sharding = program.input_shardings[0][0]
        run_s, pending = 0.0, []
        steps_so_far = (np.sum(np.asarray(parts[0]["update_steps"], np.int64), axis=1)
                        if parts else 0)  # per run: the exact env steps before `start`
        while start < end:
            state = jax.device_put(state, state_sharding)
            t0 = time.perf_counter()
            state, metrics = jax.block_until_ready(
                program(state, jnp.int32(start), *self.placement.args[1:]))
            seconds = time.perf_counter() - t0
            run_s += seconds
            count = valid_rows(start, self.plan.chunk, self.n_updates)
            chunk = {k: np.asarray(v)[:self.num_runs, :count]  # the real runs
                     for k, v in sharding.gather(metrics).items()}
            self._check(chunk, start)
            done = start + count
            checkpoint.fault_point("after_chunk", done)
            parts.append(chunk)
            pending.append(chunk)
            if self.plan.folder is not None and (done % self.plan.every == 0 or done == end):
                checkpoint.save(self.plan.folder, saved_at, done, state,
                                {k: np.concatenate([p[k] for p in pending], axis=1)
                                 for k in chunk}, self.plan.keep)
                pending, saved_at = [], done
            steps = steps_so_far + exact_env_steps(chunk).T  # [chunk, runs]
            steps_so_far = steps[-1]
            rows = _unused_betas_as_nan(chunk, self.described)
            rows["env_steps"] = steps.T
            for logger in self.loggers:
                logger.write(start, rows)
            checkpoint.fault_point("after_logs", done)
            if self.printer is not None:
                self.printer.update(start, rows, seconds)
            start = done
        metrics = {k: np.concatenate([p[k] for p in parts], axis=1) for k in like}
        result = sharding.drop_padding(
            sharding.gather(self.trainer.result(state, metrics)), self.num_runs)
        return _output(result, jax.tree.map(np.asarray, result.metrics), compile_s,
                       run_s, resumed_at)

    def _check(self, chunk: Mapping[str, np.ndarray], start: int) -> None:
        """Raise ``NonFiniteError`` at the first faulty chunk (before it is saved)."""
        if self.cfg.nan_policy == "raise":
            faults.check_metrics(chunk, start, self.labels)


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


def stack_keys(seed: int, num: int) -> jax.Array:
    """``num`` independent run keys from one integer seed."""
    return jax.random.split(jax.random.key(seed), num)
