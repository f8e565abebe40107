"""Train DPO (or a relative) on 5-agent MPE simple spread, on whatever device JAX sees.

    python examples/mpe_spread.py                      # DPO, 2 seeds, CPU-sized run
    python examples/mpe_spread.py --algo ippo --seeds 5 --total-timesteps 2000000

All seeds train in one compiled program (``jax.vmap`` over seeds). Writes
``metrics.json``, ``metrics.csv`` and ``learning_curve.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

import dpo_jax
from dpo_jax import experiments


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", default="dpo", choices=dpo_jax.ALGORITHMS)
    p.add_argument("--seeds", type=int, default=2, help="independent runs (vmapped)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int, default=150_000,
                   help="env steps per run (default sized for a few CPU minutes)")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["mpe"])
    p.add_argument("--out", default="runs/mpe_spread", help="output folder")
    p.add_argument("--print-every", type=int, default=10, help="updates between lines")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    cfg = dpo_jax.TrainConfig(algo=args.algo, d_target=args.d_target,
                              total_timesteps=args.total_timesteps, num_envs=args.num_envs)
    n_updates = dpo_jax.num_updates(cfg, env)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(f"env: {env}")
    print(f"algo: {args.algo}  seeds: {args.seeds}  updates: {n_updates}  "
          f"batch: {cfg.num_envs} envs x {env.max_steps} steps  epochs: {cfg.num_epochs}")

    random_stats = jax.jit(
        lambda k: dpo_jax.random_policy_return(env, k, num_envs=256)
    )(jax.random.key(args.seed + 1))
    random_return = float(random_stats["episode_return"])
    print(f"uniform random policy: mean episode return {random_return:.3f} "
          f"({int(random_stats['episodes'])} episodes)")

    print("compiling ...", flush=True)
    keys = experiments.stack_keys(args.seed, args.seeds)
    t0 = time.perf_counter()
    out = experiments.run(cfg, env, keys, progress=args.print_every)
    metrics = out.metrics

    final_mean, final_ci = experiments.summarize_final(metrics["episode_return"])
    out_dir = pathlib.Path(args.out)
    meta = {
        "env": env.name, "num_agents": env.num_agents, "algo": args.algo,
        "seeds": args.seeds, "seed": args.seed, "config": cfg.__dict__,
        "device": jax.devices()[0].device_kind, "compile_s": out.compile_s,
        "run_s": out.run_s, "env_steps_per_s": out.env_steps_per_s,
        "random_policy_return": random_return,
        "final_return_mean": final_mean, "final_return_ci95": final_ci,
    }
    files = experiments.save_metrics(out_dir, "metrics", metrics, meta)
    steps = metrics["env_steps"][0]
    files.append(experiments.plot_curves(
        out_dir / "learning_curve.png",
        {args.algo.upper(): (steps, metrics["episode_return"])},
        title=f"MPE simple spread, {env.num_agents} agents",
        hlines={"uniform random policy": random_return},
    ))
    (out_dir / "summary.json").write_text(json.dumps(
        {k: meta[k] for k in ("env", "algo", "seeds", "random_policy_return",
                              "final_return_mean", "final_return_ci95", "compile_s",
                              "run_s", "env_steps_per_s")}, indent=2))

    first = np.nanmean(metrics["episode_return"][:, : max(1, n_updates // 10)])
    print("\nsummary")
    print(f"  {args.algo} on {env.name} ({env.num_agents} agents), {args.seeds} seeds x "
          f"{int(steps[-1]):,} env steps")
    print(f"  mean episode return: first 10% of updates {first:.3f} -> last 10% "
          f"{final_mean:.3f} +- {final_ci:.3f} (95% CI over seeds)")
    print(f"  uniform random policy: {random_return:.3f}")
    print(f"  compile {out.compile_s:.1f} s, train {out.run_s:.1f} s "
          f"({out.env_steps_per_s:,.0f} env steps/s over all seeds), "
          f"total {time.perf_counter() - t0:.1f} s")
    print("  wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
