"""Actor and critic MLPs of one agent and the policy distributions (distrax).

Architecture (paper Appendix B, reference code's MLPBase): LayerNorm on the input
(``input_layer_norm``), ``num_hidden_layers`` Dense(hidden_size) + activation (ReLU,
or tanh as JaxMARL) layers, each followed by LayerNorm when ``hidden_layer_norm``,
then a linear head. Orthogonal initialisation: gain
sqrt(2) on hidden layers, 0.01 on the policy head, 1 on the value head; zero biases
(``dpo_jax.core.initializers.orthogonal``: flax's construction without the LAPACK QR
that deadlocks XLA's CPU runtime under ``vmap``).

The actor outputs a flat array of distribution parameters so that a rollout can
store the behaviour policy and the objective can compute the analytic KL later:

* discrete: masked logits ``[..., A]``; unavailable actions get logit
  ``MASKED_LOGIT`` so their probability is exactly 0 in float32 and they never
  enter sampling, the ratio, the entropy or the KL;
* continuous: ``[..., 2 D]`` = mean and a state-independent log-std.
"""

from __future__ import annotations

import math
from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from dpo_jax.envs.base import ActionSpec, ContinuousActions, DiscreteActions
from dpo_jax.core.initializers import orthogonal

Array = jax.Array

MASKED_LOGIT = -1e9


ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class MLPTorso(nn.Module):
    """Optional input LayerNorm, then hidden layers with ``activation``."""

    hidden_sizes: Sequence[int]
    hidden_layer_norm: bool = True
    activation: str = "relu"
    input_layer_norm: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.input_layer_norm:
            x = nn.LayerNorm()(x)
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=orthogonal(math.sqrt(2.0)),
                         bias_init=nn.initializers.zeros)(x)
            x = act(x)
            if self.hidden_layer_norm:
                x = nn.LayerNorm()(x)
        return x


class Actor(nn.Module):
    """Policy network: observation (and action mask) -> distribution parameters."""

    action_spec: ActionSpec
    hidden_sizes: Sequence[int] = (128, 128)
    hidden_layer_norm: bool = True
    init_log_std: float = 0.0
    activation: str = "relu"
    input_layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: Array, avail_actions: Array) -> Array:
        x = MLPTorso(self.hidden_sizes, self.hidden_layer_norm, self.activation,
                     self.input_layer_norm)(obs)
        head_init = orthogonal(0.01)
        spec = self.action_spec
        if isinstance(spec, DiscreteActions):
            logits = nn.Dense(spec.num_actions, kernel_init=head_init,
                              bias_init=nn.initializers.zeros)(x)
            return jnp.where(avail_actions, logits, MASKED_LOGIT)
        mean = nn.Dense(spec.action_dim, kernel_init=head_init,
                        bias_init=nn.initializers.zeros)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (spec.action_dim,))
        return jnp.concatenate([mean, jnp.broadcast_to(log_std, mean.shape)], axis=-1)


class Critic(nn.Module):
    """Value network V^i(o): observation -> scalar (normalised units when the
    trainer normalises values)."""

    hidden_sizes: Sequence[int] = (128, 128)
    hidden_layer_norm: bool = True
    activation: str = "relu"
    input_layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        x = MLPTorso(self.hidden_sizes, self.hidden_layer_norm, self.activation,
                     self.input_layer_norm)(obs)
        value = nn.Dense(1, kernel_init=orthogonal(1.0),
                         bias_init=nn.initializers.zeros)(x)
        return value[..., 0]


def distribution(dist_params: Array, action_spec: ActionSpec) -> distrax.Distribution:
    """The policy distribution from the actor's output (see module docstring)."""
    if isinstance(action_spec, DiscreteActions):
        return distrax.Categorical(logits=dist_params)
    if isinstance(action_spec, ContinuousActions):
        mean, log_std = jnp.split(dist_params, 2, axis=-1)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    raise TypeError(f"unsupported action spec {action_spec!r}")


def kl_divergence(old_params: Array, new_params: Array, action_spec: ActionSpec) -> Array:
    """Analytic KL(pi_old || pi_new) per sample (distrax)."""
    old = distribution(old_params, action_spec)
    new = distribution(new_params, action_spec)
    return old.kl_divergence(new)


def action_probs(dist_params: Array) -> Array:
    """Probabilities of a categorical policy from its (masked) logits."""
    return jax.nn.softmax(dist_params, axis=-1)
