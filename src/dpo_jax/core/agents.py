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
from typing import Any, Callable, NamedTuple, Protocol

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
    """Static description of the agents: networks, optimiser structure, sharing.

    The optimisers' numbers (learning rates, Adam's eps, the clip norm) are not
    here: :func:`optimizers` builds them from a run's ``ObjectiveParams``, so they
    can differ between the runs of one compiled program."""

    actor: Actor
    critic: Critic
    num_agents: int
    obs_dim: int
    mask_dim: int
    action_spec: ActionSpec
    share_params: bool
    anneal_lr: bool = False
    num_updates: int = 1
    steps_per_update: int = 1

    @property
    def param_axis(self) -> int | None:
        """``in_axes`` of the parameters when applying all agents."""
        return None if self.share_params else 0


class OptimizerNumbers(Protocol):
    """What :func:`optimizers` reads (an ``ObjectiveParams`` has it)."""

    actor_lr: Any
    critic_lr: Any
    adam_eps: Any
    max_grad_norm: Any


def learning_rate(lr: Any, anneal: bool, num_updates: int,
                  steps_per_update: int) -> optax.ScalarOrSchedule:
    """``lr``, or with ``anneal`` the schedule ``lr * (1 - k / num_updates)``
    during update k (0-based), constant within an update (JaxMARL/PureJaxRL's
    linear annealing; the optimiser steps ``steps_per_update = num_epochs *
    num_minibatches`` times per update). ``lr`` may be traced."""
    if not anneal:
        return lr

    def schedule(count: Array) -> Array:
        return lr * (1.0 - (count // steps_per_update) / num_updates)

    return schedule


def optimizers(agents: Agents, numbers: OptimizerNumbers
               ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """The actor's and the critic's optimiser: gradients clipped by global norm
    (``max_grad_norm``), then Adam (``adam_eps``) at the network's learning rate
    (annealed with ``agents.anneal_lr``). The numbers may be traced; the state's
    structure does not depend on them, so one initial state serves every run."""

    def make(lr: Any) -> optax.GradientTransformation:
        rate = learning_rate(lr, agents.anneal_lr, agents.num_updates,
                             agents.steps_per_update)
        return optax.chain(optax.clip_by_global_norm(numbers.max_grad_norm),
                           optax.adam(rate, eps=numbers.adam_eps))

    return make(numbers.actor_lr), make(numbers.critic_lr)


def make_agents(cfg: TrainConfig, env: MultiAgentEnv, num_updates: int = 1) -> Agents:
    """Networks and the optimisers' structure for ``env``'s agents under ``cfg``
    (its static fields only: a ``static_config`` works); ``num_updates`` (the run's
    length) sets the learning-rate schedule when ``cfg.anneal_lr``. The Gaussian
    policy's log-std starts at 0 here; :func:`init_agents` adds the run's
    ``init_log_std``."""
    hidden = (cfg.hidden_size,) * cfg.num_hidden_layers
    torso = dict(activation=cfg.activation, input_layer_norm=cfg.input_layer_norm)
    return Agents(
        actor=Actor(env.action_spec, hidden, cfg.hidden_layer_norm, 0.0, **torso),
        critic=Critic(hidden, cfg.hidden_layer_norm, **torso),
        num_agents=env.num_agents,
        obs_dim=env.obs_dim,
        mask_dim=env.mask_dim,
        action_spec=env.action_spec,
        share_params=cfg.share_params,
        anneal_lr=cfg.anneal_lr,
        num_updates=num_updates,
        steps_per_update=cfg.num_epochs * cfg.num_minibatches,
    )


class _Placeholder(NamedTuple):
    """Optimiser numbers for building initial states, whose structure and values
    (Adam's zero moments, a zero count) do not depend on them."""

    actor_lr: float = 1.0
    critic_lr: float = 1.0
    adam_eps: float = 1.0
    max_grad_norm: float = 1.0


def _init_one(agents: Agents, key: Array, init_log_std: Any) -> AgentState:
    actor_key, critic_key = jax.random.split(key)
    obs = jnp.zeros((agents.obs_dim,), jnp.float32)
    avail = jnp.ones((agents.mask_dim,), bool)
    actor = agents.actor.init(actor_key, obs, avail)
    if "log_std" in actor.get("params", {}):  # Gaussian policies: the run's initial log-std
        actor = {**actor, "params": {**actor["params"],
                                     "log_std": actor["params"]["log_std"] + init_log_std}}
    params = {"actor": actor, "critic": agents.critic.init(critic_key, obs)}
    actor_tx, critic_tx = optimizers(agents, _Placeholder())
    opt_state = {
        "actor": actor_tx.init(params["actor"]),
        "critic": critic_tx.init(params["critic"]),
    }
    return AgentState(params, opt_state)


def init_agents(agents: Agents, key: Array, init_log_std: Any = 0.0) -> AgentState:
    """Initialise N independent agents (``vmap`` over N keys) or one shared set;
    ``init_log_std`` (may be traced) is the Gaussian policy's initial log-std."""
    if agents.share_params:
        return _init_one(agents, key, init_log_std)
    return jax.vmap(lambda k: _init_one(agents, k, init_log_std))(
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


def apply_gradients(agents: Agents, state: AgentState, grads: Params,
                    numbers: OptimizerNumbers) -> AgentState:
    """One optimiser step (:func:`optimizers` with the run's ``numbers``): per agent
    (vmap) unless parameters are shared."""
    actor_tx, critic_tx = optimizers(agents, numbers)

    def one(params: Params, opt_state: Params, grad: Params) -> AgentState:
        new_params, new_opt = {}, {}
        for part, tx in (("actor", actor_tx), ("critic", critic_tx)):
            updates, new_opt[part] = tx.update(grad[part], opt_state[part], params[part])
            new_params[part] = optax.apply_updates(params[part], updates)
        return AgentState(new_params, new_opt)

    if agents.share_params:
        return one(state.params, state.opt_state, grads)
    return jax.vmap(one)(state.params, state.opt_state, grads)
