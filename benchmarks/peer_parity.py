"""Peer parity on MPE simple spread: dpo-jax at JaxMARL's IPPO-FF settings and at the paper's.

    python benchmarks/peer_parity.py                                  # dpo-jax only
    python benchmarks/peer_parity.py --jaxmarl-script PATH/ippo_ff_mpe.py

``--jaxmarl-script`` runs JaxMARL's own ``baselines/IPPO/ippo_ff_mpe.py`` (fetch the
JaxMARL repository anywhere; nothing of it is part of dpo-jax) in this process, with
its hydra/wandb imports stubbed, at the same settings, agents, seeds and budget.

Return scales (both printed and written):

* dpo-jax: the mean over agents of each agent's summed reward over a 25-step
  episode ("ours").
* JaxMARL: ``returned_episode_returns`` of ``MPELogWrapper``, which multiplies every
  reward by the number of agents N, and JaxMARL's MPE ends an episode one step late
  (26 steps for ``max_steps=25``). So JaxMARL's scale is about ``N * 26 / 25`` times
  ours. The script measures the uniformly random policy on both scales (JaxMARL's
  with its own wrapper) and reports the measured ratio next to the nominal one;
  results are converted with the nominal factor.

For every entry: the mean over seeds of each seed's mean return over the last 10%
of updates, with a 95% t-interval over seeds, the first 10% likewise, and the gain
over the random policy in units of |random return| (scale-free).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

import dpo_jax
from dpo_jax.running import experiments, results
from dpo_jax.config import JAXMARL_IPPO_MPE, jaxmarl_ippo_config

JAXMARL_EPISODE_STEPS = 26  # JaxMARL's MPE reports done at the 26th step
OUR_EPISODE_STEPS = 25


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-timesteps", type=int, default=2_000_000)
    p.add_argument("--paper-total-timesteps", type=int, default=None,
                   help="budget of the paper-settings entries (default: --total-timesteps)")
    p.add_argument("--paper-num-envs", type=int, default=32,
                   help="envs of the paper-settings entries (one 25-step episode each per update)")
    p.add_argument("--settings", nargs="+", default=["jaxmarl", "paper"],
                   choices=["jaxmarl", "paper"])
    p.add_argument("--variants", nargs="+", default=["ippo_shared", "ippo", "dpo"],
                   choices=["ippo_shared", "ippo", "dpo"])
    p.add_argument("--overrides", type=json.loads, default={},
                   help="JSON dict of TrainConfig fields applied to every dpo-jax entry, "
                        "e.g. '{\"scale_adv_by_num_agents\": false}'")
    p.add_argument("--jaxmarl-script", default=None,
                   help="path of JaxMARL's baselines/IPPO/ippo_ff_mpe.py to run as the peer")
    p.add_argument("--out", default="benchmarks/results/peer_parity.json")
    return p.parse_args()


def scale_factor(num_agents: int) -> float:
    """Nominal JaxMARL-scale / our-scale return ratio on MPE spread."""
    return num_agents * JAXMARL_EPISODE_STEPS / OUR_EPISODE_STEPS


def summarize(returns: np.ndarray, random_return: float) -> dict:
    """Final (last 10%) and first (first 10%) return with 95% CIs over seeds."""
    final, final_ci = results.summarize_final(returns)
    first, first_ci = results.summarize_final(returns[:, ::-1])
    k = max(1, int(round(returns.shape[1] * 0.1)))
    return {
        "first10_mean": first, "first10_ci95": first_ci,
        "final_mean": final, "final_ci95": final_ci,
        "final_per_seed": np.nanmean(returns[:, -k:], axis=1).tolist(),
        "gain_over_random": (final - random_return) / abs(random_return),
    }


def our_config(setting: str, variant: str, args: argparse.Namespace) -> dpo_jax.TrainConfig:
    algo = "dpo" if variant == "dpo" else "ippo"
    shared = variant == "ippo_shared"
    if setting == "jaxmarl":
        return jaxmarl_ippo_config(**{
            "algo": algo, "share_params": shared, "total_timesteps": args.total_timesteps,
            "d_target": dpo_jax.PAPER_D_TARGET["mpe"], **args.overrides})
    return dpo_jax.paper_config("mpe", **{
        "algo": algo, "share_params": shared, "num_envs": args.paper_num_envs,
        "num_steps": OUR_EPISODE_STEPS,
        "total_timesteps": args.paper_total_timesteps or args.total_timesteps,
        **args.overrides})


def run_ours(env, cfg: dpo_jax.TrainConfig, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    out = experiments.run(cfg, env, experiments.stack_keys(args.seed, args.seeds),
                          progress=max(1, dpo_jax.num_updates(cfg, env) // 5))
    timing = {"compile_s": out.compile_s, "run_s": out.run_s,
              "env_steps_per_s": out.env_steps_per_s}
    return np.asarray(out.metrics["episode_return"], np.float64), timing


def random_returns(num_agents: int, seed: int) -> dict:
    """The uniformly random policy's episode return on both scales."""
    env = dpo_jax.make_env("mpe_spread", num_agents=num_agents)
    ours = jax.jit(lambda k: dpo_jax.random_policy_return(env, k, num_envs=512))(
        jax.random.key(seed + 1))
    import jaxmarl
    from jaxmarl.wrappers.baselines import MPELogWrapper

    peer = MPELogWrapper(jaxmarl.make("MPE_simple_spread_v3", num_agents=num_agents,
                                      num_landmarks=num_agents))
    num_envs, steps = 512, 4 * JAXMARL_EPISODE_STEPS

    def rollout(key):
        obs, state = jax.vmap(peer.reset)(jax.random.split(key, num_envs))

        def body(state, k):
            k_act, k_step = jax.random.split(k)
            acts = {a: jax.random.randint(jax.random.fold_in(k_act, i), (num_envs,), 0, 5)
                    for i, a in enumerate(peer.agents)}
            _, state, _, done, info = jax.vmap(peer.step)(
                jax.random.split(k_step, num_envs), state, acts)
            return state, (info["returned_episode_returns"], done["__all__"])

        _, (ret, done) = jax.lax.scan(body, state, jax.random.split(key, steps))
        # episode returns at the steps where an episode ended (mean over agents)
        return jnp.sum(ret.mean(-1) * done) / jnp.sum(done)

    peer_return = float(jax.jit(rollout)(jax.random.key(seed + 2)))
    return {"ours": float(ours["episode_return"]), "jaxmarl": peer_return}


def run_jaxmarl(script: str, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """JaxMARL's IPPO-FF MPE script at its yaml settings with our N, seeds, budget."""
    for name in ("hydra", "wandb", "omegaconf"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["hydra"].main = lambda **kw: (lambda f: f)
    sys.modules["wandb"].log = lambda *a, **kw: None
    sys.modules["omegaconf"].OmegaConf = None
    import importlib.util

    spec = importlib.util.spec_from_file_location("jaxmarl_ippo_ff_mpe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = JAXMARL_IPPO_MPE
    config = {
        "LR": c["actor_lr"], "NUM_ENVS": c["num_envs"], "NUM_STEPS": c["num_steps"],
        "TOTAL_TIMESTEPS": args.total_timesteps, "UPDATE_EPOCHS": c["num_epochs"],
        "NUM_MINIBATCHES": c["num_minibatches"], "GAMMA": c["gamma"],
        "GAE_LAMBDA": c["gae_lambda"], "CLIP_EPS": c["clip_eps"],
        "ENT_COEF": c["entropy_coef"], "VF_COEF": c["value_coef"],
        "MAX_GRAD_NORM": c["max_grad_norm"], "ACTIVATION": c["activation"],
        "ENV_NAME": "MPE_simple_spread_v3",
        "ENV_KWARGS": {"num_agents": args.num_agents, "num_landmarks": args.num_agents},
        "ANNEAL_LR": c["anneal_lr"],
    }
    train = jax.jit(jax.vmap(module.make_train(dict(config))))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t0
    returns = np.asarray(out["metrics"]["returned_episode_returns"], np.float64)
    returns = returns.reshape(returns.shape[0], returns.shape[1], -1).mean(-1)
    steps = returns.shape[1] * config["NUM_ENVS"] * config["NUM_STEPS"] * args.seeds
    return returns, {"compile_s": compile_s, "run_s": run_s,
                     "env_steps_per_s": steps / run_s, "config": config}


def main() -> None:
    args = parse_args()
    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    factor = scale_factor(args.num_agents)
    rand = random_returns(args.num_agents, args.seed)
    print(f"device: {jax.devices()[0].device_kind}  agents: {args.num_agents}  "
          f"seeds: {args.seeds}")
    print(f"random policy: ours {rand['ours']:.2f}  JaxMARL scale {rand['jaxmarl']:.2f}  "
          f"(measured ratio {rand['jaxmarl'] / rand['ours']:.3f}, nominal N*26/25 = "
          f"{factor:.3f})", flush=True)
    entries = []
    if args.jaxmarl_script:
        print("\nJaxMARL IPPO-FF (its own script) ...", flush=True)
        peer, timing = run_jaxmarl(args.jaxmarl_script, args)
        row = summarize(peer / factor, rand["ours"])
        row.update(name="JaxMARL IPPO (shared, its script)", setting="jaxmarl",
                   scale_note="converted from JaxMARL's scale by the nominal factor",
                   jaxmarl_scale=summarize(peer, rand["jaxmarl"]), **timing)
        entries.append(row)
    for setting in args.settings:
        for variant in args.variants:
            if setting == "paper" and variant == "ippo_shared":
                continue  # the paper's setting is independent parameters only
            cfg = our_config(setting, variant, args)
            print(f"\ndpo-jax {variant} at {setting} settings ...", flush=True)
            returns, timing = run_ours(env, cfg, args)
            row = summarize(returns, rand["ours"])
            row.update(name=f"dpo-jax {variant}", setting=setting,
                       jaxmarl_scale=summarize(returns * factor, rand["ours"] * factor),
                       config=cfg.__dict__, **timing)
            entries.append(row)

    print(f"\nMPE simple spread, {args.num_agents} agents, {args.seeds} seeds; final = "
          "mean of the last 10% of updates, +- 95% CI over seeds")
    header = (f"{'entry':38s} {'setting':8s} {'steps':>9s} {'first 10%':>10s} "
              f"{'final (ours)':>17s} {'final (JaxMARL)':>19s} {'gain':>6s}")
    print(header)
    for e in entries:
        steps = e.get("config", {}).get("total_timesteps", args.total_timesteps)
        j = e["jaxmarl_scale"]
        print(f"{e['name']:38s} {e['setting']:8s} {steps:>9,} {e['first10_mean']:>10.2f} "
              f"{e['final_mean']:>9.2f} +- {e['final_ci95']:<5.2f} "
              f"{j['final_mean']:>10.2f} +- {j['final_ci95']:<6.2f} "
              f"{e['gain_over_random']:>6.3f}")
    print(f"{'uniform random policy':38s} {'':8s} {'':>9s} {'':>10s} "
          f"{rand['ours']:>17.2f} {rand['jaxmarl']:>19.2f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(experiments._jsonable({
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {jax.devices()[0].device_kind}, "
                   f"{len(jax.devices())} device(s), jax {jax.__version__}",
        "env": "mpe_spread", "num_agents": args.num_agents, "seeds": args.seeds,
        "overrides": args.overrides,
        "random_policy": rand, "scale_factor_nominal": factor,
        "scale_factor_measured": rand["jaxmarl"] / rand["ours"],
        "entries": entries,
    }), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
