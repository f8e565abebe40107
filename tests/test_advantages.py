"""GAE with termination vs truncation against plain numpy references."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from dpo_jax.core.advantages import gae

GAMMA, LAMBDA = 0.9, 0.8


def gae_loop_np(rewards, values, next_values, terminated, done, gamma, lam):
    """Backward recursion, one scalar stream at a time (numpy float64)."""
    T = rewards.shape[0]
    flat = lambda x: x.reshape(T, -1)  # noqa: E731
    r, v, nv = flat(rewards), flat(values), flat(next_values)
    term = flat(np.broadcast_to(terminated, rewards.shape))
    end = flat(np.broadcast_to(done, rewards.shape))
    adv = np.zeros_like(r)
    for k in range(r.shape[1]):
        running = 0.0
        for t in reversed(range(T)):
            if end[t, k]:
                running = 0.0  # nothing of the next episode flows back
            bootstrap = 0.0 if term[t, k] else nv[t, k]
            delta = r[t, k] + gamma * bootstrap - v[t, k]
            running = delta + gamma * lam * running
            adv[t, k] = running
    return adv.reshape(rewards.shape)


def gae_sum_np(rewards, values, next_values, terminated, done, gamma, lam):
    """Definition as a finite sum: A_t = sum_{k=t}^{e(t)} (gamma lam)^(k-t) delta_k,
    where e(t) is the first step >= t at which the episode ends (or T-1)."""
    T = rewards.shape[0]
    term = np.broadcast_to(terminated, rewards.shape)
    end = np.broadcast_to(done, rewards.shape)
    deltas = rewards + gamma * np.where(term, 0.0, next_values) - values
    adv = np.zeros_like(rewards)
    for idx in np.ndindex(rewards.shape[1:]):
        for t in range(T):
            total = 0.0
            for k in range(t, T):
                total += (gamma * lam) ** (k - t) * deltas[(k,) + idx]
                if end[(k,) + idx]:
                    break
            adv[(t,) + idx] = total
    return adv


def _random_rollout(rng, shape, p_end=0.25):
    rewards = rng.normal(size=shape)
    values = rng.normal(size=shape)
    next_values = rng.normal(size=shape)
    done = rng.random(size=shape) < p_end
    # half of the episode ends are terminations, the other half truncations
    terminated = done & (rng.random(size=shape) < 0.5)
    return rewards, values, next_values, terminated, done


def _f32(*xs):
    return [jnp.asarray(x, jnp.float32) if x.dtype.kind == "f" else jnp.asarray(x)
            for x in xs]


class GAETest(chex.TestCase):

    def _gae(self, *args, gamma=GAMMA, lam=LAMBDA):
        fn = self.variant(lambda r, v, nv, te, d: gae(r, v, nv, te, d, gamma, lam))
        return fn(*_f32(*args))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters((0.99, 0.95), (0.9, 0.8), (1.0, 1.0), (0.5, 0.0))
    def test_random_rollout_against_numpy(self, gamma, lam):
        rng = np.random.default_rng(1)
        args = _random_rollout(rng, (20, 4, 3))
        assert args[3].any() and (args[4] & ~args[3]).any()  # both kinds of end occur
        adv, targets = self._gae(*args, gamma=gamma, lam=lam)
        expected_loop = gae_loop_np(*args, gamma, lam)
        expected_sum = gae_sum_np(*args, gamma, lam)
        np.testing.assert_allclose(expected_loop, expected_sum, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(adv, expected_sum, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(targets, expected_sum + args[1], rtol=1e-4, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_made_example(self):
        # one stream, T = 4: truncated at t=1, terminated at t=3
        r = np.array([1.0, 2.0, 0.5, -1.0])
        v = np.array([0.5, 1.0, 0.2, 0.3])
        nv = np.array([1.0, 4.0, 0.3, 9.0])  # nv[1]: final obs value, nv[3]: ignored
        te = np.array([False, False, False, True])
        d = np.array([False, True, False, True])
        g, lam = 0.5, 0.5
        d0 = 1.0 + 0.5 * 1.0 - 0.5    # 1.0
        d1 = 2.0 + 0.5 * 4.0 - 1.0    # 3.0, bootstrapped from the truncated obs
        d2 = 0.5 + 0.5 * 0.3 - 0.2    # 0.45
        d3 = -1.0 + 0.0 - 0.3         # -1.3, terminal: no bootstrap
        a3 = d3
        a2 = d2 + 0.25 * a3           # 0.125
        a1 = d1                       # episode ended: a2 does not flow back
        a0 = d0 + 0.25 * a1           # 1.75
        adv, targets = self._gae(r, v, nv, te, d, gamma=g, lam=lam)
        np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-6)
        np.testing.assert_allclose(adv, [1.75, 3.0, 0.125, -1.3], rtol=1e-6)
        np.testing.assert_allclose(targets, np.array([a0, a1, a2, a3]) + v, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_termination_ignores_next_value_and_truncation_uses_it(self):
        rng = np.random.default_rng(2)
        r, v, nv, _, _ = _random_rollout(rng, (6, 2))
        te = np.zeros((6, 2), bool)
        d = np.zeros((6, 2), bool)
        te[2, 0] = d[2, 0] = True      # env 0: terminated at t=2
        d[2, 1] = True                 # env 1: truncated at t=2
        base, _ = self._gae(r, v, nv, te, d)
        nv2 = nv.copy()
        nv2[2] += 100.0
        moved, _ = self._gae(r, v, nv2, te, d)
        # terminated: the final observation's value is not used at all
        np.testing.assert_array_equal(moved[:, 0], base[:, 0])
        # truncated: it enters delta_2 with weight gamma, and A_t (t <= 2) via (gamma lam)^(2-t)
        expected_shift = [GAMMA * 100.0 * (GAMMA * LAMBDA) ** (2 - t) for t in range(3)]
        np.testing.assert_allclose(moved[:3, 1] - base[:3, 1], expected_shift, rtol=1e-4)
        np.testing.assert_array_equal(moved[3:, 1], base[3:, 1])

    @chex.variants(with_jit=True, without_jit=True)
    def test_next_episode_does_not_leak_backwards(self):
        rng = np.random.default_rng(3)
        r, v, nv, _, _ = _random_rollout(rng, (8, 2))
        te = np.zeros((8, 2), bool)
        d = np.zeros((8, 2), bool)
        te[3, 0] = d[3, 0] = True
        d[3, 1] = True
        base, _ = self._gae(r, v, nv, te, d)
        r2, v2, nv2 = r.copy(), v.copy(), nv.copy()
        r2[4:] += 50.0
        v2[4:] -= 7.0
        nv2[4:] += 3.0
        changed, _ = self._gae(r2, v2, nv2, te, d)
        np.testing.assert_array_equal(changed[:4], base[:4])
        assert np.all(np.abs(changed[4:] - base[4:]) > 1.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_per_env_done_broadcasts_over_agents(self):
        rng = np.random.default_rng(4)
        T, E, N = 12, 3, 4
        rewards = rng.normal(size=(T, E, N))
        values = rng.normal(size=(T, E, N))
        next_values = rng.normal(size=(T, E, N))
        done = rng.random(size=(T, E, 1)) < 0.3
        terminated = done & (rng.random(size=(T, E, 1)) < 0.5)
        adv, targets = self._gae(rewards, values, next_values, terminated, done)
        assert adv.shape == (T, E, N) and targets.shape == (T, E, N)
        # reference: every agent gets its env's flags, one agent at a time
        for agent in range(N):
            expected = gae_sum_np(rewards[..., agent], values[..., agent],
                                  next_values[..., agent], terminated[..., 0],
                                  done[..., 0], GAMMA, LAMBDA)
            np.testing.assert_allclose(adv[..., agent], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(targets, np.asarray(adv) + values, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_no_episode_end_is_discounted_sum_of_deltas(self):
        # lambda = 1, no ends: A_t = sum_k gamma^(k-t) r_k + gamma^(T-t) V(s_T) - V(s_t)
        rng = np.random.default_rng(5)
        T = 7
        r = rng.normal(size=T)
        v = rng.normal(size=T + 1)   # V(s_0..s_T)
        values, next_values = v[:-1], v[1:]
        no = np.zeros(T, bool)
        adv, _ = self._gae(r, values, next_values, no, no, gamma=0.9, lam=1.0)
        mc = [sum(0.9 ** (k - t) * r[k] for k in range(t, T)) + 0.9 ** (T - t) * v[T] - v[t]
              for t in range(T)]
        np.testing.assert_allclose(adv, mc, rtol=1e-4, atol=1e-5)
