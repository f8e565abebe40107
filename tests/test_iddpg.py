"""IDDPG baseline and the continuous reach task: critic targets, Polyak averaging and
exploration against hand/numpy formulas, and a short run that clearly beats the
uniformly random policy."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpo_jax.baselines import IDDPGConfig, make_train_iddpg
from dpo_jax.baselines import common, iddpg
from dpo_jax.envs.base import ContinuousActions
from dpo_jax.envs.continuous_reach import goal_positions, make_continuous_reach
from dpo_jax.envs.stochastic_game import make_small_stochastic_game
from dpo_jax.training.rollout import random_policy_return


class CriticTargetTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_termination_cuts_the_bootstrap_truncation_keeps_it(self):
        reward = np.array([1.0, -2.0, 0.5], np.float32)
        terminated = np.array([False, True, False])  # the third step may be truncated
        next_q = np.array([10.0, 10.0, -4.0], np.float32)
        got = self.variant(lambda *a: iddpg.critic_targets(*a, gamma=0.9))(
            reward, terminated, next_q)
        np.testing.assert_allclose(got, [1 + 9.0, -2.0, 0.5 - 3.6], rtol=1e-6)


def test_polyak_update_matches_numpy():
    rng = np.random.default_rng(0)
    online = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=5)}}
    target = jax.tree.map(lambda x: rng.normal(size=x.shape), online)
    tau = 0.005
    got = common.polyak_update(jax.tree.map(jnp.asarray, target),
                               jax.tree.map(jnp.asarray, online), tau)
    for path in (("a",), ("b", "c")):
        o, t, g = online, target, got
        for k in path:
            o, t, g = o[k], t[k], g[k]
        np.testing.assert_allclose(g, tau * o + (1 - tau) * t, rtol=1e-5, atol=1e-6)


def test_exploration_noise_scale_and_clipping():
    spec = ContinuousActions(action_dim=2, low=-2.0, high=2.0)
    mean = jnp.zeros((50_000, 2))
    noisy = np.asarray(iddpg.exploration_actions(jax.random.key(0), mean, spec, 0.1))
    # std 0.1 of half the range (2): 0.2
    np.testing.assert_allclose(noisy.std(0), [0.2, 0.2], rtol=0.03)
    edge = jnp.full((1000, 2), 2.0)
    clipped = np.asarray(iddpg.exploration_actions(jax.random.key(1), edge, spec, 0.1))
    assert clipped.max() == 2.0 and clipped.min() >= -2.0


def test_actor_outputs_stay_in_the_box():
    spec = ContinuousActions(action_dim=3, low=-0.5, high=2.0)
    actor = iddpg.DeterministicActor(spec, (16, 16))
    obs = 100.0 * jax.random.normal(jax.random.key(0), (256, 5))
    out = actor.apply(actor.init(jax.random.key(1), obs[0]), obs)
    assert out.shape == (256, 3)
    assert float(out.min()) >= -0.5 and float(out.max()) <= 2.0


def test_continuous_reach_dynamics_reward_and_time_limit():
    env = make_continuous_reach(num_agents=2, max_steps=3)
    goals = goal_positions(2)
    np.testing.assert_allclose(goals, [[0.5, 0.0], [-0.5, 0.0]], atol=1e-7)
    first = env.reset(jax.random.key(0))
    pos = np.asarray(first.obs[:, :2])
    actions = jnp.array([[1.0, -1.0], [5.0, 0.0]])  # the second is clipped to 1
    out = env.step(jax.random.key(1), first.state, actions)
    expected = np.clip(pos + 0.1 * np.array([[1.0, -1.0], [1.0, 0.0]]), -1, 1)
    np.testing.assert_allclose(out.obs[:, :2], expected, rtol=1e-6)
    np.testing.assert_allclose(out.obs[:, 2:], goals - expected, rtol=1e-5, atol=1e-6)
    reward = -np.linalg.norm(expected - goals, axis=-1).mean()
    np.testing.assert_allclose(out.reward, [reward, reward], rtol=1e-5)
    assert not bool(out.terminated) and not bool(out.truncated)
    for _ in range(2):
        out = env.step(jax.random.key(1), out.state, actions)
    assert bool(out.truncated) and not bool(out.terminated)


def test_iddpg_beats_the_random_policy_on_continuous_reach_two_seeds_one_compile():
    env = make_continuous_reach(num_agents=2, max_steps=25)
    random = random_policy_return(env, jax.random.key(7), num_envs=256)
    cfg = IDDPGConfig(total_timesteps=10_000, num_envs=8, num_steps=25, gradient_steps=50,
                      batch_size=128, buffer_size=10_000, learning_starts=1000, hidden_size=64)
    train = make_train_iddpg(cfg, env)
    traces = []

    def counted(key):
        traces.append(1)
        return train(key)

    result = jax.jit(jax.vmap(counted))(jax.random.split(jax.random.key(0), 2))
    assert len(traces) == 1
    m = jax.tree.map(np.asarray, result.metrics)
    assert m["episode_return"].shape == (2, 50) and m["finite"].all()
    assert not m["learning"][:, :4].any() and m["learning"][:, 4:].all()  # 1000 steps
    np.testing.assert_array_equal(m["env_steps"][0], 200 * np.arange(1, 51))
    final = m["episode_return"][:, -5:].mean(1)
    # random: about -22 (mean distance 0.9); walking to the goals: about -4
    assert float(random["episode_return"]) < -18
    assert (final > 0.5 * float(random["episode_return"])).all(), (final, random)
    assert (m["final_distance"][:, -5:].mean(1) < 0.4).all()


def test_iddpg_rejects_discrete_actions():
    env = make_small_stochastic_game(num_states=3, num_agents=2, num_actions=2)
    with pytest.raises(ValueError, match="IDDPG needs a continuous action space"):
        make_train_iddpg(IDDPGConfig(), env)


def test_iddpg_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"IDDPGConfig\.tau=0"):
        IDDPGConfig(tau=0.0)
    with pytest.raises(ValueError, match=r"IDDPGConfig\.total_timesteps=10 "):
        IDDPGConfig(total_timesteps=10)
    with pytest.raises(ValueError, match=r"IDDPGConfig\.algo='iql'"):
        IDDPGConfig(algo="iql")
