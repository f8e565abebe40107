"""Continuous reach: a small cooperative task with continuous actions.

A learning check for continuous-action baselines (IDDPG) that runs in seconds on
a CPU, before multi-agent MuJoCo is available.

``N`` agents move on the square ``[-1, 1]^2``. Agent ``i`` has its own fixed goal
``g_i`` on the circle of radius ``GOAL_RADIUS``, at angle ``2 pi i / N``. Each
episode starts from positions drawn uniformly in the square.

* Action of agent ``i``: ``a_i`` in ``[-1, 1]^2``; the position moves by
  ``step_size * a_i`` and is clipped to the square.
* Shared reward (every agent gets it): minus the mean over agents of the distance
  to their own goal after the move, ``r = -1/N sum_i ||p_i - g_i||``.
* Observation of agent ``i``: its position and the offset to its goal,
  ``[p_i, g_i - p_i]`` (4 numbers).
* No terminal state: every episode is truncated after ``max_steps`` steps.
* ``info["final_distance"]``: the mean distance to the goals at that step
  (averaged over finished episodes by the rollout: the distance at the end).

A policy that walks straight to its goal reaches it within 19 steps of 0.1 from
anywhere in the square (no goal is more than 1.9 from a corner), so the optimal
return is far above the uniformly random policy's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs.base import Array, ContinuousActions, EnvStep, MultiAgentEnv

GOAL_RADIUS = 0.5


class ReachState(NamedTuple):
    """Positions ``[N, 2]`` and the steps taken so far."""

    positions: Array
    time_step: Array  # [] int32


def goal_positions(num_agents: int) -> np.ndarray:
    """``[N, 2]`` goals on the circle of radius ``GOAL_RADIUS``, agent i at 2 pi i / N."""
    angles = 2.0 * np.pi * np.arange(num_agents) / num_agents
    return GOAL_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


class ContinuousReach(MultiAgentEnv):
    """N agents each walk to their own goal; shared reward (module docstring)."""

    name = "continuous_reach"

    def __init__(self, num_agents: int = 2, max_steps: int = 25, step_size: float = 0.1):
        for field, value in (("num_agents", num_agents), ("max_steps", max_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ContinuousReach.{field}={value!r} is invalid: "
                                 "expected a positive int")
        if not step_size > 0:
            raise ValueError(f"ContinuousReach.step_size={step_size!r} is invalid: "
                             "expected a number > 0")
        self.num_agents = num_agents
        self.max_steps = max_steps
        self.step_size = float(step_size)
        self.obs_dim = 4
        self.action_spec = ContinuousActions(action_dim=2, low=-1.0, high=1.0)
        self._goals = goal_positions(num_agents).astype(np.float32)

    def _observe(self, state: ReachState, reward: Array) -> EnvStep:
        goals = jnp.asarray(self._goals)
        distance = jnp.linalg.norm(state.positions - goals, axis=-1).mean()
        return EnvStep(
            state=state,
            obs=jnp.concatenate([state.positions, goals - state.positions], axis=-1),
            avail_actions=jnp.ones((self.num_agents, 1), bool),
            reward=jnp.broadcast_to(reward, (self.num_agents,)).astype(jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=state.time_step >= self.max_steps,
            info={"final_distance": distance.astype(jnp.float32)},
        )

    def reset(self, key: Array) -> EnvStep:
        positions = jax.random.uniform(key, (self.num_agents, 2), minval=-1.0, maxval=1.0)
        state = ReachState(positions, jnp.zeros((), jnp.int32))
        return self._observe(state, jnp.zeros((), jnp.float32))

    def step(self, key: Array, state: ReachState, actions: Array) -> EnvStep:
        """Move every agent by ``step_size * clip(a_i, -1, 1)``; ``actions`` is ``[N, 2]``."""
        del key  # deterministic dynamics
        move = self.step_size * jnp.clip(actions, -1.0, 1.0)
        positions = jnp.clip(state.positions + move, -1.0, 1.0)
        new_state = ReachState(positions, state.time_step + 1)
        goals = jnp.asarray(self._goals)
        reward = -jnp.linalg.norm(positions - goals, axis=-1).mean()
        return self._observe(new_state, reward)


def make_continuous_reach(num_agents: int = 2, max_steps: int = 25) -> ContinuousReach:
    """The continuous reach task (module docstring) with step size 0.1."""
    return ContinuousReach(num_agents=num_agents, max_steps=max_steps)
