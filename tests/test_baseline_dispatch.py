"""IQL and IDDPG behind the library's entry points: ``TrainConfig(algo=...)``,
``make_train``, ``num_updates`` and ``experiments.run``; errors that name the
algorithm and the action space; metric names shared with the PPO trainer."""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import experiments
from dpo_jax.baselines import IDDPGConfig, IQLConfig
from dpo_jax.baselines.config import from_train_config
from dpo_jax.envs.continuous_reach import make_continuous_reach
from dpo_jax.envs.stochastic_game import make_small_stochastic_game

# names the PPO trainer reports that every trainer must report with the same meaning
SHARED = {"episode_return", "episode_length", "episodes", "env_steps", "update", "finite",
          "loss", "grad_norm"}


def tiny_game():
    return make_small_stochastic_game(num_states=3, num_agents=2, num_actions=2,
                                      episode_length=4)


def metric_names(cfg, env) -> set[str]:
    """Metric names of a trainer, from its traced shapes (nothing is compiled)."""
    train = dpo_jax.make_train(cfg, env)
    return set(jax.eval_shape(train, jax.random.key(0)).metrics)


def test_train_config_accepts_the_baselines_and_lists_them_in_its_error():
    assert dpo_jax.BASELINE_ALGORITHMS == ("iql", "iddpg")
    for algo in dpo_jax.BASELINE_ALGORITHMS:
        assert dpo_jax.TrainConfig(algo=algo).algo == algo
    with pytest.raises(ValueError, match=r"TrainConfig\.algo='qmix'") as info:
        dpo_jax.TrainConfig(algo="qmix")
    for algo in dpo_jax.ALGORITHMS + dpo_jax.BASELINE_ALGORITHMS:
        assert repr(algo) in str(info.value)


def test_train_config_fields_carry_over_to_the_baseline_configs():
    cfg = dpo_jax.TrainConfig(algo="iql", total_timesteps=12_345, num_envs=4, gamma=0.9,
                              hidden_size=32, critic_lr=1e-3, max_grad_norm=5.0,
                              nan_policy="ignore", d_target=0.3)
    with pytest.warns(UserWarning, match=r"\['d_target'\] do not apply to algo='iql'"):
        baseline = from_train_config(cfg)
    assert baseline == IQLConfig(
        total_timesteps=12_345, num_envs=4, gamma=0.9, hidden_size=32, lr=1e-3,
        grad_norm_clip=5.0, nan_policy="ignore")
    cfg = dpo_jax.TrainConfig(algo="iddpg", total_timesteps=9_000, num_envs=3, num_steps=7,
                              actor_lr=1e-4, critic_lr=2e-4, num_hidden_layers=3,
                              hidden_size=16, gamma=0.95)
    assert from_train_config(cfg) == IDDPGConfig(
        total_timesteps=9_000, num_envs=3, num_steps=7, actor_lr=1e-4, critic_lr=2e-4,
        num_hidden_layers=3, hidden_size=16, gamma=0.95, learning_starts=900)
    # num_steps=None (the PPO trainer's "one episode") keeps IDDPG's own default
    default = from_train_config(dpo_jax.TrainConfig(algo="iddpg"))
    assert default.num_steps == IDDPGConfig().num_steps


def test_shared_parameters_are_refused_for_the_baselines():
    with pytest.raises(ValueError, match=r"TrainConfig\.share_params=True .*'iql'"):
        dpo_jax.make_train(dpo_jax.TrainConfig(algo="iql", share_params=True), tiny_game())


@pytest.mark.parametrize("cfg", [dpo_jax.TrainConfig(algo="iql"), IQLConfig()],
                         ids=["TrainConfig", "IQLConfig"])
def test_iql_on_continuous_actions_names_algorithm_and_action_space(cfg):
    with pytest.raises(ValueError, match=r"IQL needs a discrete action space, but "
                                         r"'continuous_reach' has ContinuousActions"):
        dpo_jax.make_train(cfg, make_continuous_reach())


@pytest.mark.parametrize("cfg", [dpo_jax.TrainConfig(algo="iddpg"), IDDPGConfig()],
                         ids=["TrainConfig", "IDDPGConfig"])
def test_iddpg_on_discrete_actions_names_algorithm_and_action_space(cfg):
    with pytest.raises(ValueError, match=r"IDDPG needs a continuous action space, but "
                                         r"'stochastic_game' has DiscreteActions"):
        dpo_jax.make_train(cfg, tiny_game())


def test_num_updates_of_each_algorithm_by_hand():
    game, reach = tiny_game(), make_continuous_reach(max_steps=25)
    # IQL: whole episodes, num_envs * max_steps steps per update
    assert dpo_jax.num_updates(dpo_jax.TrainConfig(algo="iql", total_timesteps=100,
                                                   num_envs=3), game) == 100 // 12
    assert dpo_jax.num_updates(IQLConfig(total_timesteps=100, num_envs=2), game) == 12
    # IDDPG: num_envs * num_steps per update
    assert dpo_jax.num_updates(IDDPGConfig(total_timesteps=1000, num_envs=4, num_steps=10,
                                               learning_starts=100),
                               reach) == 25
    # the PPO family as before: num_envs * episode limit
    assert dpo_jax.num_updates(dpo_jax.TrainConfig(total_timesteps=1000, num_envs=4),
                               reach) == 10


def test_baselines_report_the_ppo_trainers_metric_names():
    game = tiny_game()
    ppo = metric_names(dpo_jax.TrainConfig(total_timesteps=64, num_envs=4), game)
    iql = metric_names(dpo_jax.TrainConfig(algo="iql", total_timesteps=64, num_envs=4,
                                           hidden_size=8), game)
    assert SHARED | {"exact_return", "optimality_ratio"} <= ppo & iql
    reach = make_continuous_reach()
    ppo = metric_names(dpo_jax.TrainConfig(total_timesteps=100, num_envs=4), reach)
    iddpg = metric_names(dpo_jax.TrainConfig(algo="iddpg", total_timesteps=100, num_envs=4,
                                             num_steps=25, hidden_size=8), reach)
    assert SHARED | {"final_distance"} <= ppo & iddpg


def test_experiments_run_trains_iql_from_a_train_config_and_prints_progress():
    game = tiny_game()
    cfg = dpo_jax.TrainConfig(algo="iql", total_timesteps=4 * 2 * 4, num_envs=2,
                              hidden_size=8)
    stream = io.StringIO()
    out = experiments.run(cfg, game, experiments.stack_keys(0, 2), progress=True,
                          stream=stream)
    m = out.metrics
    assert m["episode_return"].shape == (2, 4) and m["finite"].all()
    # every episode of the game lasts its 4 steps: 2 envs x 4 steps per update
    np.testing.assert_array_equal(m["env_steps"], [[8, 16, 24, 32]] * 2)
    assert np.isfinite(out.env_steps_per_s) and out.env_steps_per_s > 0
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 4 and "greedy" in lines[-1] and "eps" in lines[-1]
    assert "J/J*" in lines[-1] and "kl" not in lines[-1]


def test_experiments_run_refuses_objective_params_for_a_baseline():
    game = tiny_game()
    cfg = dpo_jax.TrainConfig(total_timesteps=64, num_envs=4)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, 2)] * 2)
    with pytest.raises(ValueError, match=r"algo='iql' takes none"):
        experiments.run(cfg.replace(algo="iql"), game, experiments.stack_keys(0, 2),
                        obj=obj, progress=False)
