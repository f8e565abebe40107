"""Shared-parameter IPPO on MPE spread: how often a run collapses, and whether its agents drift away.

    python benchmarks/collapse_check.py                       # bootstrap on vs off, 5 seeds
    python benchmarks/collapse_check.py --variants '{"activation": "tanh"}'

Each variant is JaxMARL's IPPO-FF MPE settings (``jaxmarl_ippo_config``) with the
given overrides (default: ReLU, no input LayerNorm, no LR annealing -- the setting
where we saw collapses most often -- once bootstrapping time-limit truncations from
the critic and once treating them as terminal). For every seed it reports the final
return (mean over the last 10% of updates), whether it fell below the uniform random
policy, and, for the final policy on 64 fresh episodes, the agents' mean distance
from the arena's centre before steps 1, 13 and 25 and the action frequencies (a
collapsed run drifts out of the arena in one direction: MPE has no walls).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.running import experiments
from dpo_jax.core.networks import distribution
from dpo_jax.training.rollout import reset_envs, step_envs

DEFAULT_VARIANTS = [
    {"activation": "relu", "input_layer_norm": False, "anneal_lr": False,
     "bootstrap_truncation": True},
    {"activation": "relu", "input_layer_norm": False, "anneal_lr": False,
     "bootstrap_truncation": False},
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", type=json.loads, default=DEFAULT_VARIANTS,
                   help="JSON dicts of TrainConfig overrides of jaxmarl_ippo_config")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--total-timesteps", type=int, default=2_000_000)
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/collapse_check.json")
    return p.parse_args()


def drift(env, agents, params, key, num_envs: int = 64) -> dict:
    """Mean distance of the agents from the centre at each step of one episode of
    the stochastic policy, and its action frequencies."""
    batch = reset_envs(env, key, num_envs)

    def step(b, k):
        # positions before the step: after the last step the envs have auto-reset
        pos = b.env_state.env_state.p_pos[:, : env.num_agents]
        k_act, k_env = jax.random.split(k)
        dist_params = agents_lib.policy_params(agents, params, b.obs, b.avail)
        actions = distribution(dist_params, agents.action_spec).sample(seed=k_act)
        new_b, _ = step_envs(env, b, actions, k_env)
        return new_b, (jnp.linalg.norm(pos, axis=-1).mean(), actions)

    _, (dist, actions) = jax.lax.scan(step, batch, jax.random.split(key, env.max_steps))
    freq = jnp.bincount(actions.reshape(-1), length=env.action_spec.num_actions)
    return {"centre_distance": dist, "action_freq": freq / actions.size}


def main() -> None:
    args = parse_args()
    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    random_return = float(jax.jit(lambda k: dpo_jax.random_policy_return(
        env, k, num_envs=512)["episode_return"])(jax.random.key(1)))
    print(f"random policy return {random_return:.2f}")
    rows = []
    for overrides in args.variants:
        cfg = dpo_jax.jaxmarl_ippo_config(total_timesteps=args.total_timesteps,
                                          **overrides)
        out = experiments.run(cfg, env, experiments.stack_keys(0, args.seeds),
                              progress=False)
        returns = np.asarray(out.metrics["episode_return"], np.float64)
        k = max(1, returns.shape[1] // 10)
        agents = agents_lib.make_agents(cfg, env, dpo_jax.num_updates(cfg, env))
        # one compile per variant: the jitted function is built once, not per seed
        drift_fn = jax.jit(lambda p: drift(env, agents, p, jax.random.key(5)))
        seeds = []
        for s in range(args.seeds):
            params = jax.tree.map(lambda x: x[s], out.result.agents.params)
            d = drift_fn(params)
            dist = np.asarray(d["centre_distance"])
            seeds.append({
                "first10": float(np.nanmean(returns[s, :k])),
                "final": float(np.nanmean(returns[s, -k:])),
                "collapsed": bool(np.nanmean(returns[s, -k:]) < random_return),
                "centre_distance_t1_t13_t25": [round(float(dist[0]), 3),
                                               round(float(dist[12]), 3),
                                               round(float(dist[-1]), 3)],
                "action_freq": [round(float(f), 3) for f in np.asarray(d["action_freq"])],
            })
        n_bad = sum(r["collapsed"] for r in seeds)
        print(f"\n{json.dumps(overrides)}: {n_bad}/{args.seeds} runs end below random")
        for s, r in enumerate(seeds):
            print(f"  seed {s}: return {r['first10']:.1f} -> {r['final']:.1f}  centre "
                  f"distance t1/t13/t25 {np.round(r['centre_distance_t1_t13_t25'], 2)}  "
                  f"actions {r['action_freq']}")
        rows.append({"overrides": overrides, "config": cfg.__dict__, "seeds": seeds,
                     "collapsed": n_bad})
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {jax.devices()[0].device_kind}, jax {jax.__version__}",
        "env": "mpe_spread", "num_agents": args.num_agents,
        "random_policy_return": random_return, "variants": rows,
    }, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
