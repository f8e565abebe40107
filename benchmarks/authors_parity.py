"""The authors' PyTorch code and dpo-jax side by side: DPO and IPPO, pooled and
per-agent samples, on their matrix game and on MPE navigation (5 agents).

    python benchmarks/authors_parity.py --authors-tree T --authors-python P
    python benchmarks/authors_parity.py --authors-tree T --authors-results DIR --parts ours report

``T`` is their ``on-policy-main`` folder (github PKU-RL/DPO, extracted in a temporary
folder; nothing of it is part of dpo-jax) and ``P`` the Python of an environment
with their dependencies (torch, gym 0.17.2, setproctitle, tensorboardX, seaborn).

- ``authors``: their code, unmodified, one process per run (``authors_worker.py``:
  anomaly detection off from outside; ``--sampling per_agent`` gives their buffer a
  permutation of time steps only; exact J/J* or the MPE episode returns logged after
  every update), at the lowest CPU priority. Runs already in ``--authors-results``
  are kept.
- ``ours``: dpo-jax's ``authors`` preset (``dpo_jax.preset("authors", ...)``: their
  code's defaults, one env, pooled samples) and the same with
  ``sampling="per_agent"``, on their game file (``stochastic_game_authors``, their
  never-reset training env) and ``mpe_navigation`` (their MPE: no vision mask, the
  silent communication in the observation, their integrator; all from
  ``preset_env_kwargs``); all seeds and both algorithms of a sampling mode in one
  program.
- ``pooling``: dpo-jax alone, the ``authors`` preset with pooled and with per-agent
  samples, DPO and IPPO, on the three MPE tasks (``mpe_navigation``, ``mpe_line``,
  ``mpe_circle``, 5 agents, with the preset's env arguments), ``--seeds`` seeds, ``--pooling-steps`` steps: does
  pooling change DPO vs IPPO? Writes ``pooling.json``.
- ``null``: the ``ours`` part again with other seeds (``--null-seed``), written to
  ``dpo_jax_null_runs.json``: dpo-jax against itself calibrates the agreement test
  (how many logged points two seed sets of the same code disagree at).
- ``report``: at every logged point (a tenth of the budget; MPE: each run's mean
  return over that tenth), the mean over seeds with its 95% t-interval for each
  code, algorithm and sampling mode, and whether dpo-jax and their code agree there
  (Welch: the difference lies within its 95% interval), and, with the ``null``
  runs, whether dpo-jax's two seed sets agree there. Writes ``parity.json``, the
  figure ``parity.png`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("game", "mpe")
ALGOS = ("dpo", "ippo")
SAMPLINGS = ("pooled", "per_agent")
METRIC = {"game": "optimality_ratio", "mpe": "episode_return"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors-tree", required=True)
    p.add_argument("--authors-python", default=None)
    p.add_argument("--authors-results", default=None,
                   help="folder of their runs' JSON (written there by the authors part)")
    p.add_argument("--parts", nargs="+", default=["authors", "ours", "null", "report",
                                                  "pooling"],
                   choices=["authors", "ours", "null", "report", "pooling"])
    p.add_argument("--null-seed", type=int, default=1000,
                   help="seed base of the null part's dpo-jax runs (ours: 0)")
    p.add_argument("--pooling-steps", type=int, default=50_000)
    p.add_argument("--samplings", nargs="+", default=list(SAMPLINGS), choices=SAMPLINGS,
                   help="sampling modes of the authors and report parts")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--game-steps", type=int, default=30_000)
    p.add_argument("--mpe-steps", type=int, default=25_000)
    p.add_argument("--points", type=int, default=10, help="logged points per curve")
    p.add_argument("--out", default="benchmarks/results/authors_parity")
    return p.parse_args()


def steps_of(args: argparse.Namespace, task: str) -> int:
    return args.game_steps if task == "game" else args.mpe_steps


def run_authors(args: argparse.Namespace, folder: pathlib.Path) -> None:
    """Their runs, one process at a time at the lowest priority (kept if present)."""
    worker = ROOT / "benchmarks" / "authors_worker.py"
    for task in args.tasks:
        for seed in range(1, args.seeds + 1):
            for sampling in args.samplings:
                for algo in ALGOS:
                    out = folder / f"{task}_{algo}_{sampling}_s{seed}.json"
                    if out.exists():
                        continue
                    cmd = ["nice", "-n", "19", args.authors_python, str(worker),
                           "--authors-tree", args.authors_tree, "--task", task,
                           "--algo", algo, "--sampling", sampling, "--seed", str(seed),
                           "--steps", str(steps_of(args, task)), "--out", str(out)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise SystemExit(f"their run failed: {' '.join(cmd)}\n"
                                         f"{proc.stderr[-3000:]}")
                    print(f"authors {out.name}: {json.loads(out.read_text())['wall_s']:.0f} s",
                          flush=True)


def authors_curves(folder: pathlib.Path, task: str, algo: str, sampling: str) -> dict:
    """Their runs of one entry: ``steps [U]``, ``values [seeds, U]``, speed."""
    runs = sorted(folder.glob(f"{task}_{algo}_{sampling}_s*.json"))
    if not runs:
        raise SystemExit(f"no runs of {task} {algo} {sampling} in {folder}")
    data = [json.loads(p.read_text()) for p in runs]
    metric = METRIC[task]
    length = min(len(d["curve"]) for d in data)
    values = np.array([[np.nan if row[metric] is None else row[metric]
                        for row in d["curve"][:length]] for d in data], np.float64)
    steps = np.array([row["env_steps"] for row in data[0]["curve"][:length]])
    return {"steps": steps, "values": values,
            "env_steps_per_cpu_s": [d["env_steps_per_cpu_s"] for d in data],
            "env_steps_per_s": [d["env_steps_per_s"] for d in data]}


def run_ours(args: argparse.Namespace, seed: int = 0) -> dict:
    """dpo-jax's authors preset, pooled and per-agent, both algorithms x seeds as one
    program per sampling mode (``seed``: the seed base)."""
    import dpo_jax
    from dpo_jax.config import preset_env_kwargs
    from dpo_jax.running import scripts

    scripts.setup()
    found: dict[str, Any] = {}
    for task in args.tasks:
        if task == "game":
            path = str(pathlib.Path(args.authors_tree) / "a_mat_model" /
                       "random_matrix_game_3.pkl")
            env_name, env_kwargs, family = "stochastic_game_authors", {"path": path}, \
                "stochastic_game"
        else:
            env_name, env_kwargs, family = "mpe_navigation", {"num_agents": 5}, "mpe"
        env_kwargs.update(preset_env_kwargs("authors", env_name))
        for sampling in SAMPLINGS:
            cfg = dpo_jax.preset("authors", family, sampling=sampling,
                                 total_timesteps=steps_of(args, task))
            res = dpo_jax.train(cfg, env_name, env_kwargs=env_kwargs, algos=ALGOS,
                                seeds=args.seeds, seed=seed, progress=False)
            out = res.outputs["pg"]
            for algo, (steps, values) in res.curves(METRIC[task]).items():
                found[f"{task}/{algo}/{sampling}"] = {
                    "steps": steps.tolist(), "values": values.tolist(),
                    "compile_s": out.compile_s, "train_s": out.run_s,
                    "env_steps_per_s_all_runs": out.env_steps_per_s,
                    "devices": len(out.result.metrics["finite"].sharding.device_set)
                    if hasattr(out.result.metrics["finite"], "sharding") else 1}
            print(f"ours {task} {sampling}: " + ", ".join(
                f"{a} {np.mean(np.asarray(v)[:, -max(1, len(s) // 10):]):.3f}"
                for a, (s, v) in res.curves(METRIC[task]).items())
                + f" ({out.run_s:.0f} s)", flush=True)
    return found


def run_pooling(args: argparse.Namespace) -> dict:
    """DPO vs IPPO, pooled vs per-agent samples, on the three MPE tasks (dpo-jax)."""
    import dpo_jax
    from dpo_jax.config import preset_env_kwargs
    from dpo_jax.running import scripts
    from dpo_jax.running.results import summarize_final

    scripts.setup()
    found: dict[str, Any] = {}
    for task in ("mpe_navigation", "mpe_line", "mpe_circle"):
        for sampling in SAMPLINGS:
            cfg = dpo_jax.preset("authors", task, sampling=sampling,
                                 total_timesteps=args.pooling_steps)
            env_kwargs = {"num_agents": 5, **preset_env_kwargs("authors", task)}
            res = dpo_jax.train(cfg, task, env_kwargs=env_kwargs, algos=ALGOS,
                                seeds=args.seeds, progress=False)
            for algo, (_, values) in res.curves().items():
                mean, ci = summarize_final(values)
                found[f"{task}/{algo}/{sampling}"] = {
                    "final_return": mean, "ci95": ci, "runs": int(values.shape[0]),
                    "random_return": res.random_return}
            print(f"pooling {task} {sampling}: " + ", ".join(
                f"{a} {found[f'{task}/{a}/{sampling}']['final_return']:.2f}" for a in ALGOS),
                flush=True)
    return found


def t95(n: int) -> float:
    from dpo_jax.running.results import t95 as quantile

    return quantile(n)


def points(steps: np.ndarray, values: np.ndarray, count: int, window: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``count`` logged points: each run's value at the end of each tenth (game: the
    exact J/J* there) or its mean over the tenth (MPE, noisy single episodes).
    Returns the points' env steps, means, 95% half-widths and the seed count."""
    u = values.shape[1]
    edges = np.linspace(0, u, count + 1).astype(int)
    per_run = []
    for a, b in zip(edges[:-1], edges[1:]):
        per_run.append(np.nanmean(values[:, a:b], axis=1) if window else values[:, b - 1])
    per_run = np.stack(per_run, axis=1)  # [seeds, count]
    n = per_run.shape[0]
    mean = per_run.mean(0)
    half = t95(n) * per_run.std(0, ddof=1) / math.sqrt(n)
    return steps[edges[1:] - 1], mean, half, n


def welch_agree(m1, h1, n1, m2, h2, n2) -> np.ndarray:
    """Whether two means agree at 95%: |m1 - m2| <= t * sqrt(se1^2 + se2^2)."""
    se1, se2 = h1 / t95(n1), h2 / t95(n2)
    se = np.sqrt(se1**2 + se2**2)
    dof = np.where(se > 0, se**4 / np.maximum(se1**4 / (n1 - 1) + se2**4 / (n2 - 1), 1e-300),
                   n1 + n2 - 2)
    from scipy import stats

    return np.abs(m1 - m2) <= stats.t.ppf(0.975, dof) * se


def report(args: argparse.Namespace, folder: pathlib.Path, ours: dict,
           null: dict | None = None) -> dict:
    table: dict[str, Any] = {}
    for task in args.tasks:
        for sampling in args.samplings:
            for algo in ALGOS:
                theirs = authors_curves(folder, task, algo, sampling)
                mine = ours[f"{task}/{algo}/{sampling}"]
                ts, tm, th, tn = points(theirs["steps"], theirs["values"], args.points,
                                        task == "mpe")
                os_, om, oh, on = points(np.asarray(mine["steps"]),
                                         np.asarray(mine["values"]), args.points,
                                         task == "mpe")
                agree = welch_agree(om, oh, on, tm, th, tn)
                entry = f"{task}/{algo}/{sampling}"
                null_agree = None
                if null is not None and entry in null:
                    _, nm, nh, nn = points(np.asarray(null[entry]["steps"]),
                                           np.asarray(null[entry]["values"]), args.points,
                                           task == "mpe")
                    null_agree = welch_agree(om, oh, on, nm, nh, nn).tolist()
                table[entry] = {
                    "env_steps": ts.tolist(),
                    "authors": {"mean": tm.tolist(), "ci95": th.tolist(), "runs": tn},
                    "dpo_jax": {"mean": om.tolist(), "ci95": oh.tolist(), "runs": on},
                    "agree": agree.tolist(), "agree_all": bool(agree.all()),
                    "null_agree": null_agree,
                    "authors_env_steps_per_cpu_s": float(np.mean(theirs["env_steps_per_cpu_s"])),
                    "dpo_jax_train_s": mine["train_s"],
                    "dpo_jax_env_steps_per_s_all_runs": mine["env_steps_per_s_all_runs"]}
                print(f"\n{task}, {algo}, {sampling}: agree at "
                      f"{int(agree.sum())}/{len(agree)} logged points"
                      + ("" if null_agree is None else
                         f" (dpo-jax against itself, other seeds: {sum(null_agree)})"))
                print("| env steps | authors' code | dpo-jax | agree |\n|---|---|---|---|")
                for i in range(len(ts)):
                    print(f"| {int(ts[i]):,} | {tm[i]:.3f} +- {th[i]:.3f} | "
                          f"{om[i]:.3f} +- {oh[i]:.3f} | {'yes' if agree[i] else 'NO'} |")
    return table


def figure(args: argparse.Namespace, table: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(args.tasks), len(args.samplings),
                             figsize=(5 * len(args.samplings), 3.6 * len(args.tasks)),
                             squeeze=False)
    for row, task in enumerate(args.tasks):
        for col, sampling in enumerate(args.samplings):
            ax = axes[row, col]
            for algo, color in zip(ALGOS, ("C0", "C1")):
                entry = table[f"{task}/{algo}/{sampling}"]
                x = np.asarray(entry["env_steps"])
                for code, style in (("authors", "--"), ("dpo_jax", "-")):
                    m = np.asarray(entry[code]["mean"])
                    h = np.asarray(entry[code]["ci95"])
                    label = f"{algo.upper()} ({'authors' if code == 'authors' else 'dpo-jax'})"
                    ax.plot(x, m, style, color=color, label=label)
                    ax.fill_between(x, m - h, m + h, color=color, alpha=0.12)
            ax.set_title(f"{'matrix game, J/J*' if task == 'game' else 'MPE navigation, return'}"
                         f": {sampling.replace('_', '-')} samples")
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = pathlib.Path(args.authors_results or out / "authors_runs").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if "authors" in args.parts:
        if not args.authors_python:
            raise SystemExit("--authors-python is needed to run their code")
        run_authors(args, folder)
    ours_path = out / "dpo_jax_runs.json"
    if "ours" in args.parts:
        t0 = time.perf_counter()
        ours = run_ours(args)
        ours_path.write_text(json.dumps({"wall_s": time.perf_counter() - t0, "runs": ours}))
    null_path = out / "dpo_jax_null_runs.json"
    if "null" in args.parts:
        t0 = time.perf_counter()
        null = run_ours(args, seed=args.null_seed)
        null_path.write_text(json.dumps({"wall_s": time.perf_counter() - t0,
                                         "seed": args.null_seed, "runs": null}))
    if "pooling" in args.parts:
        import jax

        t0 = time.perf_counter()
        pooling = run_pooling(args)
        (out / "pooling.json").write_text(json.dumps({
            "command": "python benchmarks/authors_parity.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
            "seeds": args.seeds, "steps": args.pooling_steps, "preset": "authors",
            "wall_s": time.perf_counter() - t0, "entries": pooling}, indent=1))
    if "report" in args.parts:
        ours = json.loads(ours_path.read_text())["runs"]
        null = json.loads(null_path.read_text())["runs"] if null_path.exists() else None
        table = report(args, folder, ours, null)
        figure(args, table, out / "parity.png")
        import jax

        (out / "parity.json").write_text(json.dumps({
            "command": "python benchmarks/authors_parity.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
            "seeds": args.seeds, "game_steps": args.game_steps, "mpe_steps": args.mpe_steps,
            "authors_runs": os.path.relpath(folder, ROOT), "entries": table}, indent=1))
        print(f"\nwrote {out}/parity.json and parity.png")


if __name__ == "__main__":
    main()
