"""Throughput and peak memory of full DPO training on SMAX 27m_vs_30m (or other maps).

    python benchmarks/smax_memory.py                          # num_envs 4, 16, 64
    python benchmarks/smax_memory.py --num-envs 4 16 --updates 2 --num-steps 60
    python benchmarks/smax_memory.py --maps 3m 8m 27m_vs_30m --num-envs 16   # in agents

27 independent agents (one ``vmap`` over their stacked parameters) against 30
heuristic marines. For each ``num_envs`` a FRESH subprocess builds the env, compiles
``make_train`` (``lower().compile()``, timed apart) and runs ``--updates`` updates of
rollout (``--num-steps`` steps per env; default the 180-step episode limit) + GAE +
15 epochs on the whole batch + beta adaptation. It reports env steps/s of the run
and peak memory: the process's peak resident set (``ru_maxrss``, which includes
XLA's compiler) after compiling and after running and, on an accelerator, the
device's ``peak_bytes_in_use``. The run's own growth (peak after running minus
peak after compiling) divided by the rollout's observation bytes shows whether
memory grows linearly in envs and agents (a constant ratio). Prints a table and
writes JSON to
``benchmarks/results/smax_memory_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

MAP = "27m_vs_30m"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(map_name: str, num_envs: int, updates: int, num_steps: int | None) -> dict:
    """One setting, in this process (the child side)."""
    import jax

    import dpo_jax

    env = dpo_jax.make_env(f"smax_{map_name}")
    rollout = num_steps or env.max_steps
    cfg = dpo_jax.paper_config("smax", algo="dpo", num_envs=num_envs, num_steps=num_steps,
                               total_timesteps=updates * num_envs * rollout)
    train = dpo_jax.make_train(cfg, env)
    key = jax.random.key(0)
    rss_start = _peak_rss_mib()
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    rss_compiled = _peak_rss_mib()
    t0 = time.perf_counter()
    result = jax.block_until_ready(compiled(key))
    run_s = time.perf_counter() - t0
    steps = dpo_jax.num_updates(cfg, env) * num_envs * rollout
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    obs_buffer = rollout * num_envs * env.num_agents * env.obs_dim * 4
    return {
        "num_envs": num_envs, "num_steps": rollout, "updates": updates,
        "num_agents": env.num_agents, "obs_dim": env.obs_dim,
        "compile_s": compile_s, "run_s": run_s, "env_steps_per_s": steps / run_s,
        "s_per_update": run_s / updates,
        "peak_rss_mib_start": rss_start, "peak_rss_mib_after_compile": rss_compiled,
        "peak_rss_mib_after_run": _peak_rss_mib(),
        "device_peak_mib": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
        "rollout_obs_mib": obs_buffer / 2**20,
        "final_return": float(result.metrics["episode_return"][-1]),
        "device": f"{device.platform}:{device.device_kind}",
    }


def run_child(map_name: str, num_envs: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--num-envs", str(num_envs),
           "--updates", str(args.updates), "--maps", map_name]
    if args.num_steps:
        cmd += ["--num-steps", str(args.num_steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"map": map_name, "num_envs": num_envs,
                "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description="SMAX: DPO steps/s and peak memory")
    p.add_argument("--num-envs", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--maps", nargs="+", default=[MAP], help="SMAX maps (agent counts)")
    p.add_argument("--updates", type=int, default=2, help="updates per timed run")
    p.add_argument("--num-steps", type=int, default=None,
                   help="rollout steps per env and update (default: the episode limit)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per setting")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                   "smax_memory_<device>.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.maps[0], args.num_envs[0], args.updates,
                                 args.num_steps)))
        return

    rows = []
    for map_name, num_envs in [(m, e) for m in args.maps for e in args.num_envs]:
        row = run_child(map_name, num_envs, args)
        row["map"] = map_name
        rows.append(row)
        if "error" in row:
            print(f"{map_name}, num_envs {num_envs}: FAILED\n{row['error']}", flush=True)
            continue
        row["run_growth_mib"] = row["peak_rss_mib_after_run"] - row["peak_rss_mib_after_compile"]
        row["growth_per_obs_byte"] = row["run_growth_mib"] / row["rollout_obs_mib"]
        print(f"{map_name}, num_envs {num_envs:>4}: {row['env_steps_per_s']:>8,.0f} env steps/s  "
              f"compile {row['compile_s']:.0f} s  peak RSS {row['peak_rss_mib_after_run']:,.0f}"
              f" MiB  device peak {row['device_peak_mib'] or 0:,.0f} MiB", flush=True)

    done = [r for r in rows if "error" not in r]
    device = done[0]["device"] if done else "unknown"
    print(f"\nSMAX, DPO, device {device}")
    print("| map | agents | num_envs | env steps/s | s/update | compile s | peak RSS after "
          "compile MiB | peak RSS after run MiB | run growth MiB | device peak MiB | "
          "rollout obs MiB | growth / obs |")
    print("|" + "---|" * 12)
    for r in done:
        print(f"| {r['map']} | {r['num_agents']} | {r['num_envs']} | "
              f"{r['env_steps_per_s']:,.0f} | {r['s_per_update']:.2f} | "
              f"{r['compile_s']:.0f} | {r['peak_rss_mib_after_compile']:,.0f} | "
              f"{r['peak_rss_mib_after_run']:,.0f} | {r['run_growth_mib']:,.0f} | "
              f"{r['device_peak_mib'] or 0:,.0f} | {r['rollout_obs_mib']:,.0f} | "
              f"{r['growth_per_obs_byte']:.1f} |")

    safe = device.replace(":", "_").replace(" ", "_").lower()
    out = pathlib.Path(args.out or f"benchmarks/results/smax_memory_{safe}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "SMAX full DPO training (independent agents, 15 epochs, 1 minibatch); "
                     "fresh process per setting",
        "command": "python benchmarks/smax_memory.py " + " ".join(sys.argv[1:]),
        "device": device, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "results": rows,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
