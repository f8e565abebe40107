"""The paper's multi-agent MuJoCo experiment (Sec. 4.3, Fig. 3) on MJX: DPO vs IPPO.

    python examples/mamujoco.py --quick                          # CPU smoke run, minutes
    python examples/mamujoco.py --task hopper_3x1                # 3 seeds, 300k steps
    python examples/mamujoco.py --task ant_4x2 --seeds 5 --total-timesteps 10000000 \\
        --num-envs 64 --num-steps 1000                           # paper scale, a GPU

Tasks: Hopper 3x1, HalfCheetah 3x2, Walker2d 3x2, Ant 4x2, Humanoid 17x1, each with
agent_obsk = 2, episode length 1000 and d_target = 0.001 (paper, Appendix A.2, B),
Gymnasium v5 rewards and terminations (``dpo_jax.envs.mamujoco``). Independent
parameters per agent, diagonal Gaussian actors with a state-independent log-std.

ONE compiled program trains every algorithm x seed (``vmap`` over the stacked
``ObjectiveParams`` and keys). Writes to ``--out/<task>/``: ``metrics.json`` /
``metrics.csv`` (every run), ``return.png`` (mean and 95% CI over seeds) and
``summary.json``. MJX on a CPU is slow (see ``benchmarks/mamujoco_speed.py``):
CPU runs are for checking the pipeline; learning curves need a GPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp

import dpo_jax
from dpo_jax import experiments
from dpo_jax.envs.mamujoco import PHYSICS_PRESETS
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS

TASKS = {alias.removeprefix("mamujoco_"): alias for alias in PAPER_TASKS}
LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL",
          "dpo_no_sqrt": "DPO w/o sqrt (IPPO-KL)", "dpo_no_kl": "DPO w/o kl"}
DEFAULTS = {"seeds": 3, "total_timesteps": 300_000, "num_envs": 16, "num_steps": 250,
            "max_steps": 1000}
QUICK = {"seeds": 1, "total_timesteps": 3 * 4 * 32, "num_envs": 4, "num_steps": 32,
         "max_steps": 32}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="hopper_3x1", choices=sorted(TASKS))
    p.add_argument("--algos", nargs="+", default=["dpo", "ippo"], choices=dpo_jax.ALGORITHMS)
    p.add_argument("--seeds", type=int, help="independent runs per algorithm (3)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int, help="env steps per run (300k)")
    p.add_argument("--num-envs", type=int, help="parallel envs per run (16)")
    p.add_argument("--num-steps", type=int, help="rollout length per update (250)")
    p.add_argument("--max-steps", type=int, help="episode length (1000, the paper's)")
    p.add_argument("--physics", default="fast", choices=sorted(PHYSICS_PRESETS),
                   help="MJX solver settings (dpo_jax.envs.mamujoco.PHYSICS_PRESETS); "
                        "euler compiles and runs several times faster on a CPU")
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["mamujoco"])
    p.add_argument("--out", default="runs/mamujoco", help="output folder")
    p.add_argument("--print-every", type=int, default=1, help="updates between lines")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 seed, 3 updates of 4 envs x 32 steps, episodes of 32")
    args = p.parse_args()
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def sweep(cfg, env, algos, seeds, seed, print_every):
    """All ``algos x seeds`` runs in one vmapped compile; metrics split by algorithm."""
    params = [dpo_jax.objective_params(cfg, env.num_agents, algo=a) for a in algos]
    obj = dpo_jax.stack_params([p for p in params for _ in range(seeds)])
    keys = jnp.concatenate([experiments.stack_keys(seed, seeds)] * len(algos))
    out = experiments.run(cfg, env, keys, obj=obj, progress=print_every)
    by_algo = {a: jax.tree.map(lambda x: x[i * seeds:(i + 1) * seeds], out.metrics)
               for i, a in enumerate(algos)}
    return out, by_algo


def main() -> None:
    args = parse_args()
    env = dpo_jax.make_env(TASKS[args.task], max_steps=args.max_steps, physics=args.physics)
    cfg = dpo_jax.paper_config("mamujoco", d_target=args.d_target, num_envs=args.num_envs,
                               num_steps=args.num_steps, total_timesteps=args.total_timesteps)
    out_dir = pathlib.Path(args.out) / args.task
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(f"env: {env}  (obs per agent {env.obs_dim}, physics {args.physics})")
    print(f"{', '.join(LABELS[a] for a in args.algos)} x {args.seeds} seeds, "
          f"{dpo_jax.num_updates(cfg, env)} updates of {cfg.num_envs} envs x "
          f"{cfg.num_steps} steps, d_target {cfg.d_target:g}, one compile")
    t0 = time.perf_counter()
    print("compiling (MJX compiles take minutes on a CPU) ...", flush=True)
    run, by_algo = sweep(cfg, env, args.algos, args.seeds, args.seed, args.print_every)
    print(f"compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
          f"({run.env_steps_per_s:,.0f} env steps/s over all runs)")

    steps = run.metrics["env_steps"][0]
    finals = {}
    for a, m in by_algo.items():
        ret, ret_ci = experiments.summarize_final(m["episode_return"])
        finals[a] = {"return": ret, "return_ci95": ret_ci}
    meta = {"env": env.name, "task": args.task, "num_agents": env.num_agents,
            "agent_obsk": env.agent_obsk, "max_steps": env.max_steps,
            "physics": args.physics, "seeds": args.seeds,
            "runs": [a for a in args.algos for _ in range(args.seeds)],
            "config": cfg.__dict__, "device": jax.devices()[0].device_kind,
            "compile_s": run.compile_s, "run_s": run.run_s,
            "env_steps_per_s": run.env_steps_per_s}
    files = experiments.save_metrics(out_dir, "metrics", run.metrics, meta)
    files.append(experiments.plot_curves(
        out_dir / "return.png",
        {LABELS[a]: (steps, m["episode_return"]) for a, m in by_algo.items()},
        title=f"{env.name} (agent_obsk {env.agent_obsk}, d_target = {cfg.d_target:g})",
        ylabel="episode return"))
    (out_dir / "summary.json").write_text(json.dumps(
        {"task": args.task, "seeds": args.seeds, "env_steps": int(steps[-1]),
         "final": finals, "compile_s": run.compile_s, "run_s": run.run_s}, indent=2))

    print(f"\nfinal ({args.seeds} seeds x {int(steps[-1]):,} env steps; mean over the last "
          f"10% of updates, 95% CI over seeds), {time.perf_counter() - t0:.0f} s in all:")
    for a, f in finals.items():
        print(f"  {LABELS[a]:<24} return {f['return']:9.2f} +- {f['return_ci95']:.2f}")
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
