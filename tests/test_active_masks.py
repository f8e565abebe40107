"""Active masks (SMAX): dead agents' samples leave the losses, the advantage
statistics, the KL means and the beta adaptation; numpy references on hand-made
numbers, and SMAX's mask against its own ``unit_alive``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.training import trainer as train_lib
from dpo_jax.core.objectives import objective_params, policy_loss, value_loss

RATIOS = np.array([1.5, 0.5, 1.0, 1.1, 1.25, 0.7])
ADV = np.array([2.0, -2.0, 3.0, -1.0, -0.5, 0.25])
KL = np.array([0.02, 0.05, 0.3, 0.0, 0.004, 0.01])
ENT = np.array([1.0, 1.1, 0.7, 1.2, 0.6, 1.3])
OLD_LP = np.log(np.array([0.3, 0.9, 0.25, 0.6, 0.4, 0.1]))
ACTIVE = np.array([1, 0, 1, 1, 0, 1], np.float32)


def _loss(obj, weights, adv=ADV):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return policy_loss(f(OLD_LP + np.log(RATIOS)), f(OLD_LP), f(adv), f(KL), f(ENT),
                       f(0.7), f(1.3), obj, entropy_coef=0.01, weights=weights)


@pytest.mark.parametrize("algo", ["dpo", "ippo"])
def test_masked_policy_loss_is_the_loss_of_the_active_samples(algo):
    obj = objective_params(dpo_jax.TrainConfig(algo=algo), 3)
    loss, aux = _loss(obj, jnp.asarray(ACTIVE))
    on = ACTIVE > 0
    r, a, kl, h = RATIOS[on], ADV[on], KL[on], ENT[on]
    if algo == "ippo":
        expected = -np.minimum(r * a, np.clip(r, 0.8, 1.2) * a).mean() - 0.01 * h.mean()
    else:
        expected = (-(r * a).mean() / 3 + 0.7 * np.sqrt(kl.mean()) + 1.3 * kl.mean()
                    - 0.01 * h.mean())
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux.kl, kl.mean(), rtol=1e-6)
    # what a dead agent did cannot change the loss
    changed = np.where(on, ADV, 100.0)
    np.testing.assert_allclose(_loss(obj, jnp.asarray(ACTIVE), changed)[0], loss, rtol=1e-6)
    # all ones is the unmasked loss
    np.testing.assert_allclose(_loss(obj, jnp.ones(6))[0], _loss(obj, None)[0], rtol=1e-6)


def test_masked_value_loss_and_standardisation():
    values, old, targets = (jnp.asarray(x, jnp.float32) for x in
                            (np.arange(6.0), np.arange(6.0) + 0.1, np.arange(6.0)[::-1]))
    loss = value_loss(values, old, targets, None, None, weights=jnp.asarray(ACTIVE))
    err = 0.5 * (np.arange(6.0) - np.arange(6.0)[::-1]) ** 2
    np.testing.assert_allclose(loss, err[ACTIVE > 0].mean(), rtol=1e-6)
    x = jnp.asarray(ADV[:, None] * np.ones((1, 2)), jnp.float32)  # [B, N]
    z = train_lib.standardize(x, jnp.asarray(ACTIVE[:, None] * np.ones((1, 2))), (0,))
    on = ADV[ACTIVE > 0]
    np.testing.assert_allclose(z[ACTIVE > 0, 0], (on - on.mean()) / (on.std() + 1e-8),
                               rtol=1e-5)


def test_smax_mask_is_unit_alive_and_training_uses_it():
    env = dpo_jax.make_env("smax_3m")
    assert env.has_active_mask
    first = env.reset(jax.random.key(0))
    np.testing.assert_array_equal(env.active_agents(first.state), [True] * 3)
    alive = first.state.env_state.state.unit_alive.at[1].set(False)
    dead = first.state._replace(env_state=first.state.env_state.replace(
        state=first.state.env_state.state.replace(unit_alive=alive)))
    np.testing.assert_array_equal(env.active_agents(dead), [True, False, True])
    # the rollout records the mask; a non-SMAX env records none (unchanged numerics)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=60, total_timesteps=120, num_epochs=1,
                              hidden_size=8)
    agents = dpo_jax.core.agents.make_agents(cfg, env, 1)
    state = dpo_jax.core.agents.init_agents(agents, jax.random.key(1))
    batch = dpo_jax.training.rollout.reset_envs(env, jax.random.key(2), 2)
    _, traj = jax.jit(lambda b: train_lib.rollout(env, agents, state.params, b,
                                                  jax.random.key(3), 60, True))(batch)
    assert traj.active.shape == (60, 2, 3) and traj.active.dtype == bool
    assert not traj.active.all()  # random agents die within 60 steps of 3m
    reach = dpo_jax.make_env("continuous_reach")
    assert not reach.has_active_mask


def test_active_masks_off_and_on_agree_where_nobody_dies():
    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    results = []
    for on in (True, False):
        cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3,
                                  num_epochs=2, hidden_size=8, active_masks=on)
        results.append(jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0)).metrics)
    for name in ("loss", "kl", "beta_kl", "episode_return"):
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
