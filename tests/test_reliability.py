"""No silent failure: every bad input or budget gives an error (or warning) naming it.

Each test here is a row of the reliability table (issue 14): the bad input, and the
message a user gets before anything compiles where that can be known up front.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import experiments, results
from dpo_jax.baselines.config import IDDPGConfig, IQLConfig, from_train_config
from dpo_jax.envs import JaxMARLAdapter
from dpo_jax.envs.base import (
    DiscreteActions,
    EnvStep,
    MultiAgentEnv,
    codec_from_feature_index,
    decode_obs,
    encode_obs,
)
from dpo_jax.training.memory import (check_baseline_memory, check_memory,
                                     estimate_baseline_bytes, estimate_train_bytes)
from dpo_jax.training.rollout import StepCount, add_steps, steps_as_float, updates_to_steps
from dpo_jax.training.trainer import TrainResult, check_finite, make_trainer

TINY = dict(total_timesteps=2 * 2 * 12, num_envs=2, num_steps=2, num_epochs=1,
            hidden_size=8)


class TickEnv(MultiAgentEnv):
    """Two agents, 5-step episodes, reward = action, info ``won`` = the first agent's
    last action: a cheap env with an info key, for the metrics rule."""

    name = "tick"
    num_agents = 2
    obs_dim = 2
    action_spec = DiscreteActions(2)
    max_steps = 5

    def _out(self, t, reward, action0):
        obs = jnp.stack([jnp.full((2,), t, jnp.float32)] * 2)
        return EnvStep(t, obs, jnp.ones((2, 2), bool), reward, jnp.array(False),
                       t >= self.max_steps, {"won": jnp.asarray(action0, jnp.float32)})

    def reset(self, key):
        return self._out(jnp.zeros((), jnp.int32), jnp.zeros((2,)), 0)

    def step(self, key, state, actions):
        return self._out(state + 1, actions.astype(jnp.float32), actions[0])


# -- the env argument ------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (object(), "must be a dpo_jax MultiAgentEnv"),
    ("mpe_spread", r"is a name, not an environment; build it first: "
                   r"dpo_jax.make_env\('mpe_spread'\)"),
])
def test_make_train_names_a_bad_env_argument(bad, match):
    for cfg in (dpo_jax.TrainConfig(**TINY), dpo_jax.TrainConfig(algo="iql", num_envs=2)):
        with pytest.raises(ValueError, match=match):
            dpo_jax.make_train(cfg, bad)
    with pytest.raises(ValueError, match=match):
        experiments.run(dpo_jax.TrainConfig(**TINY), bad, experiments.stack_keys(0, 1))


def test_raw_jaxmarl_env_is_refused_with_the_fix():
    import jaxmarl

    raw = jaxmarl.make("MPE_simple_spread_v3")
    with pytest.raises(ValueError, match=r"raw JaxMARL environment.*JaxMARLAdapter\(env\)"):
        dpo_jax.make_train(dpo_jax.TrainConfig(**TINY), raw)
    with pytest.raises(ValueError, match=r"JaxMARLAdapter: env \(object\) is not a JaxMARL"):
        JaxMARLAdapter(object())


def test_make_env_checks_jaxmarl_kwargs_and_value_types():
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['foo'\]"):
        dpo_jax.make_env("jaxmarl", env_id="MPE_simple_spread_v3", foo=1)
    env = dpo_jax.make_env("jaxmarl", env_id="MPE_simple_spread_v3", num_agents=4)
    assert env.num_agents == 4
    with pytest.raises(ValueError, match=r"num_agents=True is invalid: expected an int"):
        dpo_jax.make_env("mpe_spread", num_agents=True)
    with pytest.raises(ValueError, match=r"local_ratio=nan is invalid"):
        dpo_jax.make_env("mpe_spread", local_ratio=float("nan"))


# -- ObjectiveParams -------------------------------------------------------------

def test_objective_params_rejects_bad_agent_counts_and_rule_constants():
    cfg = dpo_jax.TrainConfig()
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"num_agents=.* expected a positive int"):
            dpo_jax.objective_params(cfg, n)
    with pytest.raises(ValueError, match=r"ObjectiveParams.delta=0.5 is invalid"):
        dpo_jax.objective_params(cfg, 2, delta=0.5)
    with pytest.raises(ValueError, match=r"ObjectiveParams.omega=-1.0 is invalid"):
        dpo_jax.objective_params(cfg, 2, omega=-1)
    with pytest.raises(ValueError, match=r"ObjectiveParams.use_clip=2.0"):
        dpo_jax.objective_params(cfg, 2, use_clip=2)


def test_replaced_objective_params_are_checked_where_used():
    env = dpo_jax.make_env("stochastic_game_small")
    cfg = dpo_jax.TrainConfig(**TINY)
    good = dpo_jax.objective_params(cfg, env.num_agents)
    bad = good._replace(d_target=jnp.float32(jnp.nan))
    train = dpo_jax.make_train(cfg, env)
    with pytest.raises(ValueError, match=r"ObjectiveParams.d_target=nan is invalid"):
        train(jax.random.key(0), bad)
    sweep = dpo_jax.stack_params([good, good._replace(omega=jnp.float32(0.5))])
    with pytest.raises(ValueError, match=r"omega=0.5 at sweep index \(1,\)"):
        experiments.run(cfg, env, experiments.stack_keys(0, 2), obj=sweep, progress=False)
    with pytest.raises(ValueError, match=r"leading axis of 3 entries"):
        experiments.run(cfg, env, experiments.stack_keys(0, 3),
                        obj=dpo_jax.stack_params([good, good]), progress=False)
    # traced (the README's jit(vmap(train)) path): the run is marked not finite from
    # update 0 and check_finite names it; the valid run trains on
    sweep = dpo_jax.stack_params([good, bad])
    result = jax.jit(jax.vmap(train))(experiments.stack_keys(0, 2), sweep)
    finite = np.asarray(result.metrics["finite"])
    assert finite[0].all() and not finite[1].any()
    with pytest.raises(FloatingPointError, match=r"invalid ObjectiveParams .* at update 0"):
        check_finite(result)


# -- TrainConfig types -------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("num_envs", True), ("num_epochs", 2.0), ("total_timesteps", "1000"),
    ("value_norm", 1), ("share_params", "no"), ("delta", float("inf")),
    ("omega", float("inf")), ("beta_max", float("inf")), ("value_coef", float("inf")),
    ("kl_sqrt_eps", float("inf")), ("init_log_std", float("nan")), ("gamma", "0.9"),
    ("huber_delta", float("nan")), ("activation", 3), ("algo", ["dpo"]),
])
def test_train_config_rejects_wrong_types_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}="):
        dpo_jax.TrainConfig(**{field: value})


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    cfg = dpo_jax.TrainConfig(num_envs=np.int64(8), d_target=np.float32(0.02))
    assert type(cfg.num_envs) is int and type(cfg.d_target) is float
    hash(cfg)  # a static jit argument


def test_baseline_fields_that_do_not_apply_warn():
    cfg = dpo_jax.TrainConfig(algo="iql", num_epochs=3, d_target=0.5)
    with pytest.warns(UserWarning, match=r"\['d_target', 'num_epochs'\] do not apply"):
        from_train_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_train_config(dpo_jax.TrainConfig(algo="iql", num_envs=4, gamma=0.9))


def test_iddpg_budget_below_warm_up_is_refused():
    with pytest.raises(ValueError, match=r"IDDPGConfig.total_timesteps=20000 .* "
                                         r"learning_starts=25000"):
        dpo_jax.IDDPGConfig(total_timesteps=20_000)
    # through TrainConfig the warm-up is capped at a tenth of the budget
    assert from_train_config(dpo_jax.TrainConfig(algo="iddpg", total_timesteps=20_000)
                             ).learning_starts == 2_000


# -- budgets -------------------------------------------------------------------------

def test_step_counters_do_not_wrap_at_3e9_steps():
    # one int32 wraps at 2**31 = 2.1e9; the counter carries into a second int32
    count = StepCount(jnp.int32(2), jnp.int32(2**30 - 100))  # 3,221,225,372 steps
    count = jax.jit(add_steps)(count, jnp.int32(3_000))
    exact = 2 * 2**30 + 2**30 - 100 + 3_000
    assert int(count.high) * 2**30 + int(count.low) == exact
    assert abs(float(steps_as_float(count)) - exact) / exact < 1e-7
    # PPO / IDDPG: update index x steps per update, rounded once, never negative
    updates = jnp.int32(3_000_000_000 // 3_200)
    value = float(jax.jit(updates_to_steps, static_argnums=1)(updates, 3_200))
    assert value > 0 and abs(value - 3e9) / 3e9 < 1e-7
    # the host's exact count: int64 running sum of each update's steps
    metrics = {"update_steps": np.full((1, 1_000_000), 3_200, np.int32)}
    assert results.exact_env_steps(metrics)[0, -1] == 3_200_000_000


def test_a_batch_that_cannot_fit_fails_before_compiling_with_an_estimate():
    env = dpo_jax.make_env("mpe_spread")
    cfg = dpo_jax.TrainConfig(num_envs=2**17)
    with pytest.raises(ValueError, match=r"TrainConfig.num_envs=131072 x num_steps=25 on "
                                         r"'mpe_spread' needs about .* GiB .* would fit"):
        check_memory(cfg, env, 25, limit=24 * 2**30)
    with pytest.raises(ValueError, match=r"x 8 runs"):
        check_memory(dpo_jax.TrainConfig(num_envs=2**14), env, 25, num_runs=8,
                     limit=24 * 2**30)


@pytest.mark.parametrize("num_envs, num_steps, minibatches", [(64, 25, 1), (16, 128, 4)])
def test_memory_estimate_is_within_15_percent_of_xla_s_own_figure(num_envs, num_steps,
                                                                  minibatches):
    env = dpo_jax.make_env("mpe_spread")
    cfg = dpo_jax.TrainConfig(num_envs=num_envs, num_steps=num_steps,
                              total_timesteps=num_envs * num_steps,
                              num_minibatches=minibatches)
    compiled = jax.jit(dpo_jax.make_train(cfg, env)).lower(jax.random.key(0)).compile()
    stats = compiled.memory_analysis()
    xla = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    ratio = estimate_train_bytes(cfg, env, num_steps) / xla
    assert 0.85 < ratio < 1.15, ratio


@pytest.mark.parametrize("env_name, algo", [("stochastic_game_small", "iql"),
                                             ("continuous_reach", "iddpg")])
def test_baseline_memory_estimate_covers_xla_s_figure(env_name, algo):
    """IQL / IDDPG: the estimate is at least XLA's figure for the chunk program
    (state donated, so counted once) and at most 40% above it."""
    env = dpo_jax.make_env(env_name)
    if algo == "iql":
        cfg = IQLConfig(num_envs=8, total_timesteps=8 * env.max_steps * 3)
    else:
        cfg = IDDPGConfig(num_envs=8, num_steps=100, total_timesteps=8 * 100 * 4,
                          learning_starts=1000)
    runs = 2
    trainer = make_trainer(cfg, env, 1)
    keys = jax.random.split(jax.random.key(0), runs)
    table_args = (env,) if experiments.env_is_pytree(env) else ()
    axes = (None,) * len(table_args)
    state = jax.eval_shape(jax.vmap(trainer.init, in_axes=(0, None) + axes),
                           keys, None, *table_args)
    stats = jax.jit(jax.vmap(trainer.run, in_axes=(0, None, None) + axes),
                    donate_argnums=0).lower(state, jnp.int32(0), None,
                                            *table_args).compile().memory_analysis()
    tables = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(table_args))
    xla = (stats.argument_size_in_bytes + stats.temp_size_in_bytes
           + stats.output_size_in_bytes - stats.alias_size_in_bytes - tables)
    ratio = estimate_baseline_bytes(cfg, env, runs) / xla
    assert 1.0 <= ratio < 1.4, ratio


def test_a_replay_buffer_that_cannot_fit_is_refused_naming_buffer_size():
    env = dpo_jax.make_env("stochastic_game_small")
    cfg = IQLConfig(num_envs=8, total_timesteps=8 * env.max_steps)
    per_run = estimate_baseline_bytes(cfg, env, 1)
    with pytest.raises(ValueError, match=r"IQLConfig.buffer_size=5000 episodes on "
                                         r"'stochastic_game': 5 runs \(seeds\) need "
                                         r"about .* GiB .* at most 2 seeds per job"):
        check_baseline_memory(cfg, env, 5, limit=int(2.5 * per_run))
    assert check_baseline_memory(cfg, env, 2, limit=int(2.5 * per_run)) == 2 * per_run
    with pytest.raises(ValueError, match=r"buffer_size"):  # through experiments.run
        experiments.check_inputs(cfg, env, experiments.stack_keys(0, 10**6), None)


def test_check_finite_names_the_earliest_update_the_cause_and_the_metric():
    finite = np.array([[True, True, True, False], [True, False, False, False],
                       [True] * 4])
    fault = np.where(finite, 0, 8)
    fault[1, 1] = 2  # run 1's first fault: a NaN reward
    loss = np.where(finite, 1.0, np.nan)
    result = TrainResult(None, None, None, {"finite": finite, "fault": fault, "loss": loss})
    with pytest.raises(FloatingPointError, match=r"a non-finite reward from the env at update "
                                                 r"1 in run\(s\) 1; non-finite metrics there: "
                                                 r"loss; runs that failed: \[0, 1\]"):
        check_finite(result)


# -- metrics when no episode ended ---------------------------------------------------

def test_per_episode_metrics_follow_one_rule_when_no_episode_ended():
    env = TickEnv()
    cfg = dpo_jax.TrainConfig(**{**TINY, "total_timesteps": 2 * 2 * 10})
    m = jax.tree.map(np.asarray, jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0)).metrics)
    ended = m["episodes"] > 0
    # 5-step episodes, 2 steps per update: they end in updates 2, 4, 7, 9
    np.testing.assert_array_equal(np.flatnonzero(ended), [2, 4, 7, 9])
    for name in ("episode_return", "episode_length", "won"):
        values = m[name]
        assert np.isnan(values[:2]).all(), name
        for u in range(3, 10):
            if not ended[u]:
                assert values[u] == values[u - 1], (name, u)
    np.testing.assert_array_equal(m["episode_length"][2:], 5.0)
    assert np.isfinite(m["step_reward"]).all()
    np.testing.assert_array_equal(m["update_steps"], 4)


# -- compact replay --------------------------------------------------------------

def test_observation_codec_round_trips_gathered_observations():
    rng = np.random.default_rng(0)
    index = np.array([[0, 1, 2, 9], [2, 3, 9, 9], [0, 3, 4, 5]])  # 9 is the padding zero
    codec = codec_from_feature_index(index, pad=9)
    assert len(codec.compact_index) == 6
    features = np.concatenate([rng.normal(size=9), [0.0]]).astype(np.float32)
    obs = jnp.asarray(features[index])[None, None]  # [T, E, N, D]
    np.testing.assert_array_equal(decode_obs(codec, encode_obs(codec, obs)), obs)


@pytest.mark.parametrize("task", ["mamujoco_hopper_3x1", "mamujoco_humanoid_17x1"])
def test_mamujoco_codec_is_lossless_and_smaller(task):
    env = dpo_jax.make_env(task)
    codec = env.observation_codec()
    pad = env.layout.offsets["pad"]
    features = np.concatenate([np.random.default_rng(1).normal(size=pad), [0.0]])
    obs = jnp.asarray(features[np.asarray(env.obs_index)], jnp.float32)
    np.testing.assert_array_equal(decode_obs(codec, encode_obs(codec, obs)), obs)
    assert len(codec.compact_index) < env.num_agents * env.obs_dim


# -- example scripts ---------------------------------------------------------------

@pytest.mark.parametrize("args, match", [
    (["examples/stochastic_game.py", "--seeds", "0"], "--seeds: expected an int >= 1, got 0"),
    (["examples/mpe_spread.py", "--out", "/proc/x"], "--out: output folder '/proc/x' cannot"),
])
def test_example_flags_fail_at_parsing(args, match):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and match in out.stderr, out.stderr[-2000:]


def test_compact_replay_trains_like_the_full_layout():
    """IDDPG with observations stored through a codec gives the metrics of the full
    layout, to float rounding (the decoded batches are exact; XLA fuses the two
    programs differently, 1-ulp differences). A feature shared by every agent's row
    takes the path MaMuJoCo takes, on an env cheap enough for the default suite."""
    from dpo_jax.envs.continuous_reach import ContinuousReach

    class CodecReach(ContinuousReach):
        def observation_codec(self):
            index = np.arange(self.num_agents * self.obs_dim).reshape(self.num_agents, -1)
            index[:, -1] = index[0, -1]  # a feature shared by every agent's row
            return codec_from_feature_index(index, pad=-1)

        def _observe_shared(self, obs):
            return obs.at[:, -1].set(obs[0, -1])

        def reset(self, key):
            out = super().reset(key)
            return out._replace(obs=self._observe_shared(out.obs))

        def step(self, key, state, actions):
            out = super().step(key, state, actions)
            return out._replace(obs=self._observe_shared(out.obs))

    env = CodecReach()
    assert len(env.observation_codec().compact_index) < env.num_agents * env.obs_dim
    metrics = []
    for compact in (False, True):
        cfg = dpo_jax.IDDPGConfig(total_timesteps=4 * 10 * 6, num_envs=4, num_steps=10,
                                  gradient_steps=4, batch_size=16, buffer_size=200,
                                  learning_starts=40, hidden_size=16, compact_replay=compact)
        result = jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0))
        metrics.append(jax.tree.map(np.asarray, result.metrics))
    assert metrics[0]["learning"][-1]  # past the random warm-up: gradient steps ran
    assert np.isfinite(metrics[0]["loss"][-1]).all()
    for name in ("loss", "actor_loss", "q_mean", "episode_return", "step_reward"):
        np.testing.assert_allclose(metrics[0][name], metrics[1][name], rtol=1e-5,
                                   atol=1e-7, err_msg=name)
