"""DPO against IPPO in long job folders: Welch's test and rliable, at the end and along
the curve, with fixed references (the random policy; on the stochastic game, J*).

    python benchmarks/long_runs.py RUNS/game_paper+RUNS/game_paper_iql \
        RUNS/mpe_navigation_paper ... --log RUNS/game_paper.log+RUNS/game_paper_iql.log \
        RUNS/mpe_navigation_paper.log ... --out benchmarks/results/long_runs.json

Each argument is a ``dpo-jax train`` job folder (read with ``dpo_jax.load``), or
several joined with ``+`` (the same env, e.g. the policy-gradient members and IQL
trained as two jobs), analysed as one comparison. Per comparison:

- every entry's final score per run (mean over the last 10% of updates): J/J* on the
  stochastic game (exact, of the policy-gradient members' stochastic policies), the
  episode return elsewhere; mean and 95% t-interval. IQL's agents are recurrent, so
  no exact J exists for them: the J/J* IQL logs is of a memoryless proxy (its
  Q-network from a zero hidden state and no previous action, ``iql.greedy_probs``),
  not of the policy it plays (``jobs.MEMORYLESS_PROXY``). IQL is scored by its greedy
  episodes' return / J* (a Monte Carlo estimate of its greedy policy's J/J*,
  ``greedy_return``); the proxy's J/J* is recorded beside it
  (``tail.memoryless_optimality_ratio``);
- DPO - IPPO (and each other member - IPPO; in a sweep, the IPPO entry with the same
  labels): Welch's 95% interval of the difference
  of the means and its verdict ("ahead", "behind", "level"), at the end and at
  ``--points`` evenly spaced env-step counts along IPPO's curve (each member's mean
  over the updates in a window of 5% of the env steps ending there, so that
  entries with other batch sizes compare at the same env steps);
- rliable on the final scores, normalised by fixed references only: on the game
  ``(J/J* - J_random/J*) / (1 - J_random/J*)`` (random policy 0, the optimum 1;
  ``J_random`` the uniform policy's exact J, :func:`game_reference`),
  elsewhere the return minus the random policy's; IQM with its 95% stratified-
  bootstrap interval per entry and P(member > IPPO);
- each of DPO's ablations (``ABLATIONS``: DPO w/o sqrt, i.e. IPPO-KL, and DPO w/o kl)
  - DPO, as DPO - IPPO (``versus_dpo``): the paper's Fig. 5 and 8 show them behind DPO.

Also recorded per folder: its command, status and number of sittings (the program
header lines, ``pg:`` / ``iql:`` / ``iddpg:``, in its log, ``--log``); per comparison
the env steps per run as a fraction of ``REFERENCE_STEPS``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any, Optional

import numpy as np
from scipy import stats as scipy_stats

WINDOW = 0.05
"""The width of the window along the curve, as a fraction of the env steps."""

REFERENCE_STEPS = 10_000_000
REFERENCE_SOURCE = ("the paper states no budgets; the authors' code trains "
                    "num_env_steps = 10e6 per run unless told otherwise "
                    "(onpolicy/config.py), and records none for these tasks")
"""The budget the env steps are a fraction of."""

PROGRAMS = ("pg: ", "iql: ", "iddpg: ")

TAIL_METRICS = ("entropy", "kl", "beta_kl", "beta_sqrt", "episode_return", "greedy_return",
                "epsilon")
"""Also recorded per entry where logged: the mean over runs of each run's mean over
the last 10% of updates (policy entropy, KL per update, the betas, returns, IQL's epsilon)."""


def welch(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Welch's 95% interval of mean(a) - mean(b) and its verdict."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if min(len(a), len(b)) < 2:
        nan = float("nan")
        return {"diff": float(a.mean() - b.mean()), "low": nan, "high": nan,
                "verdict": "too few runs"}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    diff = float(a.mean() - b.mean())
    if se == 0:
        half = 0.0
    else:
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(scipy_stats.t.ppf(0.975, dof) * se)
    verdict = "level" if abs(diff) <= half else ("ahead" if diff > 0 else "behind")
    return {"diff": diff, "low": diff - half, "high": diff + half, "verdict": verdict}


def sittings(log: Optional[pathlib.Path]) -> Optional[int]:
    """How many times the job was started: the header lines of its first program
    (``pg:``, ``iql:`` or ``iddpg:``) in its log."""
    if log is None or not log.exists():
        return None
    heads = [line.split()[0] for line in log.read_text().splitlines()
             if line.startswith(PROGRAMS)]
    return heads.count(heads[0]) if heads else 0


def same_labels(entry: str, algo: str) -> str:
    """``algo``'s entry with ``entry``'s sweep labels (``("dpo entropy_coef=0",
    "ippo")`` -> ``"ippo entropy_coef=0"``; ``("dpo", "ippo")`` -> ``"ippo"``)."""
    _, _, labels = entry.partition(" ")
    return f"{algo} {labels}" if labels else algo


def ippo_of(entry: str) -> str:
    """The IPPO entry an entry is compared with: the one with the same sweep labels."""
    return same_labels(entry, "ippo")


ABLATIONS = ("dpo_no_sqrt", "ippo_kl", "dpo_no_kl")
"""DPO's ablations (Fig. 5 and 8 of the paper: DPO without one of its two penalties;
``ippo_kl`` is DPO w/o sqrt), each also compared with DPO."""


def dpo_of(entry: str) -> Optional[str]:
    """The DPO entry an ablation is compared with (the same sweep labels), or None
    for an entry that is not one of :data:`ABLATIONS`."""
    return same_labels(entry, "dpo") if entry.partition(" ")[0] in ABLATIONS else None


def compare(member: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray],
            member_final: list[float], ref_final: list[float], points: int
            ) -> dict[str, Any]:
    """Welch's 95% interval of member - ref at the end (the final scores) and at
    ``points`` evenly spaced env-step counts along ref's curve (window means)."""
    member_steps, values = member
    steps, ref_values = ref
    width = WINDOW * float(steps[-1])
    along = []
    for stop in np.linspace(width, float(steps[-1]), points):
        a = window_means(member_steps, values, stop, width)
        b = window_means(steps, ref_values, stop, width)
        along.append({"env_steps": int(round(stop)), **welch(a, b)})
    return {"end": welch(member_final, ref_final), "along": along}


def window_means(steps: np.ndarray, values: np.ndarray, stop: float, width: float
                 ) -> np.ndarray:
    """Each run's mean of ``values [runs, updates]`` over the updates whose env steps
    lie in ``(stop - width, stop]`` (at least the update nearest ``stop``)."""
    inside = (steps > stop - width) & (steps <= stop)
    if not inside.any():
        inside = np.arange(len(steps)) == int(np.argmin(np.abs(steps - stop)))
    return np.nanmean(values[:, inside], axis=1)


def game_reference(env: Any) -> dict[str, float]:
    """J* and the uniformly random policy's exact J/J* on a stochastic game (the same
    for every job on the game, also on its never-reset form, whose ``random_return``
    is a Monte Carlo mean of window returns)."""
    optimum = float(env.optimal_return())
    return {"j_star": optimum, "random_ratio": env.uniform_return() / optimum}


def analyse(outs: list[pathlib.Path], points: int, reps: int,
            logs: list[Optional[pathlib.Path]]) -> dict[str, Any]:
    """One comparison of the entries of ``outs`` (job folders of one env)."""
    import dpo_jax
    from dpo_jax.running import stats
    from dpo_jax.running.jobs import MEMORYLESS_PROXY
    from dpo_jax.running.results import mean_ci95

    loaded = [dpo_jax.load(out) for out in outs]
    res = loaded[0]
    for other, out in zip(loaded[1:], outs[1:]):
        if (other.spec.env, dict(other.spec.env_kwargs)) != (res.spec.env,
                                                              dict(res.spec.env_kwargs)):
            raise SystemExit(f"{out}: another env ({other.spec.env} "
                             f"{dict(other.spec.env_kwargs)}) than {outs[0]}")
    game = any("optimality_ratio" in m for r in loaded for m in r.metrics.values())
    metric = "optimality_ratio" if game else "episode_return"
    random = res.random_return
    reference = None
    if game:  # the random policy's J/J*, exact, from the env's tables
        reference = game_reference(res.env)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scored: dict[str, str] = {}
    memoryless: dict[str, float] = {}
    for r, out in zip(loaded, outs):
        found = r.optimality_curves() if game else r.curves(metric)
        logged = r.curves(metric)  # on the game: IQL's memoryless proxy
        for name, (program, _) in r.entries().items():
            if not game or program not in MEMORYLESS_PROXY:
                continue
            if name not in found:
                raise SystemExit(f"{out}: {program} entry {name!r} logs no greedy_return "
                                 "(greedy_eval off): no score of its recurrent policy")
            proxy = logged.get(name)
            if proxy is not None:
                memoryless[name] = float(stats.final_scores(proxy[1]).mean())
            scored[name] = "greedy episodes' return / J* (Monte Carlo)"
        for name, curve in found.items():
            if name in curves:
                raise SystemExit(f"{out}: entry {name!r} is in two of the folders")
            curves[name] = curve
            scored.setdefault(name, "exact J/J*" if game else "episode return")
    tails: dict[str, dict[str, float]] = {}
    for r in loaded:  # what the policies do at the end: the means over the last 10%
        for key in TAIL_METRICS:
            try:
                found = r.curves(key)
            except (KeyError, ValueError):
                continue
            for name, (_, values) in found.items():
                try:
                    final = stats.final_scores(values)
                except ValueError:  # IPPO's betas are NaN: not used
                    continue
                tails.setdefault(name, {})[key] = float(final.mean())
    entries: dict[str, Any] = {}
    for name, (steps, values) in curves.items():
        final = stats.final_scores(values)
        mean, half = mean_ci95(final)  # one run: no interval (NaN, not mean_ci95's 0)
        tail = {**tails.get(name, {}), **({"memoryless_optimality_ratio": memoryless[name]}
                                          if name in memoryless else {})}
        entries[name] = {"final": final.tolist(), "mean": float(mean),
                         "ci95": float(half) if len(final) > 1 else float("nan"),
                         "runs": int(values.shape[0]), "env_steps": int(steps[-1]),
                         "score": scored[name], "tail": tail}
    versus: dict[str, dict[str, Any]] = {"ippo": {}, "dpo": {}}
    for name in curves:
        for against, ref in (("ippo", ippo_of(name)), ("dpo", dpo_of(name))):
            if ref is None or name == ref or ref not in curves:
                continue
            versus[against][name] = {"against": ref, **compare(
                curves[name], curves[ref], entries[name]["final"], entries[ref]["final"],
                points)}
    task = res.spec.env
    raw = {name: {task: np.asarray(e["final"])} for name, e in entries.items()}
    if game:
        shift = reference["random_ratio"]
        normalised = {name: (v[task] - shift)[:, None] / (1 - shift) for name, v in raw.items()}
        how = "(J/J* - J_random/J*) / (1 - J_random/J*)"
    else:
        normalised = stats.normalize(raw, "random", {task: random})
        how = "return - random policy's return"
    iqm = stats.aggregate(normalised, reps=reps)
    pairs = [(name, name_ref) for name in normalised
             for name_ref in [ippo_of(name)] if name != name_ref and name_ref in normalised]
    improvement = stats.improvement(normalised, pairs, reps=reps) if pairs else {}
    env_steps = max(e["env_steps"] for e in entries.values())
    folders = []
    for r, out, log in zip(loaded, outs, logs):
        path = out / "summary.json"  # none while a job runs, or after it was killed
        summary = json.loads(path.read_text()) if path.exists() else {}
        folders.append({"folder": out.name, "command": summary.get("command"),
                        "machine": summary.get("machine"), "status": r.status,
                        "sittings": sittings(log)})
    return {
        "name": "+".join(out.name for out in outs), "env": task,
        "env_kwargs": dict(res.spec.env_kwargs), "metric": metric, "folders": folders,
        "random_return": random, "reference": reference, "env_steps": env_steps,
        "reference_steps": REFERENCE_STEPS, "fraction": env_steps / REFERENCE_STEPS,
        "entries": entries, "versus_ippo": versus["ippo"], "versus_dpo": versus["dpo"],
        "rliable": {"normalisation": how,
                    "iqm": {k: v["IQM"] for k, v in iqm.items()},
                    "probability_of_improvement": improvement}}


ARCHIVE_FILES = ("spec.json", "summary.json", "learning_curve.png")


ARCHIVE_MAX_UPDATES = 1000
"""The archived ``metrics.csv.gz`` keeps at most about this many updates per run."""


def thinned(lines: list[str], most: int = ARCHIVE_MAX_UPDATES) -> tuple[list[str], int]:
    """A ``metrics.csv``'s lines (header first, line ends kept) with every ``stride``-th update's rows
    (updates ``stride - 1, 2 * stride - 1, ...`` and the last), ``stride`` the
    smallest that keeps at most ``most`` updates (1: every row); and ``stride``."""
    import csv

    if len(lines) < 2:
        return lines, 1
    column = next(csv.reader(lines[:1])).index("update")
    updates = [int(row[column]) for row in csv.reader(lines[1:])]
    last = max(updates)
    stride = -(-(last + 1) // most)
    keep = [lines[0]] + [line for line, u in zip(lines[1:], updates)
                         if u % stride == stride - 1 or u == last]
    return keep, stride


def archive(folder: pathlib.Path, log: Optional[pathlib.Path], target: pathlib.Path,
            most: int = ARCHIVE_MAX_UPDATES) -> dict[str, int]:
    """Copy a job's description, summary, learning curve, log and metrics (CSV,
    gzipped, byte-stable, :func:`thinned` to at most ``most`` updates per run) into
    ``target``; the checkpoints stay behind. Returns each metrics file's stride of
    archived updates (1: all of them; a job of several programs has one file per
    program, each with its own number of updates)."""
    import gzip
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVE_FILES:
        if (folder / name).exists():
            shutil.copyfile(folder / name, target / name)
    if log is not None and log.exists():
        shutil.copyfile(log, target / "train.log")
    strides = {}
    for csv in sorted(folder.glob("metrics*.csv")):
        with csv.open(newline="") as f:  # lines with their own ends
            lines, strides[csv.name] = thinned(f.readlines(), most)
        with gzip.GzipFile(target / f"{csv.name}.gz", "wb", mtime=0) as f:
            f.write("".join(lines).encode())
    return strides


def joined(out: str, log: Optional[str]) -> tuple[list[pathlib.Path],
                                                  list[Optional[pathlib.Path]]]:
    """The folders of a ``+``-joined argument and their logs (``None`` where not given)."""
    folders = [pathlib.Path(x) for x in out.split("+")]
    logs: list[Optional[pathlib.Path]] = [pathlib.Path(x) for x in log.split("+")] if log else []
    return folders, logs + [None] * (len(folders) - len(logs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("outs", nargs="+", help="job folders, several of one env joined by +")
    p.add_argument("--log", nargs="*", default=[],
                   help="each job's log (same order and + joins), to count its sittings")
    p.add_argument("--points", type=int, default=10, help="places along the curve")
    p.add_argument("--reps", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--archive", type=pathlib.Path, default=None,
                   help="also copy each job's small files into ARCHIVE/<folder>/ "
                        "(ARCHIVE_FILES, the log, metrics.csv gzipped, at most "
                        "ARCHIVE_MAX_UPDATES updates per run; no checkpoints)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(
        "benchmarks/results/long_runs.json"))
    args = p.parse_args()
    logs = list(args.log) + [None] * (len(args.outs) - len(args.log))
    jobs = []
    for out, log in zip(args.outs, logs):
        folders, log_files = joined(out, log)
        jobs.append(analyse(folders, args.points, args.reps, log_files))
    for job in jobs:
        status = ", ".join(f"{f['folder']}: {f['status']}, {f['sittings']} sittings"
                           for f in job["folders"])
        print(f"\n{job['env']} ({job['metric']}; {status}; {job['env_steps']:,} steps per "
              f"run = {job['fraction']:.0%} of {REFERENCE_STEPS:,})")
        for name, e in job["entries"].items():
            print(f"  {name:<14} {e['mean']:9.3f} +- {e['ci95']:.3f}  ({e['runs']} runs, "
                  f"{e['env_steps']:,} steps)")
        for name, v in [*job["versus_ippo"].items(), *job["versus_dpo"].items()]:
            end = v["end"]
            print(f"  {name} - {v['against']} at the end: {end['diff']:+.3f} [{end['low']:+.3f}, "
                  f"{end['high']:+.3f}] {end['verdict']}; along the curve: "
                  + " ".join(a["verdict"][0] for a in v["along"]))
    if args.archive is not None:
        for job, out, log in zip(jobs, args.outs, logs):
            for record, folder, log_file in zip(job["folders"], *joined(out, log)):
                record["archived_every"] = archive(folder, log_file,
                                                   args.archive / folder.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/long_runs.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"), "reference_steps": REFERENCE_STEPS,
        "reference_source": REFERENCE_SOURCE, "jobs": jobs}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
