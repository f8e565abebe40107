"""Tests of the DPO stochastic game against independent numpy references."""

from __future__ import annotations

import inspect
import itertools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.envs import stochastic_game as sg
from dpo_jax.envs.stochastic_game import (
    StochasticGame,
    make_small_stochastic_game,
    make_stochastic_game,
)


def _tables(env: StochasticGame) -> tuple[np.ndarray, np.ndarray]:
    """The env's tables in float64, with the joint axis unravelled to [A] * N."""
    shape = (env.num_states,) + (env.num_actions,) * env.num_agents
    rewards = np.asarray(env.tables.rewards, np.float64).reshape(shape)
    transitions = np.asarray(env.tables.transitions, np.float64)
    return rewards, transitions.reshape(shape + (env.num_states,))


def _reference_product_return(env: StochasticGame, probs: np.ndarray) -> float:
    """Plain loops over agent action tuples; agent i indexes table axis 1 + i."""
    rewards, transitions = _tables(env)
    num_states = env.num_states
    reward_pi = np.zeros(num_states)
    transition_pi = np.zeros((num_states, num_states))
    for s in range(num_states):
        for actions in itertools.product(range(env.num_actions), repeat=env.num_agents):
            weight = np.prod([probs[i, s, a] for i, a in enumerate(actions)])
            reward_pi[s] += weight * rewards[(s,) + actions]
            transition_pi[s] += weight * transitions[(s,) + actions]
    dist = np.eye(num_states)[0]
    total = 0.0
    for _ in range(env.episode_length):
        total += dist @ reward_pi
        dist = dist @ transition_pi
    return total


def _random_probs(rng: np.random.Generator, env: StochasticGame) -> np.ndarray:
    shape = (env.num_agents, env.num_states)
    return rng.dirichlet(np.ones(env.num_actions), size=shape).astype(np.float32)


# -- tables -----------------------------------------------------------------


def test_tables_have_the_documented_shape_range_and_normalisation():
    env = StochasticGame(num_states=5, num_agents=2, num_actions=3, seed=3)
    rewards, transitions = env.tables
    assert rewards.shape == (5, 9) and rewards.dtype == jnp.float32
    assert transitions.shape == (5, 9, 5) and transitions.dtype == jnp.float32
    rewards, transitions = np.asarray(rewards), np.asarray(transitions)
    assert rewards.min() >= -5.0 and rewards.max() <= 5.0
    assert rewards.max() - rewards.min() > 5.0  # spread over the range
    assert (transitions > 0).all()
    np.testing.assert_allclose(transitions.sum(-1), 1.0, atol=1e-6)


def test_tables_are_uniform_rewards_then_normalised_exponential_rows(monkeypatch):
    # Dirichlet(1) is a normalised vector of Exp(1) draws; the tiny scratch size
    # forces chunked generation, which must not change the draws.
    monkeypatch.setattr(sg, "_SCRATCH_ELEMENTS", 8)
    num_states, num_agents, num_actions, seed = 4, 2, 3, 11
    env = StochasticGame(num_states, num_agents, num_actions, seed)
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(-5.0, 5.0, size=(num_states, 9))
    draws = rng.standard_exponential((num_states * 9, num_states))
    transitions = (draws / draws.sum(-1, keepdims=True)).reshape(4, 9, 4)
    np.testing.assert_allclose(np.asarray(env.tables.rewards), rewards, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(env.tables.transitions), transitions, rtol=1e-6
    )


def test_tables_are_deterministic_per_seed_and_differ_across_seeds():
    first = StochasticGame(6, 2, 2, seed=1)
    again = StochasticGame(6, 2, 2, seed=1)
    other = StochasticGame(6, 2, 2, seed=2)
    for a, b, c in zip(first.tables, again.tables, other.tables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(num_states=0), "num_states"),
        (dict(num_agents=1.5), "num_agents"),
        (dict(num_actions=True), "num_actions"),
        (dict(seed=-1), "seed"),
        (dict(episode_length=0), "episode_length"),
    ],
)
def test_invalid_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        StochasticGame(**{**dict(num_states=3, num_agents=2, num_actions=2), **kwargs})


def test_oversized_game_is_refused_before_drawing():
    with pytest.raises(ValueError, match=r"5\*\*10=9,765,625"):
        StochasticGame(num_states=100, num_agents=10, num_actions=5)


def test_factories_use_the_paper_and_small_presets():
    small = make_small_stochastic_game(num_states=4)
    assert (small.num_states, small.num_agents, small.num_actions) == (4, 3, 5)
    assert small.max_steps == small.episode_length == 4
    assert small.name == "stochastic_game" and small.obs_dim == 4
    defaults = {
        name: p.default
        for name, p in inspect.signature(make_stochastic_game).parameters.items()
    }
    assert defaults == dict(
        num_states=100, num_agents=6, num_actions=5, seed=0, episode_length=None,
        never_reset=False,
    )


# -- reset / step -------------------------------------------------------------


def test_reset_and_step_shapes_dtypes_and_reward_lookup():
    env = StochasticGame(num_states=5, num_agents=3, num_actions=2, episode_length=7)
    rewards, _ = _tables(env)
    out = env.reset(jax.random.key(0))
    assert out.obs.shape == (3, 5) and out.obs.dtype == jnp.float32
    np.testing.assert_array_equal(out.obs, np.tile(np.eye(5)[0], (3, 1)))
    assert out.avail_actions.shape == (3, 2) and out.avail_actions.dtype == bool
    assert bool(out.avail_actions.all())
    assert out.reward.shape == (3,) and out.reward.dtype == jnp.float32
    assert out.terminated.shape == () and out.terminated.dtype == bool
    assert out.truncated.shape == () and out.truncated.dtype == bool
    assert out.info == {}
    assert out.state.state_index.dtype == jnp.int32
    actions = jnp.array([1, 0, 1], jnp.int32)
    nxt = env.step(jax.random.key(1), out.state, actions)
    np.testing.assert_allclose(nxt.reward, np.full(3, rewards[0, 1, 0, 1]), rtol=1e-6)
    s = int(nxt.state.state_index)
    np.testing.assert_array_equal(nxt.obs, np.tile(np.eye(5)[s], (3, 1)))
    assert int(nxt.state.time_step) == 1 and nxt.info == {}


def test_joint_action_index_puts_agent_zero_first():
    env = StochasticGame(num_states=2, num_agents=3, num_actions=4)
    actions = np.array(list(itertools.product(range(4), repeat=3)))
    expected = np.ravel_multi_index(tuple(actions.T), (4, 4, 4))
    joint = env.joint_action_index(jnp.asarray(actions))
    np.testing.assert_array_equal(joint, expected)
    np.testing.assert_array_equal(env.agent_actions(jnp.asarray(expected)), actions)


@pytest.mark.parametrize("use_jit", [False, True])
def test_truncates_exactly_at_episode_length_and_never_terminates(use_jit):
    env = StochasticGame(num_states=4, num_agents=2, num_actions=3, episode_length=5)
    step = jax.jit(env.step) if use_jit else env.step
    out = env.reset(jax.random.key(0))
    assert not bool(out.truncated)
    for t in range(1, 8):  # step does not reset: past the limit it stays truncated
        out = step(jax.random.key(t), out.state, jnp.array([t % 3, 2], jnp.int32))
        assert bool(out.truncated) == (t >= 5)
        assert not bool(out.terminated)
        assert int(out.state.time_step) == t


def test_step_vmaps_over_environments():
    env = StochasticGame(num_states=4, num_agents=2, num_actions=3)
    keys = jax.random.split(jax.random.key(0), 8)
    first = jax.vmap(env.reset)(keys)
    actions = jnp.zeros((8, 2), jnp.int32)
    out = jax.jit(jax.vmap(env.step))(keys, first.state, actions)
    assert out.obs.shape == (8, 2, 4) and out.reward.shape == (8, 2)
    assert out.truncated.shape == (8,) and out.state.state_index.shape == (8,)
    # Every env was in state 0 and took joint action 0: same reward, varied next states.
    expected = np.full((8, 2), _tables(env)[0][0, 0, 0])
    np.testing.assert_allclose(out.reward, expected, rtol=1e-6)
    assert len(set(np.asarray(out.state.state_index).tolist())) > 1


# -- exact return -------------------------------------------------------------


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("policy", ["uniform", "random"])
def test_exact_return_matches_numpy_reference(use_jit, policy):
    env = StochasticGame(5, 3, 2, seed=4, episode_length=6)
    if policy == "uniform":
        probs = np.full((3, 5, 2), 0.5, np.float32)
    else:
        probs = _random_probs(np.random.default_rng(0), env)
    exact_return = jax.jit(env.exact_return) if use_jit else env.exact_return
    got = exact_return(jnp.asarray(probs))
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _reference_product_return(env, probs), rtol=1e-5)


def test_exact_return_rejects_wrong_shapes():
    env = StochasticGame(num_states=3, num_agents=2, num_actions=2)
    with pytest.raises(AssertionError):
        env.exact_return(jnp.full((2, 4, 2), 0.5))
    with pytest.raises(ValueError, match="joint actions"):
        env.exact_return(jnp.full((3, 3, 2), 0.5))


def test_exact_return_matches_monte_carlo_rollouts():
    env = StochasticGame(4, 2, 3, seed=5, episode_length=4)
    probs = jnp.asarray(_random_probs(np.random.default_rng(1), env))
    num_episodes = 40_000

    def episode_return(key):
        def advance(carry, step_key):
            out, total = carry
            action_key, env_key = jax.random.split(step_key)
            logits = jnp.log(probs[:, out.state.state_index, :])  # [N, A]
            actions = jax.random.categorical(action_key, logits, axis=-1)
            nxt = env.step(env_key, out.state, actions)
            return (nxt, total + nxt.reward[0]), None

        reset_key, *step_keys = jax.random.split(key, env.episode_length + 1)
        start = env.reset(reset_key)
        (_, total), _ = jax.lax.scan(advance, (start, 0.0), jnp.stack(step_keys))
        return total

    keys = jax.random.split(jax.random.key(42), num_episodes)
    returns = np.asarray(jax.jit(jax.vmap(episode_return))(keys), np.float64)
    standard_error = returns.std() / np.sqrt(num_episodes)
    exact = float(env.exact_return(probs))
    assert abs(returns.mean() - exact) < 4 * standard_error, (returns.mean(), exact)


# -- optimum ------------------------------------------------------------------


def _policy_value(env: StochasticGame, policy: np.ndarray) -> float:
    """Forward pass of a deterministic time-dependent joint policy [H, S]."""
    rewards = np.asarray(env.tables.rewards, np.float64)
    transitions = np.asarray(env.tables.transitions, np.float64)
    states = np.arange(env.num_states)
    dist = np.eye(env.num_states)[0]
    total = 0.0
    for t in range(env.episode_length):
        total += dist @ rewards[states, policy[t]]
        dist = dist @ transitions[states, policy[t]]
    return total


@pytest.mark.parametrize(
    "shape",
    [
        dict(num_states=2, num_agents=2, num_actions=2, episode_length=3),
        dict(num_states=3, num_agents=1, num_actions=3, episode_length=2),
    ],
)
def test_optimal_return_equals_brute_force_over_time_dependent_policies(shape):
    env = StochasticGame(seed=7, **shape)
    num_cells = env.episode_length * env.num_states
    best = max(
        _policy_value(env, np.reshape(choice, (env.episode_length, env.num_states)))
        for choice in itertools.product(range(env.num_joint_actions), repeat=num_cells)
    )
    assert env.optimal_return() == pytest.approx(best, abs=1e-5)
    policy = env.optimal_policy()
    assert policy.shape == (env.episode_length, env.num_states)
    assert _policy_value(env, policy) == pytest.approx(best, abs=1e-5)


def test_one_step_optimum_is_the_best_reward_of_the_start_state():
    env = StochasticGame(3, 2, 3, seed=2, episode_length=1)
    rewards = np.asarray(env.tables.rewards)
    assert env.optimal_return() == pytest.approx(rewards[0].max(), abs=1e-6)
    # The greedy joint action, decoded per agent, played deterministically.
    best = np.asarray(env.agent_actions(env.optimal_policy()[0]))  # [S, N]
    probs = np.eye(3, dtype=np.float32)[best].transpose(1, 0, 2)  # [N, S, A]
    metrics = env.policy_metrics(
        lambda obs: jnp.einsum("bns,nsa->bna", obs, jnp.asarray(probs))
    )
    assert float(metrics["optimality_ratio"]) == pytest.approx(1.0, abs=1e-6)


# -- policy metrics and jit ---------------------------------------------------


def test_policy_metrics_of_random_policies():
    env = StochasticGame(num_states=5, num_agents=2, num_actions=3, seed=8)
    optimum = env.optimal_return()
    rng = np.random.default_rng(3)
    for _ in range(5):
        probs = _random_probs(rng, env)
        seen_obs = []

        def action_probs(obs, probs=probs):
            seen_obs.append(obs.shape)
            return jnp.einsum("bns,nsa->bna", obs, jnp.asarray(probs))

        metrics = env.policy_metrics(action_probs)
        assert seen_obs == [(5, 2, 5)]
        reference = _reference_product_return(env, probs)
        assert metrics["exact_return"].dtype == jnp.float32
        assert metrics["optimality_ratio"].dtype == jnp.float32
        np.testing.assert_allclose(metrics["exact_return"], reference, rtol=1e-5)
        ratio = metrics["optimality_ratio"]
        np.testing.assert_allclose(ratio, reference / optimum, rtol=1e-5)
        assert float(metrics["optimality_ratio"]) <= 1.0 + 1e-6


def test_env_is_a_pytree_whose_tables_stay_out_of_the_compiled_program():
    env = StochasticGame(num_states=20, num_agents=3, num_actions=5, seed=1)
    leaves = jax.tree.leaves(env)
    assert len(leaves) == 2 and leaves[1].shape == (20, 125, 20)

    def program(env, key):
        out = env.reset(key)
        out = env.step(key, out.state, jnp.zeros(3, jnp.int32))
        metrics = env.policy_metrics(lambda obs: jnp.full(obs.shape[:2] + (5,), 0.2))
        return out.reward[0] + metrics["optimality_ratio"]

    lowered = jax.jit(program).lower(env, jax.random.key(0))
    # The transition table printed as a constant would take > 50_000 * 4 chars.
    assert len(lowered.as_text()) < 100_000
    result = lowered.compile()(env, jax.random.key(0))
    expected = program(env, jax.random.key(0))
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_default_game_builds_and_solves(record_property):
    """The paper-size game (625 MB of tables): built, solved and scored exactly, in CI
    too (about 30 s on 2 cores)."""
    start = time.perf_counter()
    env = make_stochastic_game()
    built = time.perf_counter()
    optimum = env.optimal_return()
    solved = time.perf_counter()
    uniform = jnp.full((6, 100, 5), 0.2)
    exact_return = jax.jit(lambda env, probs: env.exact_return(probs))
    exact_return(env, uniform).block_until_ready()
    compiled = time.perf_counter()
    value = float(exact_return(env, uniform))
    evaluated = time.perf_counter()
    record_property("build_s", built - start)
    record_property("dp_s", solved - built)
    record_property("exact_return_s", evaluated - compiled)
    print(
        f"build {built - start:.1f}s, DP {solved - built:.1f}s, exact_return "
        f"{evaluated - compiled:.3f}s, J*={optimum:.4f}, J(uniform)={value:.4f}"
    )
    assert 0 < optimum <= 5.0 * env.episode_length
    # Uniform policy: numpy reference from the state-averaged tables.
    rewards = np.asarray(env.tables.rewards).mean(axis=1, dtype=np.float64)
    transitions = np.asarray(env.tables.transitions).mean(axis=1, dtype=np.float64)
    dist, reference = np.eye(100)[0], 0.0
    for _ in range(env.episode_length):
        reference += dist @ rewards
        dist = dist @ transitions
    assert value == pytest.approx(reference, abs=1e-3)
    assert value / optimum < 1.0


def test_tables_of_anything_but_finite_float32_reals_are_named():
    rewards = np.random.default_rng(0).random((3, 2, 2))
    trans = np.full((3, 2, 2, 3), 1 / 3)
    cases = [(np.full((3, 2, 2), 1e39), trans, "overflow float32"),
             (rewards.astype(complex), trans, "rewards must hold real numbers"),
             (rewards, trans.astype(str), "transitions must hold real numbers"),
             (np.zeros((0, 2, 2)), np.zeros((0, 2, 2, 0)), "are empty"),
             ([[1.0, 2.0], [3.0]], trans, "rewards is not an array")]
    for r, t, words in cases:
        with pytest.raises(ValueError, match=words):
            dpo_jax.stochastic_game_from_tables(r, t)


def test_a_game_file_is_loaded_without_running_what_it_names(tmp_path):
    import pickle

    rewards = np.random.default_rng(0).random((3, 2, 2))
    trans = np.full((3, 2, 2, 3), 1 / 3)
    good = tmp_path / "game.pkl"
    good.write_bytes(pickle.dumps({"reward": rewards, "trans_mat": trans}))
    game = dpo_jax.load_authors_game(str(good))
    assert (game.num_agents, game.obs_dim) == (2, 3)

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"reward": Payload(), "trans_mat": trans}))
    with pytest.raises(ValueError, match="evil.pkl.*does not hold"):
        dpo_jax.load_authors_game(str(evil))
    assert not marker.exists()
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"reward": rewards[:, :, :1], "trans_mat": trans}))
    with pytest.raises(ValueError, match="wrong.pkl.*must be rewards' shape"):
        dpo_jax.load_authors_game(str(wrong))
