"""Train DPO and IPPO on 5-agent MPE simple spread, every agent with its own parameters.

    python examples/mpe_spread.py                             # DPO and IPPO, 3 seeds, about 2 CPU minutes
    python examples/mpe_spread.py --algos dpo ippo ippo_kl --seeds 5 --total-timesteps 2000000
    python examples/mpe_spread.py --preset paper --algos dpo ippo iql --seeds 5

The default batch is CPU-sized (``dpo_jax.preset("cpu")``: 16 envs x 128 steps per
update, 4 epochs of 4 minibatches, 64 hidden units, the paper's other settings);
``--preset paper`` uses the paper's Table 2 (15 epochs on the whole batch, 128 units,
one 25-step episode per env per update), about 5x more compute per env step.

All policy-gradient algorithms and seeds train as ONE compiled program, spread over
every CPU core (``dpo_jax.runtime``); IQL (PyMARL's defaults) is its own program.
Prints progress and a summary with the uniformly random policy's return, and writes
``learning_curve.png`` (95% CI bands, the random policy dashed), ``metrics.csv`` (one
row per run and update) and ``summary.json`` to ``--out``. The job is
``dpo_jax.train``; ``dpo-jax train mpe_spread --preset cpu --algos dpo ippo`` is the
same job with checkpoints, logs and a folder ``dpo-jax eval`` reads.
"""

from __future__ import annotations

import argparse
import time

import dpo_jax
from dpo_jax.running import results, scripts


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algos", nargs="+", default=["dpo", "ippo"],
                   choices=dpo_jax.ALGORITHMS + dpo_jax.BASELINE_ALGORITHMS,
                   help="algorithms to compare, drawn on one figure")
    p.add_argument("--seeds", type=scripts.positive_int, default=3,
                   help="runs per algorithm (vmapped)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=scripts.positive_int, default=400_000,
                   help="env steps per run (default sized for about two CPU minutes)")
    p.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                   help="cpu: a CPU-sized batch; paper: the paper's Table 2")
    p.add_argument("--num-envs", type=scripts.positive_int, default=None,
                   help="parallel envs (default: the preset's)")
    p.add_argument("--num-agents", type=scripts.positive_int, default=5)
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["mpe"])
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/mpe_spread",
                   help="output folder")
    p.add_argument("--progress", type=int, default=10, help="updates between lines")
    scripts.add_device_args(p)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    scripts.setup(args.cpu_devices)
    t0 = time.perf_counter()
    overrides = {"total_timesteps": args.total_timesteps, "d_target": args.d_target}
    if args.num_envs is not None:
        overrides["num_envs"] = args.num_envs
    cfg = dpo_jax.preset(args.preset, "mpe_spread", **overrides)
    res = dpo_jax.train(cfg, "mpe_spread", env_kwargs={"num_agents": args.num_agents},
                        algos=args.algos, seeds=args.seeds, seed=args.seed,
                        progress=args.progress, shard=args.shard)
    title = f"MPE simple spread, {args.num_agents} agents ({args.preset} preset)"
    res.plot(path=args.out / "learning_curve.png", title=title)
    res.dataframe().to_csv(args.out / "metrics.csv", index=False)
    summary = res.summary()
    results.save_json(args.out / "summary.json", {
        "entries": summary.to_dict(orient="index"), "random_return": res.random_return,
        "config": cfg.__dict__, "algos": args.algos, "seeds": args.seeds,
        "timing": {name: {"compile_s": out.compile_s, "run_s": out.run_s,
                          "env_steps_per_s": out.env_steps_per_s}
                   for name, out in res.outputs.items()},
        "wall_s": time.perf_counter() - t0})
    print(f"\nsummary (mean episode return over the last 10% of updates, 95% CI over "
          f"{args.seeds} seeds)")
    for entry, row in summary.iterrows():
        verdict = "above" if row.final_episode_return - row.ci95 > res.random_return \
            else "NOT clearly above"
        print(f"  {entry:<10} {row.final_episode_return:9.3f} +- {row.ci95:.3f}  "
              f"({verdict} the random policy)")
    print(f"  random     {res.random_return:9.3f}")
    print(f"  total {time.perf_counter() - t0:.1f} s; wrote {args.out}/learning_curve.png, "
          f"metrics.csv, summary.json")


if __name__ == "__main__":
    main()
