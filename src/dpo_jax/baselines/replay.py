"""Replay on device: whole-episode collection with padding, and flashbax buffers.

Episode replay (IQL, as PyMARL's ``EpisodeBatch``): every update resets
``num_envs`` envs and steps them ``env.max_steps`` times. An episode that ends
earlier (terminated, or truncated by a shorter limit) is frozen in its last state:
its remaining steps are padding, marked ``valid = False`` (PyMARL's ``filled``
mask), with zero reward, the final observation repeated, and no effect on the
episode statistics. Episodes keep ``max_steps + 1`` observations and masks
(PyMARL's ``episode_limit + 1``), so the step that ends an episode has its next
observation and next action mask, taken before any reset.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flashbax
import jax
import jax.numpy as jnp

from dpo_jax.envs.base import MultiAgentEnv
from dpo_jax.training.rollout import StepRecord, reset_envs

Array = jax.Array

# (agent carry, obs [E, N, D], avail [E, N, A], key) -> (agent carry, actions [E, N])
ActFn = Callable[[Any, Array, Array, Array], tuple[Any, Array]]


class Episodes(NamedTuple):
    """Whole episodes, leaves ``[..., T(+1), ...]`` (``T = env.max_steps``)."""

    obs: Array  # [..., T+1, N, obs_dim]
    avail: Array  # [..., T+1, N, A] bool
    action: Array  # [..., T, N] int32
    reward: Array  # [..., T, N]
    terminated: Array  # [..., T] bool
    valid: Array  # [..., T] bool, the step belongs to the episode (not padding)


def make_item_buffer(max_items: int, batch_size: int) -> Any:
    """A flashbax item buffer: a ring of ``max_items`` items (an episode for IQL, a
    transition for IDDPG) added a batch at a time and sampled uniformly, with
    replacement, ``batch_size`` at a time; ``can_sample`` once ``batch_size`` items
    are stored. (PyMARL samples episodes without replacement; with 5000 stored
    episodes and batches of 32 the difference is immaterial.)"""
    return flashbax.make_item_buffer(max_length=max_items, min_length=batch_size,
                                     sample_batch_size=batch_size, add_batches=True)


def empty_episode(env: MultiAgentEnv) -> Episodes:
    """An all-zero episode of ``env``: the episode buffer's item layout."""
    steps, agents = env.max_steps, env.num_agents
    return Episodes(
        obs=jnp.zeros((steps + 1, agents, env.obs_dim), jnp.float32),
        avail=jnp.zeros((steps + 1, agents, env.mask_dim), bool),
        action=jnp.zeros((steps, agents), jnp.int32), reward=jnp.zeros((steps, agents)),
        terminated=jnp.zeros((steps,), bool), valid=jnp.zeros((steps,), bool))


class _Carry(NamedTuple):
    env_state: Any
    obs: Array
    avail: Array
    agent: Any
    ended: Array  # [E] bool
    episode_return: Array  # [E, N]
    length: Array  # [E] int32


def _select_envs(mask: Array, new: Any, old: Any) -> Any:
    """``new`` for the envs where ``mask [E]`` holds, else ``old``, leaf by leaf."""
    def pick(n: Array, o: Array) -> Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def collect_episodes(env: MultiAgentEnv, act: ActFn, agent_carry: Any, key: Array,
                     num_envs: int) -> tuple[Episodes, StepRecord]:
    """One episode in each of ``num_envs`` fresh envs, padded to ``env.max_steps``
    steps (module docstring), the agents acting with ``act`` from ``agent_carry``.

    Returns ``Episodes`` with leaves ``[E, T(+1), ...]`` and the per-step
    ``StepRecord`` ``[T, E, ...]`` (padding steps neither end an episode nor count),
    ready for ``rollout.episode_stats``.
    """
    reset_key, run_key = jax.random.split(key)
    first = reset_envs(env, reset_key, num_envs)
    start = _Carry(first.env_state, first.obs, first.avail, agent_carry,
                   jnp.zeros((num_envs,), bool), first.episode_return, first.episode_length)

    def step(carry: _Carry, step_key: Array) -> tuple[_Carry, tuple]:
        act_key, env_key = jax.random.split(step_key)
        agent, action = act(carry.agent, carry.obs, carry.avail, act_key)
        out = jax.vmap(env.step)(jax.random.split(env_key, num_envs), carry.env_state, action)
        alive = ~carry.ended
        done = alive & (out.terminated | out.truncated)
        # where(), not a product: stepping a finished env may give NaNs we drop
        reward = jnp.where(alive[:, None], out.reward, 0.0)
        episode_return = carry.episode_return + reward
        length = carry.length + alive
        env_state, obs, avail = _select_envs(alive, (out.state, out.obs, out.avail_actions),
                                             (carry.env_state, carry.obs, carry.avail))
        new = _Carry(env_state, obs, avail, agent, carry.ended | done, episode_return, length)
        record = StepRecord(
            reward=reward, terminated=alive & out.terminated, done=done, next_obs=obs,
            finished_return=jnp.where(done[:, None], episode_return, 0.0),
            finished_length=jnp.where(done, length, 0),
            info=jax.tree.map(lambda x: jnp.where(done, x, 0.0), out.info))
        return new, (record, avail, action, alive)

    _, (records, next_avail, actions, valid) = jax.lax.scan(
        step, start, jax.random.split(run_key, env.max_steps))
    batch_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    episodes = Episodes(
        obs=batch_major(jnp.concatenate([first.obs[None], records.next_obs])),
        avail=batch_major(jnp.concatenate([first.avail[None], next_avail])),
        action=batch_major(actions.astype(jnp.int32)), reward=batch_major(records.reward),
        terminated=batch_major(records.terminated), valid=batch_major(valid))
    return episodes, records
