"""End-to-end ``make_train`` on a tiny repeated matrix game: metric shapes under
``jit(vmap(train))``, compile-once, algorithm/d_target sweeps in one program,
learning, and the progress callback."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.envs.base import DiscreteActions, EnvStep, MultiAgentEnv

# Shared payoff of the joint action (a_1, a_2). The best joint action (0, 0) is also
# each agent's best reply to a uniform partner, so independent learners find it.
PAYOFF = np.array([
    [1.0, 0.0, 0.0],
    [0.0, 0.5, 0.0],
    [0.0, 0.0, 0.2],
], np.float32)
CHANCE = 1 / PAYOFF.size


class RepeatedMatrixGame(MultiAgentEnv):
    """Two agents play PAYOFF ``episode_length`` times; both see the step index
    (one-hot) and get the same reward. Episodes are truncated by the time limit."""

    name = "repeated_matrix_game"
    num_agents = 2
    action_spec = DiscreteActions(3)

    def __init__(self, episode_length: int = 2):
        self.max_steps = episode_length
        self.obs_dim = episode_length + 1

    def _obs(self, t):
        return jnp.broadcast_to(jax.nn.one_hot(t, self.obs_dim), (2, self.obs_dim))

    def _out(self, t, reward):
        return EnvStep(
            state=t, obs=self._obs(t), avail_actions=jnp.ones((2, 3), bool),
            reward=reward, terminated=jnp.array(False),
            truncated=t >= self.max_steps, info={"best_joint": jnp.float32(0.0)},
        )

    def reset(self, key):
        return self._out(jnp.int32(0), jnp.zeros(2, jnp.float32))

    def step(self, key, state, actions):
        reward = jnp.asarray(PAYOFF)[actions[0], actions[1]]
        out = self._out(state + 1, jnp.full((2,), reward))
        best = ((actions[0] == 0) & (actions[1] == 0)).astype(jnp.float32)
        return out._replace(info={"best_joint": best})

    def policy_metrics(self, action_probs):
        obs = jax.vmap(self._obs)(jnp.arange(self.max_steps))  # [T, N, obs_dim]
        probs = action_probs(obs)  # [T, N, A]
        return {"p_best": jnp.mean(probs[:, 0, 0] * probs[:, 1, 0])}


ENV = RepeatedMatrixGame(episode_length=2)
NUM_UPDATES = 40
PER_AGENT = ("kl", "sqrt_kl", "beta_sqrt", "beta_kl", "entropy", "policy_loss",
             "value_loss", "loss", "grad_norm", "clip_frac")
SCALAR = ("episode_return", "episode_length", "episodes", "update", "env_steps",
          "best_joint", "p_best")

# One compiled program serves every test (compiles dominate the run time): a batch of
# runs = 2 seeds of DPO, then IPPO and DPO with a 10x smaller d_target on seed 0.
# d_target = 0.002 keeps eq. 20's adaptation active on this game (KL ~ 1e-3..6e-3).
MEMBERS = [("dpo", 0.002, 0), ("dpo", 0.002, 1), ("ippo", 0.002, 0), ("dpo", 0.0002, 0)]
DPO_SEEDS, IPPO, DPO_SMALL_TARGET = [0, 1], 2, 3


def _cfg(**kw):
    base = dict(algo="dpo", hidden_size=16, num_hidden_layers=1, hidden_layer_norm=False,
                num_envs=16, num_epochs=4, total_timesteps=16 * 2 * NUM_UPDATES,
                actor_lr=3e-3, critic_lr=3e-3, d_target=0.002)
    base.update(kw)
    return dpo_jax.TrainConfig(**base)


@pytest.fixture(scope="module")
def runs():
    """``jit(vmap(train))`` over MEMBERS (seeds x algorithms x d_target), called
    twice with other seeds."""
    cfg = _cfg()
    calls = []
    train = dpo_jax.make_train(cfg, ENV, progress=calls.append)
    params = dpo_jax.stack_params([
        dpo_jax.objective_params(cfg, ENV.num_agents, algo=a, d_target=d)
        for a, d, _ in MEMBERS
    ])
    traces = []

    def counted(keys, obj):
        traces.append(1)  # runs at trace time only
        return jax.vmap(train)(keys, obj)

    jitted = jax.jit(counted)

    def keys_for(base):
        seeds = jax.random.split(jax.random.key(base), 2)
        return jnp.stack([seeds[s] for _, _, s in MEMBERS])

    first = jax.block_until_ready(jitted(keys_for(0), params))
    calls_after_first = len(calls)
    second = jax.block_until_ready(jitted(keys_for(1), params))
    return dict(cfg=cfg, first=first, second=second, traces=len(traces), calls=calls,
                calls_after_first=calls_after_first,
                num_updates=dpo_jax.num_updates(cfg, ENV))


def test_metric_shapes_under_jit_vmap(runs):
    n_updates, batch = runs["num_updates"], len(MEMBERS)
    assert n_updates == NUM_UPDATES
    metrics = runs["first"].metrics
    for name in PER_AGENT:
        assert metrics[name].shape == (batch, n_updates, ENV.num_agents), name
    for name in SCALAR:
        assert metrics[name].shape == (batch, n_updates), name
    for name in PER_AGENT + SCALAR:
        assert np.all(np.isfinite(metrics[name])), name
    np.testing.assert_array_equal(metrics["update"][0], np.arange(n_updates))
    np.testing.assert_array_equal(metrics["env_steps"][0],
                                  (np.arange(n_updates) + 1) * 16 * 2)
    # every env finishes exactly one 2-step episode per update
    np.testing.assert_array_equal(metrics["episodes"], 16.0)
    np.testing.assert_array_equal(metrics["episode_length"], 2.0)
    result = runs["first"]
    assert result.beta_sqrt.shape == (batch, ENV.num_agents)
    for leaf in jax.tree.leaves(result.agents.params):
        assert leaf.shape[:2] == (batch, ENV.num_agents)


def test_seeds_differ(runs):
    m = runs["first"].metrics
    a, b = DPO_SEEDS
    assert not np.array_equal(m["kl"][a], m["kl"][b])
    assert not np.array_equal(m["kl"], runs["second"].metrics["kl"])


def test_compiles_once(runs):
    assert runs["traces"] == 1


def test_algorithms_and_d_target_are_data(runs):
    m = runs["first"].metrics
    dpo = DPO_SEEDS[0]
    # identical seed: the first rollout is identical, differences are the objective's
    np.testing.assert_array_equal(m["episode_return"][IPPO, 0], m["episode_return"][dpo, 0])
    np.testing.assert_array_equal(m["episode_return"][DPO_SMALL_TARGET, 0],
                                  m["episode_return"][dpo, 0])
    assert not np.allclose(m["kl"][IPPO], m["kl"][dpo])
    actor = runs["first"].agents.params["actor"]
    for leaf in jax.tree.leaves(actor):
        assert not np.array_equal(leaf[IPPO], leaf[dpo])
        assert not np.array_equal(leaf[DPO_SMALL_TARGET], leaf[dpo])
    # the smaller target drives the penalties up, keeps the policy changes smaller
    # and so slows learning down
    beta_kl = np.asarray(m["beta_kl"])
    assert beta_kl[DPO_SMALL_TARGET, :10].mean() > 10 * beta_kl[dpo, :10].mean()
    assert m["kl"][DPO_SMALL_TARGET, 5:].mean() < 0.5 * m["kl"][dpo, 5:].mean()
    assert m["p_best"][DPO_SMALL_TARGET, -1] < m["p_best"][dpo, -1] - 0.2


def test_betas_follow_eq_20_along_the_run(runs):
    """beta_{u+1} from (beta_u, kl_u) by eq. 20, in numpy, along each whole run."""
    cfg = runs["cfg"]
    m = runs["first"].metrics
    kl, beta_sqrt, beta_kl = (np.asarray(m[k], np.float64)
                              for k in ("kl", "beta_sqrt", "beta_kl"))
    d_target = np.array([d for _, d, _ in MEMBERS])[:, None, None]
    np.testing.assert_allclose(beta_sqrt[:, 0], cfg.init_beta_sqrt, rtol=1e-6)
    np.testing.assert_allclose(beta_kl[:, 0], cfg.init_beta_kl, rtol=1e-6)
    up = kl[:, :-1] > d_target * cfg.delta
    down = kl[:, :-1] < d_target / cfg.delta
    factor = np.where(up, cfg.omega, np.where(down, 1 / cfg.omega, 1.0))
    assert up.any() and down.any()
    for b in (beta_sqrt, beta_kl):
        expected = np.clip(b[:, :-1] * factor, cfg.beta_min, cfg.beta_max)
        np.testing.assert_allclose(b[:, 1:], expected, rtol=1e-5)


@pytest.mark.parametrize("algo", ["dpo", "ippo"])
def test_logged_kl_is_the_kl_between_the_policies_before_and_after_the_update(algo):
    """The ``kl`` eq. 20 adapts on, recomputed in numpy from the parameters before and
    after one update: this game's rollout visits its two observations (step 0, step 1)
    equally often, so the batch mean is the mean over those two."""
    from dpo_jax.core import agents as agents_lib
    from dpo_jax.training.trainer import make_trainer

    cfg = _cfg(algo=algo, total_timesteps=16 * 2 * 2, num_steps=2)
    trainer = make_trainer(cfg, ENV, 1)
    before = jax.jit(trainer.init)(jax.random.key(3))
    after, metrics = jax.jit(trainer.run)(before, jnp.int32(0))
    agents = agents_lib.make_agents(cfg, ENV)
    obs = jax.vmap(ENV._obs)(jnp.arange(2))  # [2, N, obs_dim]: every observation there is
    avail = jnp.ones((2, ENV.num_agents, 3), bool)

    def log_probs(params):
        logits = np.asarray(agents_lib.policy_params(agents, params, obs, avail), np.float64)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    old, new = log_probs(before.agents.params), log_probs(after.agents.params)
    kl = (np.exp(old) * (old - new)).sum(-1).mean(0)  # [N]
    assert np.all(kl > 1e-6)  # the update moved the policies
    np.testing.assert_allclose(np.asarray(metrics["kl"][0]), kl, rtol=1e-3)


@pytest.mark.parametrize("member", [DPO_SEEDS[0], DPO_SEEDS[1], IPPO])
def test_learns_the_matrix_game(runs, member):
    m = jax.tree.map(lambda x: np.asarray(x)[member], runs["first"].metrics)
    # the near-uniform initial policy is at chance
    assert m["p_best"][0] == pytest.approx(CHANCE, abs=0.05)
    assert m["p_best"][-5:].mean() > 0.5, m["p_best"]
    # the sampled behaviour agrees with the exact policy metric
    assert m["best_joint"][-5:].mean() > 0.4
    assert m["episode_return"][-5:].mean() > m["episode_return"][:3].mean() + 0.5


def test_progress_is_called_once_per_update_and_run(runs):
    n, batch = runs["num_updates"], len(MEMBERS)
    calls = runs["calls"]
    assert runs["calls_after_first"] == batch * n
    assert len(calls) == 2 * batch * n
    first_call = calls[: batch * n]
    for metrics in first_call:
        assert isinstance(metrics, dict)
        assert set(PER_AGENT + SCALAR) <= set(metrics)
        assert np.shape(metrics["kl"]) == (ENV.num_agents,)
        assert np.shape(metrics["episode_return"]) == ()
    updates = sorted(int(c["update"]) for c in first_call)
    assert updates == sorted(list(range(n)) * batch)


def test_default_objective_over_two_seeds():
    """The notebook path: ``jit(vmap(train))(keys)`` with cfg.algo's objective."""
    cfg = _cfg(total_timesteps=16 * 2 * 3)
    traces = []

    def counted(keys):  # runs once per trace, i.e. per compile
        traces.append(keys.shape)
        return jax.vmap(dpo_jax.make_train(cfg, ENV))(keys)

    train = jax.jit(counted)
    first = train(jax.random.split(jax.random.key(0), 2))
    second = train(jax.random.split(jax.random.key(5), 2))
    assert len(traces) == 1  # a new key does not recompile
    for name in SCALAR:
        assert first.metrics[name].shape == (2, 3), name
    for name in PER_AGENT:
        assert first.metrics[name].shape == (2, 3, ENV.num_agents), name
    assert not np.array_equal(first.metrics["kl"], second.metrics["kl"])
    assert not np.array_equal(first.metrics["kl"][0], first.metrics["kl"][1])


def test_run_sweep_splits_by_entry_and_reuses_the_seed_keys():
    """experiments.run_sweep equals, entry by entry, a direct vmapped trainer call on
    that entry's objective with keys stack_keys(seed, seeds)."""
    from dpo_jax.running import experiments

    cfg = _cfg(total_timesteps=16 * 2 * 3)
    entries = {name: dpo_jax.objective_params(cfg, ENV.num_agents, algo=algo)
               for name, algo in (("a", "ippo"), ("b", "dpo"))}
    _, by_name = experiments.run_sweep(cfg, ENV, entries, seeds=2, seed=7, progress=False)
    assert list(by_name) == ["a", "b"]
    train = jax.jit(jax.vmap(dpo_jax.make_train(cfg, ENV), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(7), 2)
    for name, obj in entries.items():
        expected = train(keys, obj).metrics
        for metric in ("episode_return", "kl", "policy_loss"):
            np.testing.assert_allclose(by_name[name][metric], expected[metric], rtol=1e-5,
                                       atol=1e-7, err_msg=f"{name}/{metric}")
