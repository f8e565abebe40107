"""Throughput of MPE simple spread (5 agents): raw env stepping and full DPO training.

    python benchmarks/throughput.py                       # num_envs 16, 64, 256, 1024
    python benchmarks/throughput.py --num-envs 64 256 --updates 5

For each ``num_envs`` it measures, on whatever device JAX sees,
(a) env steps/s of stepping the envs with uniformly random actions inside one
    compiled ``lax.scan`` (auto-reset included), and
(b) env steps/s of full DPO training (rollout + GAE + 15 epochs + beta
    adaptation, one compiled ``make_train`` run of ``--updates`` updates),
with compile times reported separately (``lower().compile()``), each run timed
after compilation and the best of ``--repeats`` runs kept. One "env step" is one
step of one environment (all 5 agents act). Prints a table and writes JSON to
``benchmarks/results/throughput_<device>.json``.
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
from dpo_jax.rollout import random_rollout


def _best_time(fn, args, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def bench_raw(env, num_envs: int, num_steps: int, repeats: int) -> dict:
    """Random-action stepping of ``num_envs`` envs for ``num_steps`` steps."""

    def run(key):
        _, (_, _, _, records) = random_rollout(env, key, num_envs, num_steps)
        return records.reward.sum()

    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - t0
    run_s = _best_time(compiled, (key,), repeats)
    return {"compile_s": compile_s, "run_s": run_s,
            "env_steps_per_s": num_envs * num_steps / run_s}


def bench_train(env, num_envs: int, updates: int, repeats: int) -> dict:
    """Full DPO training for ``updates`` updates of ``num_envs`` x 25 steps."""
    cfg = dpo_jax.TrainConfig(algo="dpo", num_envs=num_envs,
                              total_timesteps=updates * num_envs * env.max_steps)
    train = dpo_jax.make_train(cfg, env)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    run_s = _best_time(compiled, (key,), repeats)
    steps = dpo_jax.num_updates(cfg, env) * num_envs * env.max_steps
    return {"compile_s": compile_s, "run_s": run_s, "env_steps_per_s": steps / run_s,
            "updates": updates, "s_per_update": run_s / updates}


def main() -> None:
    p = argparse.ArgumentParser(description="MPE spread throughput: raw env and DPO")
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--raw-steps", type=int, default=200, help="steps per raw-env run")
    p.add_argument("--updates", type=int, default=3, help="DPO updates per timed run")
    p.add_argument("--repeats", type=int, default=2, help="timed runs; best is kept")
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                   "throughput_<device>.json)")
    args = p.parse_args()

    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    device = jax.devices()[0]
    device_name = f"{device.platform}:{device.device_kind}"
    print(f"device {device_name}  jax {jax.__version__}  cpus {os.cpu_count()}")
    rows = []
    for num_envs in args.num_envs:
        raw = bench_raw(env, num_envs, args.raw_steps, args.repeats)
        trn = bench_train(env, num_envs, args.updates, args.repeats)
        rows.append({"num_envs": num_envs, "raw": raw, "train": trn})
        print(f"num_envs {num_envs:>5}: raw {raw['env_steps_per_s']:>12,.0f} steps/s "
              f"(compile {raw['compile_s']:.1f} s) | DPO train "
              f"{trn['env_steps_per_s']:>9,.0f} steps/s (compile {trn['compile_s']:.1f} s, "
              f"{trn['s_per_update']:.2f} s/update)", flush=True)

    header = ("| num_envs | raw env steps/s | raw compile s | DPO train env steps/s "
              "| DPO compile s | s/update |")
    print("\n" + header + "\n|" + "---|" * 6)
    for r in rows:
        print(f"| {r['num_envs']} | {r['raw']['env_steps_per_s']:,.0f} | "
              f"{r['raw']['compile_s']:.1f} | {r['train']['env_steps_per_s']:,.0f} | "
              f"{r['train']['compile_s']:.1f} | {r['train']['s_per_update']:.2f} |")

    safe = device_name.replace(":", "_").replace(" ", "_").lower()
    out = pathlib.Path(args.out or f"benchmarks/results/throughput_{safe}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "mpe_spread throughput (raw random-action env stepping; full DPO "
                     "training, 15 epochs, 1 minibatch, 25-step rollouts)",
        "command": "python benchmarks/throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v is not None),
        "device": device_name, "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "num_agents": args.num_agents,
        "raw_steps": args.raw_steps, "results": rows,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
