"""Train DPO and IPPO (or any relative, or IQL) on 5-agent MPE simple spread, on whatever device JAX sees.

    python examples/mpe_spread.py                      # DPO and IPPO, 3 seeds, ~2.5 CPU minutes
    python examples/mpe_spread.py --algo ippo --seeds 5 --total-timesteps 2000000
    python examples/mpe_spread.py --paper --algos dpo ippo iql --seeds 5 --total-timesteps 2000000

The default batch is CPU-sized: 16 envs x 128 steps per update, 4 epochs of 4
minibatches, 64 hidden units (JaxMARL's IPPO-FF batch shape), with the paper's
other settings (ReLU, input LayerNorm, Adam 5e-4, value normalisation). ``--paper``
uses the paper's Table 2 instead (15 epochs on the whole batch, 128 hidden units,
one 25-step episode per env per update), which costs ~5x more compute per env step.

The last line is the paper's comparison (Fig. 2, simple spread): every algorithm
on one figure. All seeds of an algorithm train in one compiled program
(``jax.vmap`` over seeds). IQL (PyMARL's defaults, ``dpo_jax.IQLConfig``) takes one
gradient step on 32 whole episodes per collected episode, so on a CPU it is much
slower than the PPO family; its curves are the epsilon-greedy behaviour's return
(``episode_return``, the name every trainer uses) and, as "IQL (greedy)", the
greedy policy's. Writes ``metrics.json``, ``metrics.csv`` (``metrics_<algo>.*``
with several algorithms), ``learning_curve.png`` and ``summary.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

import dpo_jax
from dpo_jax import experiments


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", "--algos", dest="algos", nargs="+", default=["dpo", "ippo"],
                   choices=dpo_jax.ALGORITHMS + dpo_jax.BASELINE_ALGORITHMS,
                   help="one or more algorithms, drawn on one figure")
    p.add_argument("--seeds", type=experiments.positive_int, default=3, help="independent runs (vmapped)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int, default=400_000,
                   help="env steps per run (default sized for a few CPU minutes)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's Table 2 batch (15 epochs, 1 minibatch, 128 units, "
                        "25-step rollouts) instead of the CPU-sized default")
    p.add_argument("--num-envs", type=int, default=None,
                   help="parallel envs (default 16, or 32 with --paper)")
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["mpe"])
    p.add_argument("--out", type=experiments.out_dir_arg, default="runs/mpe_spread", help="output folder")
    p.add_argument("--print-every", type=int, default=10, help="updates between lines")
    experiments.add_device_args(p)
    args = p.parse_args()
    return args


LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL", "dpo_no_sqrt": "DPO w/o sqrt",
          "dpo_no_kl": "DPO w/o kl", "iql": "IQL", "iddpg": "IDDPG"}


CPU_BATCH = dict(num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4, hidden_size=64)
PAPER_BATCH = dict(num_envs=32, num_steps=None)


def make_config(algo, args):
    batch = dict(PAPER_BATCH if args.paper else CPU_BATCH)
    if args.num_envs is not None:
        batch["num_envs"] = args.num_envs
    if algo in dpo_jax.BASELINE_ALGORITHMS:  # only the fields a baseline uses
        return dpo_jax.TrainConfig(algo=algo, total_timesteps=args.total_timesteps,
                                   num_envs=batch["num_envs"])
    return dpo_jax.TrainConfig(algo=algo, d_target=args.d_target,
                               total_timesteps=args.total_timesteps, **batch)


def train_algo(algo, args, env, random_return):
    """Train ``args.seeds`` runs of ``algo``; save its metrics; return them and a summary."""
    cfg = make_config(algo, args)
    n_updates = dpo_jax.num_updates(cfg, env)
    detail = ("one gradient step per episode (PyMARL)" if algo in dpo_jax.BASELINE_ALGORITHMS
              else f"epochs: {cfg.num_epochs}")
    steps = cfg.num_steps or env.max_steps
    if algo not in dpo_jax.BASELINE_ALGORITHMS:
        detail += f" x {cfg.num_minibatches} minibatches, {cfg.hidden_size} units"
    print(f"\nalgo: {algo}  seeds: {args.seeds}  updates: {n_updates}  "
          f"batch: {cfg.num_envs} envs x {steps} steps  {detail}")
    print("compiling ...", flush=True)
    out = experiments.run(cfg, env, experiments.stack_keys(args.seed, args.seeds),
                          progress=args.print_every, shard=args.shard)
    metrics = out.metrics
    final_mean, final_ci = experiments.summarize_final(metrics["episode_return"])
    meta = {
        "env": env.name, "num_agents": env.num_agents, "algo": algo,
        "seeds": args.seeds, "seed": args.seed, "config": cfg.__dict__,
        "device": jax.devices()[0].device_kind, "compile_s": out.compile_s,
        "run_s": out.run_s, "env_steps_per_s": out.env_steps_per_s,
        "random_policy_return": random_return,
        "final_return_mean": final_mean, "final_return_ci95": final_ci,
    }
    name = "metrics" if len(args.algos) == 1 else f"metrics_{algo}"
    files = experiments.save_metrics(args.out, name, metrics, meta)
    steps = metrics["env_steps"][0]
    first = np.nanmean(metrics["episode_return"][:, : max(1, n_updates // 10)])
    lines = [f"  {algo} on {env.name} ({env.num_agents} agents), {args.seeds} seeds x "
             f"{int(steps[-1]):,} env steps",
             f"    mean episode return: first 10% of updates {first:.3f} -> last 10% "
             f"{final_mean:.3f} +- {final_ci:.3f} (95% CI over seeds)"]
    if args.seeds > 1:
        verdict = ("above" if final_mean - final_ci > random_return else
                   "NOT clearly above")
        lines.append(f"    the CI's lower end {final_mean - final_ci:.3f} is {verdict} the "
                     f"random policy's {random_return:.3f}")
    if "greedy_return" in metrics:
        mean, ci = experiments.summarize_final(metrics["greedy_return"])
        meta["final_greedy_return_mean"], meta["final_greedy_return_ci95"] = mean, ci
        lines.append(f"    greedy policy's return, last 10%: {mean:.3f} +- {ci:.3f}")
    lines.append(f"    compile {out.compile_s:.1f} s, train {out.run_s:.1f} s "
                 f"({out.env_steps_per_s:,.0f} env steps/s over all seeds)")
    return metrics, meta, files, lines


def main() -> None:
    args = parse_args()
    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    for algo in args.algos:  # fail now, not after the first algorithm trained
        dpo_jax.make_train(make_config(algo, args), env)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(f"env: {env}")

    random_stats = jax.jit(
        lambda k: dpo_jax.random_policy_return(env, k, num_envs=256)
    )(jax.random.key(args.seed + 1))
    random_return = float(random_stats["episode_return"])
    print(f"uniform random policy: mean episode return {random_return:.3f} "
          f"({int(random_stats['episodes'])} episodes)")

    t0 = time.perf_counter()
    out_dir = pathlib.Path(args.out)
    curves, summaries, files, report = {}, {}, [], []
    for algo in args.algos:
        metrics, meta, algo_files, lines = train_algo(algo, args, env, random_return)
        steps = metrics["env_steps"][0]
        curves[LABELS[algo]] = (steps, metrics["episode_return"])
        if "greedy_return" in metrics:
            curves[f"{LABELS[algo]} (greedy)"] = (steps, metrics["greedy_return"])
        summaries[algo] = meta
        files += algo_files
        report += lines

    files.append(experiments.plot_curves(
        out_dir / "learning_curve.png", curves,
        title=f"MPE simple spread, {env.num_agents} agents",
        hlines={"uniform random policy": random_return},
    ))
    keys = ("env", "algo", "seeds", "random_policy_return", "final_return_mean",
            "final_return_ci95", "compile_s", "run_s", "env_steps_per_s")
    summary = [{k: meta[k] for k in keys} for meta in summaries.values()]
    experiments.save_json(out_dir / "summary.json",
                          summary[0] if len(summary) == 1 else summary)

    print("\nsummary")
    print("\n".join(report))
    print(f"  uniform random policy: {random_return:.3f}")
    print(f"  total {time.perf_counter() - t0:.1f} s")
    print("  wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
