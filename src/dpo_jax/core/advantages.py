"""Generalized advantage estimation with termination vs truncation (GAE, Schulman et al. 2015b)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    done: Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[Array, Array]:
    """GAE over a rollout whose leading axis is time.

    ``next_values[t]`` is the critic's value of the observation that *followed*
    step t: the next step's observation, or, when the episode ended at t, the
    episode's final observation (before the reset). Then

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    so a time-limit truncation (``done`` but not ``terminated``) bootstraps from the
    final observation's value, a termination does not, and neither lets the
    advantage of the next episode leak backwards.

    Args:
      rewards: ``[T, ...]`` float array.
      values: ``[T, ...]`` V(s_t), the shape of ``rewards``.
      next_values: ``[T, ...]`` V(s_{t+1}) (the final observation's value at a
        truncation), the shape of ``rewards``.
      terminated: ``[T, ...]`` bools broadcastable to ``rewards`` (e.g. per env
        ``[T, E, 1]`` against per agent ``[T, E, N]``): the episode terminated at t.
      done: like ``terminated``: the episode ended (terminated or truncated) at t.

    Returns:
      ``(advantages, targets)`` with ``targets = advantages + values`` (the
      lambda-returns the critic regresses on, eq. 7).
    """
    chex.assert_equal_shape([rewards, values, next_values])
    term = jnp.broadcast_to(terminated, rewards.shape).astype(rewards.dtype)
    ended = jnp.broadcast_to(done, rewards.shape).astype(rewards.dtype)
    deltas = rewards + gamma * (1.0 - term) * next_values - values

    def backward(carry: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        delta, end = xs
        adv = delta + gamma * gae_lambda * (1.0 - end) * carry
        return adv, adv

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(rewards[0]), (deltas, ended), reverse=True
    )
    return advantages, advantages + values
