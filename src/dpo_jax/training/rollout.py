"""One environment step for all envs and agents, auto-reset, episode statistics.

The batch axis E (parallel environments) leads every array here; agents follow:
observations ``[E, N, obs_dim]``, rewards ``[E, N]``, episode ends ``[E]``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dpo_jax.envs.base import ContinuousActions, EnvStep, MultiAgentEnv

Array = jax.Array


class EnvBatch(NamedTuple):
    """The running state of E parallel environments between steps."""

    env_state: Any
    obs: Array  # [E, N, obs_dim]
    avail: Array  # [E, N, mask_dim]
    episode_return: Array  # [E, N] return so far of the running episode
    episode_length: Array  # [E] int32


class StepRecord(NamedTuple):
    """What one step of E envs produced, as the trainer stores it."""

    reward: Array  # [E, N]
    terminated: Array  # [E] bool
    done: Array  # [E] bool, terminated or truncated
    next_obs: Array  # [E, N, obs_dim] observation after the step, before any reset
    finished_return: Array  # [E, N] return of the episode (window) that ended here, else 0
    finished_length: Array  # [E] its length (> 0 exactly where one ended), else 0
    info: dict[str, Array]  # [E] per-episode info of the env at this step


def _where_done(done: Array, if_done: Any, otherwise: Any) -> Any:
    def pick(a: Array, b: Array) -> Array:
        mask = done.reshape(done.shape + (1,) * (a.ndim - done.ndim))
        return jnp.where(mask, a, b)

    return jax.tree.map(pick, if_done, otherwise)


def reset_envs(env: MultiAgentEnv, key: Array, num_envs: int) -> EnvBatch:
    """Reset ``num_envs`` environments."""
    first: EnvStep = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    return EnvBatch(
        env_state=first.state,
        obs=first.obs,
        avail=first.avail_actions,
        episode_return=jnp.zeros((num_envs, env.num_agents), jnp.float32),
        episode_length=jnp.zeros((num_envs,), jnp.int32),
    )


def env_actions(env: MultiAgentEnv, actions: Array) -> Array:
    """Actions as the env takes them: continuous actions clipped to the box."""
    spec = env.action_spec
    if isinstance(spec, ContinuousActions):
        return jnp.clip(actions, spec.low, spec.high)
    return actions


def step_envs(
    env: MultiAgentEnv, batch: EnvBatch, actions: Array, key: Array
) -> tuple[EnvBatch, StepRecord]:
    """Step E envs with ``actions`` ``[E, N(, D)]`` and reset those whose episode ended."""
    num_envs = batch.obs.shape[0]
    step_key, reset_key = jax.random.split(key)
    out: EnvStep = jax.vmap(env.step)(
        jax.random.split(step_key, num_envs), batch.env_state, env_actions(env, actions)
    )
    fresh: EnvStep = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
    done = out.terminated | out.truncated
    reset = done if env.resets_on_done else jnp.zeros_like(done)
    episode_return = batch.episode_return + out.reward
    episode_length = batch.episode_length + 1
    # what the episode metrics count as an episode: one that ended, or, in an env that
    # never resets (its steps after the first episode are all terminal), each window
    # of max_steps steps (EPISODE_METRICS_RULE)
    ended = done if env.resets_on_done else episode_length >= env.max_steps
    new_batch = EnvBatch(
        env_state=_where_done(reset, fresh.state, out.state),
        obs=_where_done(reset, fresh.obs, out.obs),
        avail=_where_done(reset, fresh.avail_actions, out.avail_actions),
        episode_return=_where_done(ended, jnp.zeros_like(episode_return), episode_return),
        episode_length=jnp.where(ended, 0, episode_length),
    )
    record = StepRecord(
        reward=out.reward,
        terminated=out.terminated,
        done=done,
        next_obs=out.obs,
        finished_return=_where_done(ended, episode_return, jnp.zeros_like(episode_return)),
        finished_length=jnp.where(ended, episode_length, 0),
        info=out.info,
    )
    return new_batch, record


def episode_stats(records: StepRecord) -> dict[str, Array]:
    """Mean return (over agents and finished episodes), length and info of the
    episodes that ended within ``records`` (leading axes: time, env).

    ``episodes`` counts them; the means are NaN when none ended (the trainers then
    carry the last values forward: ``carry_episode_metrics``).
    """
    done = (records.finished_length > 0).astype(jnp.float32)  # an episode (window) ended
    count = done.sum()
    safe = jnp.maximum(count, 1.0)
    nan_if_none = jnp.where(count > 0, 1.0, jnp.nan)
    stats = {
        "episode_return": records.finished_return.mean(-1).sum() / safe * nan_if_none,
        "episode_length": records.finished_length.sum() / safe * nan_if_none,
        "episodes": count,
    }
    for name, value in records.info.items():
        stats[name] = (value * done).sum() / safe * nan_if_none
    return stats


def random_rollout(
    env: MultiAgentEnv, key: Array, num_envs: int, num_steps: int
) -> tuple[EnvBatch, tuple[Array, Array, Array, StepRecord]]:
    """Reset ``num_envs`` envs and step them ``num_steps`` times with uniformly random
    valid actions, as one ``lax.scan`` (auto-reset as in training).

    Returns the final batch and, stacked on a leading step axis, each step's
    observation and action mask before the step, the actions, and its record.
    Outputs a caller does not use are removed when the caller is ``jit``-ed.
    """
    init_key, run_key = jax.random.split(key)
    batch = reset_envs(env, init_key, num_envs)

    def body(batch: EnvBatch, step_key: Array) -> tuple[EnvBatch, tuple]:
        act_key, env_key = jax.random.split(step_key)
        actions = jax.vmap(env.random_actions)(
            jax.random.split(act_key, num_envs), batch.avail
        )
        new_batch, record = step_envs(env, batch, actions, env_key)
        return new_batch, (batch.obs, batch.avail, actions, record)

    return jax.lax.scan(body, batch, jax.random.split(run_key, num_steps))


def policy_episode(env: MultiAgentEnv, key: Array, act_fn: Callable[..., Any],
                   carry: Any = None) -> tuple[Any, Array, Array, dict[str, Array]]:
    """One episode of one env under ``act_fn(key, obs [N, obs_dim], avail [N, A])
    -> actions``, as a ``lax.scan`` of ``env.max_steps`` steps without reset. With
    ``carry`` (a recurrent policy's state, e.g. IQL's GRU hidden state), ``act_fn``
    is ``(key, obs, avail, carry) -> (actions, carry)`` starting from it.

    Returns the states ``[T + 1]`` (the reset state first), the rewards ``[T, N]``,
    ``done [T]`` (terminated or truncated at that step or before: the steps
    after the episode's end keep stepping the ended state and are to be masked)
    and the env's info ``[T]``. ``jit`` removes the outputs a caller drops.
    """
    reset_key, run_key = jax.random.split(key)
    first: EnvStep = env.reset(reset_key)
    stateful = carry is not None

    def body(loop: tuple[EnvStep, Array, Any], step_key: Array) -> tuple[Any, tuple]:
        last, ended, memory = loop
        act_key, env_key = jax.random.split(step_key)
        if stateful:
            actions, memory = act_fn(act_key, last.obs, last.avail_actions, memory)
        else:
            actions = act_fn(act_key, last.obs, last.avail_actions)
        out: EnvStep = env.step(env_key, last.state, env_actions(env, actions))
        ended = ended | out.terminated | out.truncated
        return (out, ended, memory), (out.state, out.reward, ended, out.info)

    _, (states, rewards, done, info) = jax.lax.scan(
        body, (first, jnp.array(False), carry), jax.random.split(run_key, env.max_steps))
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first.state, states)
    return states, rewards, done, info


def random_policy_return(
    env: MultiAgentEnv, key: Array, num_envs: int = 64, num_steps: int | None = None
) -> dict[str, Array]:
    """Episode statistics of the uniformly random (valid-action) policy.

    Runs ``num_envs`` envs for ``num_steps`` steps (default: two episode limits) in
    one compiled scan and averages over the episodes that ended.
    """
    steps = num_steps if num_steps is not None else 2 * env.max_steps
    _, (_, _, _, records) = random_rollout(env, key, num_envs, steps)
    return episode_stats(records)


EPISODE_METRICS_RULE = """\
Per-episode metrics (``episode_return``, ``episode_length`` and every env info key
such as ``won``) are means over the episodes that ended in the update. In an env
that never resets (``resets_on_done=False``, the authors' never-reset game), where
every step after the first episode is terminal, an episode is each window of
``max_steps`` consecutive steps (the game's horizon, S), so ``episode_return`` is the
return of S steps, as an episode's is. In an update
in which none ended (``episodes == 0``) each of them repeats its value from the
last update in which one did, and is NaN before the first. ``step_reward`` (the
mean reward per agent and env step of the update's rollout) is always fresh, for
curves of long episodes (MuJoCo with ``num_steps < max_steps``)."""


def initial_episode_metrics(env: MultiAgentEnv) -> dict[str, Array]:
    """The NaN "last episode" values a run starts from (see ``carry_episode_metrics``)."""
    info = jax.eval_shape(env.reset, jax.random.key(0)).info
    names = ("episode_return", "episode_length", *info)
    return {name: jnp.array(jnp.nan, jnp.float32) for name in names}


def carry_episode_metrics(stats: dict[str, Array], last: dict[str, Array]
                          ) -> tuple[dict[str, Array], dict[str, Array]]:
    """``episode_stats`` of one update with every per-episode metric carried forward
    from ``last`` when no episode ended (``EPISODE_METRICS_RULE``). Returns the
    metrics and the new ``last``."""
    ended = stats["episodes"] > 0
    new_last = {k: jnp.where(ended, stats[k].astype(jnp.float32), v)
                for k, v in last.items()}
    return {**stats, **new_last}, new_last


def step_reward(records: StepRecord) -> Array:
    """``[]`` mean reward per agent and env step over a rollout's ``records``."""
    return records.reward.mean()


STEP_COUNT_BASE = 2**30


class StepCount(NamedTuple):
    """An exact step counter in two int32 (JAX runs without 64-bit ints by
    default): ``high * 2**30 + low``, exact up to 2**61 steps, where one int32
    would wrap past 2**31 (2.1e9) steps."""

    high: Array  # [] int32
    low: Array  # [] int32 in [0, 2**30)


def zero_steps() -> StepCount:
    """A step count of zero (the start of a run)."""
    return StepCount(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add_steps(count: StepCount, steps: Array) -> StepCount:
    """``count + steps`` for ``0 <= steps < 2**30`` (one update's steps)."""
    low = count.low + jnp.asarray(steps, jnp.int32)
    return StepCount(count.high + low // STEP_COUNT_BASE, low % STEP_COUNT_BASE)


def steps_as_float(count: StepCount) -> Array:
    """``[]`` float32 value of the counter (relative error below 1e-7)."""
    return (count.high.astype(jnp.float32) * float(STEP_COUNT_BASE)
            + count.low.astype(jnp.float32))


def updates_to_steps(num_updates: Array, steps_per_update: int) -> Array:
    """``num_updates * steps_per_update`` as float32, rounded once (no int32 wrap)."""
    return jnp.asarray(num_updates).astype(jnp.float32) * float(steps_per_update)
