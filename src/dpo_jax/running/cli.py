"""``dpo-jax``: train, evaluate and compare from one command line (tyro).

    dpo-jax train mpe_spread --preset cpu --algos dpo ippo --seeds 5
    dpo-jax train smax_3m --preset cpu --algos dpo --d-targets 0.005 0.02 0.08
    dpo-jax train mpe_spread --preset cpu --sweep actor_lr=1e-4,3e-4 --sweep entropy_coef=0,0.01
    dpo-jax train mpe_spread --preset cpu --resume --out runs/mpe_spread   # continue a stopped job
    dpo-jax eval runs/mpe_spread --episodes 64 --render
    dpo-jax plot runs/mpe_spread runs/mpe_line --to runs/stats
    dpo-jax envs                                                # envs and their arguments

``python -m dpo_jax ...`` is the same program. ``train`` is ``dpo_jax.train``
(``running.jobs``) with every ``TrainConfig`` field as a flag on top of a preset
(``config.preset``: ``paper``, ``cpu``, ``jaxmarl``, ``authors``); each flag's help
comes from the field's documentation and its default from the preset for the
env's family. ``--algos`` and ``--d-targets`` set the entries compared (one
compiled program for all policy-gradient entries x seeds).

Bad input is reported in one line naming the flag, field, file or variable, before
anything compiles; ``--debug`` shows the traceback instead. Help, ``--version`` and
flag errors answer without importing JAX.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import pathlib
import sys
import typing
from typing import Annotated, Any, Literal, Optional, Sequence

import numpy as np
import tyro

from dpo_jax.config import PRESETS, TrainConfig, field_docs, preset, preset_env_kwargs

Algo = Literal["dpo", "ippo", "ippo_kl", "dpo_no_sqrt", "dpo_no_kl", "iql", "iddpg"]
Preset = Literal["paper", "cpu", "jaxmarl", "authors"]
COMMANDS = ("train", "eval", "plot", "envs")
JOB_FIELDS = ("algo", "d_target")  # set per entry by --algos / --d-targets


class UsageError(ValueError):
    """Bad command-line input; ``main`` prints it and exits with status 2."""


def _help(text: str) -> Any:
    """``tyro.conf.arg`` with ``text`` on one line (tyro keeps a docstring's breaks)."""
    return tyro.conf.arg(help=" ".join(text.split()))


JOB_FLAGS: list[tuple[str, Any, Any, str]] = [
    ("env_arg", tuple[str, ...], (),
     "environment keyword arguments as KEY=VALUE (Python literals), e.g. --env-arg "
     "num_agents=3 max_steps=50"),
    ("preset", Preset, "paper",
     "the config flags' defaults: paper (Table 2, the family's d_target), cpu (16 envs x "
     "128 steps, 4 epochs x 4 minibatches, 64 units), jaxmarl (JaxMARL's IPPO-FF MPE "
     "settings) or authors (the authors' PyTorch code)"),
    ("seeds", int, 3, "runs per algorithm, d_target and sweep point (vmapped)"),
    ("sweep", Annotated[tuple[str, ...], tyro.conf.UseAppendAction], (),
     "FIELD=V1,V2,...: train these values of a numeric TrainConfig field in the same "
     "program; repeat the flag for a grid, e.g. --sweep actor_lr=1e-4,3e-4 --sweep "
     "entropy_coef=0,0.01 (docs/sweeps.md lists the sweepable fields)"),
    ("sweep_file", Optional[pathlib.Path], None,
     "a JSON file with the sweep: a list of points ([{\"actor_lr\": 1e-4}, ...]) or a "
     "grid ({\"actor_lr\": [1e-4, 3e-4]}); instead of --sweep"),
    ("seed", int, 0, "base PRNG seed; the runs use jax.random.split(key(seed), seeds)"),
    ("out", Optional[pathlib.Path], None, "output folder; None: runs/<env>"),
    ("checkpoint_every", Optional[int], None,
     "updates per chunk, with a checkpoint and the logs after each; None: a tenth of the "
     "updates"),
    ("resume", bool, False, "continue the job saved in --out from its newest sound "
                            "checkpoint"),
    ("stop_after", Optional[int], None,
     "stop at the first checkpoint at or after this many updates (resume later)"),
    ("log", tuple[Literal["tensorboard", "wandb"], ...], (),
     "extra loggers (metrics.jsonl and metrics.csv are always written)"),
    ("progress", int, 10, "updates between progress lines (a bar on a terminal); 0: quiet"),
    ("shard", Literal["runs", "envs"], "runs", "split the runs, or each run's envs, over all "
                                               "devices"),
    ("cpu_devices", Optional[str], None,
     "XLA devices a CPU is split into: auto (one per usable core), a count, or off; "
     "None: the DPO_JAX_CPU_DEVICES variable, else auto. A job resumes on any count"),
]
"""The job's own ``train`` flags (after ENV, --algos and --d-targets)."""


def _train_args_type(default: TrainConfig) -> type:
    """The ``train`` arguments: ENV, ``--algos`` and ``--d-targets`` (defaults: the
    preset's), ``JOB_FLAGS``, then every ``TrainConfig`` field but ``algo`` /
    ``d_target`` with ``default`` (a preset) as defaults and the field's
    documentation as help."""
    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs()
    fields: list[tuple[str, Any, Any]] = [
        ("env", Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV"),
                          _help("a registered environment (dpo-jax envs lists them)")],
         dataclasses.field()),
        ("algos", Annotated[tuple[Algo, ...], _help(
            "algorithms to compare; the policy-gradient ones share one compiled program "
            "(dpo_no_sqrt is ippo_kl under the paper's other name)")],
         dataclasses.field(default=(default.algo,))),
        ("d_targets", Annotated[tuple[float, ...], _help(
            "d_target values of the KL-penalised members (eq. 20; IPPO takes none); the "
            "default is the preset's for the env's family")],
         dataclasses.field(default=(default.d_target,))),
    ]
    fields += [(name, Annotated[kind, _help(text)], dataclasses.field(default=value))
               for name, kind, value, text in JOB_FLAGS]
    fields += [(f.name, Annotated[hints[f.name], _help(docs.get(f.name, "").replace("``", ""))],
                dataclasses.field(default=getattr(default, f.name)))
               for f in dataclasses.fields(TrainConfig) if f.name not in JOB_FIELDS]
    kind = dataclasses.make_dataclass("TrainArgs", fields, frozen=True)
    kind.__doc__ = ("Train one job: policy-gradient members x d_targets x seeds as one "
                    "compiled program (then IQL / IDDPG, each its own), with checkpoints "
                    "and logs.")
    return kind


def parse_train(argv: Sequence[str]) -> Any:
    """The parsed ``train`` arguments; the preset and the env's family set the
    defaults (shown in ``--help``) before tyro parses."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("env", nargs="?")
    pre.add_argument("--preset", default="paper")
    known, _ = pre.parse_known_args(list(argv))
    if known.preset not in PRESETS:
        raise UsageError(f"--preset {known.preset!r}: expected one of {PRESETS}")
    kind = _train_args_type(preset(known.preset, known.env or ""))
    return tyro.cli(kind, args=list(argv), prog="dpo-jax train")


def sweep_argument(args: Any) -> Any:
    """The sweep of ``--sweep`` (a grid) or ``--sweep-file`` (a JSON grid or list of
    points), or ``None``; ``UsageError`` naming the flag when it does not parse."""
    import json

    from dpo_jax.running import sweeps

    if args.sweep and args.sweep_file is not None:
        raise UsageError("--sweep and --sweep-file: give the sweep one way")
    if args.sweep_file is not None:
        try:
            data = json.loads(pathlib.Path(args.sweep_file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UsageError(f"--sweep-file {str(args.sweep_file)!r}: {err}") from None
        if not isinstance(data, (dict, list)):
            raise UsageError(f"--sweep-file {str(args.sweep_file)!r}: expected a JSON "
                             f"object (a grid) or a list of points")
        return data
    if not args.sweep:
        return None
    try:
        return sweeps.parse_cli(args.sweep)
    except ValueError as err:
        raise UsageError(str(err)) from None


def train_config(args: Any) -> TrainConfig:
    """The ``TrainConfig`` the parsed flags give (``algo`` / ``d_target``: the first
    entry; the job sweeps the rest)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name not in JOB_FIELDS}
    return TrainConfig(algo=args.algos[0], d_target=args.d_targets[0], **values)


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
    normalization: Literal["auto", "reference", "random", "none"] = "auto"
    """per task, by fixed references only: reference (random policy 0, reference score 1:
    the optimum where known, else --reference), random (return minus the random
    policy's), none (raw); auto: reference where every task has one, else random"""
    reference: tuple[str, ...] = ()
    """reference scores as TASK=SCORE (TASK: an env name or a folder name), the 1 of
    --normalization reference; the stochastic games' optimum J* is known already"""
    baseline: str = "ippo"
    """P(X > baseline) for every other algorithm"""
    reps: int = 10_000
    """bootstrap resamples"""


def train(args: Any, argv: Sequence[str] = ()) -> int:
    """``dpo-jax train``: ``dpo_jax.train`` with the job's folder; ``argv`` (the
    command line) is recorded in ``summary.json``. Returns the exit status."""
    import shlex

    from dpo_jax import runtime
    from dpo_jax.parallel import distributed
    from dpo_jax.running import sweeps

    for flag, value in (("--seeds", args.seeds), ("--checkpoint-every", args.checkpoint_every),
                        ("--stop-after", args.stop_after)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: expected an int >= 1")
    if not args.algos:
        raise UsageError("--algos: name at least one algorithm")
    if not args.d_targets:
        raise UsageError("--d-targets: give at least one value")
    if args.shard == "envs" and any(a in ("iql", "iddpg") for a in args.algos):
        raise UsageError("--shard envs splits policy-gradient runs only; IQL / IDDPG "
                         "need --shard runs (or train them in another job)")
    if any(a == "--out=" or (a == "--out" and i + 1 < len(argv) and argv[i + 1] == "")
           for i, a in enumerate(argv)):
        raise UsageError("--out '': name a job folder (the current directory is not one)")
    cfg = train_config(args)
    sweep = sweep_argument(args)
    d_targets = args.d_targets
    if sweep and "d_target" in sweeps.swept_fields(sweeps.points(sweep)):
        if any(a == "--d-targets" or a.startswith("--d-targets=") for a in argv):
            raise UsageError("--d-targets and a d_target sweep: give the values in one place")
        d_targets = ()  # the sweep's
    env_kwargs = {**preset_env_kwargs(args.preset, args.env), **parse_env_args(args.env_arg)}
    try:
        runtime.parse_cpu_devices(args.cpu_devices, "--cpu-devices")
    except ValueError as err:
        raise UsageError(str(err)) from None
    distributed.initialize_from_environment()
    runtime.configure(cpu_devices=args.cpu_devices)
    runtime.check_backend()
    from dpo_jax.running import jobs
    from dpo_jax.running.loggers import check_extras

    try:
        check_extras(args.log)
    except ImportError as err:
        raise UsageError(f"--log: {err}") from None
    out = args.out or pathlib.Path("runs") / args.env
    jobs.train(cfg, args.env, algos=args.algos, d_targets=d_targets,
               seeds=args.seeds, seed=args.seed, sweep=sweep, env_kwargs=env_kwargs,
               progress=args.progress or False, out=out,
               checkpoint_every=args.checkpoint_every, resume=args.resume,
               stop_after=args.stop_after, log=args.log, shard=args.shard,
               report=lambda text: print(text, flush=True),
               command="dpo-jax " + shlex.join(["train", *argv]))
    print(f"\nwrote {out}/ (spec.json, summary.json, metrics.jsonl/.csv, checkpoints/, "
          f"learning_curve.png)")
    return 0


def evaluate_command(args: EvalArgs, argv: Sequence[str] = ()) -> int:
    """``dpo-jax eval``: load, run episodes, print and save ``eval.json`` (with the
    command line ``argv``)."""
    import jax

    import shlex

    from dpo_jax.running import evaluate
    from dpo_jax.running.jobs import provenance
    from dpo_jax.running.loggers import run_name
    from dpo_jax.running.results import mean_ci95, save_json
    from dpo_jax.running.runspec import entry_runs

    if args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes}: expected an int >= 1")
    names = evaluate.saved_programs(args.out)
    if not names:
        raise UsageError(f"{str(args.out)!r} holds no checkpoint to evaluate")
    mode = "stochastic" if args.stochastic else "greedy"
    result: dict[str, Any] = {**provenance("dpo-jax " + shlex.join(["eval", *argv])), "mode": mode,
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
        exact = evaluate.exact_metrics(pol)  # the game's J/J* of each stochastic policy
        for r, lab in enumerate(pol.program.labels):
            result["runs"].append({**lab, **{k: float(v[r].mean())
                                             for k, v in scores.items()},
                                   **{k: float(v[r]) for k, v in exact.items()}})
        groups = entry_runs(pol.spec, pol.program.labels)
        for name, rows in groups.items():
            per_run = scores["episode_return"][rows].mean(axis=1)
            mean, ci = mean_ci95(per_run)
            entry = {"return_mean": float(mean), "return_ci95": float(ci)}
            line = f"  {name:<16} return {float(mean):9.3f} +- {float(ci):.3f}"
            if "optimality_ratio" in exact:
                rmean, rci = mean_ci95(exact["optimality_ratio"][rows])
                entry.update(optimality_ratio=float(rmean), optimality_ratio_ci95=float(rci))
                line = (f"  {name:<16} J/J* {float(rmean):.3f} +- {float(rci):.3f} (exact, the "
                        f"stochastic policy)  return {float(mean):9.3f} +- {float(ci):.3f}")
            if "won" in scores:
                win = scores["won"][rows].mean(axis=1)
                wmean, wci = mean_ci95(win)
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
    path = save_json(args.out / "eval.json", result)
    print(f"wrote {path}")
    return 0


def load_scores(out: pathlib.Path, metric: str, last_fraction: float
                ) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """A train folder's task name, ``{entry: per-run final scores}`` and curves."""
    from dpo_jax.running.loggers import read_jsonl
    from dpo_jax.running.runspec import RunSpec, entry_runs
    from dpo_jax.running.stats import final_scores

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
    import shlex

    from dpo_jax.running import stats
    from dpo_jax.running.jobs import provenance, recorded_random_return
    from dpo_jax.running.plots import plot_curves
    from dpo_jax.running.results import save_json
    from dpo_jax.running.runspec import RunSpec
    from dpo_jax.running.scripts import prepare_out_dir

    if not args.outs:
        raise UsageError("give at least one output folder of `dpo-jax train`")
    if args.normalization not in stats.NORMALIZATIONS + ("auto",):
        raise UsageError(f"--normalization {args.normalization!r}: expected auto or one of "
                         f"{stats.NORMALIZATIONS}")
    named = parse_references(args.reference)
    raw: dict[str, dict[str, np.ndarray]] = {}
    random: dict[str, float] = {}
    reference: dict[str, float] = {}
    loaded = []
    for out in args.outs:  # every folder read before anything is written
        task, scores, curves = load_scores(out, args.metric, args.last_fraction)
        if any(task in by_task for by_task in raw.values()):
            task = f"{task} ({out.name})"
        if args.metric == "episode_return":  # also of a job killed before its summary
            random[task], _ = recorded_random_return(out, RunSpec.load(out))
        ref = task_reference(out, args.metric, named)
        if ref is not None:
            reference[task] = ref
        for name, values in scores.items():
            raw.setdefault(name, {})[task] = values
        loaded.append((out, task, curves))
    tasks = sorted(next(iter(raw.values())))
    how = args.normalization
    if how == "auto":
        how = ("reference" if all(t in random and t in reference for t in tasks) else
               "random" if all(t in random for t in tasks) else "none")
    try:
        normalised = stats.normalize(raw, how, random, reference)
    except ValueError as err:
        raise UsageError(f"--normalization {how}: {err}") from None
    to = prepare_out_dir(args.to or args.outs[0] / "stats")
    for out, task, curves in loaded:
        hlines = {"random policy": random[task]} if task in random else {}
        if task in reference:
            hlines["reference"] = reference[task]
        plot_curves(curves, title=task, ylabel=args.metric, hlines=hlines or None,
                    path=to / f"curves_{out.name}.png")
    aggregates = stats.aggregate(normalised, reps=args.reps)
    if how != "reference":  # the gap to a score of 1 means something only when 1 is a reference
        aggregates = {a: {m: v for m, v in agg.items() if m != "Optimality Gap"}
                      for a, agg in aggregates.items()}
    profile = stats.performance_profile(normalised, reps=min(args.reps, 2_000))
    pairs = stats.default_pairs(list(normalised), args.baseline)
    probabilities = stats.improvement(normalised, pairs, reps=min(args.reps, 2_000))
    label = {"none": args.metric.replace("_", " "),
             "random": f"{args.metric.replace('_', ' ')} above the random policy's",
             "reference": "score (random policy 0, reference 1)"}[how]
    few = stats.too_few_runs(normalised)
    refs = "; ".join(f"{t}: random {random[t]:.4g}" + (f", reference {reference[t]:.4g}"
                                                       if how == "reference" else "")
                     for t in tasks if t in random and how != "none")
    note = " ".join(x for x in (few and f"Note: {few}.", refs and f"References: {refs}.")
                    if x)
    files = stats.plot(to, aggregates, profile, probabilities, xlabel=label, note=note or None)
    print(f"{len(tasks)} task(s), normalisation {how}"
          + ("" if few else f", 95% stratified bootstrap CIs ({args.reps} resamples)"))
    if refs:
        print(f"  references: {refs}")
    if few:
        print(f"  note: {few}")

    def interval(lo: float, hi: float) -> str:
        return f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else ""

    for algo, values in aggregates.items():
        runs = normalised[algo].shape[0]
        print(f"  {algo:<16} ({runs} runs/task) " + "  ".join(
            f"{m} {p:.3f} {interval(lo, hi)}".rstrip() for m, (p, lo, hi) in values.items()))
    for pair, (p, lo, hi) in probabilities.items():
        x, y = pair.split(",")
        print(f"  P({x} > {y}) = {p:.3f} {interval(lo, hi)}".rstrip())
    save_json(to / "stats.json", {
        **provenance("dpo-jax " + shlex.join(["plot", *argv])),
        "tasks": tasks, "metric": args.metric, "last_fraction": args.last_fraction,
        "normalization": how, "random": random, "reference": reference,
        "note": few, "min_runs_for_intervals": stats.MIN_RUNS, "reps": args.reps,
        "raw_scores": {a: {t: v.tolist() for t, v in by.items()} for a, by in raw.items()},
        "aggregates": aggregates, "performance_profile": profile,
        "probability_of_improvement": probabilities})
    print(f"wrote {to}/ (stats.json, " + ", ".join(f.name for f in files) + ", curves)")
    return 0


def parse_references(items: Sequence[str]) -> dict[str, float]:
    """``TASK=SCORE`` strings to ``{task: score}``."""
    found = {}
    for item in items:
        key, sep, text = item.rpartition("=")
        try:
            found[key] = float(text)
        except ValueError:
            key = ""
        if not sep or not key:
            raise UsageError(f"--reference {item!r}: expected TASK=SCORE, e.g. "
                             f"mpe_line=-10")
    return found


def task_reference(out: pathlib.Path, metric: str, named: dict[str, float]
                   ) -> Optional[float]:
    """A job's reference score: one named for its env or folder, else the optimum
    of an env that knows it (the stochastic games' J*, for ``episode_return``)."""
    from dpo_jax.envs import make_env
    from dpo_jax.running.runspec import RunSpec

    spec = RunSpec.load(out)
    for key in (out.name, spec.env):
        if key in named:
            return named[key]
    if metric != "episode_return":
        return None
    optimum = getattr(make_env(spec.env, **spec.env_kwargs), "optimal_return", None)
    return float(optimum()) if callable(optimum) else None


def envs_command(argv: Sequence[str]) -> int:
    """``dpo-jax envs``: every registered env and its keyword arguments."""
    from dpo_jax.envs import registry

    if argv:
        return _fail("envs", f"takes no arguments, got {list(argv)}")
    for name in registry.list_envs():
        params = inspect.signature(registry.factory_of(name)).parameters.values()
        args = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD)
        print(f"{name:<28} {args}")
    return 0


USAGE = """usage: dpo-jax {train,eval,plot,envs} ... [--debug]

  train ENV [flags]   train a job (dpo-jax train --help lists every flag)
  eval OUT [flags]    evaluate (and render) the saved policies of a job
  plot OUT... [flags] rliable statistics and learning curves over jobs (tasks)
  envs                the registered environments and their keyword arguments
  --version           the version of dpo-jax
  --debug             (with any command) show the traceback of an error
"""


def _plain_warnings() -> None:
    """Show the library's warnings (a skipped checkpoint, padded runs) as
    ``dpo-jax: warning: ...`` lines; others keep Python's format."""
    import warnings

    default = warnings.formatwarning

    def format(message, category, filename, lineno, line=None):
        if getattr(category, "__module__", "").startswith("dpo_jax") or "dpo_jax" in filename:
            return f"dpo-jax: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = format


def _fail(command: str, message: str, status: int = 2) -> int:
    print(f"dpo-jax {command}: error: {message}", file=sys.stderr)
    return status


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dpo-jax")
    except PackageNotFoundError:
        import dpo_jax

        return dpo_jax.__version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``dpo-jax`` entry point; returns the exit status (tyro exits itself on
    a parse error or ``--help``). Errors are one line naming what is wrong;
    ``--debug`` re-raises them with their traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not debug:  # dpo-jax's own warnings as one line each, not as source excerpts
        _plain_warnings()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"dpo-jax {_version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(command, f"unknown command {command!r}: expected one of {COMMANDS}")
    try:
        if command == "envs":
            return envs_command(rest)
        if command == "train":
            return train(parse_train(rest), rest)
        if command == "eval":
            return evaluate_command(tyro.cli(EvalArgs, args=rest, prog="dpo-jax eval"), rest)
        return plot_command(tyro.cli(PlotArgs, args=rest, prog="dpo-jax plot"), rest)
    except (UsageError, FileNotFoundError, ValueError) as err:
        if debug:
            raise
        return _fail(command, str(err))
    except KeyboardInterrupt:
        return _fail(command, "interrupted", 130)
    except BrokenPipeError:  # output piped into a reader that stopped (| head)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # a fault while running: one line unless --debug
        if debug:
            raise
        from dpo_jax.training.faults import NonFiniteError

        status = 1
        if isinstance(err, NonFiniteError):
            return _fail(command, f"{err} (summary.json records the failure)", status)
        return _fail(command, f"{type(err).__name__}: {err} (--debug shows the traceback)",
                     status)


if __name__ == "__main__":
    sys.exit(main())
