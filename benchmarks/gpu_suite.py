"""The GPU measurements in one script, sized to run in under 8 minutes on one GPU.

    python benchmarks/gpu_suite.py --jaxmarl-script PATH/ippo_ff_mpe.py    # on the GPU
    python benchmarks/gpu_suite.py --smoke                                 # the same code, ~1 CPU minute

Three parts, each writing its results into the JSON as soon as it is done (a run
cut short still leaves what it measured), each skipping what would not fit in its
share of ``--budget-s``:

1. **Throughput against JaxMARL**, MPE simple spread with 5 agents, at JaxMARL's
   IPPO-FF settings (128-step rollouts, 4 epochs x 4 minibatches, 64 tanh units):
   the raw env (random actions), dpo-jax DPO with independent agents, and JaxMARL's
   own ``baselines/IPPO/ippo_ff_mpe.py`` (``--jaxmarl-script``; fetched separately,
   never part of dpo-jax), over ``--num-envs``. Compile excluded (every program is
   compiled first, in parallel threads), then timed round-robin, fastest of
   ``--repeats`` kept.
2. **A paper-settings run**: DPO and IPPO (Table 2: 15 epochs on the whole batch,
   128 units, ``d_target`` 0.01) on ``mpe_navigation``, 5 seeds each, all ten runs
   as one program, for as many updates as fit in ``--paper-s`` seconds (180); the return
   curve per algorithm.
3. **Large tasks**: DPO training rate (paper settings) on SMAX ``27m_vs_30m`` (27
   agents) and multi-agent MuJoCo ``Humanoid 17x1`` (17 agents, MJX) at a few env
   counts.

Writes ``benchmarks/results/gpu_suite_<device>.json`` (device, jax version, command).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any, Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on any device (the test suite runs this)")
    p.add_argument("--jaxmarl-script", default=None)
    p.add_argument("--num-envs", type=int, nargs="+", default=[64, 1024, 4096, 16384])
    p.add_argument("--updates", type=int, default=4, help="updates per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--paper-s", type=float, default=180.0)
    p.add_argument("--paper-num-envs", type=int, default=512)
    p.add_argument("--smax-envs", type=int, nargs="+", default=[64, 256])
    p.add_argument("--humanoid-envs", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--budget-s", type=float, default=540.0)
    p.add_argument("--parts", nargs="+", default=["throughput", "paper", "large"],
                   choices=["throughput", "paper", "large"])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.smoke:
        args.num_envs, args.updates, args.repeats = [8], 2, 1
        args.paper_s, args.paper_num_envs = 5.0, 4
        args.smax_envs, args.humanoid_envs = [2], [2]
    return args


class Budget:
    """Wall time left to the whole suite."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def compile_all(programs: dict[str, tuple[Callable, tuple]]) -> dict[str, tuple[Any, float]]:
    """Every ``name: (function, args)`` compiled ahead of time, in parallel threads
    (XLA compiles outside the GIL); ``name: (compiled, compile seconds)``."""
    import jax

    def one(item):
        name, (fn, args) = item
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        return name, (compiled, time.perf_counter() - t0)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(programs))) as pool:
        return dict(pool.map(one, programs.items()))


def time_round_robin(compiled: dict[str, tuple[Any, tuple]], repeats: int) -> dict[str, float]:
    """Each program called once untimed, then ``repeats`` timed rounds; fastest kept."""
    import jax

    for fn, args in compiled.values():
        jax.block_until_ready(fn(*args))
    best = {name: float("inf") for name in compiled}
    for _ in range(repeats):
        for name, (fn, args) in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def throughput(args: argparse.Namespace, budget: Budget) -> list[dict]:
    """Part 1 (see the module docstring): every size's programs compiled at once,
    then each size timed round-robin."""
    import jax

    import dpo_jax
    from dpo_jax.training.rollout import random_rollout
    from throughput import jaxmarl_train

    env = dpo_jax.make_env("mpe_spread", num_agents=5)
    key = jax.random.key(0)
    programs: dict[tuple[int, str], tuple[Callable, tuple]] = {}
    for num_envs in args.num_envs:
        cfg = dpo_jax.jaxmarl_ippo_config(algo="dpo", share_params=False, num_envs=num_envs,
                                          total_timesteps=args.updates * num_envs * 128)

        def raw(k, num_envs=num_envs):
            _, (_, _, _, records) = random_rollout(env, k, num_envs, 128 * args.updates)
            return records.reward.sum()

        programs[(num_envs, "raw env")] = (raw, (key,))
        programs[(num_envs, "dpo-jax DPO (independent)")] = (dpo_jax.make_train(cfg, env), (key,))
        if args.jaxmarl_script:
            programs[(num_envs, "JaxMARL IPPO (shared)")] = (
                jaxmarl_train(args.jaxmarl_script, 4, 4, 64, num_envs, args.updates, 5),
                (jax.random.PRNGKey(0),))
    built = compile_all(programs)
    rows = []
    for num_envs in args.num_envs:
        if budget.left() < 45:
            print(f"throughput: out of time before {num_envs} envs", flush=True)
            break
        names = [n for (e, n) in programs if e == num_envs]
        best = time_round_robin({n: (built[(num_envs, n)][0], programs[(num_envs, n)][1])
                                 for n in names}, args.repeats)
        steps = args.updates * num_envs * 128
        row = {"num_envs": num_envs, "updates": args.updates, "rollout_steps": 128}
        for name in names:
            row[name] = {"compile_s": built[(num_envs, name)][1], "run_s": best[name],
                         "env_steps_per_s": steps / best[name]}
        peer = row.get("JaxMARL IPPO (shared)", {}).get("env_steps_per_s")
        ours = row["dpo-jax DPO (independent)"]["env_steps_per_s"]
        row["dpo_vs_jaxmarl"] = ours / peer if peer else None
        print(f"{num_envs} envs: " + ", ".join(
            f"{n} {row[n]['env_steps_per_s']:,.0f}/s" for n in names)
            + (f"; DPO / JaxMARL {ours / peer:.2f}x" if peer else ""), flush=True)
        rows.append(row)
    return rows


def paper_run(args: argparse.Namespace, budget: Budget) -> dict:
    """Part 2: DPO and IPPO x 5 seeds on mpe_navigation for ``--paper-s`` seconds."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dpo_jax
    from dpo_jax.running import experiments
    from dpo_jax.training.trainer import make_trainer

    env = dpo_jax.make_env("mpe_navigation", num_agents=5)
    seeds, chunk = 5, 10
    cfg = dpo_jax.preset("paper", "mpe_navigation", num_envs=args.paper_num_envs,
                         total_timesteps=10**9)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, 5, algo=a)
                                for a in ("dpo", "ippo") for _ in range(seeds)])
    keys = jnp.concatenate([experiments.stack_keys(0, seeds)] * 2)
    trainer = make_trainer(cfg, env, chunk)
    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init)).lower(keys, obj).compile()(keys, obj)
    run = jax.jit(jax.vmap(trainer.run, in_axes=(0, None, 0))).lower(
        state, jnp.int32(0), obj).compile()
    compile_s = time.perf_counter() - t0
    parts, start, train_s = [], 0, 0.0
    deadline = min(args.paper_s, budget.left() - 30)
    while train_s < deadline:
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(run(state, jnp.int32(start), obj))
        train_s += time.perf_counter() - t0
        parts.append({k: np.asarray(metrics[k]) for k in ("episode_return", "update_steps")})
        start += chunk
    returns = np.concatenate([p["episode_return"] for p in parts], axis=1)
    steps = np.cumsum(np.concatenate([p["update_steps"] for p in parts], axis=1)[0])
    random_return = float(dpo_jax.random_policy_return(env, jax.random.key(1))["episode_return"])
    result = {"num_envs_per_run": args.paper_num_envs, "runs": 2 * seeds, "updates": start,
              "env_steps_per_run": int(steps[-1]), "compile_s": compile_s, "train_s": train_s,
              "env_steps_per_s_all_runs": float(2 * seeds * steps[-1] / train_s),
              "random_return": random_return, "curves": {}}
    for i, algo in enumerate(("dpo", "ippo")):
        values = returns[i * seeds:(i + 1) * seeds]
        from dpo_jax.running.results import mean_ci95, summarize_final

        mean, half = mean_ci95(values)
        final, ci = summarize_final(values)
        result["curves"][algo] = {"env_steps": steps.tolist(), "mean": mean.tolist(),
                                  "ci95": half.tolist(), "final": final, "final_ci95": ci}
        print(f"paper run {algo}: final return {final:.2f} +- {ci:.2f} after "
              f"{int(steps[-1]):,} env steps per run (random {random_return:.2f})", flush=True)
    return result


def large_tasks(args: argparse.Namespace, budget: Budget) -> list[dict]:
    """Part 3: DPO training rate (paper settings) on the large tasks, every program
    compiled at once, then timed."""
    import jax

    import dpo_jax

    if args.smoke:  # the same code on tasks that compile in seconds on a CPU
        tasks = [("smax_3m", {}, n, None) for n in args.smax_envs]
        tasks += [("mamujoco_hopper_3x1", {"max_steps": 16, "physics": "euler"}, n, 8)
                  for n in args.humanoid_envs]
    else:
        tasks = [("smax_27m_vs_30m", {}, n, None) for n in args.smax_envs]
        tasks += [("mamujoco_humanoid_17x1", {}, n, 100) for n in args.humanoid_envs]
    updates, key = 2, jax.random.key(0)
    programs, info = {}, {}
    for name, kwargs, num_envs, steps in tasks:
        env = dpo_jax.make_env(name, **kwargs)
        length = steps or env.max_steps
        cfg = dpo_jax.preset("paper", name, num_envs=num_envs, num_steps=steps,
                             total_timesteps=updates * num_envs * length)
        programs[(name, num_envs)] = (dpo_jax.make_train(cfg, env), (key,))
        info[(name, num_envs)] = (env.num_agents, length)
    built = compile_all(programs)
    rows = []
    for (name, num_envs), (compiled, compile_s) in built.items():
        if budget.left() < 20:
            print(f"large tasks: out of time before {name} {num_envs}", flush=True)
            break
        best = time_round_robin({name: (compiled, (key,))}, 1)[name]
        agents, length = info[(name, num_envs)]
        row = {"task": name, "agents": agents, "num_envs": num_envs, "num_steps": length,
               "updates": updates, "compile_s": compile_s, "run_s": best,
               "env_steps_per_s": updates * num_envs * length / best}
        print(f"{name} {num_envs} envs: {row['env_steps_per_s']:,.0f} env steps/s "
              f"(compile {compile_s:.0f} s)", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    args = parse_args()
    from dpo_jax.running import scripts

    scripts.setup()
    import jax

    budget = Budget(args.budget_s)
    device = jax.devices()[0]
    kind = device.device_kind.replace(" ", "_").lower()
    out = pathlib.Path(args.out or ROOT / "benchmarks" / "results" /
                       f"gpu_suite_{'smoke_' if args.smoke else ''}{kind}.json")
    results: dict[str, Any] = {
        "command": "python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:]),
        "device": f"{jax.device_count()} x {device.device_kind} ({jax.default_backend()})",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), "smoke": args.smoke}
    parts = {"throughput": throughput, "paper": paper_run, "large": large_tasks}
    for name in args.parts:
        t0 = time.perf_counter()
        results[name] = parts[name](args, budget)
        results.setdefault("part_wall_s", {})[name] = time.perf_counter() - t0
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out} ({args.budget_s - budget.left():.0f} s)")


if __name__ == "__main__":
    main()
