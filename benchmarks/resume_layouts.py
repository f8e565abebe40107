"""How much a job resumed on another device layout differs from the uninterrupted one.

The acceptance job of docs/checkpoints.md: ``dpo-jax train mpe_spread --preset cpu
--total-timesteps 40000 --seeds 3 --checkpoint-every 2`` (19 updates of 3 runs; on 2
devices the run axis is padded to 4). Each case stops after ``--stop-after`` updates and
resumes with another ``--cpu-devices`` (or another ``--progress``, which must change
nothing); each is compared with the uninterrupted job on the device count it started
on: the final return (a run's mean over its last 10% of updates; mean and 95% CI over
the 3 runs, as ``summary.json``), whether it lies within the reference's CI, the first
update whose logged return differs, and the largest relative difference.

    python benchmarks/resume_layouts.py            # writes benchmarks/results/resume_layouts.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
JOB = ["train", "mpe_spread", "--preset", "cpu", "--total-timesteps", "40000", "--seeds", "3",
       "--checkpoint-every", "2", "--progress", "0"]


def dpo_jax(args: list[str], out: pathlib.Path, cache: str) -> None:
    """One ``dpo-jax`` command in a fresh process; exits on failure."""
    env = {**os.environ, "DPO_JAX_CACHE_DIR": cache}
    proc = subprocess.run([sys.executable, "-m", "dpo_jax", *args, "--out", str(out)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"dpo-jax {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def returns(out: pathlib.Path) -> np.ndarray:
    """``[runs, updates]`` episode returns from ``metrics.jsonl``."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    runs, updates = 1 + max(r["run"] for r in rows), 1 + max(r["update"] for r in rows)
    table = np.full((runs, updates), np.nan)
    for r in rows:
        table[r["run"], r["update"]] = r["episode_return"]
    return table


def final(out: pathlib.Path) -> tuple[float, float]:
    """The summary's final return of the job's one entry: mean and 95% CI."""
    entry = json.loads((out / "summary.json").read_text())["programs"]["pg"]["entries"]["dpo"]
    return entry["final_return_mean"], entry["final_return_ci95"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-after", type=int, default=8)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/resume_layouts.json"))
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="resume_layouts_"))
    cache = str(work / "xla-cache")
    refs = {}
    for devices in ("2", "1"):
        refs[devices] = work / f"uninterrupted_{devices}"
        dpo_jax(JOB + ["--cpu-devices", devices], refs[devices], cache)
    cases = [("2", "1", []), ("1", "2", []), ("2", "2", ["--progress", "1"])]
    rows = []
    for first, then, extra in cases:
        out = work / f"from{first}_to{then}{'_progress' if extra else ''}"
        dpo_jax(JOB + ["--cpu-devices", first, "--stop-after", str(args.stop_after)], out, cache)
        dpo_jax(JOB + ["--cpu-devices", then, "--resume", *extra], out, cache)
        got, ref = returns(out), returns(refs[first])
        differs = np.flatnonzero(np.any(got != ref, axis=0))
        mean, ci = final(out)
        ref_mean, ref_ci = final(refs[first])
        rows.append({
            "started_on": int(first), "resumed_on": int(then), "extra_flags": extra,
            "stopped_after": args.stop_after, "final_return": mean, "final_return_ci95": ci,
            "reference_final_return": ref_mean, "reference_ci95": ref_ci,
            "within_reference_ci": bool(abs(mean - ref_mean) <= ref_ci),
            "first_differing_update": int(differs[0]) if differs.size else None,
            "max_relative_difference": float(np.max(np.abs(got - ref) / np.abs(ref))),
            "updates": int(got.shape[1])})
        print(f"{first} -> {then} devices {' '.join(extra):<12} final {mean:8.3f} +- {ci:.3f} "
              f"(uninterrupted on {first}: {ref_mean:.3f} +- {ref_ci:.3f}); first differing "
              f"update {rows[-1]['first_differing_update']}, max rel. diff "
              f"{rows[-1]['max_relative_difference']:.2g}")
    result = {"command": "python benchmarks/resume_layouts.py",
              "job": "dpo-jax " + " ".join(JOB),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "date": datetime.date.today().isoformat(), "cases": rows}
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
