"""The paper's cooperative stochastic game (Sec. 4.1; Fig. 1a/8 and Fig. 1b).

    python examples/stochastic_game.py                 # small game (30 states, 3 agents)
    python examples/stochastic_game.py --game paper    # the paper's 100 states, 6 agents
    python examples/stochastic_game.py --quick         # 2 seeds, short: a smoke run
    python examples/stochastic_game.py --game paper --episode-length 25  # reduced horizon

Two experiments, each ONE compiled program (``vmap`` over algorithm x seed, then
over d_target x seed through ``dpo_jax.train(sweep=...)``, as the (delta, omega)
grid of Fig. 9 with ``--delta-omega-grid``):

1. DPO vs IPPO vs IPPO-KL vs DPO w/o kl at the paper's d_target = 0.1, and IQL
   (PyMARL's defaults, ``dpo_jax.IQLConfig``; its own compiled program over seeds;
   ``--no-iql`` leaves it out);
2. DPO with d_target in {0.001, 0.01, 0.1, 1}.

Curves show the exact J(pi_t) / J* (computed inside the compiled program from the
known tables, not sampled), mean and 95% CI over seeds. IQL's recurrent greedy
policy depends on the history, which the exact evaluation of a stationary policy
cannot take, so its curve is the mean return of its greedy episodes divided by J*
(sampled, ``greedy_return``). Writes JSON/CSV metrics (``iql.*`` for IQL) and two
PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import pathlib

import jax

import dpo_jax
from dpo_jax.running import experiments, plots, results, scripts

ALGOS = ("dpo", "ippo", "ippo_kl", "dpo_no_kl")
LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL", "dpo_no_kl": "DPO w/o kl"}
D_TARGETS = (0.001, 0.01, 0.1, 1.0)


def run_iql(args, env, j_star, out_dir):
    """IQL with PyMARL's defaults over ``args.seeds`` seeds in one compile; saves
    ``iql.json/csv`` and returns (env steps, greedy return / J*) for the figure."""
    cfg = dpo_jax.IQLConfig(total_timesteps=args.total_timesteps)
    print(f"\n== IQL x {args.seeds} seeds, one compile ({cfg.num_envs} episodes and "
          f"gradient steps per update, epsilon 1 -> {cfg.epsilon_finish} over "
          f"{cfg.epsilon_anneal_time:,} steps) ==")
    run = experiments.run(cfg, env, experiments.stack_keys(args.seed, args.seeds),
                          progress=args.print_every)
    print(f"compile {run.compile_s:.1f} s, run {run.run_s:.1f} s")
    results.save_metrics(out_dir, "iql", run.metrics,
                             {"runs": ["iql"] * args.seeds, "J_star": j_star,
                              "config": cfg.__dict__, "compile_s": run.compile_s,
                              "run_s": run.run_s})
    return run.metrics["env_steps"][0], run.metrics["greedy_return"] / j_star


DELTA_OMEGA = ((1.5, 2.0), (1.5, 4.0), (1.5, 6.0), (1.1, 2.0), (3.0, 2.0), (3.0, 6.0),
               (1.1, 6.0))
"""The seven (delta, omega) pairs of the paper's Fig. 9 (Appendix C)."""


def dpo_sweep(args: argparse.Namespace, env, base, points: list[dict], names: list[str]
              ) -> tuple[dict, dict]:
    """DPO at each sweep point x ``args.seeds`` seeds: ``dpo_jax.train(sweep=...)``, one
    compiled program. Returns the metrics of all runs and, per name, its runs'."""
    res = dpo_jax.train(base, env, algos=["dpo"], sweep=points, seeds=args.seeds,
                        seed=args.seed, progress=args.print_every, shard=args.shard)
    metrics = res.metrics["pg"]
    by_name = {name: {k: v[i * args.seeds:(i + 1) * args.seeds] for k, v in metrics.items()}
               for i, name in enumerate(names)}
    return res, by_name


def delta_omega_grid(args: argparse.Namespace, env, base, j_star: float,
                     out_dir: pathlib.Path) -> None:
    """Fig. 9: DPO with each (delta, omega) pair x ``args.seeds``, one compile (the
    pairs as the sweep's points)."""
    names = [f"delta={d:g}, omega={w:g}" for d, w in DELTA_OMEGA]
    print(f"\n== DPO, (delta, omega) in {DELTA_OMEGA} x {args.seeds} seeds, one compile ==")
    res, by_pair = dpo_sweep(args, env, base, [{"delta": d, "omega": w} for d, w in DELTA_OMEGA],
                             names)
    run = res.outputs["pg"]
    steps = run.metrics["env_steps"][0]
    results.save_metrics(out_dir, "delta_omega", run.metrics,
                             {"runs": [nm for nm in names for _ in range(args.seeds)],
                              "J_star": j_star, "config": base.__dict__,
                              "compile_s": run.compile_s, "run_s": run.run_s})
    plots.plot_curves(
        {nm: (steps, m["optimality_ratio"]) for nm, m in by_pair.items()},
        title="DPO: influence of (delta, omega) (Fig. 9)", ylabel="J(pi) / J*",
        hlines={"global optimum": 1.0}, path=out_dir / "delta_omega.png")
    print(f"compile {run.compile_s:.1f} s, run {run.run_s:.1f} s; final J(pi)/J*:")
    for nm, m in by_pair.items():
        mean, ci = results.summarize_final(m["optimality_ratio"])
        print(f"  {nm:<22} {mean:.3f} +- {ci:.3f}")


def compare_algorithms(args: argparse.Namespace, env, base, j_star: float,
                       out_dir: pathlib.Path) -> None:
    """Fig. 1a / 8: the family's members x ``args.seeds`` in one compile, then IQL."""
    n = env.num_agents
    print(f"\n== {', '.join(LABELS[a] for a in ALGOS)} x {args.seeds} seeds, one compile ==")
    params = {a: dpo_jax.objective_params(base, n, algo=a) for a in ALGOS}
    run, by_algo = experiments.run_sweep(base, env, params, args.seeds, args.seed,
                                         args.print_every, shard=args.shard)
    print(f"compile {run.compile_s:.1f} s, run {run.run_s:.1f} s")
    steps = run.metrics["env_steps"][0]
    results.save_metrics(out_dir, "algorithms", run.metrics,
                             {"runs": [a for a in ALGOS for _ in range(args.seeds)],
                              "J_star": j_star, "config": base.__dict__,
                              "compile_s": run.compile_s, "run_s": run.run_s})
    curves = {LABELS[a]: (steps, m["optimality_ratio"]) for a, m in by_algo.items()}
    iql_ratio = None if args.no_iql else run_iql(args, env, j_star, out_dir)
    if iql_ratio is not None:
        curves["IQL (greedy, sampled)"] = iql_ratio
    plots.plot_curves(
        curves, title=f"stochastic game ({env.num_states} states, {n} agents): J(pi)/J*",
        ylabel="J(pi) / J*", hlines={"global optimum": 1.0}, path=out_dir / "algorithms.png")
    print("\nfinal J(pi)/J* (mean over the last 10% of updates, 95% CI over seeds):")
    for label, (_, ratio) in curves.items():
        mean, ci = results.summarize_final(ratio)
        print(f"  {label:<21} {mean:.3f} +- {ci:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--game", choices=("small", "paper"), default="small")
    p.add_argument("--seeds", type=scripts.positive_int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-timesteps", type=int, default=60_000)
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--episode-length", type=scripts.positive_int, default=None,
                   help="horizon H of the game's episodes (default: its number of "
                        "states, as the paper); J* is solved for this H")
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/stochastic_game")
    p.add_argument("--print-every", type=int, default=10)
    p.add_argument("--skip-sweep", action="store_true", help="only the algorithm comparison")
    p.add_argument("--sweep-only", action="store_true", help="only the d_target sweep")
    p.add_argument("--quick", action="store_true", help="2 seeds, 15k steps")
    p.add_argument("--no-iql", action="store_true", help="leave IQL out of the comparison")
    p.add_argument("--delta-omega-grid", action="store_true",
                   help="only Fig. 9: DPO with the paper's seven (delta, omega) pairs")
    scripts.add_device_args(p)
    args = p.parse_args()
    scripts.setup(args.cpu_devices)
    if args.quick:
        args.seeds, args.total_timesteps = 2, 15_000

    env = dpo_jax.make_env("stochastic_game_small" if args.game == "small"
                           else "stochastic_game", episode_length=args.episode_length)
    j_star = env.optimal_return()
    base = dpo_jax.paper_config("stochastic_game", total_timesteps=args.total_timesteps,
                                num_envs=args.num_envs)
    print(f"device: {jax.devices()[0].device_kind}; env: {env}; J* = {j_star:.3f}")
    out_dir = pathlib.Path(args.out)
    if args.delta_omega_grid:
        delta_omega_grid(args, env, base, j_star, out_dir)
        return

    if not args.sweep_only:
        compare_algorithms(args, env, base, j_star, out_dir)
    if args.skip_sweep:
        return
    # 2. d_target sweep (Fig. 1b)
    names = [f"d_target={d:g}" for d in D_TARGETS]
    print(f"\n== DPO, d_target in {D_TARGETS} x {args.seeds} seeds, one compile ==")
    res, by_d = dpo_sweep(args, env, base, [{"d_target": d} for d in D_TARGETS], names)
    run = res.outputs["pg"]
    results.save_metrics(out_dir, "d_target", run.metrics,
                             {"runs": [nm for nm in names for _ in range(args.seeds)],
                              "J_star": j_star, "config": base.__dict__})
    plots.plot_curves(
        {nm: (run.metrics["env_steps"][0], m["optimality_ratio"]) for nm, m in by_d.items()},
        title="DPO: influence of d_target", ylabel="J(pi) / J*",
        hlines={"global optimum": 1.0}, path=out_dir / "d_target.png")
    for nm, m in by_d.items():
        mean, ci = results.summarize_final(m["optimality_ratio"])
        print(f"  {nm:<15} {mean:.3f} +- {ci:.3f}")
    print(f"\nwrote metrics and figures to {out_dir}")


if __name__ == "__main__":
    main()
