"""A/B timings, in one process, of the two update-path changes made for speed, each
against the trainer's code before it (reproduced here, inline):

1. shared parameters: the loss under ``vmap`` over agents with the one parameter set
   unbatched (before), vs the set broadcast to one copy per agent so that XLA runs
   per-agent batched matmuls, the broadcast's transpose summing the gradients
   (now, ``train.loss_and_grads``). Gradient of one whole-batch minibatch.
2. one minibatch per epoch: the whole batch gathered through a fresh permutation
   every epoch (before) vs used as it is (now, ``train.update_epochs``). 15 epochs.

    taskset -c 1 python benchmarks/update_ab.py

Both variants of a pair are compiled first, then timed alternately (``--repeats``
rounds), so the machine's drifts hit both alike; fastest and median calls are
reported. MPE spread, 5 agents, 16 envs x 128 steps, width 128 (the paper's
settings), ``hidden_layer_norm=False``. Writes ``benchmarks/results/update_ab_<platform>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from dpo_jax.running.results import save_json
from dpo_jax.training import trainer as train_lib
from dpo_jax.training.rollout import reset_envs
from dpo_jax.core.value_norm import init_value_norm


def alternate(fns: dict, args: dict, repeats: int) -> dict:
    """Compile each, call once, then time them in turn ``repeats`` times."""
    compiled = {n: jax.jit(f).lower(*args[n]).compile() for n, f in fns.items()}
    for n, c in compiled.items():
        jax.block_until_ready(c(*args[n]))
    times = {n: [] for n in fns}
    for _ in range(repeats):
        for n, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(*args[n]))
            times[n].append(time.perf_counter() - t0)
    return {n: {"best_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t)}
            for n, t in times.items()}


def setup(share: bool):
    env = dpo_jax.make_env("mpe_spread", num_agents=5)
    cfg = dpo_jax.TrainConfig(num_envs=16, num_steps=128, num_epochs=15, hidden_size=128,
                              hidden_layer_norm=False, share_params=share,
                              total_timesteps=16 * 128)
    agents = agents_lib.make_agents(cfg, env)
    key = jax.random.key(0)
    state = agents_lib.init_agents(agents, key)
    _, traj = jax.jit(lambda p, e, k: train_lib.rollout(env, agents, p, e, k, 128))(
        state.params, reset_envs(env, key, 16), key)
    batch, _, _ = jax.jit(lambda p, t, n: train_lib.make_batch(agents, p, t, cfg, n))(
        state.params, traj, init_value_norm(5))
    return cfg, agents, state, batch, dpo_jax.objective_params(cfg, 5), key


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out-dir", default="benchmarks/results")
    args = p.parse_args()
    betas = jnp.full((5,), 0.01)
    results = {}

    cfg, agents, state, batch, obj, key = setup(share=True)

    def shared_before(params, batch):
        def mean_loss(shared):
            losses, aux = jax.vmap(train_lib.agent_loss,
                                   in_axes=(None, 1, 0, 0, None, None, None))(
                shared, batch, betas, betas, obj, agents, cfg)
            return losses.mean(), (losses, aux)
        return jax.grad(mean_loss, has_aux=True)(params)[0]

    def shared_now(params, batch):
        return train_lib.loss_and_grads(agents, params, batch, betas, betas, obj, cfg)[2]

    g0, g1 = (jax.jit(f)(state.params, batch) for f in (shared_before, shared_now))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g0),
                                                               jax.tree.leaves(g1)))
    results["shared gradient"] = alternate(
        {"before": shared_before, "now": shared_now},
        {"before": (state.params, batch), "now": (state.params, batch)}, args.repeats)
    results["shared gradient"]["max_abs_grad_diff"] = diff

    cfg, agents, state, batch, obj, key = setup(share=False)
    cfg = dataclasses.replace(cfg, num_minibatches=1)

    def epochs_before(state, batch, key):
        n = batch.obs.shape[0]

        def step(state, mb):
            _, _, grads = train_lib.loss_and_grads(agents, state.params, mb, betas, betas,
                                                   obj, cfg)
            return agents_lib.apply_gradients(agents, state, grads, obj), None

        def epoch(state, k):
            perm = jax.random.permutation(k, n)
            mbs = jax.tree.map(lambda x: x[perm].reshape((1, n) + x.shape[1:]), batch)
            return jax.lax.scan(step, state, mbs)

        return jax.lax.scan(epoch, state, jax.random.split(key, cfg.num_epochs))[0]

    def epochs_now(state, batch, key):
        return train_lib.update_epochs(agents, state, batch, betas, betas, obj, cfg, key)[0]

    results["15 epochs, one minibatch"] = alternate(
        {"before": epochs_before, "now": epochs_now},
        {"before": (state, batch, key), "now": (state, batch, key)}, args.repeats)

    cores = len(os.sched_getaffinity(0))
    print(f"{platform.machine()}, {cores} core(s) allowed; MPE spread, 5 agents, 16 envs x "
          f"128 steps, width 128")
    for name, r in results.items():
        b, n = r["before"], r["now"]
        print(f"{name:<26} before {b['best_ms']:7.1f} ms (median {b['median_ms']:7.1f})  "
              f"now {n['best_ms']:7.1f} ms (median {n['median_ms']:7.1f})  "
              f"speed-up {b['best_ms'] / n['best_ms']:.2f}x")
    out = save_json(
        pathlib.Path(args.out_dir) / f"update_ab_{jax.devices()[0].platform}.json", {
            "command": "python benchmarks/update_ab.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {cores} core(s) allowed",
            "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
