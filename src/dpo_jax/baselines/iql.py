"""Independent Q-learning (IQL) with recurrent agents: PyMARL's IQL, individual parameters.

Each agent has its own GRU Q-network (PyMARL ``RNNAgent``) on its own observation
history, its own target network and its own RMSprop state (leaves stacked on the
agent axis 0, ``vmap`` over agents). One update of the single compiled scan:

1. collect ``num_envs`` whole episodes with epsilon-greedy agents
   (``collect_episodes``): every env is reset and stepped ``env.max_steps`` times;
   an episode that ends earlier (terminated, or truncated by a shorter limit) is
   frozen and the remaining steps are padding, marked invalid and left out of the
   loss, the statistics and ``env_steps`` (PyMARL's ``filled`` mask);
2. add them to the episode replay buffer (flashbax, on device);
3. ``num_gradient_steps`` steps of the masked TD loss on batches of 32 episodes
   (``td_targets``, ``masked_td_loss``), each agent on its own loss;
4. copy the online parameters to the targets every ``target_update_period`` updates;
5. (``greedy_eval``) play ``num_envs`` greedy episodes for ``greedy_return``.

Episodes are stored with ``max_steps + 1`` observations (PyMARL's
``episode_limit + 1``): the observation after the last step is kept, so a
truncated episode bootstraps from it while a terminated one does not.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dpo_jax.training import faults
from dpo_jax.baselines import common, replay
from dpo_jax.baselines.common import BaselineResult, ProgressFn, torch_default_init
from dpo_jax.baselines.config import IQLConfig
from dpo_jax.training.chunks import Trainer, chunked_trainer, emit_progress
from dpo_jax.baselines.replay import Episodes
from dpo_jax.envs.base import MultiAgentEnv
from dpo_jax.training.rollout import (
    StepCount,
    StepRecord,
    add_steps,
    carry_episode_metrics,
    episode_stats,
    initial_episode_metrics,
    steps_as_float,
    zero_steps,
)

Array = jax.Array


class RNNQNetwork(nn.Module):
    """PyMARL's ``RNNAgent``: fc -> ReLU -> GRUCell -> fc to one Q-value per action."""

    num_actions: int
    hidden_size: int = 128

    @nn.compact
    def __call__(self, hidden: Array, inputs: Array) -> tuple[Array, Array]:
        """One step: ``hidden [..., H]``, ``inputs [..., D]`` -> ``(hidden, q [..., A])``."""
        x = nn.relu(nn.Dense(self.hidden_size, kernel_init=torch_default_init)(inputs))
        hidden, _ = nn.GRUCell(self.hidden_size, kernel_init=torch_default_init,
                               recurrent_kernel_init=torch_default_init)(hidden, x)
        return hidden, nn.Dense(self.num_actions, kernel_init=torch_default_init)(hidden)


class QAgents(NamedTuple):
    """Per-agent state, leaves stacked on axis 0."""

    params: Any
    target_params: Any
    opt_state: Any


def epsilon_schedule(env_steps: Array, cfg: IQLConfig) -> Array:
    """PyMARL's linear ``DecayThenFlatSchedule``:
    ``max(finish, start - (start - finish) * t / anneal_time)``."""
    slope = (cfg.epsilon_start - cfg.epsilon_finish) / cfg.epsilon_anneal_time
    return jnp.maximum(cfg.epsilon_finish, cfg.epsilon_start - slope * env_steps)


def epsilon_greedy(key: Array, q: Array, avail: Array, epsilon: Array) -> Array:
    """With probability ``epsilon`` a uniformly random available action, else the
    available action of highest Q (PyMARL ``EpsilonGreedyActionSelector``).
    ``q, avail [..., A]`` -> actions ``[...]`` int32."""
    chex.assert_equal_shape([q, avail])
    explore_key, pick_key = jax.random.split(key)
    greedy = jnp.argmax(jnp.where(avail, q, -jnp.inf), axis=-1)
    uniform = jax.random.categorical(pick_key, jnp.where(avail, 0.0, -jnp.inf), axis=-1)
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, uniform, greedy).astype(jnp.int32)


def td_targets(reward: Array, terminated: Array, next_q_target: Array, next_avail: Array,
               gamma: float, next_q_online: Optional[Array] = None) -> Array:
    """One-step targets ``r + gamma * (1 - terminated) * Q_target(o', a')`` (PyMARL
    ``q_learner.py``), ``a'`` the best *available* next action: of the target network
    (``double_q=False``) or of the online one (``next_q_online`` given, double Q).
    Truncation is not termination: it bootstraps. A next step with no available
    action contributes 0 (PyMARL would use its -9999999 mask value).

    Shapes: ``reward, terminated [..., T]``, ``next_q_* , next_avail [..., T, A]``.
    """
    chex.assert_equal_shape([next_q_target, next_avail])
    chex.assert_equal_shape([reward, terminated, next_q_target[..., 0]])
    selector = next_q_target if next_q_online is None else next_q_online
    best = jnp.argmax(jnp.where(next_avail, selector, -jnp.inf), axis=-1)
    next_value = jnp.take_along_axis(next_q_target, best[..., None], axis=-1)[..., 0]
    next_value = jnp.where(next_avail.any(-1) & ~terminated, next_value, 0.0)
    return reward + gamma * next_value


def masked_td_loss(q_taken: Array, targets: Array, valid: Array) -> tuple[Array, Array]:
    """Mean squared TD error over the valid steps (PyMARL: ``(masked_td_error ** 2).sum()
    / mask.sum()``) and the mean absolute TD error; targets are not differentiated."""
    chex.assert_equal_shape([q_taken, targets, valid])
    td = jnp.where(valid, q_taken - jax.lax.stop_gradient(targets), 0.0)
    count = jnp.maximum(valid.sum(), 1)
    return (td**2).sum() / count, jnp.abs(td).sum() / count


def agent_inputs(obs: Array, last_action: Array, obs_last_action: bool) -> Array:
    """The network input: the observation, then the previous action one-hot if used."""
    return jnp.concatenate([obs, last_action], -1) if obs_last_action else obs


def act(net: RNNQNetwork, params: Any, hidden: Array, inputs: Array) -> tuple[Array, Array]:
    """All agents at once: ``hidden [..., N, H]``, ``inputs [..., N, D]`` -> new hidden
    and ``q [..., N, A]``, agent i with parameters i."""
    return jax.vmap(net.apply, in_axes=(0, -2, -2), out_axes=(-2, -2))(params, hidden, inputs)


def collect_episodes(env: MultiAgentEnv, net: RNNQNetwork, params: Any, key: Array,
                     num_envs: int, epsilon: Array, cfg: IQLConfig
                     ) -> tuple[Episodes, StepRecord]:
    """One epsilon-greedy episode per env (``replay.collect_episodes``); each agent's
    hidden state starts at zero and its previous action at the zero vector."""
    num_actions = net.num_actions

    def epsilon_greedy_agents(carry: tuple, obs: Array, avail: Array, act_key: Array
                              ) -> tuple[tuple, Array]:
        hidden, last_action = carry
        hidden, q = act(net, params, hidden, agent_inputs(obs, last_action, cfg.obs_last_action))
        action = epsilon_greedy(act_key, q, avail, epsilon)
        return (hidden, jax.nn.one_hot(action, num_actions)), action

    shape = (num_envs, env.num_agents)
    start = (jnp.zeros(shape + (cfg.hidden_size,)), jnp.zeros(shape + (num_actions,)))
    return replay.collect_episodes(env, epsilon_greedy_agents, start, key, num_envs)


def unroll(net: RNNQNetwork, params: Any, inputs: Array, hidden_size: int) -> Array:
    """Q-values of one agent along episodes from a zero hidden state:
    ``inputs [B, T+1, D]`` -> ``[B, T+1, A]``."""
    hidden = jnp.zeros((inputs.shape[0], hidden_size))
    _, q = jax.lax.scan(lambda h, x: net.apply(params, h, x), hidden, jnp.swapaxes(inputs, 0, 1))
    return jnp.swapaxes(q, 0, 1)


def agent_loss(params: Any, target_params: Any, ep: Episodes, net: RNNQNetwork,
               cfg: IQLConfig) -> tuple[Array, dict[str, Array]]:
    """One agent's masked TD loss on a batch of its episodes (leaves ``[B, T(+1), ...]``,
    no agent axis) and diagnostics."""
    last = jax.nn.one_hot(ep.action, net.num_actions)
    last = jnp.concatenate([jnp.zeros_like(last[:, :1]), last], axis=1)  # zeros at t=0
    inputs = agent_inputs(ep.obs, last, cfg.obs_last_action)
    q = unroll(net, params, inputs, cfg.hidden_size)
    q_target = jax.lax.stop_gradient(unroll(net, target_params, inputs, cfg.hidden_size))
    q_taken = jnp.take_along_axis(q[:, :-1], ep.action[..., None], axis=-1)[..., 0]
    online_next = jax.lax.stop_gradient(q[:, 1:]) if cfg.double_q else None
    targets = td_targets(ep.reward, ep.terminated, q_target[:, 1:], ep.avail[:, 1:],
                         cfg.gamma, online_next)
    loss, td_abs = masked_td_loss(q_taken, targets, ep.valid)
    q_mean = jnp.where(ep.valid, q_taken, 0.0).sum() / jnp.maximum(ep.valid.sum(), 1)
    return loss, {"td_error_abs": td_abs, "q_mean": q_mean}


# agent axis of each Episodes leaf in a sampled batch [B, T(+1), N, ...]
_AGENT_AXES = Episodes(obs=2, avail=2, action=2, reward=2, terminated=None, valid=None)


def gradient_step(agents: QAgents, batch: Episodes, net: RNNQNetwork,
                  tx: optax.GradientTransformation, cfg: IQLConfig
                  ) -> tuple[QAgents, dict[str, Array]]:
    """One RMSprop step of every agent on its own loss (``vmap`` over agents)."""
    grad_fn = jax.value_and_grad(functools.partial(agent_loss, net=net, cfg=cfg), has_aux=True)
    (loss, aux), grads = jax.vmap(grad_fn, in_axes=(0, 0, _AGENT_AXES))(
        agents.params, agents.target_params, batch)
    updates, opt_state = jax.vmap(tx.update)(grads, agents.opt_state, agents.params)
    params = optax.apply_updates(agents.params, updates)
    stats = {"loss": loss, **aux, "grad_norm": jax.vmap(optax.tree.norm)(grads)}
    return QAgents(params, agents.target_params, opt_state), stats


def greedy_probs(net: RNNQNetwork, params: Any, obs: Array, cfg: IQLConfig) -> Array:
    """One-hot greedy policy ``[B, N, A]`` for observations ``[B, N, D]``, evaluated
    from a zero hidden state and no previous action, i.e. as at an episode's first
    step. It approximates the recurrent policy by a memoryless one, exact only where
    the network ignores its hidden state and previous action. The environments'
    exact metrics (``exact_return``, ``optimality_ratio``) are of this memoryless
    proxy, not of the policy IQL plays; ``greedy_return`` plays the recurrent greedy
    policy itself, and job summaries lead with its J/J* (``jobs.MEMORYLESS_PROXY``).
    The two can differ widely: on the paper-size game (``--preset paper``, 1M steps)
    the proxy's J/J* was 0.14 where the greedy episodes gave 0.56
    (``benchmarks/results/long_runs.json``)."""
    zeros = jnp.zeros(obs.shape[:-1] + (cfg.hidden_size,))
    last = jnp.zeros(obs.shape[:-1] + (net.num_actions,))
    _, q = act(net, params, zeros, agent_inputs(obs, last, cfg.obs_last_action))
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), net.num_actions)


def eval_policy(cfg: IQLConfig, env: MultiAgentEnv, params: Any, greedy: bool
                ) -> tuple[Callable[..., tuple[Array, Any]], tuple[Array, Array]]:
    """One run's agents for evaluation episodes (``rollout.policy_episode`` with a
    carry): ``act(key, obs [N, D], avail [N, A], (hidden, last_action))``; the
    greedy available action, or epsilon-greedy at the schedule's final epsilon
    (``not greedy``). Hidden state and previous action start at zero, as in
    training."""
    num_actions = env.action_spec.num_actions
    net = RNNQNetwork(num_actions, cfg.hidden_size)
    epsilon = jnp.float32(0.0 if greedy else cfg.epsilon_finish)

    def act_fn(key: Array, obs: Array, avail: Array, carry: tuple[Array, Array]
               ) -> tuple[Array, tuple[Array, Array]]:
        hidden, last_action = carry
        hidden, q = act(net, params, hidden, agent_inputs(obs, last_action, cfg.obs_last_action))
        action = epsilon_greedy(key, q, avail, epsilon)
        return action, (hidden, jax.nn.one_hot(action, num_actions))

    start = (jnp.zeros((env.num_agents, cfg.hidden_size)),
             jnp.zeros((env.num_agents, num_actions)))
    return act_fn, start


class IQLState(NamedTuple):
    """The carry of the outer scan."""

    agents: QAgents
    buffer_state: Any
    env_steps: StepCount  # valid environment steps so far, exact past 2**31
    last_episode: dict[str, Array]
    finite: Array
    key: Array


def num_updates_iql(cfg: IQLConfig, env: MultiAgentEnv) -> int:
    """Updates an IQL run makes: ``total_timesteps // (num_envs * env.max_steps)``."""
    return cfg.total_timesteps // (cfg.num_envs * env.max_steps)


def make_train_iql(cfg: IQLConfig, env: MultiAgentEnv, progress: Optional[ProgressFn] = None
                   ) -> Callable[..., BaselineResult]:
    """Build ``train(key, obj=None, env=env) -> BaselineResult``, one pure function
    (``jit`` and ``vmap`` over keys as the PPO trainer's; pass large pytree envs
    as the argument). ``progress`` is called with every update's metrics."""
    return make_trainer_iql(cfg, env, progress=progress).train


def make_trainer_iql(cfg: IQLConfig, env: MultiAgentEnv, chunk_updates: Optional[int] = None,
                     progress: Optional[ProgressFn] = None) -> Trainer:
    """IQL as :class:`dpo_jax.training.chunks.Trainer` pieces (``chunk_updates`` per ``run``
    call; the state holds the agents, the replay buffer, the step count and the
    key, so a checkpointed run resumes exactly)."""
    common.require_action_space(env, discrete=True, algo="IQL")
    n_updates = num_updates_iql(cfg, env)
    if n_updates < 1:
        raise ValueError(f"IQLConfig.total_timesteps={cfg.total_timesteps} is smaller than "
                         f"one update: num_envs * env.max_steps = {cfg.num_envs * env.max_steps}")
    num_actions = env.action_spec.num_actions
    net = RNNQNetwork(num_actions, cfg.hidden_size)
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_norm_clip),
                     optax.rmsprop(cfg.lr, decay=cfg.optim_alpha, eps=cfg.optim_eps,
                                   eps_in_sqrt=False))
    buffer = replay.make_item_buffer(cfg.buffer_size, cfg.batch_size)
    input_dim = env.obs_dim + (num_actions if cfg.obs_last_action else 0)

    def init_agents(key: Array) -> QAgents:
        def one(k: Array) -> QAgents:
            params = net.init(k, jnp.zeros((cfg.hidden_size,)), jnp.zeros((input_dim,)))
            return QAgents(params, params, tx.init(params))
        return jax.vmap(one)(jax.random.split(key, env.num_agents))

    def learn(agents: QAgents, buffer_state: Any, key: Array) -> tuple[QAgents, dict, Array]:
        ready = buffer.can_sample(buffer_state)

        def one(agents: QAgents, step_key: Array) -> tuple[QAgents, dict]:
            batch = buffer.sample(buffer_state, step_key).experience
            new, stats = gradient_step(agents, batch, net, tx, cfg)
            return common.keep_if(ready, new, agents), stats

        agents, stats = jax.lax.scan(one, agents, jax.random.split(key, cfg.num_gradient_steps))
        finite = ~ready | faults.all_finite(stats)
        stats = {k: jnp.where(ready, v.mean(0), jnp.nan) for k, v in stats.items()}
        return agents, stats, finite

    def greedy_return(env: MultiAgentEnv, params: Any, key: Array) -> dict[str, Array]:
        if not cfg.greedy_eval:
            return {}
        _, records = collect_episodes(env, net, params, key, cfg.num_envs, jnp.float32(0.0), cfg)
        return {"greedy_return": episode_stats(records)["episode_return"]}

    def update(state: IQLState, update_idx: Array, obj: None, env: MultiAgentEnv
               ) -> tuple[IQLState, dict]:
        key, collect_key, learn_key, eval_key = jax.random.split(state.key, 4)
        epsilon = epsilon_schedule(steps_as_float(state.env_steps), cfg)
        episodes, records = collect_episodes(env, net, state.agents.params, collect_key,
                                             cfg.num_envs, epsilon, cfg)
        buffer_state = buffer.add(state.buffer_state, episodes)
        agents, stats, finite = learn(state.agents, buffer_state, learn_key)
        copy = (update_idx + 1) % cfg.target_update_period == 0
        agents = agents._replace(
            target_params=common.hard_target_update(agents.target_params, agents.params, copy))
        fault = faults.fault_code(True, records.reward, records.next_obs, finite)
        agents, finite = faults.guard(fault, state.finite, agents, state.agents,
                                      cfg.nan_policy)
        update_steps = episodes.valid.sum().astype(jnp.int32)
        env_steps = add_steps(state.env_steps, update_steps)
        episode, last_episode = carry_episode_metrics(episode_stats(records),
                                                      state.last_episode)
        metrics = {**episode, **stats, "epsilon": epsilon, "target_updated": copy,
                   "env_steps": steps_as_float(env_steps), "update_steps": update_steps,
                   "update": update_idx, "finite": finite, "fault": fault,
                   **greedy_return(env, agents.params, eval_key),
                   **env.policy_metrics(lambda obs: greedy_probs(net, agents.params, obs, cfg))}
        emit_progress(progress, metrics)
        return IQLState(agents, buffer_state, env_steps, last_episode, finite, key), metrics

    def init(key: Array, obj: Optional[object] = None, env: MultiAgentEnv = env
             ) -> IQLState:
        common.require_no_objective(obj, "IQL")
        init_key, run_key = jax.random.split(key)
        agents = init_agents(init_key)
        return IQLState(agents, buffer.init(replay.empty_episode(env)),
                        zero_steps(), initial_episode_metrics(env), jnp.array(True),
                        run_key)

    return chunked_trainer(init, update, n_updates, chunk_updates, common.baseline_result,
                           env, prepare_obj=lambda obj: common.require_no_objective(obj, "IQL"))
