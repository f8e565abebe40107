"""The authors' code-level behaviours as options (``TrainConfig.sampling``,
``advantage_norm_scope``, ``beta_statistics``, ``kl_sqrt_eps_mode``; the stochastic
game's ``never_reset``; games from tables and the authors' pickle), each checked
against a small numpy statement of the rule."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.core.objectives import objective_params, sqrt_kl_term
from dpo_jax.envs import stochastic_game as sg
from dpo_jax.training import trainer
from dpo_jax.training.rollout import reset_envs, step_envs


def tiny_game(never_reset: bool = False, horizon: int = 3) -> sg.StochasticGame:
    """5 states in a deterministic ring (s -> s + 1 mod 5 whatever the actions), 2
    agents, 2 actions; reward = state index + joint action / 10."""
    rewards = np.zeros((5, 2, 2))
    transitions = np.zeros((5, 2, 2, 5))
    for s in range(5):
        for a in range(2):
            for b in range(2):
                rewards[s, a, b] = s + (2 * a + b) / 10
                transitions[s, a, b, (s + 1) % 5] = 1.0
    return sg.StochasticGame.from_tables(rewards, transitions, start_state=0,
                                         episode_length=horizon, never_reset=never_reset)


def rollout(env, cfg, steps, key=jax.random.key(0)):
    agents = agents_lib.make_agents(cfg, env)
    state = agents_lib.init_agents(agents, jax.random.key(1))
    batch = reset_envs(env, jax.random.key(2), cfg.num_envs)
    _, traj = jax.jit(lambda b, k: trainer.rollout(env, agents, state.params, b, k, steps)
                      )(batch, key)
    return agents, state, traj


def reference_agent_loss(ag, params, obs, avail, action, old_logits, old_logp, adv, old_value,
                         target, beta_sqrt, beta_kl, cfg, num_agents):
    """One agent's loss written out from eq. 19 and the value loss (independent of
    ``core/objectives.py``): the actor's logits on ``obs``, ratio pi(a|o) / pi_old(a|o),
    the categorical KL(pi_old || pi) by hand, sqrt(max(E[KL], eps)) (the default
    ``sqrt_of_mean`` with the floor), the 1/N on the advantage term, the entropy bonus,
    and the clipped Huber value loss. Differentiable (jnp), for ``jax.grad``."""
    logits = jnp.where(avail, ag.actor.apply(params["actor"], obs, avail), -1e9)
    logp_all = logits - jax.scipy.special.logsumexp(logits, -1, keepdims=True)
    old_all = old_logits - jax.scipy.special.logsumexp(old_logits, -1, keepdims=True)
    logp = jnp.take_along_axis(logp_all, action[:, None], -1)[:, 0]
    ratio = jnp.exp(logp - old_logp)
    kl = jnp.sum(jnp.exp(old_all) * (old_all - logp_all), -1)
    mean_kl = jnp.mean(jnp.maximum(kl, 0.0))
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, -1)
    policy = (-jnp.mean(ratio * adv) / num_agents
              + beta_sqrt * jnp.sqrt(jnp.maximum(mean_kl, cfg.kl_sqrt_eps))
              + beta_kl * mean_kl - cfg.entropy_coef * jnp.mean(entropy))
    value = ag.critic.apply(params["critic"], obs)

    def huber(e):
        a = jnp.abs(e)
        return jnp.where(a <= cfg.huber_delta, 0.5 * e ** 2,
                         cfg.huber_delta * (a - 0.5 * cfg.huber_delta))

    clipped = old_value + jnp.clip(value - old_value, -cfg.value_clip, cfg.value_clip)
    v_loss = jnp.mean(jnp.maximum(huber(value - target), huber(clipped - target)))
    return policy + cfg.value_coef * v_loss, kl


# -- never_reset: the authors' training env ------------------------------------------

def test_never_reset_keeps_the_state_chain_and_marks_every_later_step_terminal():
    for never_reset, states in ((False, [1, 2, 0, 1, 2, 0, 1, 2]),
                                (True, [1, 2, 3, 4, 0, 1, 2, 3])):
        env = tiny_game(never_reset)
        batch = reset_envs(env, jax.random.key(0), 1)
        seen, terminated, done = [], [], []
        for t in range(8):
            batch, rec = step_envs(env, batch, jnp.zeros((1, 2), jnp.int32),
                                   jax.random.key(t))
            seen.append(int(jnp.argmax(batch.obs[0, 0])))
            terminated.append(bool(rec.terminated[0]))
            done.append(bool(rec.done[0]))
        assert seen == states, never_reset
        if never_reset:  # their done stays 1 from the horizon on: terminal, no reset
            assert terminated == [False, False] + [True] * 6
        else:  # time-limit ends every 3 steps, then a reset to the start state
            assert terminated == [False] * 8
            assert done == [False, False, True] * 2 + [False, False]


def test_never_reset_episode_metrics_are_windows_of_the_horizon():
    """In an env that never resets, every step after the first episode is terminal;
    the episode metrics count windows of ``max_steps`` steps instead: numpy's sums of
    the rewards over consecutive windows of 3 steps."""
    from dpo_jax.training.rollout import episode_stats

    env = tiny_game(never_reset=True, horizon=3)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=12, hidden_size=8)
    _, _, traj = rollout(env, cfg, 12)
    stats = episode_stats(traj.step)
    reward = np.asarray(traj.step.reward, np.float64).mean(-1)  # [T, E], mean over agents
    windows = reward.reshape(4, 3, 2).sum(1)  # 4 windows of 3 steps per env
    assert bool(np.asarray(traj.step.done)[3:].all())  # the env's own episodes: length 1
    assert float(stats["episodes"]) == 8 and float(stats["episode_length"]) == 3
    np.testing.assert_allclose(float(stats["episode_return"]), windows.mean(), rtol=1e-6)


def test_never_reset_targets_are_the_reward_after_the_first_episode():
    """GAE with every step terminal: A = r - V(s), target = r (their value masks 0)."""
    env = tiny_game(never_reset=True)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=8, value_norm=False,
                              normalize_advantages=False, hidden_size=8)
    agents, state, traj = rollout(env, cfg, 8)
    batch, _, _ = trainer.make_batch(agents, state.params, traj, cfg,
                                     trainer.init_value_norm(2))
    rewards = np.asarray(traj.step.reward).reshape(-1, 2)
    targets = np.asarray(batch.target)
    steps = np.repeat(np.arange(8), 2)  # [T * E] row order: time-major
    late = steps >= 2  # step index 2 ends the first episode (horizon 3)
    np.testing.assert_allclose(targets[late], rewards[late], rtol=0, atol=1e-6)
    assert np.abs(targets[~late] - rewards[~late]).max() > 1e-3  # bootstrapped there


# -- games from tables and the authors' pickle ---------------------------------------

def numpy_optimum(reward: np.ndarray, trans: np.ndarray, horizon: int, start: int) -> float:
    s = reward.shape[0]
    r, p = reward.reshape(s, -1), trans.reshape(s, -1, s)
    value = np.zeros(s)
    for _ in range(horizon):
        value = (r + p @ value).max(1)
    return float(value[start])


def numpy_uniform_return(reward, trans, horizon, start):
    s = reward.shape[0]
    r, p = reward.reshape(s, -1).mean(1), trans.reshape(s, -1, s).mean(1)
    dist, total = np.eye(s)[start], 0.0
    for _ in range(horizon):
        total += dist @ r
        dist = dist @ p
    return total


def test_authors_pickle_loads_with_their_start_state_and_horizon(tmp_path):
    rng = np.random.default_rng(3)
    reward = rng.uniform(-5, 5, (4, 3, 3))
    trans = rng.dirichlet(np.ones(4), size=(4, 3, 3))
    path = tmp_path / "game.pkl"
    with open(path, "wb") as f:
        pickle.dump({"reward": reward, "trans_mat": trans}, f)
    env = dpo_jax.make_env("stochastic_game_authors", path=str(path))
    assert (env.num_states, env.num_agents, env.num_actions, env.episode_length) == (4, 2, 3, 4)
    assert env.optimal_return() == pytest.approx(numpy_optimum(reward, trans, 4, 0), rel=1e-5)
    uniform = jnp.full((2, 4, 3), 1 / 3)
    assert float(env.exact_return(uniform)) == pytest.approx(
        numpy_uniform_return(reward, trans, 4, 0), rel=1e-5)
    started = sg.StochasticGame.from_tables(reward, trans, start_state=2)
    assert started.optimal_return() == pytest.approx(numpy_optimum(reward, trans, 4, 2), rel=1e-5)
    assert float(started.exact_return(uniform)) == pytest.approx(
        numpy_uniform_return(reward, trans, 4, 2), rel=1e-5)
    assert int(jnp.argmax(started.reset(jax.random.key(0)).obs[0])) == 2


@pytest.mark.parametrize("bad, message", [
    (lambda r, p: (r, p[..., :3]), "transitions"),
    (lambda r, p: (r, p * 2), "sum to 1"),
    (lambda r, p: (r * np.nan, p), "finite"),
])
def test_bad_tables_are_refused_by_name(bad, message):
    rng = np.random.default_rng(0)
    reward, trans = rng.uniform(-1, 1, (4, 2, 2)), rng.dirichlet(np.ones(4), size=(4, 2, 2))
    with pytest.raises(ValueError, match=message):
        sg.StochasticGame.from_tables(*bad(reward, trans))


def test_unreadable_authors_file_is_named(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="broken.pkl"):
        sg.load_authors_game(str(path))


# -- pooled samples ------------------------------------------------------------------

def test_pooled_sampling_deals_every_sample_once_as_the_numpy_rule_says():
    cfg = dpo_jax.TrainConfig(num_envs=1, num_steps=6, sampling="pooled")
    b, n = 6, 3
    ids = np.arange(b * n, dtype=np.float32).reshape(b, n)  # sample id = row * N + agent
    batch = trainer.Batch(obs=jnp.asarray(ids)[..., None], avail=jnp.ones((b, n, 2), bool),
                          action=jnp.asarray(ids, jnp.int32), log_prob=jnp.asarray(ids),
                          dist_params=jnp.asarray(ids)[..., None], value=jnp.asarray(ids),
                          advantage=jnp.asarray(ids), target=jnp.asarray(ids))
    key = jax.random.key(5)
    out = trainer.epoch_minibatches(batch, key, cfg)
    pool_key, _ = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(pool_key, b * n))
    expected = ids.reshape(-1)[perm].reshape(1, b, n)  # their shared_buffer + idv_reshape
    for leaf in (out.obs[..., 0], out.action, out.log_prob, out.advantage, out.target):
        np.testing.assert_array_equal(np.asarray(leaf), expected)
    assert sorted(np.asarray(out.obs).reshape(-1)) == list(range(b * n))
    owners = expected.astype(int) % n  # the agent each dealt sample came from
    assert any(len(set(owners[0, :, i])) > 1 for i in range(n))  # columns are mixed
    per_agent = trainer.epoch_minibatches(batch, key, cfg.replace(sampling="per_agent"))
    np.testing.assert_array_equal(np.asarray(per_agent.obs[0, :, :, 0]), ids)


def test_pooled_ratio_and_kl_compare_agent_i_with_the_dealt_agents_old_policy():
    """Agent i's loss on a dealt sample of agent j: ratio pi_i(a_j|o_j) / pi_j,old(a_j|o_j)
    and KL(pi_j,old || pi_i): the loss's inputs against numpy's deal, then the loss
    and its KL against the loss written out by hand (``reference_agent_loss``)."""
    env = tiny_game()
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=4, hidden_size=8, sampling="pooled")
    agents, state, traj = rollout(env, cfg, 4)
    batch, _, _ = trainer.make_batch(agents, state.params, traj, cfg,
                                     trainer.init_value_norm(2))
    key = jax.random.key(7)
    dealt = trainer.epoch_minibatches(batch, key, cfg)
    pool_key, _ = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(pool_key, batch.obs.shape[0] * 2))
    owner = (perm % 2).reshape(-1, 2)  # which agent's sample lands in each column
    old = np.asarray(batch.log_prob).reshape(-1)[perm].reshape(-1, 2)
    np.testing.assert_array_equal(np.asarray(dealt.log_prob[0]), old)
    # the old log-prob belongs to the owner's policy: recompute it from its logits
    logits = np.asarray(batch.dist_params).reshape(-1, 2)[perm].reshape(-1, 2, 2)
    actions = np.asarray(batch.action).reshape(-1)[perm].reshape(-1, 2)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(np.take_along_axis(logp, actions[..., None], -1)[..., 0], old,
                               atol=1e-5)
    assert (owner != np.arange(2)).any()
    # the loss itself: agent i's loss and KL on the dealt samples, written out by hand
    # from agent i's network and the dealt owners' old logits
    obj = objective_params(cfg, 2)
    betas = jnp.array([0.3, 0.7])
    mb = jax.tree.map(lambda x: x[0], dealt)
    loss, (aux, _), _ = trainer.loss_and_grads(agents, state.params, mb, betas, betas, obj,
                                               cfg)
    for i in range(2):
        own = jax.tree.map(lambda x: x[i], state.params)
        want, kl = reference_agent_loss(
            agents, own, mb.obs[:, i], mb.avail[:, i], mb.action[:, i],
            jnp.asarray(logits[:, i]), mb.log_prob[:, i], mb.advantage[:, i], mb.value[:, i],
            mb.target[:, i], betas[i], betas[i], cfg, 2)
        np.testing.assert_allclose(float(loss[i]), float(want), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(aux.kl[i]), float(kl.mean()), rtol=1e-4, atol=1e-7)


# -- advantages over all agents ------------------------------------------------------

def test_advantage_norm_scope_standardises_per_agent_or_over_all_agents():
    env = tiny_game()
    base = dpo_jax.TrainConfig(num_envs=3, num_steps=5, hidden_size=8, value_norm=False)
    agents, state, traj = rollout(env, base, 5)
    norm = trainer.init_value_norm(2)
    raw = np.asarray(trainer.make_batch(agents, state.params, traj,
                                        base.replace(normalize_advantages=False), norm)[0]
                     .advantage, np.float64)
    per_agent = np.asarray(trainer.make_batch(agents, state.params, traj, base, norm)[0]
                           .advantage)
    pooled = np.asarray(trainer.make_batch(
        agents, state.params, traj, base.replace(advantage_norm_scope="all_agents"), norm)[0]
        .advantage)
    np.testing.assert_allclose(per_agent, (raw - raw.mean(0)) / (raw.std(0) + 1e-8), atol=1e-5)
    np.testing.assert_allclose(pooled, (raw - raw.mean()) / (raw.std() + 1e-8), atol=1e-5)
    wide = np.asarray(trainer.make_batch(  # an epsilon large enough to show
        agents, state.params, traj, base.replace(advantage_norm_scope="all_agents",
                                                 adv_norm_eps=0.5), norm)[0].advantage)
    np.testing.assert_allclose(wide, (raw - raw.mean()) / (raw.std() + 0.5), atol=1e-5)


# -- beta statistics from the last minibatch -----------------------------------------

def test_last_minibatch_statistics_are_the_kl_before_the_last_step():
    """With one minibatch, the last minibatch of epoch 2 sees the parameters after
    epoch 1: its KL terms equal numpy's KL(pi_old || pi_after_epoch_1) over the batch."""
    env = tiny_game()
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=6, hidden_size=8, num_epochs=2,
                              beta_statistics="last_minibatch", sqrt_kl_form="mean_of_sqrt",
                              actor_lr=0.05)  # a KL well above float32 rounding
    agents, state, traj = rollout(env, cfg, 6)
    batch, _, _ = trainer.make_batch(agents, state.params, traj, cfg,
                                     trainer.init_value_norm(2))
    obj = objective_params(cfg, 2)
    betas = jnp.full((2,), 0.5)
    key = jax.random.key(3)
    _, stats = trainer.update_epochs(agents, state, batch, betas, betas, obj, cfg, key)
    after_one, _ = trainer.update_epochs(agents, state, batch, betas, betas, obj,
                                         cfg.replace(num_epochs=1), key)
    new = np.asarray(agents_lib.policy_params(agents, after_one.params, batch.obs, batch.avail),
                     np.float64)
    old = np.asarray(batch.dist_params, np.float64)
    logp_new = new - np.log(np.exp(new).sum(-1, keepdims=True))
    logp_old = old - np.log(np.exp(old).sum(-1, keepdims=True))
    kl = (np.exp(logp_old) * (logp_old - logp_new)).sum(-1)  # [B, N]
    assert kl.mean() > 1e-3
    np.testing.assert_allclose(np.asarray(stats["last_kl"]), kl.mean(0), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(stats["last_sqrt_kl"]),
                               np.sqrt(np.maximum(kl, cfg.kl_sqrt_eps)).mean(0), rtol=1e-3)


def _eq20(beta, d, d_target, delta=1.5, omega=2.0, low=1e-3, high=1e3):
    """Eq. 20 in numpy: beta x omega above d_target x delta, / omega below
    d_target / delta, else unchanged; clipped to [low, high]."""
    out = np.where(d > d_target * delta, beta * omega,
                   np.where(d < d_target / delta, beta / omega, beta))
    return np.clip(out, low, high)


@pytest.mark.parametrize("statistics", ["last_minibatch", "batch_after_update"])
def test_the_betas_follow_eq_20_from_the_logged_statistic_it_names(statistics):
    """Each update's betas come from the previous row's by eq. 20 applied to the
    statistic ``beta_statistics`` names: ``last_minibatch_kl`` or ``kl``, both logged.
    The two statistics disagree on some decisions here, so adapting from the wrong
    one fails the test."""
    env = tiny_game()
    d_target = 0.03
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=6, hidden_size=8, num_epochs=3,
                              num_minibatches=2, beta_statistics=statistics, actor_lr=0.02,
                              d_target=d_target, total_timesteps=4 * 6 * 12, value_norm=False)
    metrics = jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0)).metrics
    beta_kl, beta_sqrt, last, batch = (np.asarray(metrics[k], np.float64) for k in (
        "beta_kl", "beta_sqrt", "last_minibatch_kl", "kl"))
    used, other = (last, batch) if statistics == "last_minibatch" else (batch, last)
    np.testing.assert_allclose(beta_kl[1:], _eq20(beta_kl[:-1], used[:-1], d_target), rtol=1e-6)
    np.testing.assert_allclose(beta_sqrt[1:], _eq20(beta_sqrt[:-1], used[:-1], d_target),
                               rtol=1e-6)  # beta_sqrt_rule="kl": the same statistic
    differs = ~np.isclose(_eq20(beta_kl[:-1], used[:-1], d_target),
                          _eq20(beta_kl[:-1], other[:-1], d_target))
    assert differs.any(), "the two statistics agree on every decision: the test is blind"


# -- the square root's epsilon --------------------------------------------------------

@pytest.mark.parametrize("form", ["sqrt_of_mean", "mean_of_sqrt"])
def test_sqrt_epsilon_floor_or_added(form):
    kl = np.array([0.0, 1e-13, 4e-6, 0.09])
    eps = 1e-12
    floor = sqrt_kl_term(jnp.asarray(kl), form, eps, eps_mode="floor")
    added = sqrt_kl_term(jnp.asarray(kl), form, eps, eps_mode="added")
    if form == "sqrt_of_mean":
        want_floor, want_added = np.sqrt(max(kl.mean(), eps)), np.sqrt(kl.mean() + eps)
    else:
        want_floor = np.sqrt(np.maximum(kl, eps)).mean()
        want_added = np.sqrt(kl + eps).mean()  # the authors': sqrt(max(kl + eps, eps))
    assert float(floor) == pytest.approx(want_floor, rel=1e-6)
    assert float(added) == pytest.approx(want_added, rel=1e-6)
    grad = jax.grad(lambda x: sqrt_kl_term(x, form, eps, eps_mode="added"))(jnp.zeros(4))
    assert np.all(np.isfinite(np.asarray(grad)))


# -- the authors preset --------------------------------------------------------------

def test_authors_preset_sets_their_code_defaults_per_family():
    game = dpo_jax.preset("authors", "stochastic_game_small")
    assert (game.d_target, game.num_envs, game.init_beta_kl, game.sampling,
            game.beta_statistics, game.advantage_norm_scope, game.shared_betas,
            game.value_norm, game.huber_delta) == (
        0.01, 1, 1.0, "pooled", "last_minibatch", "all_agents", True, False, None)
    assert dpo_jax.preset("authors", "smax_3m").d_target == 0.02
    assert dpo_jax.preset("authors", "smax_3m").total_timesteps == 2_000_000
    from dpo_jax.config import preset_env_kwargs
    assert preset_env_kwargs("authors", "stochastic_game_small") == {"never_reset": True}
    assert preset_env_kwargs("authors", "mpe_navigation") == {
        "comm_obs": True, "integrator": "mpe", "vision": None}
    assert preset_env_kwargs("authors", "mpe_circle") == {"comm_obs": True,
                                                          "integrator": "mpe"}
    assert preset_env_kwargs("authors", "mpe_spread") == {}
    # their navigation_control_full with 5 agents: 2 + 2 + 2*5 + 2*4 + 2*4 floats
    nav = dpo_jax.make_env("mpe_navigation", **preset_env_kwargs("authors", "mpe_navigation"))
    assert (nav.obs_dim, nav.vision, nav.integrator) == (30, None, "mpe")
    assert preset_env_kwargs("paper", "stochastic_game") == {}
    assert preset_env_kwargs("paper", "mpe_navigation") == {}
    mpe = dpo_jax.preset("authors", "mpe_navigation")
    assert (mpe.entropy_coef, mpe.loss_mean_over_agents, mpe.adv_norm_eps) == (0.0, True, 1e-5)
    default = dpo_jax.TrainConfig()
    assert (default.entropy_coef, default.loss_mean_over_agents,
            default.adv_norm_eps) == (0.01, False, 1e-8)
    with pytest.raises(ValueError, match="adv_norm_eps"):
        dpo_jax.TrainConfig(adv_norm_eps=0.0)


def test_loss_mean_over_agents_divides_each_agents_gradient_by_n():
    """The authors' one backward pass of the agents' mean loss: the gradient equals
    ``jax.grad`` of the mean over agents of the losses written out by hand
    (``reference_agent_loss``), and without the option N times that."""
    from dpo_jax.core import agents as agents_lib
    from dpo_jax.core.objectives import objective_params
    from dpo_jax.training import trainer

    env = tiny_game()
    num = env.num_agents
    cfg = dpo_jax.TrainConfig(hidden_size=8, algo="dpo", loss_mean_over_agents=True)
    ag = agents_lib.make_agents(cfg, env)
    params = agents_lib.init_agents(ag, jax.random.key(0)).params
    rng = np.random.default_rng(0)
    b = 6
    obs = jnp.asarray(rng.normal(size=(b, num, env.obs_dim)), jnp.float32)
    avail = jnp.ones((b, num, env.mask_dim), bool)
    dist = agents_lib.policy_params(ag, params, obs, avail)
    action = jnp.asarray(rng.integers(0, env.action_spec.num_actions, (b, num)), jnp.int32)
    logp = jax.nn.log_softmax(dist + 0.3 * rng.normal(size=dist.shape))
    batch = trainer.Batch(
        obs=obs, avail=avail, action=action,
        log_prob=jnp.take_along_axis(logp, action[..., None], -1)[..., 0],
        dist_params=dist + 0.3 * jnp.asarray(rng.normal(size=dist.shape), jnp.float32),
        value=jnp.asarray(rng.normal(size=(b, num)), jnp.float32),
        advantage=jnp.asarray(rng.normal(size=(b, num)), jnp.float32),
        target=jnp.asarray(rng.normal(size=(b, num)), jnp.float32))
    obj = objective_params(cfg, num)
    betas = jnp.full((num,), 0.5)
    _, _, grads = trainer.loss_and_grads(ag, params, batch, betas, betas, obj, cfg)

    def mean_of_the_agents_losses(stacked):
        """The authors' one loss: the mean over agents of each agent's loss (written
        out by hand), differentiated once with respect to every agent's parameters."""
        losses = [reference_agent_loss(
            ag, jax.tree.map(lambda x: x[i], stacked), obs[:, i], avail[:, i], action[:, i],
            batch.dist_params[:, i], batch.log_prob[:, i], batch.advantage[:, i],
            batch.value[:, i], batch.target[:, i], betas[i], betas[i], cfg, num)[0]
            for i in range(num)]
        return sum(losses) / num

    want = jax.grad(mean_of_the_agents_losses)(params)
    for got, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-7)
    plain = trainer.loss_and_grads(ag, params, batch, betas, betas, obj,
                                   cfg.replace(loss_mean_over_agents=False))[2]
    for got, ref in zip(jax.tree.leaves(plain), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref) * num, rtol=1e-4, atol=1e-6)


def test_authors_options_train_end_to_end():
    env = tiny_game(never_reset=True)
    cfg = dpo_jax.preset("authors", "stochastic_game", total_timesteps=60, hidden_size=8)
    res = jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(0))
    assert bool(res.metrics["finite"].all())
    assert np.all(np.asarray(res.beta_kl) == np.asarray(res.beta_kl)[0])  # shared betas
