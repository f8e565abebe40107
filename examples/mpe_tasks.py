"""The paper's MPE experiments (Sec. 4.2, Fig. 2 and the ablation Fig. 5).

    python examples/mpe_tasks.py --quick               # CPU smoke run: 2 seeds, short
    python examples/mpe_tasks.py                       # all tasks and algorithms, 5 seeds
    python examples/mpe_tasks.py --tasks mpe_line --algos dpo ippo --seeds 3

Tasks: 5-agent simple spread (``mpe_navigation``), line control (``mpe_line``) and
circle control (``mpe_circle``), the authors' assignment-reward scenarios with
vision 1 and 25-step episodes (``dpo_jax.envs.mpe_tasks``). Algorithms: DPO, IPPO,
DPO w/o sqrt (= IPPO-KL) and DPO w/o kl, at the paper's MPE d_target = 0.01; add
``iql`` to ``--algos`` for the paper's IQL baseline (PyMARL settings, its own compile
per task; slow on a CPU: one 32-episode GRU gradient step per collected episode).

Per task, ONE compiled program trains every algorithm x seed (``vmap`` over the
stacked ``ObjectiveParams`` and keys). Writes to ``--out/<task>/``: ``metrics.json``
/ ``metrics.csv`` (every run), ``learning_curve.png`` (mean and 95% CI over seeds
of the episode return, uniform random policy dashed), ``summary.json``, and
``dpo_policy.png`` / ``.gif``: one episode of the first DPO seed's trained
policy acting greedily (most probable action).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.parallel import sharding
from dpo_jax.running import experiments, plots, render, results, scripts

TASKS = ("mpe_navigation", "mpe_line", "mpe_circle")
TITLES = {"mpe_navigation": "simple spread", "mpe_line": "line control",
          "mpe_circle": "circle control"}
ALGOS = ("dpo", "ippo", "dpo_no_sqrt", "dpo_no_kl")
FULL = {"seeds": 5, "total_timesteps": 2_000_000, "num_envs": 64}
QUICK = {"seeds": 2, "total_timesteps": 40_000, "num_envs": 32}
LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL",
          "dpo_no_sqrt": "DPO w/o sqrt (IPPO-KL)", "dpo_no_kl": "DPO w/o kl", "iql": "IQL"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=dpo_jax.ALGORITHMS + ("iql",))
    p.add_argument("--seeds", type=scripts.positive_int, help="independent runs per algorithm (5)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int,
                   help="env steps per run (2M: the default wants an accelerator)")
    p.add_argument("--num-envs", type=int, help="parallel envs per run (64)")
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/mpe_tasks", help="output folder")
    p.add_argument("--print-every", type=int, default=20, help="updates between lines")
    p.add_argument("--quick", action="store_true",
                   help="CPU-minutes run: defaults become 2 seeds, 40k steps, 32 envs")
    scripts.add_device_args(p)
    args = p.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.algos == ["iql"]:
        p.error("--algos needs at least one policy-gradient algorithm besides iql")
    return args


def run_iql(cfg, env, seeds, seed, print_every, out_dir):
    """IQL (``TrainConfig(algo="iql")``, PyMARL defaults) x ``seeds`` in its own compile;
    writes ``iql.json/csv`` and returns the run."""
    iql = dpo_jax.TrainConfig(algo="iql", total_timesteps=cfg.total_timesteps,
                              num_envs=cfg.num_envs)  # only the fields IQL uses
    run = experiments.run(iql, env, experiments.stack_keys(seed, seeds),
                          progress=print_every)
    results.save_metrics(out_dir, "iql", run.metrics,
                             {"env": env.name, "runs": ["iql"] * seeds,
                              "compile_s": run.compile_s, "run_s": run.run_s})
    return run


def render_policy(cfg, env, params, path, key):
    """One greedy episode of the trained agents ``params`` as a PNG strip and GIF."""
    agents = agents_lib.make_agents(cfg, env)

    def act(_, obs, avail):
        return jnp.argmax(agents_lib.policy_params(agents, params, obs, avail), axis=-1)

    states, rewards = render.collect_episode(env, key, act)
    files = []
    if sharding.is_main_process():  # a multi-host run draws once
        files = render.save_episode(
            env, states, path,
            title=f"{TITLES[env.name]}: trained DPO (greedy), return {rewards[:, 0].sum():.2f}")
    return files, float(rewards[:, 0].sum())


def run_task(task, args):
    env = dpo_jax.make_env(task, num_agents=args.num_agents)
    cfg = dpo_jax.paper_config("mpe", total_timesteps=args.total_timesteps,
                               num_envs=args.num_envs)
    out_dir = pathlib.Path(args.out) / task
    print(f"\n== {TITLES[task]} ({env.name}): {', '.join(LABELS[a] for a in args.algos)} "
          f"x {args.seeds} seeds, {dpo_jax.num_updates(cfg, env)} updates, one compile ==")
    print(f"env: {env}")
    random_stats = jax.jit(lambda k: dpo_jax.random_policy_return(env, k, num_envs=256))(
        jax.random.key(args.seed + 1))
    random_return = float(random_stats["episode_return"])
    print(f"uniform random policy: episode return {random_return:.3f}, final mean distance "
          f"{float(random_stats['target_distance']):.3f}")

    pg_algos = [a for a in args.algos if a != "iql"]
    params = {a: dpo_jax.objective_params(cfg, env.num_agents, algo=a) for a in pg_algos}
    run, by_algo = experiments.run_sweep(cfg, env, params, args.seeds, args.seed,
                                         args.print_every, shard=args.shard)
    print(f"compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
          f"({run.env_steps_per_s:,.0f} env steps/s over all runs)")
    steps = run.metrics["env_steps"][0]
    curves = {LABELS[a]: (steps, m["episode_return"]) for a, m in by_algo.items()}
    if "iql" in args.algos:
        iql = run_iql(cfg, env, args.seeds, args.seed, args.print_every, out_dir)
        by_algo["iql"] = iql.metrics
        curves[LABELS["iql"]] = (iql.metrics["env_steps"][0], iql.metrics["episode_return"])
    finals = {}
    for a, m in by_algo.items():
        ret, ret_ci = results.summarize_final(m["episode_return"])
        dist, dist_ci = results.summarize_final(m["target_distance"])
        finals[a] = {"return": ret, "return_ci95": ret_ci,
                     "target_distance": dist, "target_distance_ci95": dist_ci}
    meta = {"env": env.name, "num_agents": env.num_agents, "seeds": args.seeds,
            "runs": [a for a in pg_algos for _ in range(args.seeds)],
            "config": cfg.__dict__, "device": jax.devices()[0].device_kind,
            "compile_s": run.compile_s, "run_s": run.run_s,
            "random_policy_return": random_return}
    files = results.save_metrics(out_dir, "metrics", run.metrics, meta)
    plots.plot_curves(
        curves,
        title=f"MPE {TITLES[task]}, {env.num_agents} agents (d_target = {cfg.d_target:g})",
        hlines={"uniform random policy": random_return}, path=out_dir / "learning_curve.png")
    files.append(out_dir / "learning_curve.png")

    shown = "dpo" if "dpo" in pg_algos else pg_algos[0]
    first_run = pg_algos.index(shown) * args.seeds
    params = jax.tree.map(lambda x: x[first_run], run.result.agents.params)
    render_files, demo_return = render_policy(cfg, env, params, out_dir / f"{shown}_policy",
                                              jax.random.key(args.seed + 2))
    files += render_files
    results.save_json(out_dir / "summary.json", {
        "env": env.name, "random_policy_return": random_return, "final": finals,
        "rendered_run": shown, "rendered_return": demo_return,
        "compile_s": run.compile_s, "run_s": run.run_s})
    print("final (mean over the last 10% of updates, 95% CI over seeds):")
    for a, f in finals.items():
        print(f"  {LABELS[a]:<24} return {f['return']:8.3f} +- {f['return_ci95']:.3f}   "
              f"final distance {f['target_distance']:.3f} +- {f['target_distance_ci95']:.3f}")
    print("wrote " + ", ".join(str(f) for f in files))
    return finals, random_return


def main() -> None:
    args = parse_args()
    scripts.setup(args.cpu_devices)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    t0 = time.perf_counter()
    results = {task: run_task(task, args) for task in args.tasks}
    print(f"\nsummary ({args.seeds} seeds x {args.total_timesteps:,} env steps, "
          f"{time.perf_counter() - t0:.0f} s): final episode return")
    header = "".join(f"{LABELS[a]:>26}" for a in args.algos)
    print(f"  {'task':<16}{header}{'random':>10}")
    for task, (finals, random_return) in results.items():
        cells = "".join(f"{finals[a]['return']:>18.3f} +- {finals[a]['return_ci95']:<4.2f}"
                        for a in args.algos)
        print(f"  {task:<16}{cells}{random_return:>10.3f}")
    print(f"outputs in {pathlib.Path(args.out)}")


if __name__ == "__main__":
    main()
