"""Speed of multi-agent MuJoCo on MJX: env steps/s and compile time per robot.

    python benchmarks/mamujoco_speed.py                       # the default table
    python benchmarks/mamujoco_speed.py --runs hopper:64:fast ant:1:fast

Each run ``ROBOT:BATCH:PHYSICS`` (physics ``fast``, ``euler`` or ``gymnasium``, see
``dpo_jax.envs.mamujoco``) steps ``BATCH`` environments of the paper's partition
with uniformly random actions inside one compiled ``lax.scan``, auto-reset
included (the trainer's ``step_envs``). It reports the compile time
(``lower().compile()``), the best of ``--repeats`` timed runs as env steps/s (one
env step = one agent-joint action = ``frame_skip`` MuJoCo steps), and whether the
compiled step contains a LAPACK call (the CPU stall risk named in the README).
Results go to ``benchmarks/results/mamujoco_speed_<device>.json`` after every run,
so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax

import dpo_jax
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS
from dpo_jax.training.rollout import random_rollout

ALIAS = {robot: alias for alias, (robot, _) in PAPER_TASKS.items()}
DEFAULT_RUNS = (
    ["hopper:1:fast"] + [f"{robot}:64:fast" for robot in ALIAS]
    + ["hopper:512:fast", "hopper:64:euler", "hopper:64:gymnasium"]
)


def bench(robot: str, batch: int, physics: str, repeats: int) -> dict:
    env = dpo_jax.make_env(ALIAS[robot], physics=physics)
    num_steps = max(10, min(200, 4096 // batch))

    def run(key):
        _, (_, _, _, records) = random_rollout(env, key, batch, num_steps)
        return records.reward.sum()

    key = jax.random.key(0)
    t0 = time.perf_counter()
    lowered = jax.jit(run).lower(key)
    lapack = "lapack" in lowered.as_text().lower()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(key))
        best = min(best, time.perf_counter() - t0)
    return {"robot": robot, "task": env.name, "num_agents": env.num_agents,
            "batch": batch, "physics": physics, "num_steps": num_steps,
            "frame_skip": env.robot.rules.frame_skip, "compile_s": round(compile_s, 1),
            "run_s": round(best, 3), "env_steps_per_s": round(batch * num_steps / best, 1),
            "lapack_in_step": lapack}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS,
                   help="ROBOT:BATCH:PHYSICS entries (default: every robot at batch 64, "
                        "Hopper also at 1 and 512, and with the euler and gymnasium "
                        "presets at 64)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--machine", default="", help="free text recorded with the results")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = p.parse_args()
    device = jax.devices()[0]
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results"
                       / f"mamujoco_speed_{device.platform}.json")
    header = {
        "benchmark": "multi-agent MuJoCo on MJX: random-action stepping with auto-reset",
        "command": "python benchmarks/mamujoco_speed.py " + " ".join(
            f"--runs {' '.join(args.runs)}".split()),
        "device": f"{device.platform}:{device.device_kind}", "jax": jax.__version__,
        "cpu_count": os.cpu_count(), "machine": args.machine or platform.machine(),
        "results": [],
    }
    print(f"{'task':28s} {'batch':>5s} {'physics':>9s} {'compile s':>9s} "
          f"{'env steps/s':>11s} lapack", flush=True)
    for spec in args.runs:
        robot, batch, physics = spec.split(":")
        row = bench(robot, int(batch), physics, args.repeats)
        header["results"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(header, indent=2) + "\n")
        print(f"{row['task']:28s} {row['batch']:5d} {physics:>9s} {row['compile_s']:9.1f} "
              f"{row['env_steps_per_s']:11.1f} {row['lapack_in_step']}", flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
