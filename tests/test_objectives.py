"""The policy-objective family (eq. 19), eq. 20's beta rule and the value loss,
checked against numpy formulas on hand-made numbers."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from dpo_jax.core import networks, objectives
from dpo_jax.training import trainer as train_lib
from dpo_jax.core.agents import Agents, make_agents
from dpo_jax.config import TrainConfig
from dpo_jax.envs.base import ContinuousActions, DiscreteActions
from dpo_jax.core.objectives import (
    adapt_beta,
    adapt_betas,
    objective_params,
    policy_loss,
    stack_params,
    value_loss,
)

ENTROPY_COEF = 0.01
NUM_AGENTS = 3

# Hand-made ratios and advantages covering every branch of the clip.
RATIOS = np.array([1.5, 1.5, 0.5, 0.5, 1.0, 1.1, 1.25, 0.7])
ADVANTAGES = np.array([2.0, -1.0, 1.0, -2.0, 3.0, -1.0, -0.5, 0.25])
# min(r A, clip(r, 0.8, 1.2) A), worked out by hand per sample:
#   1.5*2 = 3.0 vs 1.2*2 = 2.4 -> 2.4      1.5*-1 = -1.5 vs 1.2*-1 = -1.2 -> -1.5
#   0.5*1 = 0.5 vs 0.8*1 = 0.8 -> 0.5      0.5*-2 = -1.0 vs 0.8*-2 = -1.6 -> -1.6
#   1.0*3 = 3.0 (inside)       -> 3.0      1.1*-1 = -1.1 (inside)        -> -1.1
#   1.25*-0.5 = -0.625 vs 1.2*-0.5 = -0.6 -> -0.625
#   0.7*0.25 = 0.175 vs 0.8*0.25 = 0.2 -> 0.175
CLIPPED_SURROGATE_BY_HAND = np.array([2.4, -1.5, 0.5, -1.6, 3.0, -1.1, -0.625, 0.175])
ENTROPIES = np.array([1.0, 0.9, 0.8, 1.1, 0.7, 1.2, 0.6, 1.3])
KLS = np.array([0.0, 0.02, 0.001, 0.05, 0.3, 0.0, 0.004, 0.01])
OLD_LOG_PROBS = np.log(np.array([0.3, 0.5, 0.2, 0.9, 0.25, 0.6, 0.4, 0.1]))
LOG_PROBS = OLD_LOG_PROBS + np.log(RATIOS)
BETA_SQRT, BETA_KL = 0.7, 1.3


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _ppo_kl_loss_np(adv_scale, beta_kl, kl_on=1.0):
    """-adv_scale * mean(r A) + beta_2 * mean(KL) - c * mean(H)."""
    return (-adv_scale * np.mean(RATIOS * ADVANTAGES) + kl_on * beta_kl * np.mean(KLS)
            - ENTROPY_COEF * np.mean(ENTROPIES))


class PolicyLossTest(chex.TestCase):
    """policy_loss against eq. 19 / the PPO clip formula written in numpy."""

    def _loss(self, obj, form="sqrt_of_mean", eps=1e-12, beta_sqrt=BETA_SQRT,
              beta_kl=BETA_KL):
        fn = self.variant(lambda lp, olp, adv, kl, ent, bs, bk, o: policy_loss(
            lp, olp, adv, kl, ent, bs, bk, o, entropy_coef=ENTROPY_COEF,
            sqrt_kl_form=form, kl_sqrt_eps=eps))
        return fn(_f32(LOG_PROBS), _f32(OLD_LOG_PROBS), _f32(ADVANTAGES), _f32(KLS),
                  _f32(ENTROPIES), _f32(beta_sqrt), _f32(beta_kl), obj)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ippo_is_the_ppo_clip_formula(self):
        obj = objective_params(TrainConfig(algo="ippo"), NUM_AGENTS)
        loss, aux = self._loss(obj)
        # numpy PPO clip, independently of the hand-worked table
        r, a = RATIOS, ADVANTAGES
        numpy_clip = np.minimum(r * a, np.clip(r, 0.8, 1.2) * a)
        np.testing.assert_allclose(numpy_clip, CLIPPED_SURROGATE_BY_HAND, atol=1e-12)
        expected = -CLIPPED_SURROGATE_BY_HAND.mean() - ENTROPY_COEF * ENTROPIES.mean()
        # the KL terms are off for IPPO whatever the betas are
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(aux.surrogate, CLIPPED_SURROGATE_BY_HAND.mean(),
                                   rtol=1e-5)
        np.testing.assert_allclose(aux.entropy, ENTROPIES.mean(), rtol=1e-6)
        np.testing.assert_allclose(aux.kl, KLS.mean(), rtol=1e-6)
        # |r - 1| > 0.2 for 1.5, 1.5, 0.5, 0.5, 1.25, 0.7
        np.testing.assert_allclose(aux.clip_frac, 6 / 8, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("ippo_kl", "dpo_no_sqrt")
    def test_ippo_kl_is_the_ppo_kl_loss(self, algo):
        obj = objective_params(TrainConfig(algo=algo), NUM_AGENTS)
        loss, _ = self._loss(obj)
        np.testing.assert_allclose(loss, _ppo_kl_loss_np(1 / NUM_AGENTS, BETA_KL),
                                   rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_dpo_with_zero_beta_sqrt_is_the_ppo_kl_loss(self):
        obj = objective_params(TrainConfig(algo="dpo"), NUM_AGENTS)
        loss, _ = self._loss(obj, beta_sqrt=0.0)
        np.testing.assert_allclose(loss, _ppo_kl_loss_np(1 / NUM_AGENTS, BETA_KL),
                                   rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        ("sqrt_of_mean", True), ("mean_of_sqrt", True),
        ("sqrt_of_mean", False), ("mean_of_sqrt", False),
    )
    def test_dpo_is_eq_19(self, form, scale_by_n):
        eps = 1e-12
        cfg = TrainConfig(algo="dpo", sqrt_kl_form=form, scale_adv_by_num_agents=scale_by_n)
        obj = objective_params(cfg, NUM_AGENTS)
        loss, aux = self._loss(obj, form=form, eps=eps)
        adv_scale = 1 / NUM_AGENTS if scale_by_n else 1.0
        if form == "sqrt_of_mean":  # paper: sqrt(E[KL])
            sqrt_term = math.sqrt(KLS.mean() + eps)
        else:  # reference code: E[sqrt(KL)]
            sqrt_term = np.mean([math.sqrt(k + eps) for k in KLS])
        expected = (-adv_scale * np.mean(RATIOS * ADVANTAGES) + BETA_SQRT * sqrt_term
                    + BETA_KL * KLS.mean() - ENTROPY_COEF * ENTROPIES.mean())
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(aux.sqrt_kl, sqrt_term, rtol=1e-5)
        np.testing.assert_allclose(aux.surrogate, adv_scale * np.mean(RATIOS * ADVANTAGES),
                                   rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_the_two_sqrt_forms_differ(self):
        # sqrt(E[KL]) >= E[sqrt(KL)] (Jensen), strictly for unequal KLs
        obj = objective_params(TrainConfig(), NUM_AGENTS)
        _, paper = self._loss(obj, form="sqrt_of_mean")
        _, code = self._loss(obj, form="mean_of_sqrt")
        assert float(paper.sqrt_kl) > float(code.sqrt_kl) + 1e-3

    @chex.variants(with_jit=True, without_jit=True)
    def test_dpo_no_kl_drops_the_kl_term(self):
        obj = objective_params(TrainConfig(algo="dpo_no_kl"), NUM_AGENTS)
        loss, _ = self._loss(obj)
        expected = (-np.mean(RATIOS * ADVANTAGES) / NUM_AGENTS
                    + BETA_SQRT * math.sqrt(KLS.mean() + 1e-12)
                    - ENTROPY_COEF * ENTROPIES.mean())
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo,use_clip,sqrt_on,kl_on,penalised", [
    ("dpo", 0, 1, 1, True),
    ("ippo_kl", 0, 0, 1, True),
    ("dpo_no_sqrt", 0, 0, 1, True),
    ("dpo_no_kl", 0, 1, 0, True),
    ("ippo", 1, 0, 0, False),
])
@pytest.mark.parametrize("scale_by_n", [True, False])
def test_objective_params_switches(algo, use_clip, sqrt_on, kl_on, penalised, scale_by_n):
    num_agents = 4
    cfg = TrainConfig(scale_adv_by_num_agents=scale_by_n, d_target=0.05, clip_eps=0.3)
    obj = objective_params(cfg, num_agents, algo=algo)
    assert float(obj.use_clip) == use_clip
    assert float(obj.sqrt_on) == sqrt_on
    assert float(obj.kl_on) == kl_on
    expected_scale = 1 / num_agents if (penalised and scale_by_n) else 1.0
    np.testing.assert_allclose(obj.adv_scale, expected_scale, rtol=1e-7)
    np.testing.assert_allclose(obj.d_target, 0.05, rtol=1e-7)
    np.testing.assert_allclose(obj.clip_eps, 0.3, rtol=1e-7)
    assert all(jnp.asarray(v).dtype == jnp.float32 for v in obj)


def test_objective_params_defaults_to_cfg_algo_and_takes_overrides():
    cfg = TrainConfig(algo="ippo")
    assert float(objective_params(cfg, 2).use_clip) == 1.0
    obj = objective_params(cfg, 2, algo="dpo", d_target=0.2, omega=3.0)
    assert float(obj.use_clip) == 0.0
    np.testing.assert_allclose([obj.d_target, obj.omega], [0.2, 3.0], rtol=1e-7)


def test_objective_params_errors():
    cfg = TrainConfig()
    with pytest.raises(ValueError, match="unknown algo 'mappo'"):
        objective_params(cfg, 2, algo="mappo")
    with pytest.raises(ValueError, match="d_targt"):
        objective_params(cfg, 2, d_targt=0.1)
    for bad in (0.0, -0.01):
        with pytest.raises(ValueError, match="d_target"):
            objective_params(cfg, 2, d_target=bad)


def test_stack_params_stacks_along_a_new_leading_axis():
    cfg = TrainConfig()
    members = [objective_params(cfg, 2, algo=a, d_target=d)
               for a, d in (("dpo", 0.01), ("ippo", 0.01), ("dpo", 0.1))]
    stacked = stack_params(members)
    assert isinstance(stacked, objectives.ObjectiveParams)
    for field in objectives.ObjectiveParams._fields:
        leaf = getattr(stacked, field)
        assert leaf.shape == (3,)
        np.testing.assert_array_equal(leaf, [getattr(m, field) for m in members])
    np.testing.assert_allclose(stacked.d_target, [0.01, 0.01, 0.1], rtol=1e-7)
    np.testing.assert_array_equal(stacked.use_clip, [0.0, 1.0, 0.0])


# ---------------------------------------------------------------- eq. 20


def _eq20_np(beta, stat, target, delta, omega, lo, hi):
    """Eq. 20 for one coefficient, one agent, written as a plain branch."""
    if stat > target * delta:
        beta = beta * omega
    elif stat < target / delta:
        beta = beta / omega
    return min(max(beta, lo), hi)


class AdaptBetaTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_three_cases_and_clipping(self):
        cfg = TrainConfig(d_target=0.01)  # delta 1.5, omega 2, betas in [1e-3, 1e3]
        obj = objective_params(cfg, 2)
        fn = self.variant(lambda b, s, o: adapt_beta(b, s, o.d_target, o, cfg.beta_min,
                                                     cfg.beta_max))
        cases = [
            # (beta, stat, expected by hand)
            (0.1, 0.02, 0.2),      # 0.02 > 0.015: x omega
            (0.1, 0.005, 0.05),    # 0.005 < 0.00667: / omega
            (0.1, 0.01, 0.1),      # in between: unchanged
            (0.1, 0.014, 0.1),     # just inside the upper band
            (0.1, 0.007, 0.1),     # just inside the lower band
            (999.0, 1.0, 1e3),     # 1998 clipped to beta_max
            (0.0015, 0.0, 1e-3),   # 0.00075 clipped to beta_min
            (5e-4, 0.01, 1e-3),    # unchanged but below the range: clipped
        ]
        for beta, stat, by_hand in cases:
            got = fn(_f32(beta), _f32(stat), obj)
            np.testing.assert_allclose(got, by_hand, rtol=1e-6, err_msg=f"{beta}, {stat}")
            np.testing.assert_allclose(
                got, _eq20_np(beta, stat, 0.01, 1.5, 2.0, 1e-3, 1e3), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_other_delta_omega_from_objective_params(self):
        cfg = TrainConfig(d_target=0.1, delta=3.0, omega=4.0)
        obj = objective_params(cfg, 2)
        fn = self.variant(lambda b, s, o: adapt_beta(b, s, o.d_target, o, 1e-3, 1e3))
        np.testing.assert_allclose(fn(_f32(1.0), _f32(0.31), obj), 4.0, rtol=1e-6)
        np.testing.assert_allclose(fn(_f32(1.0), _f32(0.29), obj), 1.0, rtol=1e-6)
        np.testing.assert_allclose(fn(_f32(1.0), _f32(0.034), obj), 1.0, rtol=1e-6)
        np.testing.assert_allclose(fn(_f32(1.0), _f32(0.032), obj), 0.25, rtol=1e-6)

    def _adapt(self, cfg, beta_sqrt, beta_kl, kl, sqrt_kl):
        obj = objective_params(cfg, len(kl))
        fn = self.variant(lambda *a: adapt_betas(*a, obj, cfg))
        return fn(_f32(beta_sqrt), _f32(beta_kl), _f32(kl), _f32(sqrt_kl))

    @chex.variants(with_jit=True, without_jit=True)
    def test_per_agent(self):
        cfg = TrainConfig(d_target=0.01)
        kl = [0.05, 0.01, 0.001]  # up, unchanged, down
        new_sqrt, new_kl = self._adapt(cfg, [0.1, 0.2, 0.4], [1.0, 2.0, 4.0], kl,
                                       np.sqrt(kl))
        np.testing.assert_allclose(new_sqrt, [0.2, 0.2, 0.2], rtol=1e-6)
        np.testing.assert_allclose(new_kl, [2.0, 2.0, 2.0], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_shared_betas_use_the_mean_over_agents(self):
        cfg = TrainConfig(d_target=0.01, shared_betas=True)
        kl = [0.05, 0.01, 0.001]  # mean 0.02033 > 0.015: every agent x omega
        new_sqrt, new_kl = self._adapt(cfg, [0.1, 0.2, 0.4], [1.0, 2.0, 4.0], kl,
                                       np.sqrt(kl))
        np.testing.assert_allclose(new_sqrt, [0.2, 0.4, 0.8], rtol=1e-6)
        np.testing.assert_allclose(new_kl, [2.0, 4.0, 8.0], rtol=1e-6)
        kl = [0.012, 0.002, 0.001]  # mean 0.005 < 0.00667: every agent / omega
        new_sqrt, new_kl = self._adapt(cfg, [0.1, 0.2, 0.4], [1.0, 2.0, 4.0], kl,
                                       np.sqrt(kl))
        np.testing.assert_allclose(new_sqrt, [0.05, 0.1, 0.2], rtol=1e-6)
        np.testing.assert_allclose(new_kl, [0.5, 1.0, 2.0], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_beta_sqrt_rule(self):
        # kl and sqrt_kl deliberately disagree, so the rule's statistic shows
        kl = [0.05, 0.001]       # vs d_target 0.01: up, down
        sqrt_kl = [0.01, 0.2]    # vs sqrt(0.01) = 0.1: down (< 0.0667), up (> 0.15)
        code = TrainConfig(d_target=0.01, beta_sqrt_rule="sqrt_kl")
        new_sqrt, new_kl = self._adapt(code, [1.0, 1.0], [1.0, 1.0], kl, sqrt_kl)
        np.testing.assert_allclose(new_sqrt, [0.5, 2.0], rtol=1e-6)
        np.testing.assert_allclose(new_kl, [2.0, 0.5], rtol=1e-6)
        paper = TrainConfig(d_target=0.01, beta_sqrt_rule="kl")
        new_sqrt, new_kl = self._adapt(paper, [1.0, 1.0], [1.0, 1.0], kl, sqrt_kl)
        np.testing.assert_allclose(new_sqrt, [2.0, 0.5], rtol=1e-6)
        np.testing.assert_allclose(new_kl, [2.0, 0.5], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_random_statistics_against_numpy(self):
        rng = np.random.default_rng(0)
        n = 16
        cfg = TrainConfig(d_target=0.02, beta_sqrt_rule="sqrt_kl")
        beta_sqrt = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), n))
        beta_kl = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), n))
        kl = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), n))
        sqrt_kl = np.sqrt(kl) * rng.uniform(0.3, 1.0, n)
        new_sqrt, new_kl = self._adapt(cfg, beta_sqrt, beta_kl, kl, sqrt_kl)
        exp_sqrt = [_eq20_np(b, s, math.sqrt(0.02), 1.5, 2.0, 1e-3, 1e3)
                    for b, s in zip(beta_sqrt, sqrt_kl)]
        exp_kl = [_eq20_np(b, s, 0.02, 1.5, 2.0, 1e-3, 1e3) for b, s in zip(beta_kl, kl)]
        np.testing.assert_allclose(new_sqrt, exp_sqrt, rtol=1e-5)
        np.testing.assert_allclose(new_kl, exp_kl, rtol=1e-5)


# ---------------------------------------------------------------- value loss


class ValueLossTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.2, None)
    def test_against_numpy(self, clip):
        values = np.array([1.0, 0.5, -0.3, 2.0, 0.0, 1.15])
        old_values = np.array([0.5, 0.6, 0.0, 1.0, 0.1, 1.0])
        targets = np.array([2.0, 0.0, -1.0, 0.0, 0.05, 1.1])
        fn = self.variant(lambda v, o, t: value_loss(v, o, t, clip))
        got = fn(_f32(values), _f32(old_values), _f32(targets))
        per_sample = []
        for v, o, y in zip(values, old_values, targets):
            err = (v - y) ** 2
            if clip is not None:
                v_clipped = o + min(max(v - o, -clip), clip)
                err = max(err, (v_clipped - y) ** 2)
            per_sample.append(err)
        np.testing.assert_allclose(got, 0.5 * np.mean(per_sample), rtol=1e-5)
        if clip is not None:  # the clip changes the result on these numbers
            assert not np.isclose(0.5 * np.mean((values - targets) ** 2),
                                  0.5 * np.mean(per_sample))


# ---------------------------------------------------------------- finite gradients at KL = 0


class _Stub:
    """Just enough of an env for make_agents."""

    def __init__(self, action_spec, num_agents=2, obs_dim=5):
        self.action_spec = action_spec
        self.num_agents = num_agents
        self.obs_dim = obs_dim
        self.mask_dim = (action_spec.num_actions
                         if isinstance(action_spec, DiscreteActions) else 1)


def _single_agent_setup(action_spec, cfg, key=0, batch_size=12):
    agents: Agents = make_agents(cfg, _Stub(action_spec))
    k_init, k_obs, k_act, k_adv, k_mask = jax.random.split(jax.random.key(key), 5)
    obs = jax.random.normal(k_obs, (batch_size, agents.obs_dim))
    if isinstance(action_spec, DiscreteActions):
        avail = jax.random.bernoulli(k_mask, 0.7, (batch_size, agents.mask_dim))
        avail = avail.at[:, 0].set(True)  # at least one action available
    else:
        avail = jnp.ones((batch_size, 1), bool)
    params = {
        "actor": agents.actor.init(k_init, obs[0], avail[0]),
        "critic": agents.critic.init(k_init, obs[0]),
    }
    dist_params = agents.actor.apply(params["actor"], obs, avail)
    dist = networks.distribution(dist_params, action_spec)
    action, log_prob = dist.sample_and_log_prob(seed=k_act)
    value = agents.critic.apply(params["critic"], obs)
    adv = jax.random.normal(k_adv, (batch_size,))
    batch = train_lib.Batch(obs=obs, avail=avail, action=action, log_prob=log_prob,
                            dist_params=dist_params, value=value, advantage=adv,
                            target=value + adv)
    return agents, params, batch


def _grads_at_old_policy(action_spec, form, eps):
    cfg = TrainConfig(hidden_size=16, sqrt_kl_form=form, kl_sqrt_eps=eps)
    agents, params, batch = _single_agent_setup(action_spec, cfg)
    obj = objective_params(cfg, 2)

    def loss(p):
        return train_lib.agent_loss(p, batch, _f32(1.0), _f32(1.0), obj, agents, cfg)

    # eager on purpose: old and new logits then come from the same ops, so KL == 0
    # exactly (a jitted loss may fuse differently from the rollout and leave ~1e-14)
    (value, (aux, _)), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return value, aux, grads


SPECS = [DiscreteActions(4), ContinuousActions(3)]


@pytest.mark.parametrize("spec", SPECS, ids=["discrete", "gaussian"])
@pytest.mark.parametrize("form", ["sqrt_of_mean", "mean_of_sqrt"])
def test_gradients_are_finite_at_kl_zero(spec, form):
    value, aux, grads = _grads_at_old_policy(spec, form, eps=1e-12)
    assert float(aux.kl) == 0.0  # the new policy is exactly the old one
    assert np.isfinite(float(value))
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    # the advantage term still drives the actor
    actor_norm = sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(grads["actor"]))
    assert actor_norm > 0




@pytest.mark.parametrize("spec", [
    pytest.param(SPECS[0], id="discrete"),
    pytest.param(SPECS[1], id="gaussian"),
])
@pytest.mark.parametrize("form", ["sqrt_of_mean", "mean_of_sqrt"])
def test_gradients_at_kl_zero_match_the_no_sqrt_loss(spec, form):
    """At KL = 0 (below the floor) the sqrt term adds exactly nothing: the gradient
    equals the one of the loss without it (beta_sqrt = 0), although float32
    grad(KL) there is rounding noise, not 0 (objectives.py module docstring)."""
    cfg = TrainConfig(hidden_size=16, sqrt_kl_form=form)
    agents, params, batch = _single_agent_setup(spec, cfg)
    obj = objective_params(cfg, 2)

    def grads(beta_sqrt):
        return jax.grad(lambda p: train_lib.agent_loss(
            p, batch, _f32(beta_sqrt), _f32(1.0), obj, agents, cfg)[0])(params)

    with_sqrt, without = grads(5.0), grads(0.0)
    for a, b in zip(jax.tree.leaves(with_sqrt), jax.tree.leaves(without)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("form", ["sqrt_of_mean", "mean_of_sqrt"])
def test_without_eps_the_sqrt_gradient_is_nan_at_kl_zero(form):
    """Why kl_sqrt_eps exists: d sqrt(x)/dx = inf at 0, times grad(KL) = 0 -> NaN."""
    _, aux, grads = _grads_at_old_policy(DiscreteActions(4), form, eps=0.0)
    assert float(aux.kl) == 0.0
    actor_leaves = jax.tree.leaves(grads["actor"])
    assert any(bool(jnp.any(jnp.isnan(g))) for g in actor_leaves)
