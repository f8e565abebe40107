"""Where one training update's time goes: rollout, GAE, the epochs (and one
minibatch step inside them), the post-update KL pass, the policy metrics.

    taskset -c 0 python benchmarks/profile_update.py                 # the paper's settings
    taskset -c 0 python benchmarks/profile_update.py --epochs 4 --minibatches 4 --width 64

Each stage is compiled on its own (``jax.jit(...).lower(...).compile()``) from the
trainer's own functions (``train.rollout``, ``make_batch``, ``update_epochs``,
``loss_and_grads`` + ``apply_gradients``, ``batch_kl``), fed the arrays of a real
update of MPE simple spread (5 agents, independent parameters unless
``--shared``), and timed as the median of ``--repeats`` calls after a warm-up.
The full update (``make_train`` scanned over ``--updates`` updates, divided by
``--updates``) is timed the same way, so the stages' sum can be compared with the
whole. XLA's cost analysis gives each stage's flops and bytes accessed. Prints a
table and writes ``benchmarks/results/profile_update_<platform>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.training import trainer as train_lib
from dpo_jax.training.rollout import reset_envs
from dpo_jax.core.value_norm import init_value_norm


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", default="dpo")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--hidden-layer-norm", action="store_true")
    p.add_argument("--shared", action="store_true", help="one parameter set for all agents")
    p.add_argument("--updates", type=int, default=5, help="updates in the full-run timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--out-dir", default="benchmarks/results")
    return p.parse_args()


def timed(fn, *args, repeats: int) -> dict:
    """Compile ``fn`` for ``args``; median wall time of ``repeats`` calls after one
    warm-up, compile time, and XLA's flop / byte estimates."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    return {"ms": 1e3 * statistics.median(times), "compile_s": compile_s,
            "gflops": float(cost.get("flops", float("nan"))) / 1e9,
            "mbytes": float(cost.get("bytes accessed", float("nan"))) / 1e6}


def main() -> None:
    args = parse_args()
    env = dpo_jax.make_env("mpe_spread", num_agents=5)
    steps_per_update = args.num_envs * args.num_steps
    cfg = dpo_jax.TrainConfig(
        algo=args.algo, num_envs=args.num_envs, num_steps=args.num_steps,
        num_epochs=args.epochs, num_minibatches=args.minibatches, hidden_size=args.width,
        hidden_layer_norm=args.hidden_layer_norm, share_params=args.shared,
        total_timesteps=args.updates * steps_per_update)
    agents = agents_lib.make_agents(cfg, env)
    obj = dpo_jax.objective_params(cfg, env.num_agents)
    key = jax.random.key(0)
    state = agents_lib.init_agents(agents, key)
    params = state.params
    env_batch = reset_envs(env, key, cfg.num_envs)
    norm = init_value_norm(env.num_agents)
    betas = jnp.full((env.num_agents,), 0.01)

    def rollout(params, env_batch, key):
        return train_lib.rollout(env, agents, params, env_batch, key, cfg.num_steps)

    def make_batch(params, traj, norm):
        return train_lib.make_batch(agents, params, traj, cfg, norm)

    def epochs(state, batch, key):
        return train_lib.update_epochs(agents, state, batch, betas, betas, obj, cfg, key)

    def minibatch_step(state, batch):
        mb = jax.tree.map(lambda x: x[: x.shape[0] // cfg.num_minibatches], batch)
        _, _, grads = train_lib.loss_and_grads(agents, state.params, mb, betas, betas,
                                               obj, cfg)
        return agents_lib.apply_gradients(agents, state, grads, obj)

    def loss_only(params, batch):
        mb = jax.tree.map(lambda x: x[: x.shape[0] // cfg.num_minibatches], batch)
        in_axes = (agents.param_axis, 1, 0, 0, None, None, None)
        return jax.vmap(train_lib.agent_loss, in_axes=in_axes)(
            params, mb, betas, betas, obj, agents, cfg)[0]

    def kl_pass(params, batch):
        return train_lib.batch_kl(agents, params, batch)

    _, traj = jax.jit(rollout)(params, env_batch, key)
    batch, _, _ = jax.jit(make_batch)(params, traj, norm)
    rows = {
        "rollout": timed(rollout, params, env_batch, key, repeats=args.repeats),
        "gae_and_batch": timed(make_batch, params, traj, norm, repeats=args.repeats),
        "epochs (all)": timed(epochs, state, batch, key, repeats=args.repeats),
        "one minibatch step": timed(minibatch_step, state, batch, repeats=args.repeats),
        "one minibatch loss, no grad": timed(loss_only, params, batch,
                                             repeats=args.repeats),
        "post-update KL pass": timed(kl_pass, params, batch, repeats=args.repeats),
    }
    train = dpo_jax.make_train(cfg, env)
    full = timed(train, key, repeats=max(2, args.repeats // 2))
    full = {k: (v / args.updates if k in ("ms", "gflops", "mbytes") else v)
            for k, v in full.items()}
    rows["full update (make_train / updates)"] = full
    stages = ("rollout", "gae_and_batch", "epochs (all)", "post-update KL pass")
    rest = full["ms"] - sum(rows[s]["ms"] for s in stages)
    n_steps = cfg.num_epochs * cfg.num_minibatches
    print(f"MPE spread, 5 agents, {'shared' if args.shared else 'independent'} "
          f"parameters, {args.algo}: {args.num_envs} envs x {args.num_steps} steps, "
          f"{args.epochs} epochs x {args.minibatches} minibatches, width {args.width}; "
          f"{platform.machine()}, {len(os.sched_getaffinity(0))} core(s) allowed, "
          f"{jax.devices()[0].platform}")
    print(f"{'stage':<38}{'ms':>9}{'% update':>10}{'GFLOP':>9}{'MB':>10}{'GFLOP/s':>9}")
    for name, r in rows.items():
        share = 100 * r["ms"] / full["ms"]
        print(f"{name:<38}{r['ms']:>9.2f}{share:>10.1f}{r['gflops']:>9.3f}"
              f"{r['mbytes']:>10.1f}{r['gflops'] / r['ms'] * 1e3:>9.1f}")
    print(f"{'minibatch steps x ' + str(n_steps):<38}"
          f"{rows['one minibatch step']['ms'] * n_steps:>9.2f}")
    print(f"{'rest of the update (metrics, betas..)':<38}{rest:>9.2f}{100 * rest / full['ms']:>10.1f}")
    print(f"env steps/s of the full update: {steps_per_update / full['ms'] * 1e3:,.0f}")
    out = pathlib.Path(args.out_dir) / f"profile_update_{jax.devices()[0].platform}{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/profile_update.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} core(s) allowed",
        "settings": vars(args), "stages": rows, "rest_ms": rest,
        "env_steps_per_s": steps_per_update / full["ms"] * 1e3}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
