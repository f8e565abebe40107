"""DPO against IPPO in long job folders: Welch's test and rliable, at the end and along
the curve, with fixed references (the random policy; on the stochastic game, J*).

    python benchmarks/long_runs.py RUNS/game_paper RUNS/mpe_navigation_paper ... \
        --out benchmarks/results/long_runs.json

Each folder is a ``dpo-jax train`` job (read with ``dpo_jax.load``). Per job:

- every entry's final score per run (mean over the last 10% of updates): J/J* on the
  stochastic game (exact), the episode return elsewhere; mean and 95% t-interval;
- DPO - IPPO (and each other member - IPPO): Welch's 95% interval of the difference
  of the means and its verdict ("DPO ahead", "IPPO ahead", "level"), at the end and
  at ``--points`` evenly spaced places along the curve (each the mean over a window
  of 5% of the updates around it);
- rliable on the final scores, normalised by fixed references only: on the game
  ``(J/J* - J_random/J*) / (1 - J_random/J*)`` (random policy 0, the optimum 1),
  elsewhere the return minus the random policy's; IQM with its 95% stratified-
  bootstrap interval per entry and P(member > IPPO).

Also recorded per job: its command, the env steps per run, the number of sittings
(``pg:`` header lines in the job's log, ``--log``), and the paper's budget for the
fraction.
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
"""The width of the window along the curve, as a fraction of the updates."""


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
    """How many times the job was started (``pg:`` header lines of its log)."""
    if log is None or not log.exists():
        return None
    return sum(1 for line in log.read_text().splitlines() if line.startswith("pg: "))


def analyse(out: pathlib.Path, points: int, reps: int, log: Optional[pathlib.Path]
            ) -> dict[str, Any]:
    import dpo_jax
    from dpo_jax.running import stats
    from dpo_jax.running.results import mean_ci95

    res = dpo_jax.load(out)
    summary = json.loads((out / "summary.json").read_text())
    game = any("optimality_ratio" in m for m in res.metrics.values())
    metric = "optimality_ratio" if game else "episode_return"
    curves = res.curves(metric)
    random = res.random_return
    reference = None
    if game:  # the random policy's J/J*, from the env's exact tables
        optimum = float(res.env.optimal_return())
        reference = {"j_star": optimum, "random_ratio": random / optimum}
    entries: dict[str, Any] = {}
    for name, (steps, values) in curves.items():
        final = stats.final_scores(values)
        mean, half = mean_ci95(final)  # one run: no interval (NaN, not mean_ci95's 0)
        entries[name] = {"final": final.tolist(), "mean": float(mean),
                         "ci95": float(half) if len(final) > 1 else float("nan"),
                         "runs": int(values.shape[0]), "env_steps": int(steps[-1])}
    versus: dict[str, Any] = {}
    if "ippo" in curves:
        steps, ippo = curves["ippo"]
        updates = ippo.shape[1]
        width = max(1, int(round(updates * WINDOW)))
        places = np.linspace(width, updates, points).round().astype(int)
        for name, (_, values) in curves.items():
            if name == "ippo":
                continue
            end = welch(entries[name]["final"], entries["ippo"]["final"])
            along = []
            for stop in places:
                a = np.nanmean(values[:, stop - width:stop], axis=1)
                b = np.nanmean(ippo[:, stop - width:stop], axis=1)
                along.append({"env_steps": int(steps[stop - 1]), **welch(a, b)})
            versus[name] = {"end": end, "along": along}
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
    pairs = [(name, "ippo") for name in normalised if name != "ippo" and "ippo" in normalised]
    improvement = stats.improvement(normalised, pairs, reps=reps) if pairs else {}
    return {
        "folder": out.name, "env": task, "env_kwargs": dict(res.spec.env_kwargs),
        "metric": metric, "command": summary.get("command"), "machine": summary.get("machine"),
        "status": summary.get("status"), "random_return": random, "reference": reference,
        "sittings": sittings(log), "entries": entries, "versus_ippo": versus,
        "rliable": {"normalisation": how,
                    "iqm": {k: v["IQM"] for k, v in iqm.items()},
                    "probability_of_improvement": improvement}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("outs", nargs="+", type=pathlib.Path, help="job folders")
    p.add_argument("--log", nargs="*", type=pathlib.Path, default=[],
                   help="each job's log (same order), to count its sittings")
    p.add_argument("--points", type=int, default=10, help="places along the curve")
    p.add_argument("--reps", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(
        "benchmarks/results/long_runs.json"))
    args = p.parse_args()
    logs = list(args.log) + [None] * (len(args.outs) - len(args.log))
    jobs = [analyse(out, args.points, args.reps, log) for out, log in zip(args.outs, logs)]
    for job in jobs:
        print(f"\n{job['env']} ({job['folder']}, {job['metric']}, status {job['status']}, "
              f"{job['sittings']} sittings)")
        for name, e in job["entries"].items():
            print(f"  {name:<14} {e['mean']:9.3f} +- {e['ci95']:.3f}  ({e['runs']} runs, "
                  f"{e['env_steps']:,} steps)")
        for name, v in job["versus_ippo"].items():
            end = v["end"]
            print(f"  {name} - ippo at the end: {end['diff']:+.3f} [{end['low']:+.3f}, "
                  f"{end['high']:+.3f}] {end['verdict']}; along the curve: "
                  + " ".join(a["verdict"][0] for a in v["along"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/long_runs.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"), "jobs": jobs}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
