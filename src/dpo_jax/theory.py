"""Exact quantities of Sec. 3 on small tabular games: the paper's claims, checked.

A tabular cooperative game is ``TabularGame(rewards [S, J], transitions [S, J, S],
start [S])`` with ``J = A**N`` joint actions (agent 0 the most significant digit,
as ``envs.stochastic_game``); a product policy is ``probs [N, S, A]``, each agent's
action distribution in each state (agents observe the state, the assumption of the
paper's analysis). Everything here is pure ``jnp`` and ``jit``-able; games must be
small (``J`` joint actions are enumerated).

Two settings, both documented per function:

* discounted (Sec. 3, the setting of the theorems): ``J(pi) = E[sum_t gamma^t r_t]``
  from ``start``; ``rho_pi(s) = sum_t gamma^t Pr(s_t = s)`` the *unnormalised*
  discounted visitation (eq. 4), so ``sum_s rho(s) = 1 / (1 - gamma)``;
* finite horizon (the environment's episodes): ``J(pi) = E[sum_{t<H} r_t]`` with
  time-indexed values ``V_t``, ``Q_t`` (``finite_horizon_values``).

Precision: the functions follow their inputs' dtype. Check bounds in float64
(``with jax.enable_x64(True):`` around building the game and policies and the
calls): ``sqrt(KL)`` turns float32's ~1e-7 rounding of a KL near 0 into ~3e-4,
times ``M_hat`` (often 10-100), which can hide the sign of a small improvement.

Theorem 3.2's constants (eq. 12). The proof needs ``M >= max_{s,a} |A_old(s, a)|``
and TRPO's ``epsilon = max |A_old|``; the paper substitutes ``M = r_max / (1 - gamma)``,
which bounds ``|A|`` only for rewards of one sign (the stochastic game's rewards lie
in [-5, 5], where ``|A|`` can reach ``2 r_max / (1 - gamma)``). ``constants="exact"``
(default) uses ``M = epsilon = max |A_old|``, valid for every game;
``constants="paper"`` uses the paper's ``r_max`` forms. Either way
``M_tilde = 2 M / (1 - gamma)`` (Lemma 3.1), ``M_hat = sqrt((N - 1) / N) M_tilde``
and ``C = 4 gamma epsilon / (1 - gamma)^2``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpo_jax.envs.stochastic_game import joint_policy

Array = jax.Array
Constants = Literal["exact", "paper"]
_HIGHEST = jax.lax.Precision.HIGHEST
# sqrt(max(KL, floor)): finite gradients at KL = 0, as objectives.sqrt_kl_term
_SQRT_FLOOR = 1e-12


class TabularGame(NamedTuple):
    """A cooperative game with one shared reward: ``rewards [S, J]``,
    ``transitions [S, J, S]`` (rows sum to 1) and ``start [S]`` (a distribution)."""

    rewards: Array
    transitions: Array
    start: Array


def random_game(key: Array, num_states: int, num_agents: int, num_actions: int,
                reward_low: float = -5.0, reward_high: float = 5.0) -> TabularGame:
    """Uniform rewards in ``[reward_low, reward_high]``, Dirichlet(1) transition rows
    and a uniform start distribution (the stochastic game's construction)."""
    joint = num_actions**num_agents
    r_key, p_key = jax.random.split(key)
    rewards = jax.random.uniform(r_key, (num_states, joint), minval=reward_low,
                                 maxval=reward_high)
    transitions = jax.random.dirichlet(p_key, jnp.ones(num_states), (num_states, joint))
    return TabularGame(rewards, transitions, jnp.full((num_states,), 1.0 / num_states))


def game_from_env(env) -> TabularGame:
    """The ``TabularGame`` of a ``StochasticGame`` (start: its state 0)."""
    start = jax.nn.one_hot(0, env.num_states)
    return TabularGame(env.tables.rewards, env.tables.transitions, start)


def _check(probs: Array, game: TabularGame) -> None:
    num_agents, num_states, num_actions = probs.shape
    chex.assert_shape(game.rewards, (num_states, num_actions**num_agents))
    chex.assert_shape(game.transitions, (num_states, num_actions**num_agents, num_states))


def _policy_matrices(probs: Array, game: TabularGame) -> tuple[Array, Array, Array]:
    pi = joint_policy(probs)
    reward_pi = jnp.sum(pi * game.rewards, axis=1)
    transition_pi = jnp.einsum("sj,sjt->st", pi, game.transitions, precision=_HIGHEST)
    return pi, reward_pi, transition_pi


# -- discounted ------------------------------------------------------------------

class Values(NamedTuple):
    """Exact discounted quantities of one joint policy."""

    value: Array  # [S] V(s), eq. 1
    q: Array  # [S, J] Q(s, a), eq. 2
    advantage: Array  # [S, J] A(s, a) = Q - V
    visitation: Array  # [S] rho(s) = sum_t gamma^t Pr(s_t = s), unnormalised
    expected_return: Array  # [] J(pi) = start . V


def discounted_values(probs: Array, game: TabularGame, gamma: float) -> Values:
    """``V = (I - gamma P_pi)^-1 r_pi``, ``Q = r + gamma P V``, ``A = Q - V`` and
    ``rho^T = start^T (I - gamma P_pi)^-1`` (two linear solves)."""
    _check(probs, game)
    _, reward_pi, transition_pi = _policy_matrices(probs, game)
    system = jnp.eye(reward_pi.shape[0]) - gamma * transition_pi
    value = jnp.linalg.solve(system, reward_pi)
    q = game.rewards + gamma * jnp.einsum("sjt,t->sj", game.transitions, value,
                                          precision=_HIGHEST)
    visitation = jnp.linalg.solve(system.T, game.start)
    return Values(value, q, q - value[:, None], visitation, jnp.dot(game.start, value))


def marginalise(table: Array, probs: Array) -> Array:
    """``E_{a_-i ~ pi^-i(.|s)}[table(s, a_i, a_-i)]`` for every agent: ``[S, J]`` ->
    ``[N, S, A]``. Applied to Q it is the decentralized critic of Sec. 3.2
    (``Q^i_{pi^-i}(s, a_i) = E_{pi^-i}[Q(s, a_i, a_-i)]``), to A the advantage
    ``A^i_old`` of eq. 6."""
    num_agents, num_states, num_actions = probs.shape
    x = table.reshape((num_states,) + (num_actions,) * num_agents)
    axes = "abcdefghijklmnopqr"[:num_agents]
    out = []
    for i in range(num_agents):
        others = [j for j in range(num_agents) if j != i]
        subscripts = ",".join(["z" + axes] + ["z" + axes[j] for j in others])
        out.append(jnp.einsum(f"{subscripts}->z{axes[i]}", x, *[probs[j] for j in others],
                              precision=_HIGHEST))
    return jnp.stack(out)


def decentralized_critic_by_iteration(probs: Array, game: TabularGame, gamma: float,
                                      agent: int, num_iterations: int) -> Array:
    """Agent ``agent``'s Q^i by iterating eq. 5's operator Gamma from 0, ``[S, A]``:
    ``Q <- r_{pi^-i}(s, a_i) + gamma E_{a_-i, s', a'_i}[Q(s', a'_i)]``. Sec. 3.2 shows
    its fixed point is ``marginalise(Q)[agent]``; this computes it independently."""
    num_agents, num_states, num_actions = probs.shape

    def expect_others(table: Array) -> Array:  # [S, J, ...] -> [S, A, ...]
        rest = table.shape[2:]
        x = table.reshape((num_states,) + (num_actions,) * num_agents + rest)
        for j in reversed(range(num_agents)):
            if j == agent:
                continue
            weights = probs[j].reshape((num_states,) + (1,) * j + (num_actions,)
                                       + (1,) * (num_agents - j - 1) + (1,) * len(rest))
            x = jnp.sum(x * weights, axis=1 + j, keepdims=True)
        return x.reshape((num_states, num_actions) + rest)

    reward_i = expect_others(game.rewards)
    transition_i = expect_others(game.transitions)  # [S, A, S']

    def apply(q: Array, _: None) -> tuple[Array, None]:
        next_value = jnp.sum(probs[agent] * q, axis=1)
        return reward_i + gamma * jnp.einsum("sat,t->sa", transition_i, next_value,
                                             precision=_HIGHEST), None

    q, _ = jax.lax.scan(apply, jnp.zeros((num_states, num_actions)), None,
                        length=num_iterations)
    return q


# -- surrogates, KL and the bound -----------------------------------------------

def kl_per_state(old_probs: Array, new_probs: Array) -> Array:
    """``[N, S]`` KL(pi_old^i(.|s) || pi^i(.|s)) (distrax, analytic)."""
    return distrax.Categorical(probs=old_probs).kl_divergence(
        distrax.Categorical(probs=new_probs))


def individual_surrogates(new_probs: Array, old: Values, old_probs: Array) -> Array:
    """``[N]`` eq. 6: ``L^i(pi^i) = sum_s rho_old(s) sum_a pi^i(a|s) A^i_old(s, a)``."""
    adv_i = marginalise(old.advantage, old_probs)
    return jnp.einsum("s,nsa,nsa->n", old.visitation, new_probs, adv_i, precision=_HIGHEST)


def joint_surrogate(new_probs: Array, old: Values) -> Array:
    """``[]`` eq. 4: ``L^joint(pi) = sum_s rho_old(s) sum_a pi(a|s) A_old(s, a)``."""
    return jnp.einsum("s,sj,sj->", old.visitation, joint_policy(new_probs), old.advantage,
                      precision=_HIGHEST)


class Bound(NamedTuple):
    """Theorem 3.2 (eq. 12) for one pair of joint policies, with its terms."""

    bound: Array  # RHS of eq. 12
    surrogate: Array  # (1/N) sum_i L^i
    sqrt_penalty: Array  # M_hat sum_i sqrt(KLmax_i)
    kl_penalty: Array  # C sum_i KLmax_i
    kl_max: Array  # [N]
    m_hat: Array
    c: Array
    true_improvement: Array  # J(pi) - J(pi_old)
    joint_surrogate: Array  # L^joint (eq. 4)
    lemma_gap: Array  # [N] L^joint - L^i
    lemma_bound: Array  # [N] -M_tilde sqrt(sum_{j != i} KLmax_j) (eq. 8)


def constants(old: Values, game: TabularGame, gamma: float, num_agents: int,
              which: Constants = "exact") -> tuple[Array, Array, Array]:
    """``(M_tilde, M_hat, C)`` of Lemma 3.1 / Theorem 3.2 (module docstring)."""
    if which == "exact":
        eps = jnp.max(jnp.abs(old.advantage))
    elif which == "paper":
        eps = jnp.max(jnp.abs(game.rewards)) / (1.0 - gamma)
    else:
        raise ValueError(f"constants={which!r} is invalid: expected 'exact' or 'paper'")
    m_tilde = 2.0 * eps / (1.0 - gamma)
    m_hat = np.sqrt((num_agents - 1) / num_agents) * m_tilde
    c = 4.0 * gamma * eps / (1.0 - gamma) ** 2
    return m_tilde, m_hat, c


def lower_bound(new_probs: Array, old_probs: Array, game: TabularGame, gamma: float,
                which: Constants = "exact") -> Bound:
    """Eq. 12's bound on ``J(pi) - J(pi_old)``, its terms, Lemma 3.1's per-agent
    inequality, and the true improvement, all exact."""
    num_agents = old_probs.shape[0]
    old = discounted_values(old_probs, game, gamma)
    new = discounted_values(new_probs, game, gamma)
    m_tilde, m_hat, c = constants(old, game, gamma, num_agents, which)
    kl_max = jnp.max(kl_per_state(old_probs, new_probs), axis=1)
    surrogates = individual_surrogates(new_probs, old, old_probs)
    surrogate = surrogates.mean()
    sqrt_penalty = m_hat * jnp.sum(jnp.sqrt(jnp.maximum(kl_max, 0.0)))
    kl_penalty = c * jnp.sum(kl_max)
    joint = joint_surrogate(new_probs, old)
    others_kl = jnp.maximum(jnp.sum(kl_max) - kl_max, 0.0)
    return Bound(surrogate - sqrt_penalty - kl_penalty, surrogate, sqrt_penalty, kl_penalty,
                 kl_max, m_hat, c, new.expected_return - old.expected_return, joint,
                 joint - surrogates, -m_tilde * jnp.sqrt(others_kl))


# -- finite horizon --------------------------------------------------------------

def finite_horizon_values(probs: Array, game: TabularGame, horizon: int
                          ) -> tuple[Array, Array, Array]:
    """Undiscounted values over ``horizon`` steps (the environment's episodes):
    ``V_H = 0``, ``Q_t = r + P V_{t+1}``, ``V_t(s) = sum_a pi(a|s) Q_t(s, a)``.
    Returns ``V [H + 1, S]``, ``Q [H, S, J]`` and ``J = start . V_0``."""
    _check(probs, game)
    pi = joint_policy(probs)

    def back(next_value: Array, _: None) -> tuple[Array, tuple[Array, Array]]:
        q = game.rewards + jnp.einsum("sjt,t->sj", game.transitions, next_value,
                                      precision=_HIGHEST)
        value = jnp.sum(pi * q, axis=1)
        return value, (value, q)

    zero = jnp.zeros(game.rewards.shape[0])
    _, (values, qs) = jax.lax.scan(back, zero, None, length=horizon, reverse=True)
    values = jnp.concatenate([values, zero[None]])
    return values, qs, jnp.dot(game.start, values[0])


# -- one exact update of each algorithm --------------------------------------------

class UpdateConfig(NamedTuple):
    """One update on exact quantities: ``num_steps`` Adam steps of ``learning_rate``
    on every agent's tabular logits, each agent on its own objective.

    ``algo``: ``"ippo"`` (clipped, ``clip_eps``), ``"ippo_kl"`` (``(1/N) L - beta_kl
    KL_avg``), ``"dpo"`` (eq. 19 with fixed ``beta_sqrt``, ``beta_kl``), or
    ``"dpo_theory"`` (eq. 17: ``(1/N) L^i - M_hat sqrt(KLmax) - C KLmax`` with the
    exact constants, whose optimisation guarantees ``J`` does not decrease; the
    argmax is approximated by the best of the Adam iterates and ``pi_old``).
    Expectations over states use the normalised visitation ``(1 - gamma) rho_old``
    (the practical algorithm's sample mean) except in ``"dpo_theory"``.
    """

    algo: str = "dpo"
    learning_rate: float = 0.1
    num_steps: int = 20
    clip_eps: float = 0.2
    beta_sqrt: float = 0.01
    beta_kl: float = 0.01
    scale_by_num_agents: bool = True


def _agent_objective(logits_i: Array, i: int, old_probs: Array, old: Values,
                     adv_i: Array, m_hat: Array, c: Array, gamma: float,
                     cfg: UpdateConfig, beta_sqrt: Array, beta_kl: Array) -> Array:
    num_agents = old_probs.shape[0]
    new_i = jax.nn.softmax(logits_i, axis=-1)
    kl = distrax.Categorical(probs=old_probs[i]).kl_divergence(
        distrax.Categorical(probs=new_i))
    if cfg.algo == "dpo_theory":
        surrogate = jnp.sum(old.visitation[:, None] * new_i * adv_i[i]) / num_agents
        kl_max = jnp.max(kl)
        return surrogate - m_hat * jnp.sqrt(jnp.maximum(kl_max, _SQRT_FLOOR)) - c * kl_max
    weights = (1.0 - gamma) * old.visitation
    if cfg.algo == "ippo":
        ratio = new_i / old_probs[i]
        clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
        per = jnp.minimum(ratio * adv_i[i], clipped * adv_i[i])
        return jnp.sum(weights[:, None] * old_probs[i] * per)
    scale = 1.0 / num_agents if cfg.scale_by_num_agents else 1.0
    surrogate = scale * jnp.sum(weights[:, None] * new_i * adv_i[i])
    kl_avg = jnp.sum(weights * kl)
    if cfg.algo == "ippo_kl":
        return surrogate - beta_kl * kl_avg
    if cfg.algo == "dpo":
        return (surrogate - beta_sqrt * jnp.sqrt(jnp.maximum(kl_avg, _SQRT_FLOOR))
                - beta_kl * kl_avg)
    raise ValueError(f"UpdateConfig.algo={cfg.algo!r} is invalid: expected 'ippo', "
                     "'ippo_kl', 'dpo' or 'dpo_theory'")


def exact_update(old_probs: Array, game: TabularGame, gamma: float,
                 cfg: UpdateConfig, beta_sqrt: Array | None = None,
                 beta_kl: Array | None = None) -> Array:
    """The new joint policy ``[N, S, A]`` after one decentralized update: every agent
    maximises its own objective (``UpdateConfig``) from ``pi_old`` with the exact
    ``A^i_old`` and visitation, knowing nothing of the others' new policies.
    ``beta_sqrt``, ``beta_kl`` (``[N]``, traced) override ``cfg``'s fixed values,
    for eq. 20's adaptation across updates (``kl_avg``)."""
    num_agents = old_probs.shape[0]
    beta_sqrt = jnp.full((num_agents,), cfg.beta_sqrt) if beta_sqrt is None else beta_sqrt
    beta_kl = jnp.full((num_agents,), cfg.beta_kl) if beta_kl is None else beta_kl
    old = discounted_values(old_probs, game, gamma)
    adv_i = marginalise(old.advantage, old_probs)
    _, m_hat, c = constants(old, game, gamma, old_probs.shape[0], "exact")
    tx = optax.adam(cfg.learning_rate)
    new_probs = []
    for i in range(old_probs.shape[0]):
        def loss(logits: Array, i: int = i) -> Array:
            return -_agent_objective(logits, i, old_probs, old, adv_i, m_hat, c, gamma, cfg,
                                     beta_sqrt[i], beta_kl[i])

        def step(carry: tuple, _: None, loss=loss) -> tuple[tuple, None]:
            logits, opt_state, best, best_loss = carry
            value, grads = jax.value_and_grad(loss)(logits)
            better = value < best_loss
            best = jnp.where(better, logits, best)
            best_loss = jnp.where(better, value, best_loss)
            updates, opt_state = tx.update(grads, opt_state)
            return (optax.apply_updates(logits, updates), opt_state, best, best_loss), None

        logits = jnp.log(old_probs[i])
        start = (logits, tx.init(logits), logits, loss(logits))
        (last, _, best, best_loss), _ = jax.lax.scan(step, start, None, length=cfg.num_steps)
        if cfg.algo == "dpo_theory":
            # eq. 17 is an argmax: keep the best iterate, or pi_old itself (which
            # scores 0) when no iterate beats it, so that the sum of the agents'
            # objectives, eq. 12's bound, stays >= 0
            last_loss = loss(last)
            best = jnp.where(last_loss < best_loss, last, best)
            moved = jnp.minimum(last_loss, best_loss) < start[3]
            new_probs.append(jnp.where(moved, jax.nn.softmax(best, axis=-1), old_probs[i]))
        else:
            new_probs.append(jax.nn.softmax(last, axis=-1))
    return jnp.stack(new_probs)


def kl_avg(old_probs: Array, new_probs: Array, game: TabularGame, gamma: float) -> Array:
    """``[N]`` eq. 19's ``D_KL^avg``: the KL averaged over the normalised discounted
    visitation of ``pi_old``."""
    weights = (1.0 - gamma) * discounted_values(old_probs, game, gamma).visitation
    return kl_per_state(old_probs, new_probs) @ weights


def optimal_return(game: TabularGame, gamma: float, num_iterations: int = 2000) -> Array:
    """``J*``: the discounted optimum over all (centralized, joint) policies, by value
    iteration over joint actions from 0 (error below ``gamma**num_iterations``)."""
    def backup(value: Array, _: None) -> tuple[Array, None]:
        q = game.rewards + gamma * jnp.einsum("sjt,t->sj", game.transitions, value,
                                              precision=_HIGHEST)
        return jnp.max(q, axis=1), None

    value, _ = jax.lax.scan(backup, jnp.zeros(game.rewards.shape[0]), None,
                            length=num_iterations)
    return jnp.dot(game.start, value)
