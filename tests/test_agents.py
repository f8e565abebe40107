"""N independent agents stacked on axis 0: no information flows between agents
through gradients, gradient clipping or Adam; shared parameters have no agent axis."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpo_jax.core import agents as agents_lib
from dpo_jax.training import trainer as train_lib
from dpo_jax.config import TrainConfig
from dpo_jax.envs.base import DiscreteActions
from dpo_jax.core.networks import distribution
from dpo_jax.core.objectives import objective_params

NUM_AGENTS, OBS_DIM, NUM_ACTIONS, BATCH = 3, 4, 3, 16


class _Stub:
    """Just enough of an env for make_agents."""

    num_agents = NUM_AGENTS
    obs_dim = OBS_DIM
    action_spec = DiscreteActions(NUM_ACTIONS)
    mask_dim = NUM_ACTIONS


MAX_GRAD_NORM = 5.0


@functools.lru_cache(maxsize=None)
def _setup(share_params=False):
    # squared-error value loss: the clipping test needs critic gradients that grow
    # with the targets (a Huber loss caps them)
    cfg = TrainConfig(hidden_size=16, num_hidden_layers=1, hidden_layer_norm=False,
                      share_params=share_params, max_grad_norm=MAX_GRAD_NORM,
                      huber_delta=None)
    agents = agents_lib.make_agents(cfg, _Stub())
    state = jax.jit(lambda k: agents_lib.init_agents(agents, k))(jax.random.key(0))
    obj = objective_params(cfg, NUM_AGENTS)

    @jax.jit
    def step_fn(state, batch, beta_sqrt, beta_kl):
        """loss_and_grads then one optimiser step: (new state, losses, grads)."""
        loss, _, grads = train_lib.loss_and_grads(
            agents, state.params, batch, beta_sqrt, beta_kl, obj, cfg)
        return agents_lib.apply_gradients(agents, state, grads, obj), loss, grads

    # the reference: one agent's loss alone, no vmap over agents
    one_agent = jax.jit(jax.value_and_grad(
        lambda p, b, bs, bk: train_lib.agent_loss(p, b, bs, bk, obj, agents, cfg)[0]))
    return cfg, agents, state, step_fn, one_agent


@functools.lru_cache(maxsize=None)
def _batch(share_params=False, seed=1):
    """A batch ``[B, N, ...]`` sampled from the initial policies."""
    _, agents, state, *_ = _setup(share_params)

    @jax.jit
    def make(key):
        k_obs, k_act, k_adv, k_noise = jax.random.split(key, 4)
        obs = jax.random.normal(k_obs, (BATCH, NUM_AGENTS, OBS_DIM))
        avail = jnp.ones((BATCH, NUM_AGENTS, NUM_ACTIONS), bool)
        # the behaviour policy differs from the current one (as after a first
        # gradient step): KL > 0, away from the sqrt's steep point at 0
        dist_params = agents_lib.policy_params(agents, state.params, obs, avail)
        dist_params = dist_params + 0.5 * jax.random.normal(k_noise, dist_params.shape)
        action, log_prob = distribution(dist_params, agents.action_spec).sample_and_log_prob(
            seed=k_act)
        value = agents_lib.values(agents, state.params, obs)
        adv = jax.random.normal(k_adv, (BATCH, NUM_AGENTS))
        return train_lib.Batch(obs, avail, action, log_prob, dist_params, value, adv,
                               value + adv)

    return make(jax.random.key(seed))


def _agent(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _trees_differ(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _change_agent(batch, i, adv_scale=1.0, obs_shift=0.0):
    return batch._replace(
        advantage=batch.advantage.at[:, i].multiply(adv_scale).at[:, i].add(1.0),
        target=batch.target.at[:, i].add(3.0),
        obs=batch.obs.at[:, i].add(obs_shift),
    )


BETAS = (jnp.full((NUM_AGENTS,), 0.5), jnp.full((NUM_AGENTS,), 2.0))


def test_init_gives_each_agent_its_own_parameters():
    _, agents, state, *_ = _setup()
    for leaf in jax.tree.leaves(state):
        assert leaf.shape[0] == NUM_AGENTS
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
               if "kernel" in jax.tree_util.keystr(path)]
    assert kernels
    for kernel in kernels:
        for i in range(NUM_AGENTS):
            for j in range(i + 1, NUM_AGENTS):
                assert not np.allclose(kernel[i], kernel[j])
    # different parameters, same observation: different policies
    obs = jnp.broadcast_to(jnp.arange(OBS_DIM, dtype=jnp.float32), (1, NUM_AGENTS, OBS_DIM))
    avail = jnp.ones((1, NUM_AGENTS, NUM_ACTIONS), bool)
    logits = agents_lib.policy_params(agents, state.params, obs, avail)
    assert not np.allclose(logits[0, 0], logits[0, 1], atol=0, rtol=1e-3)


def test_shared_params_have_no_agent_axis():
    _, agents, state, *_ = _setup(share_params=True)
    single = jax.eval_shape(agents.actor.init, jax.random.key(0), jnp.zeros(OBS_DIM),
                            jnp.ones(NUM_ACTIONS, bool))
    shapes = jax.tree.map(lambda x: x.shape, state.params["actor"])
    assert shapes == jax.tree.map(lambda x: x.shape, single)
    obs = jnp.broadcast_to(jnp.arange(OBS_DIM, dtype=jnp.float32), (2, NUM_AGENTS, OBS_DIM))
    avail = jnp.ones((2, NUM_AGENTS, NUM_ACTIONS), bool)
    logits = agents_lib.policy_params(agents, state.params, obs, avail)
    assert logits.shape == (2, NUM_AGENTS, NUM_ACTIONS)
    np.testing.assert_array_equal(logits[:, 0], logits[:, 1])  # same net, same obs
    values = agents_lib.values(agents, state.params, obs)
    assert values.shape == (2, NUM_AGENTS)


@pytest.mark.parametrize("changed", [0, 2])
def test_gradients_of_one_agent_ignore_the_others_data(changed):
    _, _, state, step_fn, _ = _setup()
    batch = _batch()
    other = _change_agent(batch, changed, adv_scale=-3.0, obs_shift=0.7)
    new_a, loss_a, grads_a = step_fn(state, batch, *BETAS)
    new_b, loss_b, grads_b = step_fn(state, other, *BETAS)
    for j in range(NUM_AGENTS):
        if j == changed:
            assert _trees_differ(_agent(grads_a, j), _agent(grads_b, j))
            assert loss_a[j] != loss_b[j]
            assert _trees_differ(_agent(new_a, j), _agent(new_b, j))
        else:
            _assert_trees_equal(_agent(grads_a, j), _agent(grads_b, j))
            assert loss_a[j] == loss_b[j]
            _assert_trees_equal(_agent(new_a, j), _agent(new_b, j))


def test_zeroing_one_agents_advantages_changes_only_its_update():
    _, _, state, step_fn, _ = _setup()
    batch = _batch()
    zeroed = batch._replace(advantage=batch.advantage.at[:, 1].set(0.0))
    new_a, *_ = step_fn(state, batch, *BETAS)
    new_b, *_ = step_fn(state, zeroed, *BETAS)
    assert _trees_differ(_agent(new_a.params, 1)["actor"], _agent(new_b.params, 1)["actor"])
    for j in (0, 2):
        _assert_trees_equal(_agent(new_a, j), _agent(new_b, j))  # params and Adam state
    # and the update did move every agent
    for j in range(NUM_AGENTS):
        assert _trees_differ(_agent(new_a.params, j), _agent(state.params, j))


def test_vmapped_gradients_equal_a_python_loop_over_agents():
    _, _, state, step_fn, one_agent = _setup()
    batch = _batch()
    _, loss, grads = step_fn(state, batch, *BETAS)
    for i in range(NUM_AGENTS):
        batch_i = jax.tree.map(lambda x: x[:, i], batch)
        loss_i, grads_i = one_agent(_agent(state.params, i), batch_i, BETAS[0][i], BETAS[1][i])
        np.testing.assert_allclose(loss[i], loss_i, rtol=1e-5)
        for x, y in zip(jax.tree.leaves(_agent(grads, i)), jax.tree.leaves(grads_i)):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_shared_params_gradient_is_the_mean_of_the_agents_gradients():
    _, _, state, step_fn, _ = _setup(share_params=True)
    one_agent = _setup()[4]  # agent_loss does not depend on the sharing
    batch = _batch(share_params=True)
    _, _, grads = step_fn(state, batch, *BETAS)
    per_agent = [one_agent(state.params, jax.tree.map(lambda x: x[:, i], batch),
                           BETAS[0][i], BETAS[1][i])[1] for i in range(NUM_AGENTS)]
    mean = jax.tree.map(lambda *g: sum(g) / NUM_AGENTS, *per_agent)
    for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(mean)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def _global_norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64)))
                             for x in jax.tree.leaves(tree))))


def test_gradient_clipping_is_per_agent_and_per_network():
    max_norm = MAX_GRAD_NORM
    cfg, _, state, step_fn, _ = _setup()
    batch = _batch()
    huge = batch._replace(  # agent 0: huge advantages and value targets
        advantage=batch.advantage.at[:, 0].multiply(1e4),
        target=batch.target.at[:, 0].multiply(1e4),
    )
    new_normal, _, _ = step_fn(state, batch, *BETAS)
    new_huge, _, grads_huge = step_fn(state, huge, *BETAS)
    for part in ("actor", "critic"):
        assert _global_norm(_agent(grads_huge, 0)[part]) > 100 * max_norm
        for j in (1, 2):
            assert _global_norm(_agent(grads_huge, j)[part]) < max_norm
    # the other agents' updates do not shrink: bitwise the same as without agent 0's
    # huge gradients (a global clip over all agents would scale them down 100x)
    for j in (1, 2):
        _assert_trees_equal(_agent(new_huge, j), _agent(new_normal, j))

    # numpy reference of the first Adam step after clipping each agent's network
    # by its own global norm: update = -lr * g_c / (|g_c| + eps)
    for j in range(NUM_AGENTS):
        for part, lr in (("actor", cfg.actor_lr), ("critic", cfg.critic_lr)):
            g = jax.tree.map(lambda x: np.asarray(x, np.float64), _agent(grads_huge, j)[part])
            scale = min(1.0, max_norm / _global_norm(g))
            old = _agent(state.params, j)[part]
            new = _agent(new_huge.params, j)[part]
            for g_leaf, o, n in zip(jax.tree.leaves(g), jax.tree.leaves(old),
                                    jax.tree.leaves(new)):
                gc = g_leaf * scale
                expected = -lr * gc / (np.abs(gc) + cfg.adam_eps)
                np.testing.assert_allclose(np.asarray(n, np.float64) - np.asarray(o),
                                           expected, atol=2e-7, rtol=1e-3)
