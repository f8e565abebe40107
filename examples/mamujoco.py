"""The paper's multi-agent MuJoCo experiment (Sec. 4.3, Fig. 3) on MJX: DPO vs IPPO vs IDDPG.

    python examples/mamujoco.py --quick                          # CPU smoke run, minutes
    python examples/mamujoco.py --task hopper_3x1                # 3 seeds, 300k steps
    python examples/mamujoco.py --task ant_4x2 --seeds 5 --total-timesteps 10000000 \\
        --num-envs 64 --num-steps 1000                           # paper scale, a GPU
    python examples/mamujoco.py --algos dpo ippo                 # without IDDPG

Tasks: Hopper 3x1, HalfCheetah 3x2, Walker2d 3x2, Ant 4x2, Humanoid 17x1, each with
agent_obsk = 2, episode length 1000 and d_target = 0.001 (paper, Appendix A.2, B),
Gymnasium v5 rewards and terminations (``dpo_jax.envs.mamujoco``). Independent
parameters per agent, diagonal Gaussian actors with a state-independent log-std.

ONE compiled program trains every policy-gradient algorithm x seed (``vmap`` over
the stacked ``ObjectiveParams`` and keys); IDDPG (``dpo_jax.IDDPGConfig``, in
``--algos`` by default) is a different trainer and gets a second compile, all its
seeds vmapped, with the same seeds, ``--num-envs`` and ``--num-steps`` (one
gradient step per environment step, TD3's ``main.py``). Its replay sizes follow
TD3's defaults, scaled down for short runs (each a flag):

* ``--iddpg-learning-starts`` (uniformly random actions, no learning, before it):
  ``min(25_000, total_timesteps // 10)``, TD3's 25k once runs reach 250k steps;
* ``--iddpg-buffer-size``: ``min(1_000_000, total_timesteps)``: a buffer larger than
  the run never fills, and flashbax allocates it in full on the device (about
  ``4 * N * (2 * obs_dim + action_dim + 1)`` bytes per transition and seed;
  printed at start);
* ``--iddpg-batch-size``: ``min(256, buffer size)``.

``--quick`` uses 64 warm-up steps (half of the first update), a 384-transition
buffer and batches of 32, so its 3 updates act randomly, then learn.

Writes to ``--out/<task>/``: ``metrics.json`` / ``metrics.csv`` (every
policy-gradient run), ``metrics_iddpg.json`` / ``metrics_iddpg.csv`` (IDDPG's),
``return.png`` (every algorithm, mean and 95% CI over seeds), ``step_reward.png`` (the
mean reward per step of each update's rollout: fresh every update, where the return of
1000-step episodes only changes when one ends) and ``summary.json``.
MJX on a CPU is slow (see ``benchmarks/mamujoco_speed.py``): CPU runs are for
checking the pipeline; learning curves need a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

import jax

import dpo_jax
from dpo_jax.running import experiments, plots, results, scripts
from dpo_jax.envs.mamujoco import PHYSICS_PRESETS
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS

TASKS = {alias.removeprefix("mamujoco_"): alias for alias in PAPER_TASKS}
LABELS = {"dpo": "DPO", "ippo": "IPPO", "ippo_kl": "IPPO-KL",
          "dpo_no_sqrt": "DPO w/o sqrt (IPPO-KL)", "dpo_no_kl": "DPO w/o kl",
          "iddpg": "IDDPG"}
ALGOS = dpo_jax.ALGORITHMS + ("iddpg",)
DEFAULTS = {"seeds": 3, "total_timesteps": 300_000, "num_envs": 16, "num_steps": 250,
            "max_steps": 1000}
QUICK = {"seeds": 1, "total_timesteps": 3 * 4 * 32, "num_envs": 4, "num_steps": 32,
         "max_steps": 32, "iddpg_learning_starts": 64, "iddpg_buffer_size": 3 * 4 * 32,
         "iddpg_batch_size": 32}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="hopper_3x1", choices=sorted(TASKS))
    p.add_argument("--algos", nargs="+", default=["dpo", "ippo", "iddpg"], choices=ALGOS,
                   help="algorithms drawn on one figure (dpo ippo iddpg, the paper's Fig. 3)")
    p.add_argument("--seeds", type=scripts.positive_int, help="independent runs per algorithm (3)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--total-timesteps", type=int, help="env steps per run (300k)")
    p.add_argument("--num-envs", type=int, help="parallel envs per run (16)")
    p.add_argument("--num-steps", type=int, help="rollout length per update (250)")
    p.add_argument("--max-steps", type=int, help="episode length (1000, the paper's)")
    p.add_argument("--physics", default="fast", choices=sorted(PHYSICS_PRESETS),
                   help="MJX solver settings (dpo_jax.envs.mamujoco.PHYSICS_PRESETS); "
                        "euler compiles and runs several times faster on a CPU")
    p.add_argument("--d-target", type=float, default=dpo_jax.PAPER_D_TARGET["mamujoco"])
    p.add_argument("--iddpg-learning-starts", type=int,
                   help="IDDPG: random-action env steps before learning "
                        "(min(25000, total/10))")
    p.add_argument("--iddpg-buffer-size", type=int,
                   help="IDDPG: replay capacity in transitions (min(1e6, total))")
    p.add_argument("--iddpg-batch-size", type=int,
                   help="IDDPG: transitions per gradient step (min(256, buffer))")
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/mamujoco", help="output folder")
    p.add_argument("--print-every", type=int, default=1, help="updates between lines")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 seed, 3 updates of 4 envs x 32 steps, episodes of 32; "
                        "IDDPG with 64 warm-up steps, a 384-transition buffer, batches of 32")
    scripts.add_device_args(p)
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    total = args.total_timesteps
    if args.iddpg_learning_starts is None:
        args.iddpg_learning_starts = min(25_000, total // 10)
    if args.iddpg_buffer_size is None:
        args.iddpg_buffer_size = max(1, min(1_000_000, total))
    if args.iddpg_batch_size is None:
        args.iddpg_batch_size = min(256, args.iddpg_buffer_size)
    args.algos = list(dict.fromkeys(args.algos))  # drop repeats, keep the order
    if "iddpg" in args.algos:
        try:
            iddpg_config(args)
        except ValueError as e:
            p.error(str(e))
    return args


def iddpg_config(args: argparse.Namespace) -> dpo_jax.IDDPGConfig:
    """IDDPG with the run's sizes and the (scaled) replay settings of the docstring."""
    return dpo_jax.IDDPGConfig(
        total_timesteps=args.total_timesteps, num_envs=args.num_envs,
        num_steps=args.num_steps, buffer_size=args.iddpg_buffer_size,
        batch_size=args.iddpg_batch_size, learning_starts=args.iddpg_learning_starts)


def main() -> None:
    args = parse_args()
    scripts.setup(args.cpu_devices)
    env = dpo_jax.make_env(TASKS[args.task], max_steps=args.max_steps, physics=args.physics)
    cfg = dpo_jax.paper_config("mamujoco", d_target=args.d_target, num_envs=args.num_envs,
                               num_steps=args.num_steps, total_timesteps=args.total_timesteps)
    pg_algos = [a for a in args.algos if a != "iddpg"]
    ddpg_cfg = iddpg_config(args) if "iddpg" in args.algos else None
    if ddpg_cfg is not None:  # fail now (e.g. an action space), not after a compile
        dpo_jax.make_train(ddpg_cfg, env)
    out_dir = pathlib.Path(args.out) / args.task
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(f"env: {env}  (obs per agent {env.obs_dim}, physics {args.physics})")
    if pg_algos:
        print(f"{', '.join(LABELS[a] for a in pg_algos)} x {args.seeds} seeds, "
              f"{dpo_jax.num_updates(cfg, env)} updates of {cfg.num_envs} envs x "
              f"{cfg.num_steps} steps, d_target {cfg.d_target:g}, one compile")
    if ddpg_cfg is not None:
        item = 4 * env.num_agents * (2 * env.obs_dim + env.action_spec.action_dim + 1) + 1
        print(f"IDDPG x {args.seeds} seeds, {dpo_jax.num_updates(ddpg_cfg, env)} updates of "
              f"{ddpg_cfg.num_envs} envs x {ddpg_cfg.num_steps} steps, "
              f"{ddpg_cfg.num_gradient_steps} gradient steps of {ddpg_cfg.batch_size} each, "
              f"random actions for {ddpg_cfg.learning_starts:,} steps, buffer "
              f"{ddpg_cfg.buffer_size:,} ({ddpg_cfg.buffer_size * item / 2**20:,.0f} MiB "
              f"per seed), second compile")
    t0 = time.perf_counter()
    curves, reward_curves, finals, files, timing = {}, {}, {}, [], {}

    def record(algo, metrics):
        steps = metrics["env_steps"][0]
        ret, ret_ci = results.summarize_final(metrics["episode_return"])
        rew, rew_ci = results.summarize_final(metrics["step_reward"])
        finals[algo] = {"return": ret, "return_ci95": ret_ci, "step_reward": rew,
                        "step_reward_ci95": rew_ci, "env_steps": int(steps[-1])}
        curves[LABELS[algo]] = (steps, metrics["episode_return"])
        # fresh every update, unlike the episode return of 1000-step episodes
        reward_curves[LABELS[algo]] = (steps, metrics["step_reward"])

    if pg_algos:
        print("compiling (MJX compiles take minutes on a CPU) ...", flush=True)
        params = {a: dpo_jax.objective_params(cfg, env.num_agents, algo=a) for a in pg_algos}
        run, by_algo = experiments.run_sweep(cfg, env, params, args.seeds, args.seed,
                                             args.print_every, shard=args.shard)
        print(f"compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
              f"({run.env_steps_per_s:,.0f} env steps/s over all runs)")
        for a, m in by_algo.items():
            record(a, m)
        timing["+".join(pg_algos)] = {"compile_s": run.compile_s, "run_s": run.run_s,
                                      "env_steps_per_s": run.env_steps_per_s}
        meta = {"env": env.name, "task": args.task, "num_agents": env.num_agents,
                "agent_obsk": env.agent_obsk, "max_steps": env.max_steps,
                "physics": args.physics, "seeds": args.seeds,
                "runs": [a for a in pg_algos for _ in range(args.seeds)],
                "config": cfg.__dict__, "device": jax.devices()[0].device_kind,
                "compile_s": run.compile_s, "run_s": run.run_s,
                "env_steps_per_s": run.env_steps_per_s}
        files += results.save_metrics(out_dir, "metrics", run.metrics, meta)
    if ddpg_cfg is not None:
        print("compiling IDDPG (a second MJX compile) ...", flush=True)
        run = experiments.run(ddpg_cfg, env, experiments.stack_keys(args.seed, args.seeds),
                              progress=args.print_every)
        print(f"IDDPG: compile {run.compile_s:.1f} s, train {run.run_s:.1f} s "
              f"({run.env_steps_per_s:,.0f} env steps/s over all runs)")
        record("iddpg", run.metrics)
        timing["iddpg"] = {"compile_s": run.compile_s, "run_s": run.run_s,
                           "env_steps_per_s": run.env_steps_per_s}
        meta = {"env": env.name, "task": args.task, "num_agents": env.num_agents,
                "agent_obsk": env.agent_obsk, "max_steps": env.max_steps,
                "physics": args.physics, "seeds": args.seeds, "algo": "iddpg",
                "runs": ["iddpg"] * args.seeds,
                "config": dataclasses.asdict(ddpg_cfg), "device": jax.devices()[0].device_kind,
                "compile_s": run.compile_s, "run_s": run.run_s,
                "env_steps_per_s": run.env_steps_per_s}
        files += results.save_metrics(out_dir, "metrics_iddpg", run.metrics, meta)

    plots.plot_curves(
        curves, title=f"{env.name} (agent_obsk {env.agent_obsk}, d_target = {cfg.d_target:g})",
        ylabel="episode return", path=out_dir / "return.png")
    plots.plot_curves(
        reward_curves, title=f"{env.name}: reward per step of each update's rollout",
        ylabel="mean reward per agent and env step", path=out_dir / "step_reward.png")
    files += [out_dir / "return.png", out_dir / "step_reward.png"]
    compile_s = sum(t["compile_s"] for t in timing.values())
    run_s = sum(t["run_s"] for t in timing.values())
    env_steps = max(f["env_steps"] for f in finals.values())
    results.save_json(out_dir / "summary.json", {
        "task": args.task, "seeds": args.seeds, "env_steps": env_steps,
        "final": finals, "compile_s": compile_s, "run_s": run_s, "timing": timing})

    print(f"\nfinal ({args.seeds} seeds x {env_steps:,} env steps; mean over the last "
          f"10% of updates, 95% CI over seeds), {time.perf_counter() - t0:.0f} s in all:")
    for a, f in finals.items():
        print(f"  {LABELS[a]:<24} return {f['return']:9.2f} +- {f['return_ci95']:.2f}")
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
