"""Policy distributions: analytic KL vs numpy closed forms and Monte Carlo, action
masks, and the actor/critic output shapes."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from dpo_jax.core import networks
from dpo_jax.envs.base import ContinuousActions, DiscreteActions
from dpo_jax.core.networks import Actor, Critic, action_probs, distribution, kl_divergence


def _softmax_np(logits):
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def categorical_kl_np(old_logits, new_logits):
    p, q = _softmax_np(old_logits), _softmax_np(new_logits)
    out = np.zeros(p.shape[:-1])
    for idx in np.ndindex(p.shape[:-1]):
        out[idx] = sum(pa * (np.log(pa) - np.log(qa))
                       for pa, qa in zip(p[idx], q[idx]) if pa > 0)
    return out


def gaussian_kl_np(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) summed over the last axis."""
    return np.sum(np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5,
                  axis=-1)


def _f32(x):
    return jnp.asarray(x, jnp.float32)


class KLClosedFormTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_categorical(self):
        rng = np.random.default_rng(0)
        old, new = rng.normal(size=(2, 5, 3, 6)) * 1.5
        spec = DiscreteActions(6)
        got = self.variant(lambda a, b: kl_divergence(a, b, spec))(_f32(old), _f32(new))
        assert got.shape == (5, 3)
        np.testing.assert_allclose(got, categorical_kl_np(old, new), rtol=1e-4, atol=1e-6)
        same = self.variant(lambda a: kl_divergence(a, a, spec))(_f32(old))
        np.testing.assert_allclose(same, 0.0, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gaussian(self):
        rng = np.random.default_rng(1)
        dim = 3
        m1, m2 = rng.normal(size=(2, 7, dim))
        ls1, ls2 = rng.normal(size=(2, 7, dim)) * 0.5
        old = np.concatenate([m1, ls1], -1)
        new = np.concatenate([m2, ls2], -1)
        spec = ContinuousActions(dim)
        got = self.variant(lambda a, b: kl_divergence(a, b, spec))(_f32(old), _f32(new))
        assert got.shape == (7,)
        np.testing.assert_allclose(got, gaussian_kl_np(m1, np.exp(ls1), m2, np.exp(ls2)),
                                   rtol=1e-4, atol=1e-6)


def _mc_check(estimate_samples, analytic, num_se=5.0):
    mean = estimate_samples.mean()
    se = estimate_samples.std(ddof=1) / np.sqrt(len(estimate_samples))
    assert abs(mean - analytic) < num_se * se + 1e-6, (mean, analytic, se)


def test_categorical_kl_monte_carlo():
    old = np.array([0.3, -1.0, 2.0, 0.1, -0.5])
    new = np.array([-0.2, 0.4, 1.0, 0.9, 0.0])
    spec = DiscreteActions(5)
    analytic = float(kl_divergence(_f32(old), _f32(new), spec))
    samples = np.asarray(distribution(_f32(old), spec).sample(
        seed=jax.random.key(0), sample_shape=(200_000,)))
    # log-probabilities in numpy, independently of distrax
    log_p = old - np.log(np.exp(old).sum())
    log_q = new - np.log(np.exp(new).sum())
    _mc_check(log_p[samples] - log_q[samples], analytic)
    assert analytic > 0.1  # a non-trivial KL


def test_gaussian_kl_monte_carlo():
    dim = 2
    m1, ls1 = np.array([0.1, -0.4]), np.array([0.0, -0.5])
    m2, ls2 = np.array([0.5, 0.2]), np.array([0.3, -0.2])
    spec = ContinuousActions(dim)
    analytic = float(kl_divergence(_f32(np.r_[m1, ls1]), _f32(np.r_[m2, ls2]), spec))
    x = np.random.default_rng(0).normal(size=(200_000, dim)) * np.exp(ls1) + m1
    log_p = stats.norm.logpdf(x, m1, np.exp(ls1)).sum(-1)
    log_q = stats.norm.logpdf(x, m2, np.exp(ls2)).sum(-1)
    _mc_check(log_p - log_q, analytic)
    assert analytic > 0.1


# ---------------------------------------------------------------- action masks


NUM_ACTIONS = 5
MASK = np.array([
    [True, False, True, False, True],
    [False, False, False, True, False],   # one action only
    [True, True, True, True, True],
    [False, True, True, False, False],
])


ACTOR = Actor(DiscreteActions(NUM_ACTIONS), hidden_sizes=(16, 16))
_init = jax.jit(ACTOR.init)
_apply = jax.jit(ACTOR.apply)


@functools.lru_cache(maxsize=None)
def _actor_params(seed):
    obs = jax.random.normal(jax.random.key(seed), (MASK.shape[0], 3))
    return obs, _init(jax.random.key(seed + 1), obs, jnp.asarray(MASK))


@functools.lru_cache(maxsize=None)
def _masked_logits(seed):
    """Actor outputs for MASK with two different parameter sets."""
    obs, _ = _actor_params(seed)
    # copies (the cached trees stay untouched), with a gain-1 head instead of the
    # 0.01 init so that the two policies differ visibly
    params = [jax.tree.map(jnp.copy, _actor_params(seed + k)[1]) for k in (1, 2)]
    for p in params:
        p["params"]["Dense_0"]["kernel"] = 100.0 * p["params"]["Dense_0"]["kernel"]
    return tuple(_apply(p, obs, jnp.asarray(MASK)) for p in params)


def test_masked_actions_have_probability_exactly_zero():
    old, _ = _masked_logits(0)
    probs = np.asarray(action_probs(old))
    assert np.all(probs[~MASK] == 0.0)
    assert np.all(probs[MASK] > 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs[1], [0, 0, 0, 1, 0])


def test_masked_actions_are_never_sampled():
    old, _ = _masked_logits(0)
    dist = distribution(old, DiscreteActions(NUM_ACTIONS))
    samples = np.asarray(dist.sample(seed=jax.random.key(1), sample_shape=(20_000,)))
    assert samples.shape == (20_000, MASK.shape[0])
    for row in range(MASK.shape[0]):
        seen = np.unique(samples[:, row])
        assert MASK[row, seen].all(), (row, seen)
        # every available action does occur
        np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(MASK[row]))
    log_prob = np.asarray(dist.log_prob(jnp.asarray(samples)))
    assert np.all(np.isfinite(log_prob))


def test_masked_entropy_and_kl_only_count_available_actions():
    old, new = _masked_logits(0)
    spec = DiscreteActions(NUM_ACTIONS)
    entropy = np.asarray(distribution(old, spec).entropy())
    kl = np.asarray(kl_divergence(old, new, spec))
    assert np.all(np.isfinite(entropy)) and np.all(np.isfinite(kl))
    old_np, new_np = np.asarray(old, np.float64), np.asarray(new, np.float64)
    for row in range(MASK.shape[0]):
        avail = MASK[row]
        p = _softmax_np(old_np[row, avail])
        q = _softmax_np(new_np[row, avail])
        np.testing.assert_allclose(entropy[row], -np.sum(p * np.log(p)), rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(kl[row], np.sum(p * (np.log(p) - np.log(q))),
                                   rtol=1e-4, atol=1e-6)
    # one available action: a deterministic policy, zero entropy and zero KL
    assert entropy[1] == pytest.approx(0.0, abs=1e-6)
    assert kl[1] == pytest.approx(0.0, abs=1e-6)
    assert kl[0] > 1e-3  # the two policies do differ where there is a choice


def test_masked_gradients_are_finite():
    obs, params = _actor_params(10)
    mask = jnp.asarray(MASK)
    old = _apply(params, obs, mask)
    spec = DiscreteActions(NUM_ACTIONS)

    def loss(p):
        new = ACTOR.apply(p, obs, mask)
        return (kl_divergence(old, new, spec).mean()
                - distribution(new, spec).entropy().mean())

    grads = jax.jit(jax.grad(loss))(jax.tree.map(lambda x: x * 1.1, params))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------- shapes


def test_actor_and_critic_shapes():
    obs = jnp.ones((7, 4, 3))
    discrete = Actor(DiscreteActions(5), hidden_sizes=(16, 16))
    mask = jnp.ones((7, 4, 5), bool)
    params = jax.eval_shape(discrete.init, jax.random.key(0), obs, mask)
    assert jax.eval_shape(discrete.apply, params, obs, mask).shape == (7, 4, 5)

    continuous = Actor(ContinuousActions(2), hidden_sizes=(16,), init_log_std=-0.5)
    one = jnp.ones((7, 4, 1), bool)
    params = jax.jit(continuous.init)(jax.random.key(0), obs, one)
    out = jax.jit(continuous.apply)(params, obs, one)
    assert out.shape == (7, 4, 4)  # mean and log-std
    np.testing.assert_allclose(out[..., 2:], -0.5)  # state-independent initial log-std
    dist = distribution(out, ContinuousActions(2))
    assert dist.sample(seed=jax.random.key(1)).shape == (7, 4, 2)

    critic = Critic(hidden_sizes=(16, 16))
    params = jax.eval_shape(critic.init, jax.random.key(0), obs)
    assert jax.eval_shape(critic.apply, params, obs).shape == (7, 4)


def test_initial_policy_is_near_uniform():
    # the 0.01-gain head: near-uniform initial policy (reference code)
    obs, params = _actor_params(20)
    all_avail = jnp.ones(MASK.shape, bool)
    probs = networks.action_probs(_apply(params, obs, all_avail))
    np.testing.assert_allclose(probs, 1 / NUM_ACTIONS, atol=0.02)
