"""A training job from Python or the command line: ``dpo_jax.train``.

A job is an env, a config, the algorithms and ``d_target`` values to compare and a
number of seeds (``running.runspec.RunSpec``). All policy-gradient entries x seeds
train as ONE compiled program (the algorithm is data); IQL / IDDPG follow as their
own programs. :func:`train` returns :class:`Results`, which gives the metrics as
arrays, a pandas DataFrame, a summary table and a learning-curve Figure.

With ``out=`` the job also lives in a folder, as ``dpo-jax train`` makes it:
``spec.json`` (the job), ``checkpoints/`` (``checkpoints_<algo>/`` for a baseline),
``metrics.jsonl`` / ``metrics.csv`` (``metrics_<algo>.*``), ``summary.json`` and
``learning_curve.png``; the folder is locked while the job runs, can be resumed
(``resume=True``) and read back with :func:`load`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import platform
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from dpo_jax.config import TrainConfig
from dpo_jax.envs import make_env
from dpo_jax.envs.base import MultiAgentEnv
from dpo_jax.running import experiments, loggers, program_cache, runspec, sweeps
from dpo_jax.running.lock import folder_lock
from dpo_jax.running.plots import plot_curves
from dpo_jax.running.results import metrics_frame, save_json, summarize_final
from dpo_jax.running.runspec import Program, RunSpec
from dpo_jax.training import faults
from dpo_jax.training.rollout import random_policy_return
from dpo_jax.training.trainer import make_train, num_updates, rollout_length

Report = Callable[[str], None]
LABEL_NAMES = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL", "dpo_no_sqrt": "DPO w/o sqrt",
               "dpo_no_kl": "DPO w/o kl", "iql": "IQL", "iddpg": "IDDPG"}
MEMORYLESS_PROXY = ("iql",)
"""Programs whose agents are recurrent: no exact J exists for the policy they play, and
the exact J/J* they log (``optimality_ratio``) is of a memoryless proxy of it (the
Q-network from a zero hidden state and no previous action, ``iql.greedy_probs``). Their
headline J/J* on a stochastic game is their greedy episodes' return / J*, a Monte Carlo
estimate of their greedy policy's (:func:`greedy_ratio`)."""


def greedy_ratio(metrics: Mapping[str, np.ndarray], env: MultiAgentEnv) -> np.ndarray:
    """``greedy_return`` / J* (``[runs, updates]``): the J/J* of a program's greedy
    episodes on an env that knows its optimum; a ``KeyError`` naming
    ``greedy_eval`` when the program played none."""
    if "greedy_return" not in metrics:
        raise KeyError("no greedy_return logged (greedy_eval off): no J/J* of the greedy "
                       "policy")
    return np.asarray(metrics["greedy_return"], np.float64) / float(env.optimal_return())


def provenance(command: Optional[str] = None) -> dict[str, str]:
    """What a result file records of its making: the command and the machine."""
    return {"command": command or "python: dpo_jax.train(...)",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "jax": jax.__version__}


@dataclasses.dataclass
class Results:
    """What :func:`train` returns (or :func:`load` reads back).

    Attributes:
      spec: the job.
      env: the environment.
      outputs: program name (``"pg"``, ``"iql"``, ``"iddpg"``) -> its
        ``experiments.RunOutput`` (``None`` for a job read back from a folder).
      metrics: program name -> metrics ``[runs, updates, ...]``.
      labels: program name -> one dict per run (``algo``, ``d_target``, ``seed``).
      random_return: the uniformly random policy's expected episode return (exact on
        an episodic stochastic game, else a mean over 256 envs).
      out: the job's folder, if any.
      status: ``complete``, ``stopped`` (``stop_after``), ``failed``, or, read back
        from a folder with no ``summary.json`` (written when a sitting ends),
        ``unfinished``: the job still runs, or was killed before it ended.
    """

    spec: RunSpec
    env: MultiAgentEnv
    outputs: dict[str, Any]
    metrics: dict[str, dict[str, np.ndarray]]
    labels: dict[str, list[dict[str, Any]]]
    random_return: float
    out: Optional[pathlib.Path] = None
    status: Optional[str] = None

    def entries(self) -> dict[str, tuple[str, list[int]]]:
        """Entry name (``dpo``, ``dpo d=0.1``, ``iql``) -> (program, its run indices)."""
        found: dict[str, tuple[str, list[int]]] = {}
        for name, labels in self.labels.items():
            for entry, rows in runspec.entry_runs(self.spec, labels).items():
                found[entry] = (name, rows)
        return found

    def curves(self, metric: str = "episode_return") -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Entry -> ``(env_steps [U], values [runs, U])`` of one metric (per-agent
        metrics averaged over agents)."""
        from dpo_jax.running.results import agent_mean

        out = {}
        for entry, (program, rows) in self.entries().items():
            values = self.metrics[program].get(metric)
            if values is None:
                continue
            steps = np.asarray(self.metrics[program]["env_steps"])[rows[0]]
            out[entry] = (steps, agent_mean(np.asarray(values)[rows]))
        if not out:
            raise ValueError(f"no program logged {metric!r}; metrics are "
                             f"{sorted(set().union(*self.metrics.values()))}")
        return out

    def optimality_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Entry -> ``(env_steps, J/J*)`` on a stochastic game: the exact
        ``optimality_ratio`` of each policy-gradient entry, and for the programs of
        :data:`MEMORYLESS_PROXY` their greedy episodes' (:func:`greedy_ratio`; left
        out where they played none). ``ValueError`` when no program logged a J/J*."""
        found = self.entries()
        out = {e: c for e, c in self.curves("optimality_ratio").items()
               if found[e][0] not in MEMORYLESS_PROXY}
        for entry, (program, rows) in found.items():
            metrics = self.metrics[program]
            if program in MEMORYLESS_PROXY and "greedy_return" in metrics:
                steps = np.asarray(metrics["env_steps"])[rows[0]]
                out[entry] = (steps, greedy_ratio(metrics, self.env)[rows])
        return out

    def dataframe(self) -> Any:
        """Every run and update as a long pandas DataFrame: ``program``, the run's
        labels, ``update``, ``env_steps`` and every metric (agent means)."""
        import pandas as pd

        frames = []
        for name, metrics in self.metrics.items():
            frame = metrics_frame(metrics, self.labels[name])
            frame.insert(0, "program", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def summary(self, metric: str = "episode_return", last_fraction: float = 0.1) -> Any:
        """One row per entry: its swept values (a column per swept field), the mean
        over runs of each run's mean over the last ``last_fraction`` of updates, its
        95% CI half-width, the runs, and the random policy's return; led by the exact
        J/J* (``optimality_ratio``) where the env knows it (the stochastic games). For
        the programs of :data:`MEMORYLESS_PROXY` (IQL) a J/J* of their greedy episodes
        (``final_greedy_optimality_ratio``) stands instead of the exact one."""
        import pandas as pd

        rows = []
        scores = ({} if metric != "episode_return" or not any(
            "optimality_ratio" in m for m in self.metrics.values())
            else self.optimality_curves())
        found = self.entries()
        columns = (["d_target"] if runspec.varies_d_target(self.spec) else []) + \
            runspec.swept(self.spec)
        for entry, (steps, values) in self.curves(metric).items():
            mean, ci = summarize_final(values, last_fraction)
            program, runs = found[entry]
            row = {"entry": entry, **{field: self.labels[program][runs[0]].get(field)
                                      for field in columns}}
            if entry in scores:  # J/J* leads where the env knows it
                rmean, rci = summarize_final(scores[entry][1], last_fraction)
                if program in MEMORYLESS_PROXY:
                    row.update(final_greedy_optimality_ratio=rmean,
                               greedy_optimality_ratio_ci95=rci)
                else:
                    row.update(final_optimality_ratio=rmean, optimality_ratio_ci95=rci)
            rows.append({**row, f"final_{metric}": mean, "ci95": ci,
                         "runs": values.shape[0], "env_steps": int(steps[-1])})
        frame = pd.DataFrame(rows).set_index("entry")
        frame.attrs["random_return"] = self.random_return
        return frame

    def plot(self, metric: str = "episode_return", path: Optional[str | pathlib.Path] = None,
             title: Optional[str] = None, entries: Optional[Sequence[str]] = None) -> Any:
        """Learning curves of every entry, or of ``entries`` (names as in
        ``summary()``), with the random policy's return as a dashed line; a matplotlib
        Figure (saved too with ``path``). See ``running.plots.plot_curves``."""
        found = self.curves(metric)
        unknown = sorted(set(entries or ()) - set(found))
        if unknown:
            raise ValueError(f"entries {unknown}: this job's entries are {sorted(found)}")
        curves = {display_name(k): v for k, v in found.items()
                  if entries is None or k in entries}
        hlines = {"random policy": self.random_return} if metric == "episode_return" else None
        return plot_curves(curves, title=title or self.spec.env, ylabel=metric.replace("_", " "),
                           hlines=hlines, path=path)

    def _repr_html_(self) -> str:  # a notebook shows the summary table
        return self.summary()._repr_html_()


def display_name(entry: str) -> str:
    """An entry's name in figures: the algorithm's name as the paper writes it, with
    its ``d=...`` if any (``dpo d=0.01`` -> ``DPO d=0.01``)."""
    algo, _, rest = entry.partition(" ")
    return " ".join(x for x in (LABEL_NAMES.get(algo, algo), rest) if x)


def _silent(text: str) -> None:
    """The report of ``progress=False``: nothing (notes go out as warnings)."""


def _report_default(progress: bool | int) -> Report:
    return (lambda text: print(text, flush=True)) if progress else _silent


def train(
    config: TrainConfig,
    env: str | MultiAgentEnv,
    *,
    algos: Sequence[str] = (),
    d_targets: Sequence[float] = (),
    seeds: int = 3,
    seed: int = 0,
    sweep: Optional[sweeps.Sweep] = None,
    env_kwargs: Optional[Mapping[str, Any]] = None,
    progress: bool | int = True,
    out: Optional[str | pathlib.Path] = None,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    stop_after: Optional[int] = None,
    log: Sequence[str] = (),
    devices: Optional[Sequence[jax.Device]] = None,
    shard: str = "runs",
    report: Optional[Report] = None,
    command: Optional[str] = None,
) -> Results:
    """Train a job: every policy-gradient entry of ``algos`` x ``d_targets`` x
    ``seeds`` as one compiled program, then IQL / IDDPG each as its own.

    Args:
      config: the settings (``dpo_jax.preset(...)`` or a ``TrainConfig``); its
        ``algo`` and ``d_target`` are the defaults of ``algos`` and ``d_targets``.
      env: a registered name (built with ``env_kwargs``) or an env.
      algos: the algorithms to compare.
      d_targets: the ``d_target`` values of each algorithm that has one (IPPO gets
        one entry).
      seeds: runs per entry, from ``jax.random.split(key(seed), seeds)`` (the same
        keys for every entry).
      seed: the seed of those keys.
      sweep: hyperparameter values to train in the same program
        (``running.sweeps``): a grid ``{"actor_lr": [1e-4, 3e-4], "entropy_coef":
        [0, 0.01]}`` or a list of points ``[{"actor_lr": 1e-4}, ...]`` (fields left
        out keep the config's value; ``sweeps.random_points`` draws them). Any of
        ``config.SWEEPABLE_FIELDS``; every point x algorithm x seed is one run of
        the one program, labelled with the point's values.
      env_kwargs: keyword arguments of the env when ``env`` is a name (recorded in
        the job folder, e.g. ``{"num_agents": 3}``).
      progress: False, True (every update) or an interval in updates; a bar on a
        terminal or in a notebook, lines in a log.
      out: a job folder (see the module docstring); needs ``env`` by name.
      checkpoint_every: updates per chunk (a checkpoint and logs after each; default
        a tenth of the updates with ``out``, else one piece).
      resume: continue the job in ``out``.
      stop_after: stop at the first checkpoint at or after this many updates.
      log: extra loggers, ``"tensorboard"`` and/or ``"wandb"`` (with ``out``).
      devices: the devices to spread the runs over (see ``running.experiments.run``).
      shard: what to split over them (see ``running.experiments.run``).
      report: where header and summary lines go (default: printed when
        ``progress``).
      command: the command line recorded in ``summary.json``.

    Raises ``ValueError`` naming the bad argument before anything compiles, and
    ``faults.NonFiniteError`` (after writing ``summary.json`` with the failure) when
    a run hits a non-finite value.
    """
    report = report or _report_default(progress)
    env_kwargs = dict(env_kwargs or {})
    if isinstance(env, str):
        env_name = env
        env = program_cache.cached_env(env_name, env_kwargs,
                                       lambda: make_env(env_name, **env_kwargs))
    elif out is not None:
        raise ValueError("train(out=...) records the env by name so that the job can be "
                         "resumed and evaluated: pass env as a registered name (and "
                         "env_kwargs)")
    else:
        env_name = env.name
    spec = RunSpec(env=env_name, env_kwargs=env_kwargs, config=config,
                   algos=tuple(algos), d_targets=tuple(d_targets), seeds=seeds, seed=seed,
                   sweep=tuple(sweeps.points(sweep)))
    if log and out is None:
        raise ValueError(f"log={list(log)} writes into a job folder: pass out=...")
    for name, value in (("stop_after", stop_after), ("resume", resume or None)):
        if value is not None and out is None:
            raise ValueError(f"{name}={value!r} needs a job folder to continue from: "
                             f"pass out=...")
    # here, not only in experiments.run: a 0 would otherwise mean "the default"
    experiments.check_update_counts(checkpoint_every=checkpoint_every, stop_after=stop_after)
    loggers.check_extras(log)
    programs = runspec.plan(spec, env)
    for program in programs:  # every program's errors before any training
        make_train(program.config, env)
    if out is None:
        return _train(spec, env, programs, None, progress, checkpoint_every, False, None,
                      (), devices, shard, report, command)
    out = check_out_path(out)
    with folder_lock(out, command):
        if not _check_job_folder(out, spec, resume, report):
            spec.save(out)
        return _train(spec, env, programs, out, progress, checkpoint_every, resume,
                      stop_after, log, devices, shard, report, command)


def check_out_path(out: str | pathlib.Path) -> pathlib.Path:
    """``out`` as a job folder path, or ``ValueError`` naming why it cannot be one:
    empty, an existing file, under a file, or in a folder that cannot be written."""
    if str(out).strip() == "":
        raise ValueError("out='': name a job folder (the current directory is not one)")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file, not a folder: name a job folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"out={str(out)!r}: {str(parent)!r} is a file, so no folder can "
                         f"be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out={str(out)!r}: {str(parent)!r} cannot be written (its "
                         f"permissions or an immutable or read-only file system)")
    return out


def _check_job_folder(out: pathlib.Path, spec: RunSpec, resume: bool,
                      report: Report) -> bool:
    """Whether ``out`` holds this job already (to be resumed); refuses, writing
    nothing, a folder that holds another job (naming each field that differs, with
    both values), one in a format this version does not read, or a job started
    again without ``resume``. ``resume`` on a folder without a job starts it, so
    that always passing ``--resume`` is a safe requeue pattern."""
    if (out / runspec.SPEC_FILE).exists():
        saved = RunSpec.load(out)
        if not resume:
            raise ValueError(f"{str(out)!r} already holds a job: pass resume=True "
                             f"(--resume) to continue it, or another folder")
        diff = saved.diff(spec)
        if diff:
            raise ValueError(f"resume: {str(out)!r} holds another job ({'; '.join(diff)}); "
                             f"repeat its settings exactly, or use another folder")
        return True
    if resume:
        report(f"resume: {str(out)!r} holds no job yet: starting it")
    return False


def _train(spec: RunSpec, env: MultiAgentEnv, programs: list[Program],
           out: Optional[pathlib.Path], progress: bool | int, checkpoint_every: Optional[int],
           resume: bool, stop_after: Optional[int], log: Sequence[str],
           devices: Any, shard: str, report: Report, command: Optional[str]) -> Results:
    report(f"device: {jax.device_count()} x {jax.devices()[0].device_kind} "
           f"({jax.default_backend()})")
    report(f"env: {env}")
    random_return = _random_return(env, spec.seed + 1)
    how = "exact expected" if _exact_random(env) else "mean"
    report(f"uniform random policy: {how} episode return {random_return:.3f}")
    results = Results(spec, env, {}, {}, {}, random_return, out)
    summary: dict[str, Any] = {**provenance(command), "env": spec.env,
                               "env_kwargs": dict(spec.env_kwargs),
                               "random_return": random_return, "status": "running",
                               "programs": {}}
    try:
        for program in programs:
            _train_program(program, results, summary, out, progress, checkpoint_every,
                           resume, stop_after, log, devices, shard, report)
    except faults.NonFiniteError as err:
        summary["status"] = "failed"
        summary["failure"] = {"error": str(err), "update": err.update, "runs": err.runs,
                              "cause": err.cause, "metrics": err.metrics}
        if out is not None:
            save_json(out / "summary.json", summary)
        raise
    done = all(r["updates_done"] == r["num_updates"] for r in summary["programs"].values())
    summary["status"] = results.status = "complete" if done else "stopped"
    if out is not None:
        if any(results.metrics.values()):
            results.plot(path=out / "learning_curve.png")
        save_json(out / "summary.json", summary)
    return results


def _exact_random(env: MultiAgentEnv) -> bool:
    """Whether the random policy's return is computed exactly (an episodic game)."""
    return hasattr(env, "uniform_return") and getattr(env, "resets_on_done", True)


def _random_return(env: MultiAgentEnv, seed: int) -> float:
    """The uniformly random policy's expected episode return: exact on an episodic
    stochastic game (``uniform_return``: a Monte Carlo mean of the
    game's wide rewards varies by more than the value itself between draws of 4,096
    episodes), else its mean over 256 envs (its program kept in ``program_cache``
    with the training programs; a never-reset game's "episodes" are windows of the
    chain, whose mean return is not the return from the start state)."""
    if _exact_random(env):
        return env.uniform_return()
    env_args = (env,) if experiments.env_is_pytree(env) else ()  # large tables: arguments
    args = (jax.random.key(seed), *env_args)

    def compile_fn() -> Any:
        def fn(key: jax.Array, *tables: MultiAgentEnv) -> Any:
            return random_policy_return(tables[0] if tables else env, key, num_envs=256)

        return jax.jit(fn).lower(*args).compile()

    key = ("random_return", program_cache.env_key(env), program_cache.signature(env_args))
    program, _ = program_cache.compiled(key, env, compile_fn)
    return float(program(*args)["episode_return"])


def _train_program(program: Program, results: Results, summary: dict, out: Optional[pathlib.Path],
                   progress: bool | int, checkpoint_every: Optional[int], resume: bool,
                   stop_after: Optional[int], log: Sequence[str], devices: Any, shard: str,
                   report: Report) -> None:
    """Train one program of the job and add it to ``results`` and ``summary``."""
    spec, env = results.spec, results.env
    n_updates = num_updates(program.config, env)
    groups = runspec.entry_runs(spec, program.labels)
    entries = f"{len(groups)} {'entry' if len(groups) == 1 else 'entries'}"
    report(f"\n{program.name}: {len(program.labels)} runs ({entries} x {spec.seeds} "
           f"{'seed' if spec.seeds == 1 else 'seeds'}), {n_updates} updates")
    if isinstance(program.config, TrainConfig):
        batch = program.config.num_envs * rollout_length(program.config, env)
        if n_updates * batch != program.config.total_timesteps:
            report(f"  total_timesteps {program.config.total_timesteps:,} is not a multiple "
                   f"of the batch (num_envs x num_steps = {batch:,}): each run trains "
                   f"{n_updates * batch:,} env steps")
    suffix = "" if program.name == "pg" else f"_{program.name}"
    logs, folder, every = [], None, checkpoint_every
    if out is not None:
        logs = loggers.make_loggers(out, program.labels, log, prefix=f"metrics{suffix}",
                                    config=spec.to_json())
        folder = out / f"checkpoints{suffix}"
        every = checkpoint_every or max(1, math.ceil(n_updates / 10))
    run = experiments.run(program.config, env, program.keys, obj=program.obj,
                          progress=progress, devices=devices, shard=shard, loggers=logs,
                          checkpoint_dir=folder, checkpoint_every=every,
                          resume=resume, stop_after=stop_after, labels=program.labels,
                          note=None if report is _silent
                          else lambda text: report(f"  {text}"))
    results.outputs[program.name] = run
    results.metrics[program.name] = run.metrics
    results.labels[program.name] = program.labels
    done = run.metrics["episode_return"].shape[1]
    record: dict[str, Any] = {"updates_done": done, "num_updates": n_updates,
                              "compile_s": run.compile_s, "run_s": run.run_s,
                              "env_steps_per_s": run.env_steps_per_s, "entries": {}}
    for name, rows in groups.items():
        values = run.metrics["episode_return"][rows]
        mean, ci = summarize_final(values)
        record["entries"][name] = {"final_return_mean": mean, "final_return_ci95": ci,
                                   "runs": rows}
        spread = (f"+- {ci:.3f} (95% CI over {len(rows)} seeds" if len(rows) > 1
                  else "(1 seed: no interval")
        headline = ""
        if program.name in MEMORYLESS_PROXY and "optimality_ratio" in run.metrics:
            pmean, pci = summarize_final(run.metrics["optimality_ratio"][rows])
            record["entries"][name].update(final_memoryless_optimality_ratio_mean=pmean,
                                           final_memoryless_optimality_ratio_ci95=pci)
            headline = f"a memoryless proxy's exact J/J* {pmean:.3f} (greedy_eval off); "
            if "greedy_return" in run.metrics:
                gmean, gci = summarize_final(greedy_ratio(run.metrics, env)[rows])
                record["entries"][name].update(final_greedy_optimality_ratio_mean=gmean,
                                               final_greedy_optimality_ratio_ci95=gci)
                headline = (f"final J/J* {gmean:.3f} +- {gci:.3f} (greedy episodes; a "
                            f"memoryless proxy's exact J/J* {pmean:.3f}); ")
        elif "optimality_ratio" in run.metrics:  # the exact J/J* leads where the env knows it
            rmean, rci = summarize_final(run.metrics["optimality_ratio"][rows])
            record["entries"][name].update(final_optimality_ratio_mean=rmean,
                                           final_optimality_ratio_ci95=rci)
            headline = f"final J/J* {rmean:.3f} +- {rci:.3f} (exact); "
        report(f"  {name}: {headline}final return {mean:.3f} {spread}; random policy "
               f"{results.random_return:.3f})")
    summary["programs"][program.name] = record
    if not math.isnan(run.env_steps_per_s):  # NaN: no update trained in this call
        report(f"  compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
               f"({run.env_steps_per_s:,.0f} env steps/s)")
    else:
        report(f"  compile {run.compile_s:.1f} s; all {n_updates} updates were done "
               f"already: nothing trained")
    if done < n_updates:
        report(f"  stopped after {done} of {n_updates} updates: continue with resume=True "
               f"(--resume)")


def load(out: str | pathlib.Path) -> Results:
    """A job folder (``dpo-jax train`` or ``train(out=...)``) read back as
    :class:`Results`, from its ``metrics*.jsonl`` logs and ``summary.json``; a job
    that still runs or was killed reads back as the updates it has logged, with
    ``status`` ``unfinished``."""
    from dpo_jax.running.loggers import read_jsonl

    out = pathlib.Path(out)
    spec = RunSpec.load(out)
    env = make_env(spec.env, **spec.env_kwargs)
    random_return, status = recorded_random_return(out, spec, env)
    results = Results(spec, env, {}, {}, {}, random_return, out, status)
    for program in runspec.plan(spec, env):
        suffix = "" if program.name == "pg" else f"_{program.name}"
        path = out / f"metrics{suffix}.jsonl"
        if not path.exists():
            continue
        rows = read_jsonl(path)
        results.metrics[program.name] = _rows_to_metrics(rows, len(program.labels),
                                                         runspec.label_keys(spec))
        results.labels[program.name] = program.labels
    return results


def recorded_random_return(out: pathlib.Path, spec: RunSpec,
                           env: Optional[MultiAgentEnv] = None) -> tuple[float, str]:
    """A job folder's random-policy return and status, from its ``summary.json``; a
    job that has none (it still runs, or was killed before a sitting ended: the
    summary is written at the end of each) gets the return computed as the job
    computes it at its start (:func:`_random_return`, same seed, on ``env`` or the
    spec's env, made only then) and the status ``unfinished``, so that the updates
    it logged can be read and compared."""
    from dpo_jax.running.results import read_json

    path = out / "summary.json"
    if not path.exists():
        env = env if env is not None else make_env(spec.env, **spec.env_kwargs)
        return _random_return(env, spec.seed + 1), "unfinished"
    summary = read_json(path, "the job's summary")
    return float(summary["random_return"]), str(summary.get("status", "unknown"))


def _rows_to_metrics(rows: list[dict], num_runs: int, label_keys: Sequence[str]
                     ) -> dict[str, np.ndarray]:
    """``metrics.jsonl`` rows back to ``[runs, updates, ...]`` arrays (null as NaN);
    ``label_keys`` are the columns that label runs, not metrics."""
    updates = 1 + max((r["update"] for r in rows), default=-1)
    names = [k for k in rows[0] if k not in (*label_keys, "update")] if rows else []
    metrics: dict[str, np.ndarray] = {}
    for name in names:
        sample = np.asarray(rows[0][name] if rows[0][name] is not None else np.nan,
                            dtype=np.float64)
        array = np.full((num_runs, updates) + sample.shape, np.nan)
        for r in rows:
            value = r[name]
            array[r["run"], r["update"]] = np.nan if value is None else np.asarray(
                [np.nan if v is None else v for v in np.ravel(np.asarray(value, object))],
                np.float64).reshape(sample.shape)
        metrics[name] = array
    return metrics
