"""One run of the DPO authors' PyTorch code (github PKU-RL/DPO), driven from outside.

Runs in the authors' own environment (torch, gym 0.17.2), never imports dpo_jax, and
is started by ``benchmarks/authors_parity.py``; their tree is read from
``--authors-tree`` (extracted in a temporary folder, never part of dpo-jax). Their
code runs unmodified; from outside this script only

- replaces ``torch.autograd.set_detect_anomaly``, which their update calls every time
  (``r_mappo.py``), by a no-op unless ``--anomaly`` is given (same results, ~3x faster);
- with ``--sampling per_agent``, gives their buffer (``shared_buffer.py``) a
  ``randperm`` that permutes time steps only, so each agent trains on its own samples
  (the one-line change the parity benchmark compares with);
- records, after every update, the exact J(pi)/J* of the learned product policy on the
  matrix game (numpy, float64, finite-horizon from state 0, from the game's own
  tables) or the returns of the MPE training episodes that ended in the update;
- with ``--dump PATH``, saves the first update (``--dump-updates K``: the first K)
  instead of training on (an ``.npz``: every agent's actor and critic parameters
  before and after each, the buffer it trained on, the betas it used and its
  statistics) and exits; the updates replay in dpo-jax with
  ``benchmarks/authors_update_diff.py``;
- with ``--env-check PATH`` (MPE), steps their ``navigation_control_full`` env from a
  given state (three agents in contact) under random actions and saves positions,
  velocities, rewards and observations (JSON) for the same comparison.

    python authors_worker.py --authors-tree T --task game --algo dpo --seed 1 \
        --steps 30000 --out run.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import types

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors-tree", required=True, help="their on-policy-main folder")
    p.add_argument("--task", choices=["game", "mpe"], required=True)
    p.add_argument("--algo", choices=["dpo", "ippo"], required=True)
    p.add_argument("--sampling", choices=["pooled", "per_agent"], default="pooled",
                   help="pooled: their code as shipped; per_agent: time steps permuted only")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--num-agents", type=int, default=5, help="MPE agents")
    p.add_argument("--anomaly", action="store_true",
                   help="keep their per-update torch.autograd.set_detect_anomaly(True)")
    p.add_argument("--out", required=True)
    p.add_argument("--dump", default=None,
                   help="save the first updates (parameters, buffer) to this .npz and exit")
    p.add_argument("--dump-updates", type=int, default=1,
                   help="how many updates --dump saves (their Adam states carried)")
    p.add_argument("--env-check", default=None,
                   help="MPE: step their env from a fixed state, save it to this JSON, exit")
    return p.parse_args()


def product_policy_return(probs: np.ndarray, reward: np.ndarray, trans: np.ndarray,
                          horizon: int) -> float:
    """Exact expected return over ``horizon`` steps from state 0 of the product policy
    ``probs [N, S, A]`` on ``reward [S, A, .., A]`` and ``trans [S, A, .., A, S]``."""
    num_agents, num_states, _ = probs.shape
    joint = probs[0]
    for i in range(1, num_agents):
        joint = (joint[:, :, None] * probs[i][:, None, :]).reshape(num_states, -1)
    r = reward.reshape(num_states, -1)
    p = trans.reshape(num_states, -1, num_states)
    r_pi = (joint * r).sum(1)
    p_pi = np.einsum("sj,sjt->st", joint, p)
    dist = np.zeros(num_states)
    dist[0] = 1.0
    total = 0.0
    for _ in range(horizon):
        total += dist @ r_pi
        dist = dist @ p_pi
    return float(total)


def optimal_return(reward: np.ndarray, trans: np.ndarray, horizon: int) -> float:
    """J* by backward dynamic programming over joint actions from state 0."""
    num_states = reward.shape[0]
    r = reward.reshape(num_states, -1)
    p = trans.reshape(num_states, -1, num_states)
    value = np.zeros(num_states)
    for _ in range(horizon):
        value = (r + p @ value).max(1)
    return float(value[0])


def per_agent_torch(num_agents: int) -> object:
    """A stand-in for the ``torch`` module their buffer uses, whose ``randperm`` keeps
    each agent's samples in its own column (their flat index is (t * threads + e) * N
    + i, so permuting whole rows of N keeps agent i on column i)."""
    import torch

    def randperm(n: int, *args, **kwargs):
        rows = torch.randperm(n // num_agents)
        return (rows[:, None] * num_agents + torch.arange(num_agents)).reshape(-1)

    class PerAgentTorch:
        def __getattr__(self, name: str):
            return randperm if name == "randperm" else getattr(torch, name)

    return PerAgentTorch()


BUFFER_FIELDS = ("obs", "actions", "action_log_probs", "value_preds", "returns", "rewards",
                 "masks", "active_masks")


def install_dump(base_runner: types.ModuleType, path: str, num_agents: int,
                 updates: int = 1) -> None:
    """Make their runner save its first ``updates`` updates to ``path`` (``.npz``) and
    exit: for update k (1-based), ``u{k}.before.actor{i}.{name}`` /
    ``u{k}.after.actor{i}.{name}`` (and ``critic``) from their modules'
    ``state_dict``, ``u{k}.buf.{field}`` of their buffer, the betas the update used
    (``u{k}.beta_sqrt_kl``, ``u{k}.beta_kl``; DPO) and ``u{k}.info.{key}`` of its
    statistics. Their Adam states carry from update to update, as in their runs."""
    original = base_runner.Runner.train
    saved: dict[str, np.ndarray] = {}

    def snapshot(runner) -> dict:
        out = {}
        for i in range(num_agents):
            for part in ("actor", "critic"):
                module = getattr(runner.trainer.policy, part)[i]
                for name, value in module.state_dict().items():
                    out[f"{part}{i}.{name}"] = value.detach().cpu().numpy().copy()
        return out

    def train_and_dump(runner, *a, **k):
        step = sum(1 for key in saved if key.endswith(".done")) + 1
        prefix = f"u{step}."
        before = snapshot(runner)
        buf = {f"buf.{n}": np.array(getattr(runner.buffer, n)) for n in BUFFER_FIELDS}
        info = original(runner, *a, **k)
        after = snapshot(runner)
        # their train() adapts the betas first (from the previous update's last
        # minibatch), then runs the epochs: the values after it are the ones it used
        # copies: their next update changes these arrays in place
        betas = {n: np.array(getattr(runner.trainer, n), np.float64)
                 for n in ("beta_sqrt_kl", "beta_kl") if hasattr(runner.trainer, n)}
        saved.update({prefix + f"before.{n}": v for n, v in before.items()})
        saved.update({prefix + f"after.{n}": v for n, v in after.items()})
        saved.update({prefix + n: v for n, v in {**buf, **betas}.items()})
        saved.update({prefix + f"info.{n}": np.float64(v) for n, v in info.items()
                      if np.ndim(v) == 0})
        saved[prefix + "done"] = np.int64(1)
        if step == updates:
            np.savez(path, **saved)
            raise SystemExit(0)
        return info

    base_runner.Runner.train = train_and_dump


ENV_CHECK_POS = [[0.0, 0.0], [0.08, 0.0], [0.0, 0.09], [-0.5, 0.5], [0.5, -0.5]]
"""Agent positions of ``--env-check``: agents 0-2 closer than two radii (0.1)."""


def env_check(path: str, num_agents: int, steps: int = 10, seed: int = 1) -> None:
    """Their MPE navigation env (``MPEEnv``, ``navigation_control_full``) stepped from
    ``ENV_CHECK_POS`` at rest with landmarks and actions drawn from ``seed``; saves
    the start, the actions (their indices) and after every step the positions,
    velocities, agent 0's reward and the observations."""
    from onpolicy.envs.mpe.MPE_env import MPEEnv

    env = MPEEnv(argparse.Namespace(scenario_name="navigation_control_full",
                                    num_agents=num_agents, num_landmarks=num_agents,
                                    collision_penal=0, vision=1, episode_length=25))
    env.reset()
    world, rng = env.world, np.random.default_rng(seed)
    landmarks = rng.uniform(-1, 1, (num_agents, 2))
    for agent, pos in zip(world.agents, np.array(ENV_CHECK_POS[:num_agents])):
        agent.state.p_pos, agent.state.p_vel = pos.copy(), np.zeros(2)
    for landmark, pos in zip(world.landmarks, landmarks):
        landmark.state.p_pos = pos.copy()
    actions = rng.integers(0, 5, (steps, num_agents))
    out = {"pos0": ENV_CHECK_POS[:num_agents], "landmarks": landmarks.tolist(),
           "actions": actions.tolist(), "pos": [], "vel": [], "reward": [], "obs": []}
    for act in actions:
        obs, rew, _, _ = env.step(list(np.eye(5)[act]))
        out["pos"].append([a.state.p_pos.tolist() for a in world.agents])
        out["vel"].append([a.state.p_vel.tolist() for a in world.agents])
        out["reward"].append(float(rew[0][0]))
        out["obs"].append(np.asarray(obs).tolist())
    pathlib.Path(path).write_text(json.dumps(out))


def game_args(args: argparse.Namespace) -> list[str]:
    """Their matrix-game command line: their defaults, one rollout thread, CPU."""
    argv = ["--map_name", "random_matrix_game_3", "--seed", str(args.seed),
            "--num_env_steps", str(args.steps), "--n_rollout_threads", "1",
            "--n_training_threads", "1", "--cuda", "--experiment_name", "parity"]
    return argv + (["--penalty_method", "True"] if args.algo == "dpo" else [])


def mpe_args(args: argparse.Namespace) -> list[str]:
    """Their MPE command line for navigation_control_full (their defaults)."""
    argv = ["--map_name", "navigation_control_full", "--num_agents", str(args.num_agents),
            "--seed", str(args.seed), "--num_env_steps", str(args.steps),
            "--n_rollout_threads", "1", "--n_training_threads", "1", "--cuda",
            "--experiment_name", "parity"]
    return argv + (["--penalty_method", "True"] if args.algo == "dpo" else [])


def main() -> None:
    args = parse_args()
    tree = pathlib.Path(args.authors_tree).resolve()
    args.out = str(pathlib.Path(args.out).resolve())  # before the chdir below
    if args.dump:
        args.dump = str(pathlib.Path(args.dump).resolve())
    if args.env_check:
        args.env_check = str(pathlib.Path(args.env_check).resolve())
    sys.path.insert(0, str(tree))
    os.chdir(tree)  # their scripts load a_mat_model/*.pkl relative to it
    sys.argv = [sys.argv[0]]
    import torch

    torch.set_num_threads(1)
    if not args.anomaly:
        torch.autograd.set_detect_anomaly = lambda *a, **k: None
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))  # imported, never used
    num_agents = 3 if args.task == "game" else args.num_agents
    if args.env_check:
        env_check(args.env_check, num_agents)
        return
    if args.sampling == "per_agent":
        import onpolicy.utils.shared_buffer as shared_buffer

        shared_buffer.torch = per_agent_torch(num_agents)

    curve: list[dict] = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if args.task == "game":
        import pickle

        import train_matrix_game as script
        from onpolicy.runner.shared import base_runner

        with open(tree / "a_mat_model" / "random_matrix_game_3.pkl", "rb") as f:
            tables = pickle.load(f)
        horizon = tables["reward"].shape[0]
        j_star = optimal_return(tables["reward"], tables["trans_mat"], horizon)
        states = tables["reward"].shape[0]
        original_train = base_runner.Runner.train

        def train_and_score(runner, *a, **k):
            info = original_train(runner, *a, **k)
            obs = np.repeat(np.eye(states, dtype=np.float32), num_agents, axis=0)
            rnn = np.zeros((states * num_agents, runner.recurrent_N, runner.hidden_size),
                           np.float32)
            masks = np.ones((states * num_agents, 1), np.float32)
            with torch.no_grad():
                probs = runner.trainer.policy.get_probs(obs, rnn, masks)
            probs = probs.cpu().numpy().reshape(states, num_agents, -1).transpose(1, 0, 2)
            j = product_policy_return(probs.astype(np.float64), tables["reward"],
                                      tables["trans_mat"], horizon)
            steps = (len(curve) + 1) * runner.episode_length * runner.n_rollout_threads
            curve.append({"env_steps": steps, "exact_return": j, "optimality_ratio": j / j_star,
                          "wall_s": time.perf_counter() - t0})
            return info

        base_runner.Runner.train = train_and_score
        if args.dump:
            install_dump(base_runner, args.dump, num_agents, args.dump_updates)
        script.main(game_args(args))
        meta = {"j_star": j_star, "horizon": horizon}
    else:
        import train_mpe as script
        from onpolicy.envs import env_wrappers
        from onpolicy.runner.shared import base_runner

        finished: list[float] = []
        running = {"ret": 0.0}
        original_step = env_wrappers.DummyVecEnv.step_wait

        def step_and_count(vec):
            obs, rews, dones, infos = original_step(vec)
            running["ret"] += float(np.asarray(rews)[0, 0].reshape(-1)[0])
            if np.all(dones[0]):
                finished.append(running["ret"])
                running["ret"] = 0.0
            return obs, rews, dones, infos

        env_wrappers.DummyVecEnv.step_wait = step_and_count
        original_train = base_runner.Runner.train

        def train_and_log(runner, *a, **k):
            info = original_train(runner, *a, **k)
            steps = (len(curve) + 1) * runner.episode_length * runner.n_rollout_threads
            curve.append({"env_steps": steps,
                          "episode_return": float(np.mean(finished)) if finished else None,
                          "episodes": len(finished), "wall_s": time.perf_counter() - t0})
            finished.clear()
            return info

        base_runner.Runner.train = train_and_log
        if args.dump:
            install_dump(base_runner, args.dump, num_agents, args.dump_updates)
        script.main(mpe_args(args))
        meta = {"num_agents": args.num_agents}
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "code": "authors", "task": args.task, "algo": args.algo, "sampling": args.sampling,
        "seed": args.seed, "steps": args.steps, "anomaly_detection": args.anomaly,
        "wall_s": wall, "cpu_s": cpu,
        "env_steps_per_s": curve[-1]["env_steps"] / wall if curve else None,
        "env_steps_per_cpu_s": curve[-1]["env_steps"] / cpu if curve else None,
        "torch": torch.__version__, "meta": meta, "curve": curve}))


if __name__ == "__main__":
    main()
