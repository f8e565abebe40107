"""Validation messages name the field; the env registry; nan_policy."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.config import TrainConfig, paper_config
from dpo_jax.envs.base import DiscreteActions, EnvStep, MultiAgentEnv


@pytest.mark.parametrize("field,value", [
    ("algo", "mappo"),
    ("d_target", 0.0),
    ("d_target", -0.01),
    ("delta", 1.0),
    ("delta", 0.5),
    ("omega", 1.0),
    ("omega", 0.9),
    ("num_envs", 0),
    ("num_epochs", -1),
    ("actor_lr", 0.0),
    ("gamma", 1.5),
    ("gae_lambda", -0.1),
    ("sqrt_kl_form", "sqrt"),
    ("beta_sqrt_rule", "both"),
    ("nan_policy", "warn"),
    ("value_clip", 0.0),
    ("kl_sqrt_eps", -1e-12),
])
def test_invalid_field_is_named(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}=") as info:
        TrainConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_unknown_algo_lists_the_algorithms():
    with pytest.raises(ValueError) as info:
        TrainConfig(algo="mappo")
    for algo in dpo_jax.ALGORITHMS:
        assert algo in str(info.value)


def test_beta_max_must_exceed_beta_min():
    with pytest.raises(ValueError, match=r"TrainConfig\.beta_max"):
        TrainConfig(beta_min=1.0, beta_max=0.5)


def test_minibatches_must_divide_the_batch():
    with pytest.raises(ValueError, match="num_minibatches") as info:
        TrainConfig(num_envs=3, num_steps=5, num_minibatches=4)
    assert "15" in str(info.value)  # the batch size it failed to divide
    TrainConfig(num_envs=3, num_steps=4, num_minibatches=4, total_timesteps=12)  # fine


def test_minibatches_checked_against_the_env_episode_length():
    # num_steps=None: the rollout length is the env's time limit, known at make_train
    cfg = TrainConfig(num_envs=3, num_minibatches=4, hidden_size=8)
    with pytest.raises(ValueError, match="num_minibatches"):
        dpo_jax.make_train(cfg, NaNRewardEnv(max_steps=5))


def test_total_timesteps_must_cover_one_batch():
    with pytest.raises(ValueError, match="total_timesteps"):
        TrainConfig(num_envs=4, num_steps=8, total_timesteps=16)


def test_config_is_frozen_and_replace_validates():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.algo = "ippo"  # type: ignore[misc]
    assert cfg.replace(algo="ippo").algo == "ippo"
    with pytest.raises(ValueError, match=r"TrainConfig\.omega"):
        cfg.replace(omega=1.0)


def test_paper_config():
    assert paper_config("mpe").d_target == 0.01
    assert paper_config("stochastic_game").d_target == 0.1
    assert paper_config("mamujoco", num_envs=8).num_envs == 8
    with pytest.raises(ValueError, match="smac") as info:
        paper_config("smac")
    assert "mpe" in str(info.value)


# ---------------------------------------------------------------- env registry


def test_make_env_unknown_name_lists_registered_names():
    with pytest.raises(ValueError) as info:
        dpo_jax.make_env("no_such_env")
    message = str(info.value)
    assert "no_such_env" in message
    names = dpo_jax.list_envs()
    assert names
    for name in names:
        assert name in message


def test_make_env_suggests_close_names():
    with pytest.raises(ValueError, match=re.escape("Did you mean ['mpe_spread']")):
        dpo_jax.make_env("mpe_sprad")


def test_make_env_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError, match="num_agnts") as info:
        dpo_jax.make_env("mpe_spread", num_agnts=3)
    assert "num_agents" in str(info.value)  # the accepted arguments are listed


def test_registered_factory_gets_kwargs_and_rejects_unknown_ones():
    dpo_jax.register_env("test_config_nan_env", NaNRewardEnv, overwrite=True)
    env = dpo_jax.make_env("test_config_nan_env", max_steps=3)
    assert isinstance(env, NaNRewardEnv) and env.max_steps == 3
    with pytest.raises(TypeError, match="max_step"):
        dpo_jax.make_env("test_config_nan_env", max_step=3)
    with pytest.raises(ValueError, match="already registered"):
        dpo_jax.register_env("test_config_nan_env", NaNRewardEnv)


# ---------------------------------------------------------------- nan_policy


class NaNRewardEnv(MultiAgentEnv):
    """Two agents, two actions; every reward is NaN (or 0 with ``nan=False``)."""

    name = "nan_reward"
    num_agents = 2
    obs_dim = 2
    action_spec = DiscreteActions(2)

    def __init__(self, max_steps: int = 2, nan: bool = True):
        self.max_steps = max_steps
        self.nan = nan

    def _out(self, t, reward):
        return EnvStep(state=t, obs=jnp.ones((2, 2)) * t, avail_actions=jnp.ones((2, 2), bool),
                       reward=reward, terminated=jnp.array(False),
                       truncated=t >= self.max_steps, info={})

    def reset(self, key):
        return self._out(jnp.int32(0), jnp.zeros(2))

    def step(self, key, state, actions):
        reward = jnp.full((2,), jnp.nan if self.nan else 0.0, jnp.float32)
        return self._out(state + 1, reward)


def _tiny(nan_policy):
    return TrainConfig(nan_policy=nan_policy, hidden_size=8, num_hidden_layers=1,
                       hidden_layer_norm=False, num_envs=2, num_epochs=1,
                       total_timesteps=2 * 2 * 2)  # two updates


def test_nan_policy_raise_stops_training():
    train = dpo_jax.make_train(_tiny("raise"), NaNRewardEnv())
    result = jax.block_until_ready(jax.jit(train)(jax.random.key(0)))

    assert not np.any(result.metrics["finite"])
    for leaf in jax.tree.leaves(result.agents.params):
        assert np.all(np.isfinite(leaf))
    with pytest.raises(FloatingPointError, match="non-finite") as info:
        dpo_jax.check_finite(result)
    message = str(info.value)
    assert "update 0" in message
    assert "nan_policy" in message



def test_nan_policy_ignore_trains_on():
    train = dpo_jax.make_train(_tiny("ignore"), NaNRewardEnv())
    result = jax.block_until_ready(jax.jit(train)(jax.random.key(0)))
    assert result.metrics["loss"].shape == (2, 2)
    assert not np.all(np.isfinite(result.metrics["loss"]))
