"""N independent agents as one pytree stacked on axis 0: init, apply and update via vmap.

With ``share_params=False`` (the paper's fully decentralized setting) every leaf of
the parameters and optimiser states has a leading axis of length N; agent i's
actor and critic see only agent i's observations, and gradients, gradient
clipping and Adam moments are computed per agent (``vmap`` over the agent axis),
so agent i's loss can never move agent j's parameters.

With ``share_params=True`` (JaxMARL-style IPPO, for comparison) there is one
parameter set, applied to every agent with ``vmap(in_axes=None)``, trained on the
mean of the agents' losses.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from dpo_jax.config import TrainConfig
from dpo_jax.envs.base import ActionSpec, MultiAgentEnv
from dpo_jax.core.networks import Actor, Critic

Array = jax.Array
Params = dict[str, Any]


class AgentState(NamedTuple):
    """Parameters ``{"actor", "critic"}`` and their optimiser states."""

    params: Params
    opt_state: Params


@dataclasses.dataclass(frozen=True)
class Agents:
    """Static description of the agents: networks, optimisers, sharing."""

    actor: Actor
    critic: Critic
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    num_agents: int
    obs_dim: int
    mask_dim: int
    action_spec: ActionSpec
    share_params: bool

    @property
    def param_axis(self) -> int | None:
        """``in_axes`` of the parameters when applying all agents."""
        return None if self.share_params else 0


def learning_rate(lr: float, cfg: TrainConfig, num_updates: int) -> optax.ScalarOrSchedule:
    """``lr``, or with ``cfg.anneal_lr`` the schedule ``lr * (1 - k / num_updates)``
    during update k (0-based), constant within an update (JaxMARL/PureJaxRL's
    linear annealing; the optimiser steps ``num_epochs * num_minibatches`` times
    per update)."""
    if not cfg.anneal_lr:
        return lr
    steps_per_update = cfg.num_epochs * cfg.num_minibatches

    def schedule(count: Array) -> Array:
        return lr * (1.0 - (count // steps_per_update) / num_updates)

    return schedule


def _optimizer(lr: optax.ScalarOrSchedule, cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr, eps=cfg.adam_eps)
    )


def make_agents(cfg: TrainConfig, env: MultiAgentEnv, num_updates: int = 1) -> Agents:
    """Networks and optimisers for ``env``'s agents under ``cfg``; ``num_updates``
    (the run's length) sets the learning-rate schedule when ``cfg.anneal_lr``."""
    hidden = (cfg.hidden_size,) * cfg.num_hidden_layers
    torso = dict(activation=cfg.activation, input_layer_norm=cfg.input_layer_norm)
    return Agents(
        actor=Actor(env.action_spec, hidden, cfg.hidden_layer_norm, cfg.init_log_std,
                    **torso),
        critic=Critic(hidden, cfg.hidden_layer_norm, **torso),
        actor_tx=_optimizer(learning_rate(cfg.actor_lr, cfg, num_updates), cfg),
        critic_tx=_optimizer(learning_rate(cfg.critic_lr, cfg, num_updates), cfg),
        num_agents=env.num_agents,
        obs_dim=env.obs_dim,
        mask_dim=env.mask_dim,
        action_spec=env.action_spec,
        share_params=cfg.share_params,
    )


def _init_one(agents: Agents, key: Array) -> AgentState:
    actor_key, critic_key = jax.random.split(key)
    obs = jnp.zeros((agents.obs_dim,), jnp.float32)
    avail = jnp.ones((agents.mask_dim,), bool)
    params = {
        "actor": agents.actor.init(actor_key, obs, avail),
        "critic": agents.critic.init(critic_key, obs),
    }
    opt_state = {
        "actor": agents.actor_tx.init(params["actor"]),
        "critic": agents.critic_tx.init(params["critic"]),
    }
    return AgentState(params, opt_state)


def init_agents(agents: Agents, key: Array) -> AgentState:
    """Initialise N independent agents (``vmap`` over N keys) or one shared set."""
    if agents.share_params:
        return _init_one(agents, key)
    return jax.vmap(lambda k: _init_one(agents, k))(
        jax.random.split(key, agents.num_agents)
    )


def _over_agents(agents: Agents, fn: Callable, params: Params, *xs: Array) -> Array:
    """Apply ``fn(params_i, *x_i)`` for every agent; agent axis of ``xs`` is -2
    (observations) or -1 (masks share the obs layout), output agent axis -2/-1."""
    return jax.vmap(fn, in_axes=(agents.param_axis, *(-2,) * len(xs)), out_axes=-2)(
        params, *xs
    )


def policy_params(agents: Agents, params: Params, obs: Array, avail: Array) -> Array:
    """Distribution parameters ``[..., N, P]`` for observations ``[..., N, obs_dim]``
    and masks ``[..., N, mask_dim]``."""
    chex.assert_axis_dimension(obs, -2, agents.num_agents)
    chex.assert_axis_dimension(obs, -1, agents.obs_dim)
    return _over_agents(agents, agents.actor.apply, params["actor"], obs, avail)


def values(agents: Agents, params: Params, obs: Array) -> Array:
    """Values ``[..., N]`` for observations ``[..., N, obs_dim]``."""
    chex.assert_axis_dimension(obs, -2, agents.num_agents)
    out = jax.vmap(agents.critic.apply, in_axes=(agents.param_axis, -2), out_axes=-1)(
        params["critic"], obs
    )
    return out


def apply_gradients(agents: Agents, state: AgentState, grads: Params) -> AgentState:
    """One optimiser step: per agent (vmap) unless parameters are shared."""

    def one(params: Params, opt_state: Params, grad: Params) -> AgentState:
        new_params, new_opt = {}, {}
        for part, tx in (("actor", agents.actor_tx), ("critic", agents.critic_tx)):
            updates, new_opt[part] = tx.update(grad[part], opt_state[part], params[part])
            new_params[part] = optax.apply_updates(params[part], updates)
        return AgentState(new_params, new_opt)

    if agents.share_params:
        return one(state.params, state.opt_state, grads)
    return jax.vmap(one)(state.params, state.opt_state, grads)
