"""The paper's theory, exactly, on small random games (``dpo_jax.theory``).

    python examples/theory.py                      # ~2-3 min on 2 CPU cores
    python examples/theory.py --games 200 --updates 100

Three experiments, all on exact advantages and visitations (no sampling), float64:

1. Improvement curves: from the uniform policy, ``--updates`` decentralized updates
   of exact-advantage DPO (eq. 19 with eq. 20's adaptive betas), IPPO (clip 0.2),
   IPPO-KL (adaptive beta_2) and eq. 17 with Theorem 3.2's exact constants
   ("DPO theory"); ``J(pi_t) / J*`` per update (J* the centralized optimum).
2. Bound vs truth: for random games and random pairs of policies, Theorem 3.2's
   bound (eq. 12) against the true ``J(pi) - J(pi_old)``; every point must lie on
   or below the diagonal.
3. How often one update decreases ``J``: one update of each algorithm from a random
   policy on each of ``--games`` random games, at a small and a large step size.

Writes ``theory.png`` (curves and scatter) and ``theory.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax import theory
from dpo_jax.running import scripts

ALGOS = {"dpo": "DPO (eq. 19, adaptive betas)", "ippo": "IPPO (clip 0.2)",
         "ippo_kl": "IPPO-KL (adaptive beta)", "dpo_theory": "DPO theory (eq. 17)"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--states", type=scripts.positive_int, default=5)
    p.add_argument("--agents", type=scripts.positive_int, default=3)
    p.add_argument("--actions", type=scripts.positive_int, default=3)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--updates", type=scripts.positive_int, default=60)
    p.add_argument("--games", type=scripts.positive_int, default=100)
    p.add_argument("--d-target", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=scripts.out_dir_arg, default="runs/theory")
    return p.parse_args()


def adapt(beta: np.ndarray, kl: np.ndarray, d_target: float) -> np.ndarray:
    """Eq. 20 with delta 1.5, omega 2, clipped to [1e-3, 1e3] as the trainer."""
    beta = np.where(kl > d_target * 1.5, beta * 2.0, np.where(kl < d_target / 1.5,
                                                               beta / 2.0, beta))
    return np.clip(beta, 1e-3, 1e3)


def curves(game, args, update) -> dict[str, list[float]]:
    """``J(pi_t) / J*`` over updates for each algorithm, from the uniform policy."""
    n, s, a = args.agents, args.states, args.actions
    optimum = float(theory.optimal_return(game, args.gamma))
    out = {}
    for algo in ALGOS:
        cfg = theory.UpdateConfig(algo=algo, learning_rate=0.1, num_steps=15)
        probs = jnp.full((n, s, a), 1.0 / a)
        beta_sqrt, beta_kl = np.full(n, 0.01), np.full(n, 0.01)
        ratios = [float(theory.discounted_values(probs, game, args.gamma).expected_return)
                  / optimum]
        for _ in range(args.updates):
            new = update(probs, game, args.gamma, cfg, jnp.asarray(beta_sqrt),
                         jnp.asarray(beta_kl))
            kl = np.asarray(theory.kl_avg(probs, new, game, args.gamma))
            beta_sqrt, beta_kl = adapt(beta_sqrt, kl, args.d_target), adapt(beta_kl, kl,
                                                                              args.d_target)
            probs = new
            ratios.append(float(theory.discounted_values(probs, game, args.gamma)
                                .expected_return) / optimum)
        out[algo] = ratios
    return out


def scatter(args, bound) -> tuple[list[float], list[float]]:
    """(true improvement, bound) for random games and policy pairs."""
    truth, bounds = [], []
    rng = np.random.default_rng(args.seed)
    for k in range(args.games):
        key = jax.random.key(10_000 + k)
        g_key, o_key, n_key = jax.random.split(key, 3)
        game = theory.random_game(g_key, args.states, args.agents, args.actions)
        shape = (args.agents, args.states, args.actions)
        old = jax.random.normal(o_key, shape)
        new = old + float(rng.choice([0.01, 0.03, 0.1, 0.3])) * jax.random.normal(n_key, shape)
        out = bound(jax.nn.softmax(new), jax.nn.softmax(old), game, args.gamma, "exact")
        truth.append(float(out.true_improvement))
        bounds.append(float(out.bound))
    return truth, bounds


def decrease_rates(args, update) -> dict[str, dict[str, float]]:
    """Fraction of random games on which one update of each algorithm lowers J."""
    rates: dict[str, dict[str, float]] = {}
    for lr in (0.05, 1.0):
        for algo in ALGOS:
            cfg = theory.UpdateConfig(algo=algo, learning_rate=lr, num_steps=15)
            worse = 0
            for k in range(args.games):
                g_key, p_key = jax.random.split(jax.random.key(20_000 + k))
                game = theory.random_game(g_key, args.states, args.agents, args.actions)
                old = jax.nn.softmax(jax.random.normal(
                    p_key, (args.agents, args.states, args.actions)), axis=-1)
                new = update(old, game, args.gamma, cfg, None, None)
                before = theory.discounted_values(old, game, args.gamma).expected_return
                after = theory.discounted_values(new, game, args.gamma).expected_return
                worse += int(float(after) < float(before) - 1e-9)
            rates.setdefault(f"lr={lr:g}", {})[algo] = worse / args.games
    return rates


def plot(path: pathlib.Path, ratio_curves, truth, bounds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for algo, values in ratio_curves.items():
        left.plot(values, label=ALGOS[algo])
    left.set_xlabel("update")
    left.set_ylabel("J(pi) / J* (exact, discounted)")
    left.set_title("exact-advantage updates from the uniform policy\n(eq. 17's "
                   "constants are so large that it never moves, as Sec. 3.5 says)",
                   fontsize=9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.scatter(truth, bounds, s=10)
    low = min(min(truth), min(bounds))
    high = max(max(truth), max(bounds))
    right.plot([low, high], [low, high], "k--", lw=1, label="bound = truth")
    right.set_xscale("symlog", linthresh=1e-3)
    right.set_yscale("symlog", linthresh=1e-3)
    right.set_xlabel("true J(pi) - J(pi_old)")
    right.set_ylabel("Theorem 3.2 bound (exact constants)")
    right.set_title("the bound never exceeds the truth")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        update = jax.jit(theory.exact_update, static_argnums=(2, 3))
        bound = jax.jit(theory.lower_bound, static_argnums=(3, 4))
        game = theory.random_game(jax.random.key(args.seed), args.states, args.agents,
                                  args.actions)
        ratio_curves = curves(game, args, update)
        truth, bounds = scatter(args, bound)
        rates = decrease_rates(args, update)
    violations = sum(b > t + 1e-9 for t, b in zip(truth, bounds))
    decreases = {a: int(np.sum(np.diff(v) < -1e-9)) for a, v in ratio_curves.items()}
    out_dir = pathlib.Path(args.out)
    plot(out_dir / "theory.png", ratio_curves, truth, bounds)
    summary = {
        "command": "python examples/theory.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "game": {"states": args.states, "agents": args.agents, "actions": args.actions,
                 "gamma": args.gamma, "rewards": "uniform [-5, 5]",
                 "transitions": "Dirichlet(1)"},
        "curves_optimality_ratio": ratio_curves,
        "curve_decreases": decreases,
        "bound_vs_truth": {"true_improvement": truth, "bound": bounds,
                           "violations": int(violations)},
        "one_update_decrease_rate": rates,
        "seconds": time.perf_counter() - t0,
    }
    (out_dir / "theory.json").write_text(json.dumps(summary, indent=1))
    print(f"final J/J* after {args.updates} updates: " + ", ".join(
        f"{a} {v[-1]:.3f} ({decreases[a]} decreases)" for a, v in ratio_curves.items()))
    gap = np.asarray(truth) - np.asarray(bounds)
    print(f"Theorem 3.2 on {args.games} random policy pairs: {violations} violations; "
          f"truth - bound: median {np.median(gap):.3g}, min {gap.min():.3g}")
    print("fraction of games where one update lowers J: " + "; ".join(
        f"{lr}: " + ", ".join(f"{a} {r:.2f}" for a, r in row.items())
        for lr, row in rates.items()))
    print(f"wrote {out_dir / 'theory.png'}, {out_dir / 'theory.json'} "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
