"""IQL baseline: TD targets, masks, exploration schedule and target copies against
hand computations, episode padding, and solving a tiny deterministic game exactly."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpo_jax.baselines import IQLConfig, make_train_iql
from dpo_jax.baselines import common, iql
from dpo_jax.envs import stochastic_game as sg
from dpo_jax.envs.base import DiscreteActions, EnvStep, MultiAgentEnv
from dpo_jax.envs.continuous_reach import make_continuous_reach
from dpo_jax.training.rollout import episode_stats


class TDTargetTest(chex.TestCase):
    # three steps, three actions; gamma 0.9
    reward = np.array([1.0, 2.0, 3.0], np.float32)
    terminated = np.array([False, True, False])  # step 2 is truncated: it bootstraps
    next_q_target = np.array([[1.0, 5.0, 2.0], [3.0, 3.0, 9.0], [4.0, 7.0, -1.0]], np.float32)
    next_avail = np.array([[True, False, True], [True, True, True], [False, False, True]])

    @chex.variants(with_jit=True, without_jit=True)
    def test_max_over_available_next_actions(self):
        fn = self.variant(lambda *a: iql.td_targets(*a, gamma=0.9))
        got = fn(self.reward, self.terminated, self.next_q_target, self.next_avail)
        # t0: max over actions {0, 2} = 2 (action 1, worth 5, is unavailable)
        # t1: terminated, no bootstrap; t2: only action 2 available, worth -1
        np.testing.assert_allclose(got, [1 + 0.9 * 2, 2.0, 3 + 0.9 * -1], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_double_q_selects_with_online_values(self):
        online = np.array([[3.0, 9.0, 1.0], [0.0, 0.0, 0.0], [9.0, 9.0, 0.0]], np.float32)
        fn = self.variant(lambda *a: iql.td_targets(*a[:4], gamma=0.9, next_q_online=a[4]))
        got = fn(self.reward, self.terminated, self.next_q_target, self.next_avail, online)
        # t0: online argmax over {0, 2} is action 0, valued by the target at 1
        np.testing.assert_allclose(got, [1 + 0.9 * 1, 2.0, 3 + 0.9 * -1], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_no_available_next_action_adds_nothing(self):
        fn = self.variant(lambda *a: iql.td_targets(*a, gamma=0.9))
        got = fn(self.reward, np.zeros(3, bool), self.next_q_target, np.zeros((3, 3), bool))
        np.testing.assert_allclose(got, self.reward)

    @chex.variants(with_jit=True, without_jit=True)
    def test_padded_steps_are_left_out_of_the_loss(self):
        q = np.array([1.0, 2.0, 100.0], np.float32)
        targets = np.array([0.0, 4.0, -100.0], np.float32)
        valid = np.array([True, True, False])
        loss, td_abs = self.variant(iql.masked_td_loss)(q, targets, valid)
        np.testing.assert_allclose(loss, (1.0 + 4.0) / 2, rtol=1e-6)
        np.testing.assert_allclose(td_abs, (1.0 + 2.0) / 2, rtol=1e-6)


def test_epsilon_schedule_is_pymarl_linear_decay_then_flat():
    cfg = IQLConfig()
    steps = jnp.array([0, 10_000, 25_000, 50_000, 80_000])
    expected = [1.0, 1.0 - 0.95 * 0.2, 1.0 - 0.95 * 0.5, 0.05, 0.05]
    np.testing.assert_allclose(iql.epsilon_schedule(steps, cfg), expected, rtol=1e-5)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_epsilon_greedy_never_picks_a_masked_action(epsilon):
    q = jnp.broadcast_to(jnp.array([5.0, 1.0, 9.0, 2.0]), (20_000, 4))  # 2 is best, masked
    avail = jnp.broadcast_to(jnp.array([True, True, False, True]), (20_000, 4))
    actions = np.asarray(jax.jit(iql.epsilon_greedy)(jax.random.key(0), q, avail, epsilon))
    assert not (actions == 2).any()
    freq = np.bincount(actions, minlength=4) / actions.size
    # greedy among available is action 0; exploration is uniform over {0, 1, 3}
    expected = np.array([1 - epsilon + epsilon / 3, epsilon / 3, 0.0, epsilon / 3])
    np.testing.assert_allclose(freq, expected, atol=0.015)


def test_hard_target_update_and_its_period():
    online = {"w": jnp.arange(3.0), "b": jnp.ones(2)}
    target = {"w": jnp.zeros(3), "b": jnp.zeros(2)}
    chex.assert_trees_all_equal(common.hard_target_update(target, online, jnp.array(True)), online)
    chex.assert_trees_all_equal(common.hard_target_update(target, online, jnp.array(False)), target)
    # PyMARL copies every 200 episodes; at 8 episodes per update: every 25 updates
    assert IQLConfig(num_envs=8).target_update_period == 25
    assert IQLConfig(num_envs=3).target_update_period == 67  # first update with >= 200


class EarlyEnd(MultiAgentEnv):
    """Two agents, three actions (action 1 never available); the episode terminates
    after 2 steps, although the time limit is 4. Observation: the step count."""

    name = "early_end"
    num_agents = 2
    obs_dim = 1
    action_spec = DiscreteActions(3)
    max_steps = 4

    def _out(self, t, terminated):
        return EnvStep(state=t, obs=jnp.full((2, 1), t, jnp.float32),
                       avail_actions=jnp.array([[True, False, True]] * 2),
                       reward=jnp.ones(2, jnp.float32) * t, terminated=terminated,
                       truncated=t >= self.max_steps, info={})

    def reset(self, key):
        return self._out(jnp.int32(0), jnp.array(False))

    def step(self, key, state, actions):
        return self._out(state + 1, state + 1 >= 2)


def test_episodes_ending_early_are_padded_and_masked():
    cfg = IQLConfig(hidden_size=8)
    env = EarlyEnd()
    net = iql.RNNQNetwork(3, cfg.hidden_size)
    params = jax.vmap(lambda k: net.init(k, jnp.zeros(8), jnp.zeros(4)))(
        jax.random.split(jax.random.key(0), 2))
    episodes, records = jax.jit(
        lambda p, k: iql.collect_episodes(env, net, p, k, 3, jnp.float32(0.5), cfg))(
        params, jax.random.key(1))
    np.testing.assert_array_equal(episodes.valid, [[True, True, False, False]] * 3)
    np.testing.assert_array_equal(episodes.terminated, [[False, True, False, False]] * 3)
    # observations after the end repeat the terminal one; rewards there are zero
    np.testing.assert_array_equal(episodes.obs[:, :, 0, 0], [[0, 1, 2, 2, 2]] * 3)
    np.testing.assert_array_equal(episodes.reward[:, :, 0], [[1, 2, 0, 0]] * 3)
    assert not (np.asarray(episodes.action) == 1).any()
    stats = jax.jit(episode_stats)(records)
    assert float(stats["episodes"]) == 3 and float(stats["episode_length"]) == 2
    assert float(stats["episode_return"]) == 3


def chain_game(horizon: int = 6) -> sg.StochasticGame:
    """Three states, two agents, two actions, deterministic transitions. Joint action
    (1, 1) moves s0 -> s1 -> s2 and pays 1 in s2 (staying there); (0, 0) pays 0.1
    and returns to s0; mixed actions pay 0 and return to s0. Best from s0 in 6 steps:
    two moves, then 4 x 1 = 4, reached by the stationary policy "always action 1"."""
    rewards = np.zeros((3, 4), np.float32)
    transitions = np.zeros((3, 4, 3), np.float32)
    for s in range(3):
        transitions[s, 1:3, 0] = 1.0
        transitions[s, 0, 0], rewards[s, 0] = 1.0, 0.1
        transitions[s, 3, min(s + 1, 2)] = 1.0
    rewards[2, 3] = 1.0
    return sg.StochasticGame.from_tables(rewards, transitions, episode_length=horizon,
                                         num_agents=2)


def test_iql_solves_a_tiny_deterministic_game_exactly_for_two_seeds_in_one_compile():
    env = chain_game()
    assert env.optimal_return() == pytest.approx(4.0)  # the hand computation above
    cfg = IQLConfig(total_timesteps=4800, num_envs=8, gradient_steps=4, hidden_size=64,
                    buffer_size=500, epsilon_anneal_time=2400, target_update_interval=80)
    train = make_train_iql(cfg, env)
    traces = []

    def counted(key, env):
        traces.append(1)
        return train(key, None, env)

    run = jax.jit(jax.vmap(counted, in_axes=(0, None)))
    result = run(jax.random.split(jax.random.key(0), 2), env)
    assert len(traces) == 1
    m = jax.tree.map(np.asarray, result.metrics)
    assert m["episode_return"].shape == (2, 100) and m["finite"].all()
    np.testing.assert_allclose(m["exact_return"][:, -1], [4.0, 4.0], rtol=1e-5)
    np.testing.assert_allclose(m["optimality_ratio"][:, -1], [1.0, 1.0], rtol=1e-5)
    # the recurrent greedy policy itself, played out: deterministic, so exactly J* too
    np.testing.assert_allclose(m["greedy_return"][:, -1], [4.0, 4.0], rtol=1e-5)
    assert (m["episode_return"][:, -10:].mean(1) > 3.0).all()  # epsilon = 0.05 behaviour
    # the last update (index 99) copied the targets: period ceil(80 / 8) = 10
    np.testing.assert_array_equal(np.flatnonzero(m["target_updated"][0]) + 1,
                                  np.arange(10, 101, 10))
    chex.assert_trees_all_close(result.agents.target_params, result.agents.params)


def test_iql_rejects_continuous_actions():
    with pytest.raises(ValueError, match="IQL needs a discrete action space.*ContinuousActions"):
        make_train_iql(IQLConfig(), make_continuous_reach())


def test_iql_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"IQLConfig\.batch_size=64 .*buffer_size=32"):
        IQLConfig(buffer_size=32, batch_size=64)
    with pytest.raises(ValueError, match=r"IQLConfig\.algo='dpo'"):
        IQLConfig(algo="dpo")
    with pytest.raises(ValueError, match=r"IQLConfig\.epsilon_finish=0\.5"):
        IQLConfig(epsilon_start=0.1, epsilon_finish=0.5)
