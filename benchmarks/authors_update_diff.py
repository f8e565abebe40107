"""One update of the authors' PyTorch code replayed in dpo-jax, from the same
parameters on the same batch.

    python benchmarks/authors_update_diff.py --authors-tree T --authors-python P

``T`` is their ``on-policy-main`` folder (github PKU-RL/DPO, extracted in a temporary
folder; nothing of it is part of dpo-jax) and ``P`` the Python of an environment with
their dependencies (as for ``authors_parity.py``).

For each case (MPE navigation with 5 agents and their matrix game; IPPO and DPO;
per-agent samples, so that the one minibatch of their update holds the same samples
in both codes whatever its order), their unmodified code collects its first batch and
updates once (``authors_worker.py --dump``: their parameters before and after the
update, the buffer, the betas). dpo-jax then loads their parameters, recomputes the
behaviour policy, the values and GAE from their buffer, standardises the advantages,
and runs the same update (``dpo_jax.training.trainer.update_epochs``, fresh Adam as
theirs) under the ``authors`` preset, and again with single fields put back to the
library defaults (``entropy_coef=0.01``; ``loss_mean_over_agents=False``) to show
what each changes. Reported per case:

- forward pass: the largest difference of the behaviour log-probabilities and of the
  values on their batch, and of GAE's advantages;
- after the update: the largest difference of the action probabilities on the batch,
  KL(before || after) averaged over the batch in each code, and the largest parameter
  difference next to the largest parameter move of their update;
- the rounding sensitivity of the update: how far dpo-jax's own action probabilities
  move when their starting parameters are perturbed by one part in 10^7 (a float32
  rounding), under the ``authors`` preset;
- the env: their MPE navigation (``authors_worker.py --env-check``) and dpo-jax's
  ``mpe_navigation`` with the preset's env arguments, stepped from the same state (three
  agents in contact) under the same random actions: the largest differences of
  positions, velocities, rewards and observations.

Writes ``update_diff.json`` (``--out``) and prints the table.

With ``--updates K`` their code trains its first K updates instead (its Adam states
carried, as in its runs) and saves each; dpo-jax replays them three ways
(``CHAIN_MODES``): on its own from their first parameters (its behaviour policy and
values on their buffers), from their parameters at every update with its own Adam
state carried, and from their parameters with a fresh Adam state every update.
Writes ``update_chain.json`` (``--chain-out``): per case, mode and update, the
largest differences of the action probabilities and the parameters after it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = (("mpe", "ippo"), ("mpe", "dpo"), ("game", "ippo"), ("game", "dpo"))
VARIANTS: dict[str, dict[str, object]] = {
    "authors preset": {},
    "entropy_coef=0.01": {"entropy_coef": 0.01},
    "loss_mean_over_agents=False": {"loss_mean_over_agents": False},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors-tree", required=True)
    p.add_argument("--authors-python", required=True)
    p.add_argument("--seed", type=int, default=1, help="their run's seed")
    p.add_argument("--out", default="benchmarks/results/authors_parity/update_diff.json")
    p.add_argument("--updates", type=int, default=1,
                   help="with K > 1: replay their first K updates in a chain "
                        "(replay_chain) and write --chain-out instead")
    p.add_argument("--chain-out",
                   default="benchmarks/results/authors_parity/update_chain.json")
    return p.parse_args()


def run_worker(args: argparse.Namespace, folder: pathlib.Path, path: pathlib.Path,
               *flags: str) -> None:
    """``authors_worker.py`` in their Python with ``flags``; it must write ``path``."""
    cmd = [args.authors_python, str(ROOT / "benchmarks" / "authors_worker.py"),
           "--authors-tree", args.authors_tree, "--out", str(folder / "unused.json"), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise SystemExit(f"their code failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")


def dump_theirs(args: argparse.Namespace, task: str, algo: str, folder: pathlib.Path,
                updates: int = 1) -> list[dict[str, np.ndarray]]:
    """Their first ``updates`` updates of ``task``/``algo`` (per-agent samples), one
    dict of arrays per update (``authors_worker.py --dump``'s ``u{k}.`` entries)."""
    path = folder / f"{task}_{algo}_{updates}.npz"
    run_worker(args, folder, path, "--task", task, "--algo", algo, "--sampling", "per_agent",
               "--seed", str(args.seed), "--steps", "100000", "--dump", str(path),
               "--dump-updates", str(updates))
    with np.load(path) as data:
        return [{k[len(f"u{u}."):]: data[k] for k in data.files if k.startswith(f"u{u}.")}
                for u in range(1, updates + 1)]


def torch_to_flax(data: dict, when: str, part: str, template: Any, num_agents: int) -> Any:
    """Their MLPBase actor/critic ``state_dict`` of every agent as dpo-jax's stacked
    flax parameters (``template``: dpo-jax's own initial parameters, for the tree)."""
    import jax
    import jax.numpy as jnp

    def stack(name: str) -> np.ndarray:
        return np.stack([data[f"{when}.{part}{i}.{name}"] for i in range(num_agents)])

    def dense(prefix: str) -> dict:  # torch Linear weight [out, in] -> kernel [in, out]
        return {"kernel": stack(f"{prefix}.weight").transpose(0, 2, 1),
                "bias": stack(f"{prefix}.bias")}

    def norm(prefix: str) -> dict:
        return {"scale": stack(f"{prefix}.weight"), "bias": stack(f"{prefix}.bias")}

    head = "act.action_out.linear" if part == "actor" else "v_out"
    params = {"params": {
        "MLPTorso_0": {"LayerNorm_0": norm("base.feature_norm"),
                       "Dense_0": dense("base.mlp.fc1.0"),
                       "LayerNorm_1": norm("base.mlp.fc1.2"),
                       "Dense_1": dense("base.mlp.fc2.0.0"),
                       "LayerNorm_2": norm("base.mlp.fc2.0.2")},
        "Dense_0": dense(head)}}
    want = jax.tree.map(np.shape, template)
    got = jax.tree.map(np.shape, params)
    if want != got:
        raise SystemExit(f"their {part} does not map onto dpo-jax's: {got} vs {want}")
    return jax.tree.map(jnp.asarray, params)


def make_env(args: argparse.Namespace, task: str):
    import dpo_jax
    from dpo_jax.config import preset_env_kwargs

    if task == "game":
        path = str(pathlib.Path(args.authors_tree) / "a_mat_model" / "random_matrix_game_3.pkl")
        return dpo_jax.make_env("stochastic_game_authors", path=path,
                                **preset_env_kwargs("authors", "stochastic_game_authors"))
    return dpo_jax.make_env("mpe_navigation", num_agents=5,
                            **preset_env_kwargs("authors", "mpe_navigation"))


def perturbed(data: dict, scale: float = 1e-7, seed: int = 0) -> dict:
    """``data`` with the starting parameters multiplied by ``1 + scale * N(0, 1)``."""
    rng = np.random.default_rng(seed)
    return {k: (v * (1 + scale * rng.standard_normal(v.shape))).astype(v.dtype)
            if k.startswith("before.") else v for k, v in data.items()}


def replay(data: dict, env: Any, task: str, algo: str, overrides: dict) -> dict:
    """dpo-jax's update from their parameters on their batch; the differences (and,
    under ``"probs_after"``, dpo-jax's action probabilities after the update)."""
    import jax
    import jax.numpy as jnp

    import dpo_jax
    from dpo_jax.core import agents as agents_lib
    from dpo_jax.core.advantages import gae
    from dpo_jax.core.objectives import objective_params
    from dpo_jax.training import trainer

    n = env.num_agents
    family = "stochastic_game" if task == "game" else "mpe"
    cfg = dpo_jax.preset("authors", family, sampling="per_agent", algo=algo, **overrides)
    agents = agents_lib.make_agents(cfg, env)
    init = agents_lib.init_agents(agents, jax.random.key(0))
    before = {part: torch_to_flax(data, "before", part, init.params[part], n)
              for part in ("actor", "critic")}
    theirs = {part: torch_to_flax(data, "after", part, init.params[part], n)
              for part in ("actor", "critic")}
    actor_tx, critic_tx = agents_lib.optimizers(agents, objective_params(cfg, n))
    opt = jax.vmap(lambda p: {"actor": actor_tx.init(p["actor"]),
                              "critic": critic_tx.init(p["critic"])})(before)
    state = agents_lib.AgentState(before, opt)

    # their buffer: [T (+1), threads = 1, N, ...]
    obs = jnp.asarray(data["buf.obs"][:-1, 0], jnp.float32)
    if obs.shape[-1] != env.obs_dim:
        raise SystemExit(f"{task}: their observation has {obs.shape[-1]} floats, "
                         f"dpo-jax's {env.obs_dim}")
    action = jnp.asarray(data["buf.actions"][:, 0, :, 0], jnp.int32)
    old_log_prob = jnp.asarray(data["buf.action_log_probs"][:, 0, :, 0])
    values = jnp.asarray(data["buf.value_preds"][:, 0, :, 0])  # [T + 1]: last = bootstrap
    rewards = jnp.asarray(data["buf.rewards"][:, 0, :, 0])
    done = 1.0 - jnp.asarray(data["buf.masks"][1:, 0, :, 0])  # their masks[t + 1] = 0
    returns = jnp.asarray(data["buf.returns"][:-1, 0, :, 0])
    avail = jnp.ones(obs.shape[:2] + (env.mask_dim,), bool)

    dist = agents_lib.policy_params(agents, before, obs, avail)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(dist), action[..., None], -1)[..., 0]
    value = agents_lib.values(agents, before, obs)
    adv, target = gae(rewards, values[:-1], values[1:], done, done, cfg.gamma, cfg.gae_lambda)
    scope = (0, 1) if cfg.advantage_norm_scope == "agent" else (0, 1, 2)
    batch = trainer.Batch(
        obs=obs, avail=avail, action=action, log_prob=log_prob, dist_params=dist,
        value=values[:-1], advantage=trainer.standardize(adv[..., None], None, scope,
                                                          cfg.adv_norm_eps)[..., 0],
        target=target, weight=jnp.ones(action.shape, jnp.float32))
    betas = {k: jnp.asarray(data.get(k, np.full(n, cfg.init_beta_kl)), jnp.float32)
             for k in ("beta_sqrt_kl", "beta_kl")}
    obj = objective_params(cfg, n)
    new, stats = jax.jit(lambda s: trainer.update_epochs(
        agents, s, batch, betas["beta_sqrt_kl"], betas["beta_kl"], obj, cfg,
        jax.random.key(1)))(state)

    def probs(params: Any) -> np.ndarray:
        return np.asarray(jax.nn.softmax(agents_lib.policy_params(agents, params, obs, avail)))

    def kl_from_before(p_after: np.ndarray) -> float:
        p0 = np.asarray(jax.nn.softmax(dist), np.float64)
        return float((p0 * (np.log(p0) - np.log(p_after))).sum(-1).mean())

    p_ours, p_theirs = probs(new.params), probs(theirs)
    leaves = lambda f, *t: [float(x) for x in jax.tree.leaves(jax.tree.map(f, *t))]  # noqa
    return {
        "max_abs_old_log_prob": float(jnp.abs(log_prob - old_log_prob).max()),
        "max_abs_value": float(jnp.abs(value - values[:-1]).max()),
        "max_abs_gae_return": float(jnp.abs(target - returns).max()),
        "max_abs_prob_after": float(np.abs(p_ours - p_theirs).max()),
        "kl_before_after_dpo_jax": kl_from_before(p_ours),
        "kl_before_after_authors": kl_from_before(p_theirs),
        "max_abs_param_after": max(leaves(lambda a, b: jnp.abs(a - b).max(),
                                          new.params, theirs)),
        "max_abs_param_move_authors": max(leaves(lambda a, b: jnp.abs(a - b).max(),
                                                 theirs, before)),
        "clip_frac_dpo_jax": float(np.mean(stats["clip_frac"])),
        "clip_rate_authors": float(data["info.clip_rate"]),
        "entropy_dpo_jax": float(np.mean(stats["entropy"])),
        "entropy_authors": float(data["info.dist_entropy"]),
        "probs_after": p_ours,
    }


def their_batch(data: dict, env: Any, agents: Any, cfg: Any, params: Any,
                own_values: bool) -> Any:
    """dpo-jax's batch of one update from their buffer: the behaviour policy from
    ``params``; values (and GAE's bootstrap) from their buffer, or with
    ``own_values`` from ``params``' critic; advantages standardised as the config says."""
    import jax
    import jax.numpy as jnp

    from dpo_jax.core import agents as agents_lib
    from dpo_jax.core.advantages import gae
    from dpo_jax.training import trainer

    all_obs = jnp.asarray(data["buf.obs"][:, 0], jnp.float32)  # [T + 1, N, obs]
    obs = all_obs[:-1]
    action = jnp.asarray(data["buf.actions"][:, 0, :, 0], jnp.int32)
    rewards = jnp.asarray(data["buf.rewards"][:, 0, :, 0])
    done = 1.0 - jnp.asarray(data["buf.masks"][1:, 0, :, 0])
    avail = jnp.ones(obs.shape[:2] + (env.mask_dim,), bool)
    values = (agents_lib.values(agents, params, all_obs) if own_values
              else jnp.asarray(data["buf.value_preds"][:, 0, :, 0]))
    dist = agents_lib.policy_params(agents, params, obs, avail)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(dist), action[..., None], -1)[..., 0]
    adv, target = gae(rewards, values[:-1], values[1:], done, done, cfg.gamma, cfg.gae_lambda)
    scope = (0, 1) if cfg.advantage_norm_scope == "agent" else (0, 1, 2)
    return trainer.Batch(
        obs=obs, avail=avail, action=action, log_prob=log_prob, dist_params=dist,
        value=values[:-1], advantage=trainer.standardize(adv[..., None], None, scope,
                                                          cfg.adv_norm_eps)[..., 0],
        target=target, weight=jnp.ones(action.shape, jnp.float32))


CHAIN_MODES = {
    "dpo-jax alone": "dpo-jax's parameters and Adam state carried from update to update; "
                     "behaviour policy and values its own, on their buffers",
    "their start, carried Adam": "each update from their parameters, dpo-jax's Adam state "
                                 "carried from its previous update in this mode",
    "their start, fresh Adam": "each update from their parameters with a fresh Adam state",
}
"""The three ways ``replay_chain`` runs K updates of theirs in dpo-jax."""


def replay_chain(dumps: list[dict], env: Any, task: str, algo: str) -> dict[str, list[dict]]:
    """K updates of theirs replayed in dpo-jax in each of ``CHAIN_MODES``: per mode and
    update, the largest difference of the action probabilities on that update's batch
    after it, and of the parameters, next to their update's largest parameter move."""
    import jax
    import jax.numpy as jnp

    import dpo_jax
    from dpo_jax.core import agents as agents_lib
    from dpo_jax.core.objectives import objective_params
    from dpo_jax.training import trainer

    n = env.num_agents
    family = "stochastic_game" if task == "game" else "mpe"
    cfg = dpo_jax.preset("authors", family, sampling="per_agent", algo=algo)
    agents = agents_lib.make_agents(cfg, env)
    template = agents_lib.init_agents(agents, jax.random.key(0)).params
    obj = objective_params(cfg, n)
    actor_tx, critic_tx = agents_lib.optimizers(agents, obj)

    def params_of(data: dict, when: str) -> Any:
        return {part: torch_to_flax(data, when, part, template[part], n)
                for part in ("actor", "critic")}

    def fresh(params: Any) -> Any:
        return agents_lib.AgentState(params, jax.vmap(
            lambda p: {"actor": actor_tx.init(p["actor"]),
                       "critic": critic_tx.init(p["critic"])})(params))

    @jax.jit
    def update(state: Any, batch: Any, beta_sqrt: Any, beta_kl: Any) -> Any:
        return trainer.update_epochs(agents, state, batch, beta_sqrt, beta_kl, obj, cfg,
                                     jax.random.key(1))[0]

    def gaps(data: dict, ours: Any) -> dict:
        theirs, start = params_of(data, "after"), params_of(data, "before")
        obs = jnp.asarray(data["buf.obs"][:-1, 0], jnp.float32)
        avail = jnp.ones(obs.shape[:2] + (env.mask_dim,), bool)
        probs = lambda p: jax.nn.softmax(agents_lib.policy_params(agents, p, obs, avail))  # noqa
        largest = lambda f, *t: max(float(x) for x in jax.tree.leaves(jax.tree.map(f, *t)))  # noqa
        return {"max_abs_prob_after": float(jnp.abs(probs(ours) - probs(theirs)).max()),
                "max_abs_param_after": largest(lambda a, b: jnp.abs(a - b).max(), ours, theirs),
                "max_abs_param_move_authors": largest(lambda a, b: jnp.abs(a - b).max(),
                                                      theirs, start)}

    out: dict[str, list[dict]] = {mode: [] for mode in CHAIN_MODES}
    alone = carried = fresh(params_of(dumps[0], "before"))
    for data in dumps:
        betas = [jnp.asarray(data.get(k, np.full(n, cfg.init_beta_kl)), jnp.float32)
                 for k in ("beta_sqrt_kl", "beta_kl")]
        start = params_of(data, "before")
        alone = update(alone, their_batch(data, env, agents, cfg, alone.params, True), *betas)
        carried = update(agents_lib.AgentState(start, carried.opt_state),
                         their_batch(data, env, agents, cfg, start, False), *betas)
        restarted = update(fresh(start), their_batch(data, env, agents, cfg, start, False),
                           *betas)
        for mode, state in zip(CHAIN_MODES, (alone, carried, restarted)):
            out[mode].append(gaps(data, state.params))
    return out


THEIR_TO_JAXMARL_ACTION = np.array([0, 2, 1, 4, 3])
"""Their discrete MPE actions (1 +x, 2 -x, 3 +y, 4 -y) as JaxMARL's (1 -x, 2 +x, 3 -y,
4 +y)."""


def env_diff(args: argparse.Namespace, folder: pathlib.Path) -> dict:
    """Their MPE navigation env against dpo-jax's, stepped alike (module docstring)."""
    import jax
    import jax.numpy as jnp

    path = folder / "env_check.json"
    run_worker(args, folder, path, "--task", "mpe", "--algo", "ippo", "--env-check", str(path))
    theirs = json.loads(path.read_text())
    env = make_env(args, "mpe")
    n = env.num_agents
    state = env.make_state(np.array(theirs["pos0"]), np.array(theirs["landmarks"]))
    step = jax.jit(env.step)
    worst = {"pos": 0.0, "vel": 0.0, "reward": 0.0, "obs": 0.0}
    for t, actions in enumerate(np.array(theirs["actions"])):
        out = step(jax.random.key(t), state, jnp.asarray(THEIR_TO_JAXMARL_ACTION[actions],
                                                         jnp.int32))
        state = out.state
        found = {"pos": np.asarray(state.p_pos[:n]), "vel": np.asarray(state.p_vel[:n]),
                 "reward": float(out.reward[0]), "obs": np.asarray(out.obs)}
        for key in worst:
            gap = np.abs(np.asarray(found[key]) - np.asarray(theirs[key][t])).max()
            worst[key] = max(worst[key], float(gap))
    return {"steps": len(theirs["actions"]), **{f"max_abs_{k}": v for k, v in worst.items()}}


def write_report(path: str, args: argparse.Namespace, **fields: Any) -> None:
    """Write a result file: the command, machine, jax version, date, their run's seed
    and the sampling mode, then ``fields``."""
    import jax

    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/authors_update_diff.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), "seed": args.seed,
        "sampling": "per_agent", **fields}, indent=1))
    print(f"\nwrote {out}")


def main_chain(args: argparse.Namespace) -> None:
    """``--updates K``: their first K updates of every case replayed in a chain."""
    table: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, algo in CASES:
            dumps = dump_theirs(args, task, algo, pathlib.Path(tmp), args.updates)
            table[f"{task}/{algo}"] = replay_chain(dumps, make_env(args, task), task, algo)
    print("| case | mode | max |d prob| after update 1 / 2 / K | max |d param| after K / "
          "their move at K |")
    print("|---|---|---|---|")
    for case, modes in table.items():
        for mode, rows in modes.items():
            probs = " / ".join(f"{rows[k]['max_abs_prob_after']:.1e}"
                               for k in (0, 1, len(rows) - 1))
            print(f"| {case} | {mode} | {probs} | {rows[-1]['max_abs_param_after']:.1e} / "
                  f"{rows[-1]['max_abs_param_move_authors']:.1e} |")
    write_report(args.chain_out, args, updates=args.updates, modes=CHAIN_MODES, cases=table)


def main() -> None:
    args = parse_args()
    from dpo_jax.running import scripts

    scripts.setup()
    if args.updates > 1:
        main_chain(args)
        return
    table: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, algo in CASES:
            (data,) = dump_theirs(args, task, algo, pathlib.Path(tmp))
            env = make_env(args, task)
            rows = {name: replay(data, env, task, algo, over)
                    for name, over in VARIANTS.items()}
            shaken = replay(perturbed(data), env, task, algo, {})
            rows["authors preset"]["rounding_sensitivity"] = float(np.abs(
                shaken["probs_after"] - rows["authors preset"]["probs_after"]).max())
            for row in rows.values():
                row.pop("probs_after")
            table[f"{task}/{algo}"] = rows
        env_step = env_diff(args, pathlib.Path(tmp))
    print("| case | dpo-jax config | max |d log-prob| before | max |d return| | "
          "max |d prob| after | KL(before||after) dpo-jax / theirs | "
          "max |d param| / their largest move |")
    print("|---|---|---|---|---|---|---|")
    for case, rows in table.items():
        for name, r in rows.items():
            print(f"| {case} | {name} | {r['max_abs_old_log_prob']:.1e} | "
                  f"{r['max_abs_gae_return']:.1e} | {r['max_abs_prob_after']:.1e} | "
                  f"{r['kl_before_after_dpo_jax']:.5f} / {r['kl_before_after_authors']:.5f} | "
                  f"{r['max_abs_param_after']:.1e} / {r['max_abs_param_move_authors']:.1e} |")
    print("\nrounding sensitivity (max |d prob| of dpo-jax's update from parameters "
          "perturbed by 1e-7): " + ", ".join(
              f"{case} {rows['authors preset']['rounding_sensitivity']:.1e}"
              for case, rows in table.items()))
    print(f"env, {env_step['steps']} steps from three agents in contact: max |d position| "
          f"{env_step['max_abs_pos']:.1e}, velocity {env_step['max_abs_vel']:.1e}, reward "
          f"{env_step['max_abs_reward']:.1e}, observation {env_step['max_abs_obs']:.1e}")
    write_report(args.out, args, cases=table, env_step=env_step)


if __name__ == "__main__":
    main()
