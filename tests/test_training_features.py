"""The peers' training features, each against an independent numpy reference: value
normalisation (MAPPO's ValueNorm), Huber value loss, linear LR annealing, activation
and input LayerNorm choices, time-limit bootstrapping, and the JaxMARL preset."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.training import trainer as train_lib
from dpo_jax.config import JAXMARL_IPPO_MPE, jaxmarl_ippo_config
from dpo_jax.envs.base import DiscreteActions, EnvStep, MultiAgentEnv
from dpo_jax.core.objectives import value_loss
from dpo_jax.training.rollout import StepRecord
from dpo_jax.core.value_norm import (
    denormalize,
    init_value_norm,
    normalize,
    update_value_norm,
)


class NumpyValueNorm:
    """MAPPO's ValueNorm (onpolicy/utils/valuenorm.py), re-derived in numpy from its
    update rule: EMA of mean and mean square with a debiasing term."""

    def __init__(self, beta: float):
        self.beta, self.m, self.s, self.c = beta, 0.0, 0.0, 0.0

    def update(self, x: np.ndarray) -> None:
        self.m = self.beta * self.m + (1 - self.beta) * x.mean()
        self.s = self.beta * self.s + (1 - self.beta) * (x**2).mean()
        self.c = self.beta * self.c + (1 - self.beta)

    def stats(self) -> tuple[float, float]:
        c = max(self.c, 1e-5)
        mean = self.m / c
        return mean, max(self.s / c - mean**2, 1e-2)

    def normalize(self, x):
        mean, var = self.stats()
        return (x - mean) / np.sqrt(var)


@pytest.mark.parametrize("beta", [0.9, 0.99999])
def test_value_norm_matches_mappo_rule_per_agent(beta):
    rng = np.random.default_rng(0)
    state = init_value_norm(3)
    refs = [NumpyValueNorm(beta) for _ in range(3)]
    update = jax.jit(lambda s, x: update_value_norm(s, x, beta))
    for k in range(6):
        # agents have very different scales: each must get its own statistics
        x = rng.normal(loc=[-30.0, 0.5, 100.0], scale=[5.0, 0.1, 20.0],
                       size=(16, 8, 3)).astype(np.float32) * (1 + k)
        state = update(state, x)
        for i, ref in enumerate(refs):
            ref.update(x[..., i].astype(np.float64))
        probe = rng.normal(size=(4, 3)).astype(np.float32) * 50
        got = np.asarray(normalize(state, probe))
        want = np.stack([refs[i].normalize(probe[:, i]) for i in range(3)], -1)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(np.asarray(denormalize(state, normalize(state, probe))),
                                   probe, rtol=1e-4, atol=1e-3)


def test_value_norm_is_identity_before_data_and_pools_shared_agents():
    state = init_value_norm(2)
    x = jnp.array([[3.0, -7.0]])
    np.testing.assert_array_equal(np.asarray(normalize(state, x)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(denormalize(state, x)), np.asarray(x))
    data = jnp.array([[0.0, 10.0], [2.0, 30.0]])
    pooled = update_value_norm(state, data, 0.5, shared=True)
    ref = NumpyValueNorm(0.5)
    ref.update(np.asarray(data, np.float64))
    mean, var = ref.stats()
    np.testing.assert_allclose(np.asarray(normalize(pooled, jnp.array([[1.0, 1.0]]))),
                               [[(1 - mean) / np.sqrt(var)] * 2], rtol=1e-5)


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("delta", [None, 1.0])
def test_huber_and_clipped_value_loss_against_numpy(clip, delta):
    rng = np.random.default_rng(1)
    v, old, y = (rng.normal(scale=3.0, size=64).astype(np.float32) for _ in range(3))

    def ell(e):
        if delta is None:
            return 0.5 * e**2
        a = np.abs(e)
        return np.where(a <= delta, 0.5 * e**2, delta * (a - 0.5 * delta))

    per = ell(v - y)
    if clip is not None:
        per = np.maximum(per, ell(old + np.clip(v - old, -clip, clip) - y))
    got = float(jax.jit(lambda a, b, c: value_loss(a, b, c, clip, delta))(v, old, y))
    np.testing.assert_allclose(got, per.mean(), rtol=1e-5)


def test_linear_lr_annealing_is_stepwise_per_update():
    cfg = dpo_jax.TrainConfig(anneal_lr=True, num_epochs=3, num_minibatches=2,
                              num_envs=2, num_steps=4)
    schedule = agents_lib.learning_rate(1e-3, cfg.anneal_lr, num_updates=5, steps_per_update=6)
    got = np.array([float(schedule(jnp.int32(c))) for c in range(30)])
    want = np.array([1e-3 * (1 - (c // 6) / 5) for c in range(30)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert agents_lib.learning_rate(1e-3, False, 5, 6) == 1e-3


def test_annealed_adam_steps_shrink_to_zero():
    """One parameter, constant gradient: Adam's step is ~lr, so the steps follow
    the schedule and the last update's steps are 1/num_updates of the first's."""
    cfg = dpo_jax.TrainConfig(anneal_lr=True, num_epochs=1, num_minibatches=1,
                              num_envs=1, num_steps=1, max_grad_norm=1e6)
    tx = optax.adam(agents_lib.learning_rate(0.1, cfg.anneal_lr, num_updates=4,
                                            steps_per_update=1), eps=1e-8)
    p = jnp.zeros(())
    state = tx.init(p)
    steps = []
    for _ in range(4):
        upd, state = tx.update(jnp.ones(()), state, p)
        steps.append(-float(upd))
    np.testing.assert_allclose(steps, [0.1, 0.075, 0.05, 0.025], rtol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("input_ln", [True, False])
def test_torso_options_against_numpy(activation, input_ln):
    from dpo_jax.core.networks import Critic

    critic = Critic((8, 8), hidden_layer_norm=False, activation=activation,
                    input_layer_norm=input_ln)
    obs = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32) * 3
    params = critic.init(jax.random.key(0), obs)
    names = set(params["params"]["MLPTorso_0"])
    assert ("LayerNorm_0" in names) == input_ln
    x = obs.astype(np.float64)
    if input_ln:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
    torso = params["params"]["MLPTorso_0"]
    for name in ("Dense_0", "Dense_1"):
        x = act(x @ np.asarray(torso[name]["kernel"]) + np.asarray(torso[name]["bias"]))
    head = params["params"]["Dense_0"]
    want = (x @ np.asarray(head["kernel"]) + np.asarray(head["bias"]))[:, 0]
    np.testing.assert_allclose(np.asarray(critic.apply(params, obs)), want, rtol=1e-4,
                               atol=1e-5)


def _one_step_trajectory(terminated: bool, truncated: bool):
    """T=1, E=1, N=1: reward 1, value 0 now, value 10 after the step."""
    rec = StepRecord(
        reward=jnp.ones((1, 1, 1)), terminated=jnp.array([[terminated]]),
        done=jnp.array([[terminated or truncated]]), next_obs=jnp.ones((1, 1, 1, 2)),
        finished_return=jnp.zeros((1, 1, 1)), finished_length=jnp.zeros((1, 1), jnp.int32),
        info={},
    )
    return train_lib.Transition(
        obs=jnp.zeros((1, 1, 1, 2)), avail=jnp.ones((1, 1, 1, 2), bool),
        action=jnp.zeros((1, 1, 1), jnp.int32), log_prob=jnp.zeros((1, 1, 1)),
        dist_params=jnp.zeros((1, 1, 1, 2)), value=jnp.zeros((1, 1, 1)), step=rec)


class _ConstCriticAgents:
    """Stands in for ``Agents`` in ``make_batch``: the critic says 10 everywhere."""

    share_params = False


@pytest.mark.parametrize("bootstrap", [True, False])
def test_truncation_bootstrap_option(monkeypatch, bootstrap):
    monkeypatch.setattr(agents_lib, "values", lambda agents, params, obs: jnp.full(
        obs.shape[:-1], 10.0))
    cfg = dpo_jax.TrainConfig(bootstrap_truncation=bootstrap, value_norm=False,
                              normalize_advantages=False, gamma=0.5)
    norm = init_value_norm(1)
    batch, _, _ = train_lib.make_batch(_ConstCriticAgents(), None,
                                       _one_step_trajectory(False, True), cfg, norm)
    # truncated: r + gamma * V(final obs) = 1 + 0.5 * 10 when bootstrapping, else r
    assert float(batch.target[0, 0]) == pytest.approx(6.0 if bootstrap else 1.0)
    batch, _, _ = train_lib.make_batch(_ConstCriticAgents(), None,
                                       _one_step_trajectory(True, False), cfg, norm)
    assert float(batch.target[0, 0]) == pytest.approx(1.0)  # termination never bootstraps


def test_value_norm_targets_are_normalised_and_gae_in_env_units(monkeypatch):
    """With statistics (mean 100, var 4), a critic output 0 means V = 100 in env
    units: GAE must use 100, and the critic's target is the normalised return."""
    monkeypatch.setattr(agents_lib, "values", lambda agents, params, obs: jnp.zeros(
        obs.shape[:-1]))
    cfg = dpo_jax.TrainConfig(value_norm=True, value_norm_beta=0.5,
                              normalize_advantages=False, gamma=0.5)
    norm = update_value_norm(init_value_norm(1), jnp.array([[98.0], [102.0]]), 0.5)
    batch, new_norm, _ = train_lib.make_batch(_ConstCriticAgents(), None,
                                              _one_step_trajectory(False, True), cfg, norm)
    target_env = 1.0 + 0.5 * 100.0  # r + gamma * denormalised V(final obs)
    assert float(batch.advantage[0, 0]) == pytest.approx(target_env - 100.0, rel=1e-5)
    ref = NumpyValueNorm(0.5)
    ref.update(np.array([98.0, 102.0]))
    ref.update(np.array([target_env]))
    assert float(batch.target[0, 0]) == pytest.approx(float(ref.normalize(target_env)),
                                                      rel=1e-4)
    np.testing.assert_allclose(np.asarray(new_norm.debias), [0.75])


def test_jaxmarl_preset_matches_its_yaml_and_validates():
    cfg = jaxmarl_ippo_config()
    assert (cfg.num_envs, cfg.num_steps, cfg.num_epochs, cfg.num_minibatches) == (16, 128, 4, 4)
    assert (cfg.actor_lr, cfg.max_grad_norm, cfg.value_coef, cfg.hidden_size) == (
        2.5e-4, 0.5, 0.5, 64)
    assert cfg.activation == "tanh" and cfg.anneal_lr and cfg.share_params
    assert not (cfg.input_layer_norm or cfg.hidden_layer_norm or cfg.value_norm
                or cfg.bootstrap_truncation)
    assert jaxmarl_ippo_config(share_params=False).share_params is False
    assert set(JAXMARL_IPPO_MPE) <= set(dpo_jax.TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize("field,value", [
    ("activation", "gelu"), ("value_norm_beta", 1.0), ("huber_delta", 0.0),
    ("anneal_lr", "yes"), ("input_layer_norm", 1), ("bootstrap_truncation", None),
])
def test_new_fields_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
        dpo_jax.TrainConfig(**{field: value})


class _ScaledRewardGame(MultiAgentEnv):
    """One agent, one-step episodes: the observation is a coin b in {0, 1} drawn at
    reset (one-hot, so that the input LayerNorm keeps it), the reward 1000 b
    whatever the action, so V(b) = 1000 b."""

    name = "scaled_reward"
    num_agents = 1
    action_spec = DiscreteActions(2)
    max_steps = 1
    obs_dim = 2

    def _out(self, coin, reward, done):
        return EnvStep(state=coin, obs=jnp.stack([coin, 1.0 - coin]).reshape(1, 2),
                       avail_actions=jnp.ones((1, 2), bool), reward=reward,
                       terminated=jnp.array(done), truncated=jnp.array(False), info={})

    def reset(self, key):
        coin = jax.random.bernoulli(key).astype(jnp.float32)
        return self._out(coin, jnp.zeros(1), False)

    def step(self, key, state, actions):
        return self._out(state, jnp.full((1,), 1000.0) * state, True)


def test_critic_learns_large_returns_with_value_norm():
    """Returns 0 or 1000: with the value clip at 0.2 in env units the critic moves at
    most 0.2 per update (explained variance stays ~0 for 30 updates); in normalised
    units it fits within a few updates."""
    env = _ScaledRewardGame()
    ev = {}
    for norm in (True, False):
        cfg = dpo_jax.TrainConfig(algo="ippo", num_envs=64, num_steps=1, num_epochs=4,
                                  total_timesteps=64 * 30, value_norm=norm,
                                  hidden_size=16, num_hidden_layers=1)
        m = jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0)).metrics
        ev[norm] = float(np.mean(m["explained_variance"][-5:]))
    assert ev[True] > 0.7 and ev[False] < 0.05, ev
