"""The paper's SMAC experiment (Sec. 4.4, Fig. 4) on SMAX: DPO vs IPPO on one map.

    python examples/smax.py --quick                        # CPU smoke run: 2 seeds, short
    python examples/smax.py --map 3m                       # 3 seeds x 100k steps: 15 min, 2 CPUs
    python examples/smax.py --map 2s3z --seeds 5 --total-timesteps 2000000 --num-envs 64

Maps: SMAC's 2s3z, 8m, 3s5z, 27m_vs_30m, MMM2 (and the small 3m), against SMAX's
heuristic enemy (``dpo_jax.envs.smax``), with SMAC's episode limits. Independent
parameters per agent, MLP actor and critic, d_target = 0.02 (paper, Appendix B).

ONE compiled program trains every algorithm x seed (``vmap`` over the stacked
``ObjectiveParams`` and keys). Writes to ``--out/<map>/``: ``metrics.json`` /
``metrics.csv`` (every run), ``return.png`` and ``win_rate.png`` (mean and 95% CI
over seeds; the uniformly random policy dashed) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax

import dpo_jax
from dpo_jax.running import experiments, plots, results, scripts
from dpo_jax.envs.smax import SMAX_MAPS

LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL",
          "dpo_no_sqrt": "DPO w/o sqrt (IPPO-KL)", "dpo_no_kl": "DPO w/o kl"}
DEFAULTS = {"seeds": 3, "total_timesteps": 100_000, "num_envs": 16}
QUICK_UPDATES, QUICK_ENVS = 4, 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--map", default="3m", choices=sorted(SMAX_MAPS), dest="map_name")
    p.add_argument("--algos", nargs="+", default=["dpo", "ippo"], choices=dpo_jax.ALGORITHMS)
    p.add_argument("--seeds", type=scripts.positive_int, help="independent runs per algorithm (3)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int, help="env steps per run (100k)")
    p.add_argument("--num-envs", type=int, help="parallel envs per run (16)")
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["smax"])
    p.add_argument("--no-adv-scale", action="store_true",
                   help="drop eq. 19's 1/N on the advantage term (the authors' code)")
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/smax", help="output folder")
    p.add_argument("--print-every", type=int, default=5, help="updates between lines")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 2 seeds, {QUICK_UPDATES} updates of {QUICK_ENVS} envs")
    scripts.add_device_args(p)
    args = p.parse_args()
    limit = SMAX_MAPS[args.map_name].limit
    quick = {"seeds": 2, "num_envs": QUICK_ENVS,
             "total_timesteps": QUICK_UPDATES * QUICK_ENVS * limit}
    for name, value in (quick if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    scripts.setup(args.cpu_devices)
    env = dpo_jax.make_env("smax", map_name=args.map_name)
    cfg = dpo_jax.paper_config("smax", d_target=args.d_target, num_envs=args.num_envs,
                               total_timesteps=args.total_timesteps,
                               scale_adv_by_num_agents=not args.no_adv_scale)
    out_dir = pathlib.Path(args.out) / args.map_name
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(f"env: {env}")
    print(f"{', '.join(LABELS[a] for a in args.algos)} x {args.seeds} seeds, "
          f"{dpo_jax.num_updates(cfg, env)} updates of {cfg.num_envs} envs x "
          f"{env.max_steps} steps, d_target {cfg.d_target:g}, one compile")
    t0 = time.perf_counter()
    random_stats = jax.jit(lambda k: dpo_jax.random_policy_return(env, k, num_envs=64))(
        jax.random.key(args.seed + 1))
    random = {k: float(random_stats[k]) for k in ("episode_return", "won")}
    print(f"uniform random policy: episode return {random['episode_return']:.3f}, "
          f"win rate {random['won']:.3f} ({int(random_stats['episodes'])} episodes)")

    print("compiling ...", flush=True)
    params = {a: dpo_jax.objective_params(cfg, env.num_agents, algo=a) for a in args.algos}
    run, by_algo = experiments.run_sweep(cfg, env, params, args.seeds, args.seed,
                                         args.print_every, shard=args.shard)
    print(f"compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
          f"({run.env_steps_per_s:,.0f} env steps/s over all runs)")

    steps = run.metrics["env_steps"][0]
    finals = {}
    for a, m in by_algo.items():
        ret, ret_ci = results.summarize_final(m["episode_return"])
        won, won_ci = results.summarize_final(m["won"])
        finals[a] = {"return": ret, "return_ci95": ret_ci, "win_rate": won,
                     "win_rate_ci95": won_ci}
    meta = {"env": env.name, "map": args.map_name, "num_agents": env.num_agents,
            "seeds": args.seeds, "runs": [a for a in args.algos for _ in range(args.seeds)],
            "config": cfg.__dict__, "device": jax.devices()[0].device_kind,
            "compile_s": run.compile_s, "run_s": run.run_s,
            "env_steps_per_s": run.env_steps_per_s, "random_policy": random}
    files = results.save_metrics(out_dir, "metrics", run.metrics, meta)
    title = f"SMAX {args.map_name} (d_target = {cfg.d_target:g})"
    for key, ylabel, name in (("episode_return", "episode return", "return"),
                              ("won", "win rate", "win_rate")):
        plots.plot_curves(
            {LABELS[a]: (steps, m[key]) for a, m in by_algo.items()},
            title=title, ylabel=ylabel,
            hlines={"uniform random policy": random[key]}, path=out_dir / f"{name}.png")
        files.append(out_dir / f"{name}.png")
    results.save_json(out_dir / "summary.json", {
        "map": args.map_name, "seeds": args.seeds, "env_steps": int(steps[-1]),
        "random_policy": random, "final": finals, "compile_s": run.compile_s,
        "run_s": run.run_s})

    print(f"\nfinal ({args.seeds} seeds x {int(steps[-1]):,} env steps; mean over the last "
          f"10% of updates, 95% CI over seeds), {time.perf_counter() - t0:.0f} s in all:")
    for a, f in finals.items():
        print(f"  {LABELS[a]:<24} return {f['return']:6.3f} +- {f['return_ci95']:.3f}   "
              f"win rate {f['win_rate']:.3f} +- {f['win_rate_ci95']:.3f}")
    print(f"  {'uniform random policy':<24} return {random['episode_return']:6.3f}"
          f"            win rate {random['won']:.3f}")
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
