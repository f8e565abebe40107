"""``dpo_jax.theory`` against brute force (numpy float64 loops over joint actions,
truncated sums, Monte Carlo) on games of 2-5 states, 2-3 agents and 2-3 actions,
and the paper's Lemma 3.1 / Theorem 3.2 on many random games and policy pairs."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax import theory

SIZES = [(2, 2, 2), (3, 2, 3), (4, 3, 2), (5, 3, 3)]  # states, agents, actions


def random_probs(key, num_agents, num_states, num_actions, temperature=1.0):
    logits = temperature * jax.random.normal(key, (num_agents, num_states, num_actions))
    return jax.nn.softmax(logits, axis=-1)


def np_joint(probs):
    """pi(joint | s) by explicit products over itertools.product (agent 0 first)."""
    probs = np.asarray(probs, np.float64)
    n, s, a = probs.shape
    out = np.zeros((s, a**n))
    for state in range(s):
        for j, actions in enumerate(itertools.product(range(a), repeat=n)):
            out[state, j] = np.prod([probs[i, state, actions[i]] for i in range(n)])
    return out


def np_values(probs, game, gamma, steps=3000):
    """V by iterating the Bellman expectation operator, Q and rho by truncated sums."""
    r = np.asarray(game.rewards, np.float64)
    p = np.asarray(game.transitions, np.float64)
    pi = np_joint(probs)
    r_pi = (pi * r).sum(1)
    p_pi = np.einsum("sj,sjt->st", pi, p)
    v = np.zeros(len(r_pi))
    for _ in range(steps):
        v = r_pi + gamma * p_pi @ v
    q = r + gamma * np.einsum("sjt,t->sj", p, v)
    d = np.asarray(game.start, np.float64)
    rho = np.zeros_like(d)
    for t in range(steps):
        rho += gamma**t * d
        d = d @ p_pi
    return v, q, rho


@pytest.mark.parametrize("size", SIZES)
def test_discounted_values_and_visitation_match_brute_force(size):
    s, n, a = size
    game = theory.random_game(jax.random.key(s), s, n, a)
    probs = random_probs(jax.random.key(10 + s), n, s, a)
    gamma = 0.9
    out = jax.jit(theory.discounted_values, static_argnums=2)(probs, game, gamma)
    v, q, rho = np_values(probs, game, gamma)
    np.testing.assert_allclose(out.value, v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.q, q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.visitation, rho, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.visitation.sum(), 1 / (1 - gamma), rtol=1e-4)
    np.testing.assert_allclose(out.expected_return, np.asarray(game.start) @ v, rtol=1e-4,
                               atol=1e-4)


def test_expected_return_matches_monte_carlo():
    s, n, a, gamma = 3, 2, 2, 0.8
    game = theory.random_game(jax.random.key(7), s, n, a)
    probs = random_probs(jax.random.key(8), n, s, a)
    exact = float(theory.discounted_values(probs, game, gamma).expected_return)
    rng = np.random.default_rng(0)
    pi, r = np_joint(probs), np.asarray(game.rewards, np.float64)
    p = np.asarray(game.transitions, np.float64)
    episodes, horizon = 20_000, 60  # gamma**60 = 1.5e-6
    start = np.asarray(game.start, np.float64)
    state = rng.choice(s, size=episodes, p=start / start.sum())
    total = np.zeros(episodes)
    for t in range(horizon):
        u = rng.random(episodes)[:, None]
        joint = (u > np.cumsum(pi[state], axis=1)).sum(1)
        total += gamma**t * r[state, joint]
        cdf = np.cumsum(p[state, joint], axis=1)
        state = np.minimum((rng.random(episodes)[:, None] > cdf).sum(1), s - 1)
    se = total.std() / np.sqrt(episodes)
    assert abs(total.mean() - exact) < 4 * se, (total.mean(), exact, se)


@pytest.mark.parametrize("size", SIZES)
def test_decentralized_critic_is_the_marginal_of_the_joint_q(size):
    """Sec. 3.2: eq. 5's fixed point equals E_{pi^-i}[Q(s, a_i, a_-i)]; both checked
    against a numpy loop over joint actions."""
    s, n, a = size
    game = theory.random_game(jax.random.key(20 + s), s, n, a)
    probs = random_probs(jax.random.key(30 + s), n, s, a)
    gamma = 0.9
    q = theory.discounted_values(probs, game, gamma).q
    marginal = np.asarray(theory.marginalise(q, probs))
    _, q_np, _ = np_values(probs, game, gamma)
    p = np.asarray(probs, np.float64)
    for i in range(n):
        brute = np.zeros((s, a))
        for j, actions in enumerate(itertools.product(range(a), repeat=n)):
            weight = np.prod([p[k, :, actions[k]] for k in range(n) if k != i], axis=0)
            brute[:, actions[i]] += weight * q_np[:, j]
        np.testing.assert_allclose(marginal[i], brute, rtol=1e-4, atol=1e-4)
        fixed_point = theory.decentralized_critic_by_iteration(probs, game, gamma, i, 400)
        np.testing.assert_allclose(fixed_point, brute, rtol=1e-3, atol=1e-3)


def test_performance_difference_identity():
    """J(pi) - J(pi_old) = sum_s rho_pi(s) sum_a pi(a|s) A_old(s, a) (Kakade and Langford)."""
    s, n, a, gamma = 4, 3, 2, 0.9
    game = theory.random_game(jax.random.key(3), s, n, a)
    old = random_probs(jax.random.key(4), n, s, a)
    new = random_probs(jax.random.key(5), n, s, a)
    vo, vn = (theory.discounted_values(x, game, gamma) for x in (old, new))
    lhs = vn.expected_return - vo.expected_return
    rhs = jnp.einsum("s,sj,sj->", vn.visitation, theory.joint_policy(new), vo.advantage)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_finite_horizon_return_matches_the_environment_s_forward_pass():
    env = dpo_jax.make_env("stochastic_game_small", num_states=5, num_agents=2,
                           num_actions=3, episode_length=7)
    game = theory.game_from_env(env)
    probs = random_probs(jax.random.key(0), 2, 5, 3)
    values, qs, ret = theory.finite_horizon_values(probs, game, 7)
    np.testing.assert_allclose(ret, env.exact_return(probs), rtol=1e-5, atol=1e-5)
    assert values.shape == (8, 5) and qs.shape == (7, 5, 9)
    np.testing.assert_array_equal(values[-1], 0.0)


def _policy_pairs(count, seed):
    """(size, game, old, new) with new a perturbation of old of random size."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        s, n, a = SIZES[k % len(SIZES)]
        key = jax.random.key(1000 * seed + k)
        gk, ok, nk = jax.random.split(key, 3)
        game = theory.random_game(gk, s, n, a)
        old_logits = jax.random.normal(ok, (n, s, a))
        step = float(rng.choice([0.01, 0.1, 0.5, 2.0]))
        new_logits = old_logits + step * jax.random.normal(nk, (n, s, a))
        yield game, jax.nn.softmax(old_logits), jax.nn.softmax(new_logits)


def test_lemma_3_1_and_theorem_3_2_hold_on_random_games():
    bound = jax.jit(theory.lower_bound, static_argnums=(3, 4))
    for gamma in (0.5, 0.9):
        for game, old, new in _policy_pairs(24, seed=int(gamma * 10)):
            out = bound(new, old, game, gamma, "exact")
            scale = 1e-4 * (1.0 + abs(float(out.true_improvement)))
            assert float(out.bound) <= float(out.true_improvement) + scale, out
            assert np.all(np.asarray(out.lemma_gap) >= np.asarray(out.lemma_bound) - scale)


def test_theorem_3_2_with_the_paper_s_constants_on_nonnegative_rewards():
    """The paper's M = r_max / (1 - gamma) bounds |A| when rewards have one sign."""
    bound = jax.jit(theory.lower_bound, static_argnums=(3, 4))
    for game, old, new in _policy_pairs(12, seed=3):
        game = game._replace(rewards=jnp.abs(game.rewards))
        out = bound(new, old, game, 0.9, "paper")
        assert float(out.bound) <= float(out.true_improvement) + 1e-4, out


def test_bound_is_first_order_tight_and_its_gap_vanishes_with_the_kl():
    s, n, a, gamma = 3, 2, 3, 0.9
    game = theory.random_game(jax.random.key(11), s, n, a)
    old_logits = jax.random.normal(jax.random.key(12), (n, s, a))
    direction = jax.random.normal(jax.random.key(13), (n, s, a))
    gaps = []
    for t in (1e-1, 1e-2, 1e-3):
        out = theory.lower_bound(jax.nn.softmax(old_logits + t * direction),
                                 jax.nn.softmax(old_logits), game, gamma)
        gap = float(out.true_improvement - out.bound)
        assert gap >= -1e-5
        gaps.append(gap / t)
    # the gap is O(t) (the sqrt-KL term is linear in t): gap / t stays bounded
    assert gaps[-1] < 2 * gaps[0] + 1e-3, gaps


def test_dpo_theory_update_never_decreases_the_return():
    """Eq. 17 with the exact constants, each agent on its own: J(pi_new) >= J(pi_old).
    In float64: sqrt(KL) turns float32's ~1e-7 rounding of KL into ~3e-4."""
    cfg = theory.UpdateConfig(algo="dpo_theory", learning_rate=0.05, num_steps=30)
    with jax.enable_x64(True):
        update = jax.jit(theory.exact_update, static_argnums=(2, 3))
        for game, old, _ in _policy_pairs(12, seed=5):
            new = update(old, game, 0.9, cfg)
            out = theory.lower_bound(new, old, game, 0.9)
            assert new.dtype == jnp.float64
            # each agent's objective started at 0 (up to sqrt of a 1e-16 KL, x M_hat)
            assert float(out.bound) >= -1e-6
            assert float(out.true_improvement) >= -1e-6, out


@pytest.mark.parametrize("algo", ["ippo", "ippo_kl", "dpo"])
def test_practical_updates_improve_on_exact_advantages_with_small_steps(algo):
    cfg = theory.UpdateConfig(algo=algo, learning_rate=0.01, num_steps=10)
    update = jax.jit(theory.exact_update, static_argnums=(2, 3))
    for game, old, _ in _policy_pairs(4, seed=6):
        new = update(old, game, 0.9, cfg)
        out = theory.lower_bound(new, old, game, 0.9)
        assert float(out.true_improvement) > 0, (algo, out)


def test_unknown_update_algo_is_named():
    game = theory.random_game(jax.random.key(0), 2, 2, 2)
    with pytest.raises(ValueError, match="UpdateConfig.algo='mappo'"):
        theory.exact_update(random_probs(jax.random.key(1), 2, 2, 2), game, 0.9,
                            theory.UpdateConfig(algo="mappo"))
