"""Running normalisation of value targets (MAPPO's ``ValueNorm``), per agent, as pure functions.

The critic predicts values in normalised units; GAE works in the env's units. With
running statistics ``m_t`` (mean) and ``s_t`` (mean of squares) of the value targets,

    m_t = w m_{t-1} + (1 - w) mean(y),   s_t = w s_{t-1} + (1 - w) mean(y^2),
    c_t = w c_{t-1} + (1 - w)            (debiasing term, c_0 = 0)
    mu = m_t / max(c_t, eps),   var = max(s_t / max(c_t, eps) - mu^2, 1e-2)

a prediction ``v`` means ``v sqrt(var) + mu`` (``denormalize``), and the critic
regresses on ``(y - mu) / sqrt(var)`` (``normalize``). ``w`` is ``value_norm_beta``
(MAPPO: 0.99999, so the statistics are close to a running average over the whole
run). The variance floor 1e-2 and eps 1e-5 are MAPPO's.

Choice (documented in ``TrainConfig``): the statistics are updated once per training
update with the whole batch's targets, before the epochs. MAPPO updates them inside
the value loss, once per minibatch and epoch, with the same data each epoch; since
every batch is then counted ``epochs x minibatches`` times, the relative weight of
batches is the same up to an effective decay of ``w**(epochs*minibatches)`` per
update (0.99985 instead of 0.99999 at 15 epochs), while a fixed normaliser keeps each
update's value loss stationary across its epochs.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = jax.Array

DEBIAS_EPS = 1e-5
VAR_FLOOR = 1e-2


class ValueNormState(NamedTuple):
    """Running first and second moments and the debiasing weight, each ``[N]``."""

    mean: Array
    mean_sq: Array
    debias: Array


def init_value_norm(num_agents: int) -> ValueNormState:
    """Statistics before any data: the normaliser is then the identity."""
    zeros = jnp.zeros((num_agents,), jnp.float32)
    return ValueNormState(zeros, zeros, zeros)


def mean_var(state: ValueNormState) -> tuple[Array, Array]:
    """Debiased mean and variance ``[N]`` (variance floored at ``VAR_FLOOR``).

    Before the first update (debias term 0) :func:`normalize` and
    :func:`denormalize` are the identity instead (MAPPO would scale by
    ``sqrt(VAR_FLOOR)`` there; the critic's first outputs are ~0 either way).
    """
    debias = jnp.maximum(state.debias, DEBIAS_EPS)
    mean = state.mean / debias
    var = jnp.maximum(state.mean_sq / debias - mean**2, VAR_FLOOR)
    return mean, var


def update_value_norm(state: ValueNormState, targets: Array, beta: float,
                      shared: bool = False) -> ValueNormState:
    """Fold a batch of targets ``[..., N]`` (agents last) into the statistics.

    ``shared=True`` (one critic for all agents) pools the agents: every agent's
    statistics become those of all agents' targets together.
    """
    chex.assert_axis_dimension(targets, -1, state.mean.shape[0])
    axes = tuple(range(targets.ndim - 1))
    batch_mean = targets.mean(axes)
    batch_sq = jnp.square(targets).mean(axes)
    if shared:
        batch_mean = jnp.broadcast_to(batch_mean.mean(), batch_mean.shape)
        batch_sq = jnp.broadcast_to(batch_sq.mean(), batch_sq.shape)
    return ValueNormState(
        mean=beta * state.mean + (1.0 - beta) * batch_mean,
        mean_sq=beta * state.mean_sq + (1.0 - beta) * batch_sq,
        debias=beta * state.debias + (1.0 - beta),
    )


def _identity_if_empty(state: ValueNormState) -> Array:
    return state.debias > 0


def normalize(state: ValueNormState, x: Array) -> Array:
    """Env units -> critic units; ``x`` has agents on its last axis."""
    mean, var = mean_var(state)
    return jnp.where(_identity_if_empty(state), (x - mean) / jnp.sqrt(var), x)


def denormalize(state: ValueNormState, x: Array) -> Array:
    """Critic units -> env units; ``x`` has agents on its last axis."""
    mean, var = mean_var(state)
    return jnp.where(_identity_if_empty(state), x * jnp.sqrt(var) + mean, x)
