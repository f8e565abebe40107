"""Env steps/s and wall time of one fixed sweep on 1, 2 and 4 devices, with the run
axis sharded and with the env axis sharded (data-parallel).

    python benchmarks/scaling.py                          # forced CPU devices, both modes
    python benchmarks/scaling.py --shard envs --devices 1 2 4 --runs 8

Each device count runs in its own process. On a CPU the devices are forced with
``--xla_force_host_platform_device_count`` and share the machine's cores, so the
table shows correctness and overhead, not speed-up; on a machine with several
accelerators pass ``--no-force`` and it measures them. Every row trains the same
sweep (DPO and IPPO x ``--runs / 2`` seeds on ``--env``) and reports compile time,
run time, env steps/s and the loss's difference from the first row of its mode: at the first
update, at most over the run, and the first update where it exceeds 1e-5 (each
device's batch of runs has another shape, so its matmuls sum in another order;
training amplifies those last-bit differences over the updates).
Writes ``benchmarks/results/scaling_<platform>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess

import numpy as np
import sys

WORKER = r"""
import json, os, sys
n = int(sys.argv[1])
if sys.argv[2] == "force":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
import jax, numpy as np
import dpo_jax
from dpo_jax.running import experiments, results
cfg = dpo_jax.TrainConfig(num_envs=int(sys.argv[4]), num_steps=25,
                          total_timesteps=int(sys.argv[5]), num_epochs=4, num_minibatches=4,
                          hidden_size=64)
env = dpo_jax.make_env(sys.argv[3])
runs = int(sys.argv[6])
obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                            for a in ("dpo", "ippo") for _ in range(runs // 2)])
keys = experiments.stack_keys(0, runs)
out = experiments.run(cfg, env, keys, obj=obj, progress=False, devices=jax.devices()[:n],
                      shard=sys.argv[8])
np.save(sys.argv[7], np.asarray(out.metrics["loss"], np.float64))
print(json.dumps({"shard": sys.argv[8], "devices": n, "platform": jax.devices()[0].platform,
                  "compile_s": out.compile_s, "run_s": out.run_s,
                  "env_steps_per_s": out.env_steps_per_s}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--shard", nargs="+", choices=("runs", "envs"), default=["runs", "envs"],
                   help="which axis the devices split (each mode is one block of rows)")
    p.add_argument("--runs", type=int, default=8, help="runs in the sweep (even)")
    p.add_argument("--env", default="mpe_spread")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--total-timesteps", type=int, default=16 * 25 * 40)
    p.add_argument("--no-force", action="store_true", help="use the real devices")
    p.add_argument("--out-dir", default="benchmarks/results")
    return p.parse_args()


def measure(args: argparse.Namespace, shard: str, n: int) -> tuple[dict, np.ndarray]:
    """One worker process: ``n`` devices splitting the ``shard`` axis. Returns its
    row and its loss curves ``[runs, updates, agents]``."""
    path = f"/tmp/dpo_jax_scaling_{os.getpid()}_{shard}_{n}.npy"
    cmd = [sys.executable, "-c", WORKER, str(n), "real" if args.no_force else "force",
           args.env, str(args.num_envs), str(args.total_timesteps), str(args.runs), path,
           shard]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{shard}, {n} devices failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    loss = np.load(path)
    os.remove(path)
    return row, loss


def main() -> None:
    args = parse_args()
    rows = []
    for shard in args.shard:
        first = None
        for n in args.devices:
            row, loss = measure(args, shard, n)
            first = loss if first is None else first
            per_update = np.max(np.abs(loss - first),
                                axis=tuple(i for i in range(loss.ndim) if i != 1))
            row["max_abs_loss_diff_vs_first"] = float(per_update.max())
            row["max_abs_loss_diff_first_update"] = float(per_update[0])
            above = np.flatnonzero(per_update > 1e-5)
            row["first_update_above_1e-5"] = int(above[0]) if above.size else None
            rows.append(row)
    print(f"{args.runs} runs (DPO, IPPO) on {args.env}, {args.num_envs} envs x 25 steps, "
          f"{args.total_timesteps:,} steps per run; {platform.machine()}, "
          f"{os.cpu_count()} cores")
    print(f"{'shard':>6}{'devices':>8}{'compile s':>11}{'run s':>9}{'env steps/s':>14}"
          f"{'|dloss| update 0':>18}{'max |dloss|':>13}{'first > 1e-5':>14}")
    for r in rows:
        print(f"{r['shard']:>6}{r['devices']:>8}{r['compile_s']:>11.1f}{r['run_s']:>9.1f}"
              f"{r['env_steps_per_s']:>14,.0f}{r['max_abs_loss_diff_first_update']:>18.2e}"
              f"{r['max_abs_loss_diff_vs_first']:>13.2e}{str(r['first_update_above_1e-5']):>14}")
    from dpo_jax.running import results  # here: the measuring runs are subprocesses

    out = results.save_json(
        pathlib.Path(args.out_dir) / f"scaling_{rows[0]['platform']}.json", {
            "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"{'real' if args.no_force else 'forced CPU'} devices",
            "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
