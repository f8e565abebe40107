"""``dpo-jax``: train, evaluate and compare from one command line (tyro).

    dpo-jax train mpe_spread --algos dpo ippo --seeds 5 --total-timesteps 1000000
    dpo-jax train smax_3m --preset cpu --algos dpo --d-targets 0.005 0.02 0.08
    dpo-jax train mpe_spread --resume --out runs/mpe_spread     # continue a stopped job
    dpo-jax eval runs/mpe_spread --episodes 64 --render
    dpo-jax plot runs/mpe_spread runs/mpe_line --to runs/stats
    dpo-jax envs                                                # envs and their arguments

``python -m dpo_jax ...`` is the same program. ``train`` exposes every
``TrainConfig`` field as a flag (``--num-envs``, ``--hidden-size``,
``--value-norm/--no-value-norm``, ...) on top of a preset (``--preset paper``: the
paper's Table 2 with the env family's ``d_target``; ``cpu``: the quick start's
CPU-sized batch; ``jaxmarl``: JaxMARL's IPPO settings), env keyword arguments as
``--env-arg KEY=VALUE``, sweeps over ``--algos`` and ``--d-targets`` (one compiled
program for all policy-gradient entries x seeds), checkpoints every
``--checkpoint-every`` updates, ``--resume`` and ``--stop-after``, and loggers
(``metrics.jsonl`` / ``metrics.csv`` always; ``--log tensorboard wandb``).

An output folder holds ``spec.json`` (the job: ``dpo_jax.runspec``),
``checkpoints/`` (IQL / IDDPG: ``checkpoints_<algo>/``), the metric logs
(``metrics.jsonl``, ``metrics_<algo>.jsonl``, ...), ``summary.json`` and
``learning_curve.png``; ``eval`` and ``plot`` read it. Bad input is reported with the flag's name and the
allowed values, before anything compiles.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import pathlib
import sys
from typing import Annotated, Any, Literal, Optional, Sequence

import numpy as np
import tyro

from dpo_jax.config import TrainConfig

Algo = Literal["dpo", "ippo", "ippo_kl", "dpo_no_sqrt", "dpo_no_kl", "iql", "iddpg"]
Preset = Literal["paper", "cpu", "jaxmarl"]
PRESETS: tuple[str, ...] = ("paper", "cpu", "jaxmarl")
COMMANDS = ("train", "eval", "plot", "envs")
CPU_BATCH = dict(num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4, hidden_size=64)
"""The quick start's CPU-sized batch (``examples/mpe_spread.py``): JaxMARL's IPPO-FF
batch shape with the paper's other settings."""


class UsageError(ValueError):
    """Bad command-line input; ``main`` prints it and exits with status 2."""


def env_family(env: str) -> Optional[str]:
    """The paper's env family of a registered env name (``PAPER_D_TARGET`` keys)."""
    for prefix, family in (("mpe", "mpe"), ("smax", "smax"), ("mamujoco", "mamujoco"),
                           ("stochastic_game", "stochastic_game")):
        if env.startswith(prefix):
            return family
    return None


def preset_config(preset: str, env: str) -> Any:
    """The ``TrainConfig`` a preset gives for ``env`` (the flags' defaults)."""
    from dpo_jax.config import PAPER_D_TARGET, jaxmarl_ippo_config

    family = env_family(env)
    d_target = PAPER_D_TARGET[family] if family else TrainConfig.d_target
    if preset == "paper":
        return TrainConfig(d_target=d_target)
    if preset == "cpu":
        return TrainConfig(d_target=d_target, **CPU_BATCH)
    if preset == "jaxmarl":
        return jaxmarl_ippo_config(d_target=d_target)
    raise UsageError(f"--preset {preset!r}: expected one of {PRESETS}")


def _train_args_type(cfg_default: Any) -> type:
    """``TrainArgs`` with ``cfg_default`` (a preset) as the config flags' defaults."""
    @dataclasses.dataclass(frozen=True)
    class TrainArgs:
        """Train one job: policy-gradient members x d_targets x seeds as one compiled
        program (then IQL / IDDPG, each its own), with checkpoints and logs."""

        env: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV")]
        """a registered environment (``dpo-jax envs`` lists them with their arguments)"""
        env_arg: tuple[str, ...] = ()
        """environment keyword arguments as KEY=VALUE (Python literals), e.g.
        --env-arg num_agents=3 max_steps=50"""
        preset: Preset = "paper"
        """defaults of the config flags: paper (Table 2, the family's d_target), cpu
        (16 envs x 128 steps, 4 epochs x 4 minibatches, 64 units) or jaxmarl
        (JaxMARL's IPPO-FF MPE settings)"""
        algos: tuple[Algo, ...] = ()
        """algorithms to train, empty: --algo; the policy-gradient ones share one program"""
        d_targets: tuple[float, ...] = ()
        """d_target values swept for the KL-penalised members, empty: --d-target"""
        seeds: int = 3
        """runs per algorithm and d_target (vmapped)"""
        seed: int = 0
        """base PRNG seed; the runs use jax.random.split(key(seed), seeds)"""
        out: Optional[pathlib.Path] = None
        """output folder; None: runs/<env>"""
        checkpoint_every: Optional[int] = None
        """updates per chunk, with a checkpoint and the logs after each; None: a
        tenth of the updates"""
        resume: bool = False
        """continue the job saved in --out from its last checkpoint"""
        stop_after: Optional[int] = None
        """stop at the first checkpoint at or after this many updates (resume later)"""
        log: tuple[Literal["tensorboard", "wandb"], ...] = ()
        """extra loggers (metrics.jsonl and metrics.csv are always written)"""
        progress: int = 10
        """updates between progress lines (a progress bar on a terminal); 0: quiet"""
        shard: Literal["runs", "envs"] = "runs"
        """split the runs, or each run's envs, over all devices"""
        cfg: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes] = cfg_default
        """TrainConfig fields (dpo_jax.TrainConfig documents each)"""

    return TrainArgs


def parse_env_args(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to keyword arguments (values as Python literals,
    else strings)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--env-arg {item!r}: expected KEY=VALUE, e.g. num_agents=3")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        kwargs[key] = value
    return kwargs


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """Evaluate the saved policies of a `dpo-jax train` output folder (the last
    checkpoint of each program: policy-gradient agents, IQL, IDDPG): returns (and
    win rates) over episodes, per run and per entry."""

    out: Annotated[pathlib.Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """output folder of `dpo-jax train`"""
    episodes: int = 32
    """evaluation episodes per run"""
    stochastic: bool = False
    """sample actions as in training (default: greedy, each distribution's mode)"""
    render: bool = False
    """draw one episode of each entry's first run: MPE PNG strip + GIF, MuJoCo GIF
    frames (needs an OpenGL backend; skipped with a message otherwise)"""
    seed: int = 0
    """PRNG seed of the evaluation episodes"""


@dataclasses.dataclass(frozen=True)
class PlotArgs:
    """Aggregate the final returns of one or more `dpo-jax train` folders (tasks)
    with rliable: IQM / mean / median / optimality gap with stratified-bootstrap
    CIs, performance profiles, P(X > baseline); and learning curves per task."""

    outs: Annotated[tuple[pathlib.Path, ...], tyro.conf.Positional,
                    tyro.conf.arg(metavar="OUT")]
    """output folders of `dpo-jax train`, one per task"""
    to: Optional[pathlib.Path] = None
    """folder for the figures and stats.json; None: <first OUT>/stats"""
    metric: str = "episode_return"
    """the metric scored (a key of metrics.jsonl)"""
    last_fraction: float = 0.1
    """a run's score: its mean over this last fraction of updates"""
    normalization: Literal["minmax", "random", "none"] = "minmax"
    """per task: min-max over all runs, random policy = 0 and best run = 1, or raw"""
    baseline: str = "ippo"
    """P(X > baseline) for every other algorithm"""
    reps: int = 10_000
    """bootstrap resamples"""


def _fail(command: str, message: str) -> int:
    print(f"dpo-jax {command}: error: {message}", file=sys.stderr)
    return 2


def _parse(kind: type, argv: Sequence[str], command: str) -> Any:
    return tyro.cli(kind, args=list(argv), prog=f"dpo-jax {command}")


def parse_train(argv: Sequence[str]) -> Any:
    """The parsed ``train`` arguments; the preset (and the env's family) set the
    config flags' defaults before tyro parses."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("env", nargs="?")
    pre.add_argument("--preset", default="paper")
    known, _ = pre.parse_known_args(list(argv))
    if known.preset not in PRESETS:
        raise UsageError(f"--preset {known.preset!r}: expected one of {PRESETS}")
    default = preset_config(known.preset, known.env or "")
    return _parse(_train_args_type(default), argv, "train")


def provenance(argv: Sequence[str]) -> dict[str, str]:
    """What a result file records of its making: the command and the machine."""
    import os
    import platform
    import shlex

    import jax

    return {"command": "dpo-jax " + shlex.join(argv),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "jax": jax.__version__}


def train(args: Any, argv: Sequence[str] = ()) -> int:
    """``dpo-jax train``: see the module docstring; ``argv`` (the command line) is
    recorded in ``summary.json``. Returns the exit status."""
    import jax

    import dpo_jax
    from dpo_jax import experiments, loggers, runspec
    from dpo_jax.runspec import RunSpec

    for flag, value in (("--seeds", args.seeds), ("--checkpoint-every", args.checkpoint_every),
                        ("--stop-after", args.stop_after)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: expected an int >= 1")
    try:
        loggers.check_extras(args.log)
    except ImportError as err:
        raise UsageError(f"--log: {err}") from None
    if args.shard == "envs" and any(a in dpo_jax.BASELINE_ALGORITHMS for a in args.algos):
        raise UsageError("--shard envs splits policy-gradient runs only; IQL / IDDPG "
                         "need --shard runs (or train them in another job)")
    env_kwargs = parse_env_args(args.env_arg)
    env = dpo_jax.make_env(args.env, **env_kwargs)
    spec = RunSpec(env=args.env, env_kwargs=env_kwargs, config=args.cfg,
                   algos=tuple(args.algos), d_targets=tuple(args.d_targets),
                   seeds=args.seeds, seed=args.seed)
    out = experiments.prepare_out_dir(args.out or pathlib.Path("runs") / args.env)
    if (out / runspec.SPEC_FILE).exists():
        saved = RunSpec.load(out).to_json()
        if not args.resume:
            raise UsageError(f"{str(out)!r} already holds a job: pass --resume to continue "
                             f"it, or another --out")
        diff = sorted(k for k in saved if saved[k] != spec.to_json()[k])
        if diff:
            raise UsageError(f"--resume: {str(out)!r} holds another job (differs in "
                             f"{', '.join(diff)}); repeat its flags exactly")
    elif args.resume:
        raise UsageError(f"--resume: {str(out)!r} holds no job to continue")
    programs = runspec.plan(spec, env)
    for program in programs:  # every program's errors before any training
        dpo_jax.make_train(program.config, env)
    spec.save(out)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{jax.device_count()} device(s)")
    print(f"env: {env}")
    random_return = float(jax.jit(lambda k: dpo_jax.random_policy_return(env, k))(
        jax.random.key(args.seed + 1))["episode_return"])
    print(f"uniform random policy: mean episode return {random_return:.3f}")
    summary: dict[str, Any] = {**provenance(["train", *argv]),
                               "env": args.env, "env_kwargs": env_kwargs,
                               "random_return": random_return, "programs": {}}
    curves = {}
    for program in programs:
        n_updates = dpo_jax.num_updates(program.config, env)
        groups = runspec.entry_runs(spec, program.labels)
        print(f"\n{program.name}: {len(program.labels)} runs ({len(groups)} entries x "
              f"{spec.seeds} seeds), {n_updates} updates", flush=True)
        suffix = "" if program.name == "pg" else f"_{program.name}"
        every = args.checkpoint_every or max(1, math.ceil(n_updates / 10))
        logs = loggers.make_loggers(out, program.labels, args.log, prefix=f"metrics{suffix}",
                                    config=spec.to_json())
        run = experiments.run(program.config, env, program.keys, obj=program.obj,
                              progress=args.progress or False, shard=args.shard,
                              loggers=logs, checkpoint_dir=out / f"checkpoints{suffix}",
                              checkpoint_every=every, resume=args.resume,
                              stop_after=args.stop_after)
        done = run.metrics["episode_return"].shape[1]
        record = {"updates_done": done, "num_updates": n_updates,
                  "compile_s": run.compile_s, "run_s": run.run_s,
                  "env_steps_per_s": run.env_steps_per_s, "entries": {}}
        for name, rows in groups.items():
            values = run.metrics["episode_return"][rows]
            mean, ci = experiments.summarize_final(values)
            record["entries"][name] = {"final_return_mean": mean, "final_return_ci95": ci,
                                       "runs": rows}
            curves[name] = (run.metrics["env_steps"][rows[0]], values)
            print(f"  {name}: final return {mean:.3f} +- {ci:.3f} (95% CI over "
                  f"{len(rows)} seeds; random policy {random_return:.3f})")
        summary["programs"][program.name] = record
        print(f"  compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
              f"({run.env_steps_per_s:,.0f} env steps/s)")
        if done < n_updates:
            print(f"  stopped after {done} of {n_updates} updates: continue with the same "
                  f"command and --resume")
    if curves:
        experiments.plot_curves(out / "learning_curve.png", curves,
                                title=f"{args.env}", hlines={"random policy": random_return})
    experiments.save_json(out / "summary.json", summary)
    print(f"\nwrote {out}/ (spec.json, summary.json, metrics.jsonl/.csv, checkpoints/, "
          f"learning_curve.png)")
    return 0


def evaluate_command(args: EvalArgs, argv: Sequence[str] = ()) -> int:
    """``dpo-jax eval``: load, run episodes, print and save ``eval.json`` (with the
    command line ``argv``)."""
    import jax

    from dpo_jax import evaluate, experiments
    from dpo_jax.loggers import run_name
    from dpo_jax.runspec import entry_runs

    if args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes}: expected an int >= 1")
    names = evaluate.saved_programs(args.out)
    if not names:
        raise UsageError(f"{str(args.out)!r} holds no checkpoint to evaluate")
    mode = "stochastic" if args.stochastic else "greedy"
    result: dict[str, Any] = {**provenance(["eval", *argv]), "mode": mode,
                              "episodes": args.episodes, "programs": {},
                              "runs": [], "entries": {}}
    for program in names:
        pol = evaluate.load_policies(args.out, program)
        print(f"{pol.spec.env} {program}: {len(pol.program.labels)} runs, checkpoint after "
              f"{pol.updates_done} updates, {args.episodes} {mode} episodes per run")
        result["programs"][program] = {"updates_done": pol.updates_done}
        scores = evaluate.evaluate(pol.env, pol.policy, pol.params,
                                   jax.random.key(args.seed), args.episodes,
                                   greedy=not args.stochastic)
        for r, lab in enumerate(pol.program.labels):
            result["runs"].append({**lab, **{k: float(v[r].mean())
                                             for k, v in scores.items()}})
        groups = entry_runs(pol.spec, pol.program.labels)
        for name, rows in groups.items():
            per_run = scores["episode_return"][rows].mean(axis=1)
            mean, ci = experiments.mean_ci95(per_run)
            entry = {"return_mean": float(mean), "return_ci95": float(ci)}
            line = f"  {name:<16} return {float(mean):9.3f} +- {float(ci):.3f}"
            if "won" in scores:
                win = scores["won"][rows].mean(axis=1)
                wmean, wci = experiments.mean_ci95(win)
                entry.update(win_rate=float(wmean), win_rate_ci95=float(wci))
                line += f"  win rate {float(wmean):.3f} +- {float(wci):.3f}"
            result["entries"][name] = entry
            print(line + f"  (95% CI over {len(rows)} runs)")
        if args.render:
            for name, rows in groups.items():
                run_params = jax.tree.map(lambda x: x[rows[0]], pol.params)
                files, message = evaluate.render_episode(
                    pol.env, pol.policy, run_params, jax.random.key(args.seed + 1),
                    args.out / "render" / run_name(pol.program.labels[rows[0]]),
                    greedy=not args.stochastic, title=f"{pol.spec.env} {name} ({mode})")
                print(f"  render {name}: {message}" + "".join(f"\n    {f}" for f in files))
    path = experiments.save_json(args.out / "eval.json", result)
    print(f"wrote {path}")
    return 0


def load_scores(out: pathlib.Path, metric: str, last_fraction: float
                ) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """A train folder's task name, ``{entry: per-run final scores}`` and curves."""
    from dpo_jax.loggers import read_jsonl
    from dpo_jax.runspec import RunSpec, entry_runs
    from dpo_jax.stats import final_scores

    spec = RunSpec.load(out)
    task = spec.env + "".join(f" {k}={v}" for k, v in sorted(spec.env_kwargs.items()))
    files = sorted(out.glob("metrics*.jsonl"))
    if not files:
        raise UsageError(f"{str(out)!r} has no metrics*.jsonl")
    scores, curves = {}, {}
    for path in files:
        rows = read_jsonl(path)
        if rows and metric not in rows[0]:
            raise UsageError(f"--metric {metric!r}: not in {path} (has "
                             f"{sorted(k for k in rows[0] if k not in ('run', 'update'))})")
        runs: dict[int, list[dict]] = {}
        for row in rows:
            runs.setdefault(row["run"], []).append(row)
        series = [sorted(runs[r], key=lambda row: row["update"]) for r in sorted(runs)]
        for name, members in entry_runs(spec, [s[0] for s in series]).items():
            values = [[np.nan if row[metric] is None else np.nanmean(np.asarray(
                row[metric], np.float64)) for row in series[i]] for i in members]
            length = min(len(v) for v in values)
            array = np.asarray([v[:length] for v in values])
            scores[name] = final_scores(array, last_fraction)
            steps = [row["env_steps"] for row in series[members[-1]]]
            curves[name] = (np.asarray(steps[:length]), array)
    return task, scores, curves


def plot_command(args: PlotArgs, argv: Sequence[str] = ()) -> int:
    """``dpo-jax plot``: rliable statistics and figures over tasks (``stats.json``
    records the command line ``argv``)."""
    import json

    from dpo_jax import experiments, stats

    if not args.outs:
        raise UsageError("give at least one output folder of `dpo-jax train`")
    if args.normalization not in stats.NORMALIZATIONS:
        raise UsageError(f"--normalization {args.normalization!r}: expected one of "
                         f"{stats.NORMALIZATIONS}")
    raw: dict[str, dict[str, np.ndarray]] = {}
    random: dict[str, float] = {}
    loaded = []
    for out in args.outs:  # every folder read before anything is written
        task, scores, curves = load_scores(out, args.metric, args.last_fraction)
        if any(task in by_task for by_task in raw.values()):
            task = f"{task} ({out.name})"
        summary = out / "summary.json"
        if summary.exists():
            random[task] = json.loads(summary.read_text())["random_return"]
        for name, values in scores.items():
            raw.setdefault(name, {})[task] = values
        loaded.append((out, task, curves))
    to = experiments.prepare_out_dir(args.to or args.outs[0] / "stats")
    for out, task, curves in loaded:
        experiments.plot_curves(to / f"curves_{out.name}.png", curves, title=task,
                                ylabel=args.metric,
                                hlines={"random policy": random[task]} if task in random
                                else None)
    normalised = stats.normalize(raw, args.normalization, random)
    aggregates = stats.aggregate(normalised, reps=args.reps)
    profile = stats.performance_profile(normalised, reps=min(args.reps, 2_000))
    pairs = stats.default_pairs(list(normalised), args.baseline)
    probabilities = stats.improvement(normalised, pairs, reps=min(args.reps, 2_000))
    label = "score" if args.normalization == "none" else f"{args.normalization}-normalised score"
    files = stats.plot(to, aggregates, profile, probabilities, xlabel=label)
    tasks = sorted(next(iter(raw.values())))
    print(f"{len(tasks)} task(s), {args.normalization} normalisation, 95% stratified "
          f"bootstrap CIs ({args.reps} resamples)")
    for algo, values in aggregates.items():
        runs = normalised[algo].shape[0]
        print(f"  {algo:<16} ({runs} runs/task) " + "  ".join(
            f"{m} {p:.3f} [{lo:.3f}, {hi:.3f}]" for m, (p, lo, hi) in values.items()))
    for pair, (p, lo, hi) in probabilities.items():
        x, y = pair.split(",")
        print(f"  P({x} > {y}) = {p:.3f} [{lo:.3f}, {hi:.3f}]")
    experiments.save_json(to / "stats.json", {
        **provenance(["plot", *argv]),
        "tasks": tasks, "metric": args.metric, "last_fraction": args.last_fraction,
        "normalization": args.normalization, "reps": args.reps,
        "raw_scores": {a: {t: v.tolist() for t, v in by.items()} for a, by in raw.items()},
        "aggregates": aggregates, "performance_profile": profile,
        "probability_of_improvement": probabilities})
    print(f"wrote {to}/ (stats.json, " + ", ".join(f.name for f in files) + ", curves)")
    return 0


def envs_command(argv: Sequence[str]) -> int:
    """``dpo-jax envs``: every registered env and its keyword arguments."""
    from dpo_jax.envs import registry

    if argv:
        return _fail("envs", f"takes no arguments, got {list(argv)}")
    for name in registry.list_envs():
        params = inspect.signature(registry._REGISTRY[name]).parameters.values()
        args = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD)
        print(f"{name:<28} {args}")
    return 0


USAGE = """usage: dpo-jax {train,eval,plot,envs} ...

  train ENV [flags]   train a job (dpo-jax train --help lists every flag)
  eval OUT [flags]    evaluate (and render) the saved policies of a job
  plot OUT... [flags] rliable statistics and learning curves over jobs (tasks)
  envs                the registered environments and their keyword arguments
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``dpo-jax`` entry point; returns the exit status (tyro exits itself on
    a parse error or ``--help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(command, f"unknown command {command!r}: expected one of {COMMANDS}")
    try:
        if command == "envs":
            return envs_command(rest)
        if command == "train":
            return train(parse_train(rest), rest)
        if command == "eval":
            return evaluate_command(_parse(EvalArgs, rest, command), rest)
        return plot_command(_parse(PlotArgs, rest, command), rest)
    except (UsageError, FileNotFoundError) as err:
        return _fail(command, str(err))
    except ValueError as err:  # a config, env or checkpoint check, with its message
        return _fail(command, str(err))


if __name__ == "__main__":
    sys.exit(main())
