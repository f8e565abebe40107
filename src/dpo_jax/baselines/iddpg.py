"""Independent DDPG (IDDPG), the paper's baseline for continuous actions (Sec. 4.3).

Each agent has its own deterministic actor ``mu_i(o_i)`` and critic ``Q_i(o_i, a_i)``
(3-layer MLPs, Appendix B), target copies of both and its own Adam states (leaves
stacked on the agent axis 0, ``vmap`` over agents); it learns from its own
observations, actions and rewards only. The algorithm is DDPG as in TD3's
repository (``OurDDPG.py``, ``main.py``). One update of the single compiled scan:

1. ``num_steps`` steps of ``num_envs`` envs (auto-reset, episodes continue across
   updates): uniformly random actions during the first ``learning_starts``
   environment steps, then ``mu_i(o_i)`` plus Gaussian noise, clipped to the box;
2. the transitions ``(o, a, r, o', terminated)`` go to a uniform replay buffer
   (flashbax, on device); ``o'`` is the observation before any reset, so a
   truncated episode bootstraps from its final observation;
3. ``num_gradient_steps`` steps, each: the critic on
   ``y = r + gamma * (1 - terminated) * Q'_i(o', mu'_i(o'))``, then the actor on
   ``-Q_i(o, mu_i(o))`` with the updated critic, then Polyak averaging of both
   targets with rate ``tau``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dpo_jax.training import faults
from dpo_jax.baselines import common, replay
from dpo_jax.baselines.common import BaselineResult, ProgressFn, torch_default_init
from dpo_jax.baselines.config import IDDPGConfig
from dpo_jax.training.chunks import Trainer, chunked_trainer, emit_progress
from dpo_jax.envs.base import ContinuousActions, MultiAgentEnv, decode_obs, encode_obs
from dpo_jax.training.rollout import (
    EnvBatch,
    StepRecord,
    carry_episode_metrics,
    episode_stats,
    initial_episode_metrics,
    reset_envs,
    step_envs,
    step_reward,
    updates_to_steps,
)

Array = jax.Array


class MLP(nn.Module):
    """ReLU hidden layers then a linear head (PyTorch default initialisation)."""

    hidden_sizes: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size, kernel_init=torch_default_init)(x))
        return nn.Dense(self.out_dim, kernel_init=torch_default_init)(x)


class DeterministicActor(nn.Module):
    """``mu(o) = low + (tanh(MLP(o)) + 1) / 2 * (high - low)`` (TD3 ``OurDDPG.Actor``)."""

    action_spec: ContinuousActions
    hidden_sizes: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        spec = self.action_spec
        x = MLP(self.hidden_sizes, spec.action_dim)(obs)
        return spec.low + (jnp.tanh(x) + 1.0) / 2.0 * (spec.high - spec.low)


class QCritic(nn.Module):
    """``Q(o, a)``: an MLP on the concatenated observation and action (TD3
    ``OurDDPG.Critic``)."""

    hidden_sizes: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, obs: Array, action: Array) -> Array:
        return MLP(self.hidden_sizes, 1)(jnp.concatenate([obs, action], -1))[..., 0]


class Networks(NamedTuple):
    actor: DeterministicActor
    critic: QCritic
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation


class DDPGAgents(NamedTuple):
    """Per-agent state ``{"actor", "critic"}`` dicts, leaves stacked on axis 0."""

    params: dict[str, Any]
    target_params: dict[str, Any]
    opt_state: dict[str, Any]


class Transition(NamedTuple):
    """One step of one env, agents stacked."""

    obs: Array  # [N, obs_dim]
    action: Array  # [N, action_dim]
    reward: Array  # [N]
    next_obs: Array  # [N, obs_dim], before any reset
    terminated: Array  # [] bool


def critic_targets(reward: Array, terminated: Array, next_q: Array, gamma: float) -> Array:
    """``y = r + gamma * (1 - terminated) * Q'(o', mu'(o'))``: termination cuts the
    bootstrap, truncation keeps it (TD3 ``main.py`` stores ``done_bool = 0`` at the
    time limit)."""
    chex.assert_equal_shape([reward, terminated, next_q])
    return reward + gamma * jnp.where(terminated, 0.0, next_q)


def exploration_actions(key: Array, actions: Array, spec: ContinuousActions,
                        noise: float) -> Array:
    """``clip(a + N(0, (noise * (high - low) / 2)^2), low, high)`` (TD3 ``main.py``)."""
    std = noise * (spec.high - spec.low) / 2.0
    noisy = actions + std * jax.random.normal(key, actions.shape)
    return jnp.clip(noisy, spec.low, spec.high)


def critic_loss(critic_params: Any, target_params: dict[str, Any], batch: Transition,
                nets: Networks, gamma: float) -> tuple[Array, Array]:
    """One agent's mean squared TD error on ``batch`` (leaves ``[B, ...]``) and mean Q."""
    next_action = nets.actor.apply(target_params["actor"], batch.next_obs)
    next_q = nets.critic.apply(target_params["critic"], batch.next_obs, next_action)
    targets = jax.lax.stop_gradient(
        critic_targets(batch.reward, batch.terminated, next_q, gamma))
    q = nets.critic.apply(critic_params, batch.obs, batch.action)
    return jnp.mean((q - targets) ** 2), q.mean()


def actor_loss(actor_params: Any, critic_params: Any, obs: Array, nets: Networks) -> Array:
    """One agent's deterministic policy-gradient loss ``-mean Q(o, mu(o))``."""
    return -jnp.mean(nets.critic.apply(critic_params, obs, nets.actor.apply(actor_params, obs)))


def agent_gradient_step(params: dict, target_params: dict, opt_state: dict, batch: Transition,
                        nets: Networks, cfg: IDDPGConfig) -> tuple[tuple, dict[str, Array]]:
    """One agent: critic step, actor step against the updated critic, Polyak targets."""
    (c_loss, q_mean), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        params["critic"], target_params, batch, nets, cfg.gamma)
    c_updates, c_opt = nets.critic_tx.update(c_grads, opt_state["critic"], params["critic"])
    critic_params = optax.apply_updates(params["critic"], c_updates)
    a_loss, a_grads = jax.value_and_grad(actor_loss)(params["actor"], critic_params,
                                                     batch.obs, nets)
    a_updates, a_opt = nets.actor_tx.update(a_grads, opt_state["actor"], params["actor"])
    new_params = {"actor": optax.apply_updates(params["actor"], a_updates),
                  "critic": critic_params}
    new_targets = common.polyak_update(target_params, new_params, cfg.tau)
    stats = {"loss": c_loss, "actor_loss": a_loss, "q_mean": q_mean,
             "grad_norm": optax.tree.norm((a_grads, c_grads)),
             "critic_grad_norm": optax.tree.norm(c_grads),
             "actor_grad_norm": optax.tree.norm(a_grads)}
    return (new_params, new_targets, {"actor": a_opt, "critic": c_opt}), stats


# agent axis of each Transition leaf in a sampled batch [B, N, ...]
_AGENT_AXES = Transition(obs=1, action=1, reward=1, next_obs=1, terminated=None)


def gradient_step(agents: DDPGAgents, batch: Transition, nets: Networks, cfg: IDDPGConfig
                  ) -> tuple[DDPGAgents, dict[str, Array]]:
    """``agent_gradient_step`` for every agent on its own data (``vmap`` over agents)."""
    step = functools.partial(agent_gradient_step, nets=nets, cfg=cfg)
    (params, targets, opt_state), stats = jax.vmap(step, in_axes=(0, 0, 0, _AGENT_AXES))(
        agents.params, agents.target_params, agents.opt_state, batch)
    return DDPGAgents(params, targets, opt_state), stats


def policy_actions(nets: Networks, params: dict[str, Any], obs: Array) -> Array:
    """``mu_i(o_i)`` for all agents: ``obs [..., N, D]`` -> ``[..., N, action_dim]``."""
    return jax.vmap(nets.actor.apply, in_axes=(0, -2), out_axes=-2)(params["actor"], obs)


def eval_policy(cfg: IDDPGConfig, env: MultiAgentEnv, params: dict[str, Any],
                greedy: bool) -> tuple[Callable[..., tuple[Array, Any]], Array]:
    """One run's agents for evaluation episodes (``rollout.policy_episode`` with a
    carry, here unused): ``mu_i(o_i)``, or with training's exploration noise
    (``not greedy``)."""
    spec = env.action_spec
    nets = make_networks(cfg, spec)

    def act_fn(key: Array, obs: Array, avail: Array, carry: Array) -> tuple[Array, Array]:
        del avail
        action = policy_actions(nets, params, obs)
        if not greedy:
            action = exploration_actions(key, action, spec, cfg.exploration_noise)
        return action, carry

    return act_fn, jnp.zeros(())


def rollout(env: MultiAgentEnv, nets: Networks, params: dict[str, Any], env_batch: EnvBatch,
            key: Array, env_steps: Array, cfg: IDDPGConfig
            ) -> tuple[EnvBatch, Transition, StepRecord]:
    """``num_steps`` exploring steps of all envs; random actions while the environment
    step count is below ``learning_starts``."""
    num_envs, spec = cfg.num_envs, env.action_spec

    def one_step(batch: EnvBatch, inputs: tuple[Array, Array]) -> tuple[EnvBatch, tuple]:
        step_key, t = inputs
        noise_key, random_key, env_key = jax.random.split(step_key, 3)
        explore = exploration_actions(noise_key, policy_actions(nets, params, batch.obs),
                                      spec, cfg.exploration_noise)
        uniform = jax.vmap(env.random_actions)(jax.random.split(random_key, num_envs),
                                               batch.avail)
        warm_up = env_steps + (t * num_envs).astype(jnp.float32) < cfg.learning_starts
        action = jnp.where(warm_up, uniform, explore)
        new_batch, record = step_envs(env, batch, action, env_key)
        transition = Transition(batch.obs, action, record.reward, record.next_obs,
                                record.terminated)
        return new_batch, (transition, record)

    steps = (jax.random.split(key, cfg.num_steps), jnp.arange(cfg.num_steps))
    env_batch, (transitions, records) = jax.lax.scan(one_step, env_batch, steps)
    return env_batch, transitions, records


class IDDPGState(NamedTuple):
    """The carry of the outer scan."""

    agents: DDPGAgents
    buffer_state: Any
    env_batch: EnvBatch
    last_episode: dict[str, Array]
    finite: Array
    key: Array


def num_updates_iddpg(cfg: IDDPGConfig) -> int:
    """Updates an IDDPG run makes: ``total_timesteps // (num_envs * num_steps)``."""
    return cfg.total_timesteps // (cfg.num_envs * cfg.num_steps)


def make_networks(cfg: IDDPGConfig, spec: ContinuousActions) -> Networks:
    """Actor, critic and their Adam optimisers (Appendix B sizes and rates)."""
    hidden = (cfg.hidden_size,) * cfg.num_hidden_layers
    return Networks(DeterministicActor(spec, hidden), QCritic(hidden),
                    optax.adam(cfg.actor_lr, eps=cfg.adam_eps),
                    optax.adam(cfg.critic_lr, eps=cfg.adam_eps))


def empty_transition(env: MultiAgentEnv) -> Transition:
    """An all-zero ``Transition`` of ``env``: the replay buffer's item layout."""
    agents, spec = env.num_agents, env.action_spec
    return Transition(jnp.zeros((agents, env.obs_dim)), jnp.zeros((agents, spec.action_dim)),
                      jnp.zeros((agents,)), jnp.zeros((agents, env.obs_dim)),
                      jnp.zeros((), bool))


def replay_codec(env: MultiAgentEnv, cfg: IDDPGConfig
                 ) -> tuple[Callable[[Transition], Transition], Callable[[Transition], Transition]]:
    """``(store, load)``: what a ``Transition`` becomes in the replay buffer and back.

    With ``cfg.compact_replay`` and an env that has an ``observation_codec``
    (multi-agent MuJoCo), observations are stored once per distinct feature
    (``encode_obs``) and rebuilt exactly at sampling (``decode_obs``); otherwise
    both are the identity."""
    codec = env.observation_codec() if cfg.compact_replay else None
    if codec is None:
        return (lambda t: t), (lambda t: t)

    def store(t: Transition) -> Transition:
        return t._replace(obs=encode_obs(codec, t.obs), next_obs=encode_obs(codec, t.next_obs))

    def load(t: Transition) -> Transition:
        return t._replace(obs=decode_obs(codec, t.obs), next_obs=decode_obs(codec, t.next_obs))

    return store, load


def replay_bytes_per_transition(env: MultiAgentEnv, cfg: IDDPGConfig) -> int:
    """Bytes one stored transition takes in the replay buffer (from the shapes)."""
    stored = jax.eval_shape(replay_codec(env, cfg)[0], empty_transition(env))
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(stored))


def make_train_iddpg(cfg: IDDPGConfig, env: MultiAgentEnv,
                     progress: Optional[ProgressFn] = None) -> Callable[..., BaselineResult]:
    """Build ``train(key, obj=None, env=env) -> BaselineResult``, one pure function
    (``jit`` and ``vmap`` over keys as the PPO trainer's). ``progress`` is called
    with every update's metrics."""
    return make_trainer_iddpg(cfg, env, progress=progress).train


def make_trainer_iddpg(cfg: IDDPGConfig, env: MultiAgentEnv,
                       chunk_updates: Optional[int] = None,
                       progress: Optional[ProgressFn] = None) -> Trainer:
    """IDDPG as :class:`dpo_jax.training.chunks.Trainer` pieces (``chunk_updates`` per
    ``run`` call; the state holds the agents, the replay buffer, the envs and the
    key, so a checkpointed run resumes exactly)."""
    common.require_action_space(env, discrete=False, algo="IDDPG")
    spec = env.action_spec
    nets = make_networks(cfg, spec)
    buffer = replay.make_item_buffer(cfg.buffer_size, cfg.batch_size)
    steps_per_update = cfg.num_envs * cfg.num_steps
    empty = empty_transition(env)
    store, load = replay_codec(env, cfg)

    def init_agents(key: Array) -> DDPGAgents:
        def one(k: Array) -> DDPGAgents:
            actor_key, critic_key = jax.random.split(k)
            obs, action = empty.obs[0], empty.action[0]
            params = {"actor": nets.actor.init(actor_key, obs),
                      "critic": nets.critic.init(critic_key, obs, action)}
            opt = {"actor": nets.actor_tx.init(params["actor"]),
                   "critic": nets.critic_tx.init(params["critic"])}
            return DDPGAgents(params, params, opt)
        return jax.vmap(one)(jax.random.split(key, env.num_agents))

    def learn(agents: DDPGAgents, buffer_state: Any, ready: Array, key: Array
              ) -> tuple[DDPGAgents, dict, Array]:
        def one(agents: DDPGAgents, step_key: Array) -> tuple[DDPGAgents, dict]:
            batch = load(buffer.sample(buffer_state, step_key).experience)
            new, stats = gradient_step(agents, batch, nets, cfg)
            return common.keep_if(ready, new, agents), stats

        agents, stats = jax.lax.scan(one, agents, jax.random.split(key, cfg.num_gradient_steps))
        finite = ~ready | faults.all_finite(stats)
        return agents, {k: jnp.where(ready, v.mean(0), jnp.nan) for k, v in stats.items()}, finite

    def update(state: IDDPGState, update_idx: Array, obj: None, env: MultiAgentEnv
               ) -> tuple[IDDPGState, dict]:
        key, rollout_key, learn_key = jax.random.split(state.key, 3)
        env_steps = updates_to_steps(update_idx, steps_per_update)
        env_batch, transitions, records = rollout(env, nets, state.agents.params,
                                                  state.env_batch, rollout_key, env_steps, cfg)
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), transitions)
        buffer_state = buffer.add(state.buffer_state, store(flat))
        env_steps = updates_to_steps(update_idx + 1, steps_per_update)
        ready = buffer.can_sample(buffer_state) & (env_steps >= cfg.learning_starts)
        agents, stats, finite = learn(state.agents, buffer_state, ready, learn_key)
        fault = faults.fault_code(True, records.reward, records.next_obs, finite)
        agents, finite = faults.guard(fault, state.finite, agents, state.agents,
                                      cfg.nan_policy)
        episode, last_episode = carry_episode_metrics(episode_stats(records),
                                                      state.last_episode)
        metrics = {**episode, **stats, "env_steps": env_steps,
                   "update_steps": jnp.asarray(steps_per_update, jnp.int32),
                   "step_reward": step_reward(records), "update": update_idx,
                   "finite": finite, "fault": fault, "learning": ready}
        emit_progress(progress, metrics)
        return IDDPGState(agents, buffer_state, env_batch, last_episode, finite, key), metrics

    def init(key: Array, obj: Optional[object] = None, env: MultiAgentEnv = env
             ) -> IDDPGState:
        common.require_no_objective(obj, "IDDPG")
        init_key, env_key, run_key = jax.random.split(key, 3)
        return IDDPGState(init_agents(init_key), buffer.init(store(empty)),
                          reset_envs(env, env_key, cfg.num_envs),
                          initial_episode_metrics(env), jnp.array(True), run_key)

    return chunked_trainer(init, update, num_updates_iddpg(cfg), chunk_updates,
                           common.baseline_result, env,
                           prepare_obj=lambda obj: common.require_no_objective(obj, "IDDPG"))
