"""The paper's three MPE tasks (Sec. 4.2, Appendix A.1): navigation, line and circle control.

JAX-native scenarios on JaxMARL's MPE particle world: a JaxMARL ``SimpleMPE``
instance does every physics step (its integrator, damping 0.25, dt 0.1, soft
contact forces between agents, acceleration 5 and its 5 discrete actions: no-op
and -x, +x, -y, +y), so the dynamics are JaxMARL's. JaxMARL integrates the
position with the velocity from before the step (the original MPE with the
updated one), a one-step lag shared with JaxMARL's own MPE tasks;
``integrator="mpe"`` integrates as the original MPE and the authors' code
(``onpolicy/envs/mpe/core.py``, ``integrate_state``) do. What this module adds is
the authors' scenarios (their code's ``navigation_control_full``,
``formation_control_full`` and ``circle_control_full``), in the stacked-array
protocol.

Common to the three tasks, for ``N = num_agents`` agents:

* Start: agents uniform in ``[-1, 1]^2`` at rest; landmarks per task (below).
* Targets: ``N`` points per task (below). Each step, after the physics, the
  shared reward is ``r = clip(-mean_i d_i - collision_penalty * C / N, -15, 15)``
  where ``d_i`` is agent ``i``'s distance to its target under the optimal
  one-to-one assignment of agents to targets (min total distance, computed in the
  compiled step by :mod:`dpo_jax.envs.assignment`) and ``C`` counts the agent
  pairs closer than twice the agent size. Agents exactly on their targets get 0.
  Every agent receives ``r``. (The authors' code counts each pair twice and
  divides by ``2N``, the same; its double loop also counts every agent as
  colliding with itself, a constant ``-collision_penalty / 2`` per step that is
  left out here. Their default, and ours, is ``collision_penalty = 0``.)
* Observation of agent ``i`` (``4 + 2L + 2(N-1)`` floats): own velocity, own
  position, each landmark's position relative to it, then each other agent's
  position relative to it (agent order, skipping ``i``). Landmarks and agents at
  distance ``>= vision`` are zeroed (partial observability; ``vision=None``
  observes everything). The authors' observation also appends the other agents'
  communication, always zero as agents are silent; it is left out unless
  ``comm_obs=True`` (``2 (N-1)`` more zeros: they change what the input
  LayerNorm of the networks computes, so they matter for learning).
* Episodes last ``max_steps`` steps (25) and are then truncated; there is no
  terminal state.
* ``info``: ``target_distance`` (mean assigned distance ``mean_i d_i``, at the
  last step: the final one) and ``collisions`` (colliding pairs ``C``).

Tasks:

* ``mpe_navigation`` (the paper's "simple spread"): ``N`` landmarks uniform in
  ``[-1, 1]^2`` are the targets; agent size 0.05. Unlike JaxMARL's / PettingZoo's
  ``mpe_spread`` (also registered here), the reward is one shared assignment
  cost instead of the sum over landmarks of the distance to the nearest agent
  plus a local -1 per collision, and the observation has the vision mask. (The
  authors' code leaves this one task unmasked; pass ``vision=None`` for that.)
* ``mpe_line``: landmark 0 uniform in ``[-0.25, 0.25]^2``; landmark 1 at distance
  1.25 from it in a uniform random direction, turned in steps of 5 degrees until
  it lies strictly inside ``(-1, 1)^2`` (some step always does); targets are
  ``N >= 2`` evenly spaced points from landmark 0 to landmark 1, both included.
  Agent size 0.03.
* ``mpe_circle``: one landmark uniform in ``[-0.25, 0.25]^2``; targets are ``N``
  points on the circle of radius 0.5 around it, evenly spaced in angle starting
  at the angle (in ``[0, 2 pi)``) of the agent with the smallest angle, so they
  move with the agents. Agent size 0.03.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs._imports import import_jaxmarl
from dpo_jax.envs.assignment import assigned_costs
from dpo_jax.envs.base import Array, DiscreteActions, EnvStep, MultiAgentEnv

if TYPE_CHECKING:  # jaxmarl is imported when an env is built (it is slow to import)
    from jaxmarl.environments.mpe.simple import State

REWARD_CLIP = 15.0
NUM_ACTIONS = 5
LINE_LENGTH = 1.25
LINE_TURN_STEP = math.radians(5.0)
CIRCLE_RADIUS = 0.5
CENTRE_RANGE = 0.25  # line's landmark 0 and circle's landmark: uniform in +-0.25


INTEGRATORS = ("jaxmarl", "mpe")
"""``integrator`` values: ``"jaxmarl"``, JaxMARL's step (position moved by the
velocity from before the step); ``"mpe"``, the original MPE's and the authors'
(velocity updated first, position moved by the new velocity)."""

MAX_MPE_AGENTS = 1000
"""Upper bound on MPE agent counts: every step computes all N^2 pairwise distances
per env, so a larger N is a typo rather than an experiment (and would exhaust
memory before the first step)."""


class MPETask(MultiAgentEnv):
    """Base of the three tasks: physics, observation, assignment reward.

    Subclasses set ``num_landmarks``, the entity sizes, and implement
    :meth:`sample_landmarks` and :meth:`targets`. The env state is JaxMARL's MPE
    ``State`` (``p_pos`` ``[N + L, 2]``, agents first; ``step`` counts steps).
    """

    num_landmarks: int
    agent_size: float
    landmark_size: float
    min_agents: int = 1

    def __init__(self, *, name: str, num_agents: int, vision: Optional[float],
                 collision_penalty: float, max_steps: int, comm_obs: bool = False,
                 integrator: str = "jaxmarl") -> None:
        if (isinstance(num_agents, bool) or not isinstance(num_agents, int)
                or not self.min_agents <= num_agents <= MAX_MPE_AGENTS):
            raise ValueError(f"{name}: num_agents must be an int in [{self.min_agents}, "
                             f"{MAX_MPE_AGENTS}], got {num_agents!r}")
        if vision is not None and not (isinstance(vision, (int, float))
                                       and not isinstance(vision, bool) and vision > 0):
            raise ValueError(f"{name}: vision must be a number > 0 or None, got {vision!r}")
        if not (math.isfinite(collision_penalty) and collision_penalty >= 0):
            raise ValueError(f"{name}: collision_penalty must be a finite number >= 0, "
                             f"got {collision_penalty!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"{name}: max_steps must be an int >= 1, got {max_steps!r}")
        if not isinstance(comm_obs, bool):
            raise ValueError(f"{name}: comm_obs must be True or False, got {comm_obs!r}")
        if integrator not in INTEGRATORS:
            raise ValueError(f"{name}: integrator must be one of {INTEGRATORS}, "
                             f"got {integrator!r}")
        self.name = name
        self.num_agents = num_agents
        self.vision = None if vision is None else float(vision)
        self.collision_penalty = float(collision_penalty)
        self.max_steps = max_steps
        self.comm_obs = comm_obs
        self.integrator = integrator
        self.action_spec = DiscreteActions(NUM_ACTIONS)
        self.obs_dim = (4 + 2 * self.num_landmarks + 2 * (num_agents - 1)
                        + (2 * (num_agents - 1) if comm_obs else 0))
        import_jaxmarl()
        from jaxmarl.environments.mpe.simple import SimpleMPE

        num_l = self.num_landmarks
        self.world = SimpleMPE(
            num_agents=num_agents,
            agents=[f"agent_{i}" for i in range(num_agents)],
            num_landmarks=num_l,
            dim_c=0,
            max_steps=max_steps,
            rad=jnp.asarray(np.repeat([self.agent_size, self.landmark_size],
                                      [num_agents, num_l]), jnp.float32),
            collide=jnp.asarray(np.arange(num_agents + num_l) < num_agents),
        )
        # others[i] = the agents other than i, in index order
        self._others = np.array([[j for j in range(num_agents) if j != i]
                                 for i in range(num_agents)], np.int32).reshape(num_agents, -1)

    @abc.abstractmethod
    def sample_landmarks(self, key: Array) -> Array:
        """Landmark positions ``[L, 2]`` of a new episode."""

    @abc.abstractmethod
    def targets(self, agent_pos: Array, landmark_pos: Array) -> Array:
        """Target points ``[N, 2]`` given agents ``[N, 2]`` and landmarks ``[L, 2]``."""

    def make_state(self, agent_pos: Array, landmark_pos: Array,
                   agent_vel: Optional[Array] = None) -> State:
        """A world state at step 0 with the given positions (landmarks at rest)."""
        import_jaxmarl()
        from jaxmarl.environments.mpe.simple import State

        agent_pos = jnp.asarray(agent_pos, jnp.float32).reshape(self.num_agents, 2)
        landmark_pos = jnp.asarray(landmark_pos, jnp.float32).reshape(self.num_landmarks, 2)
        vel = jnp.zeros_like(agent_pos) if agent_vel is None else jnp.asarray(
            agent_vel, jnp.float32).reshape(self.num_agents, 2)
        return State(
            p_pos=jnp.concatenate([agent_pos, landmark_pos]),
            p_vel=jnp.concatenate([vel, jnp.zeros_like(landmark_pos)]),
            c=jnp.zeros((self.num_agents, 0)),
            done=jnp.zeros((), bool),
            step=jnp.zeros((), jnp.int32),
        )

    def observe(self, state: State) -> Array:
        """Observations ``[N, obs_dim]`` with the vision mask (see module docstring)."""
        num = self.num_agents
        pos, vel, landmarks = state.p_pos[:num], state.p_vel[:num], state.p_pos[num:]
        landmark_rel = landmarks[None, :, :] - pos[:, None, :]  # [N, L, 2]
        other_rel = pos[self._others] - pos[:, None, :]  # [N, N-1, 2]
        if self.vision is not None:
            landmark_rel = _mask_beyond(landmark_rel, self.vision)
            other_rel = _mask_beyond(other_rel, self.vision)
        parts = [vel, pos, landmark_rel.reshape(num, -1), other_rel.reshape(num, -1)]
        if self.comm_obs:  # the other agents' communication: silent, always zero
            parts.append(jnp.zeros((num, 2 * (num - 1)), vel.dtype))
        return jnp.concatenate(parts, axis=-1).astype(jnp.float32)

    def team_reward(self, state: State) -> tuple[Array, dict[str, Array]]:
        """The shared reward ``[]`` of a state and the ``info`` dict (module docstring)."""
        num = self.num_agents
        pos, landmarks = state.p_pos[:num], state.p_pos[num:]
        goals = self.targets(pos, landmarks)
        distances = jnp.linalg.norm(pos[:, None, :] - goals[None, :, :], axis=-1)
        target_distance = assigned_costs(distances).mean()
        gaps = jnp.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
        pairs = np.triu(np.ones((num, num), bool), k=1)
        collisions = jnp.sum((gaps < 2 * self.agent_size) & pairs).astype(jnp.float32)
        reward = -target_distance - self.collision_penalty * collisions / num
        info = {"target_distance": target_distance, "collisions": collisions}
        return jnp.clip(reward, -REWARD_CLIP, REWARD_CLIP), info

    def _env_step(self, state: State, reward: Array, info: dict[str, Array],
                  truncated: Array) -> EnvStep:
        return EnvStep(
            state=state,
            obs=self.observe(state),
            avail_actions=jnp.ones((self.num_agents, NUM_ACTIONS), bool),
            reward=jnp.broadcast_to(reward, (self.num_agents,)).astype(jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=truncated,
            info=info,
        )

    def reset(self, key: Array) -> EnvStep:
        agent_key, landmark_key = jax.random.split(key)
        agent_pos = jax.random.uniform(agent_key, (self.num_agents, 2), minval=-1.0, maxval=1.0)
        state = self.make_state(agent_pos, self.sample_landmarks(landmark_key))
        _, info = self.team_reward(state)
        return self._env_step(state, jnp.zeros(()), info, jnp.zeros((), bool))

    def step(self, key: Array, state: State, actions: Array) -> EnvStep:
        action_dict = {a: actions[i] for i, a in enumerate(self.world.agents)}
        old_vel = state.p_vel
        _, state, _, _, _ = self.world.step_env(key, state, action_dict)
        if self.integrator == "mpe":
            # JaxMARL moved by the old velocity (p + v dt); the original MPE moves by
            # the new one: p + v' dt = (p + v dt) + (v' - v) dt
            state = state.replace(p_pos=state.p_pos + (state.p_vel - old_vel) * self.world.dt)
        reward, info = self.team_reward(state)
        return self._env_step(state, reward, info, state.step >= self.max_steps)

    def __repr__(self) -> str:
        return (f"{super().__repr__()[:-1]}, vision={self.vision}, "
                f"collision_penalty={self.collision_penalty}, comm_obs={self.comm_obs}, "
                f"integrator={self.integrator!r})")


def _mask_beyond(rel: Array, vision: float) -> Array:
    """Zero the relative positions ``[..., 2]`` at distance >= ``vision``."""
    seen = jnp.linalg.norm(rel, axis=-1, keepdims=True) < vision
    return jnp.where(seen, rel, 0.0)


def _uniform_centre(key: Array) -> Array:
    return jax.random.uniform(key, (2,), minval=-CENTRE_RANGE, maxval=CENTRE_RANGE)


class MPENavigation(MPETask):
    """``mpe_navigation``: cover ``N`` landmarks, one agent each."""

    agent_size = 0.05
    landmark_size = 0.05

    def __init__(self, num_agents: int = 5, **kwargs) -> None:
        self.num_landmarks = num_agents
        super().__init__(name="mpe_navigation", num_agents=num_agents, **kwargs)

    def sample_landmarks(self, key: Array) -> Array:
        return jax.random.uniform(key, (self.num_landmarks, 2), minval=-1.0, maxval=1.0)

    def targets(self, agent_pos: Array, landmark_pos: Array) -> Array:
        return landmark_pos


class MPELine(MPETask):
    """``mpe_line``: line up evenly between two landmarks 1.25 apart."""

    num_landmarks = 2
    agent_size = 0.03
    landmark_size = 0.02
    min_agents = 2

    def __init__(self, num_agents: int = 5, **kwargs) -> None:
        super().__init__(name="mpe_line", num_agents=num_agents, **kwargs)

    def sample_landmarks(self, key: Array) -> Array:
        centre_key, angle_key = jax.random.split(key)
        start = _uniform_centre(centre_key)
        turns = jnp.arange(round(2 * math.pi / LINE_TURN_STEP))
        angles = jax.random.uniform(angle_key, (), maxval=2 * math.pi) + turns * LINE_TURN_STEP
        ends = start + LINE_LENGTH * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
        inside = jnp.all(jnp.abs(ends) < 1.0, axis=-1)
        return jnp.stack([start, ends[jnp.argmax(inside)]])

    def targets(self, agent_pos: Array, landmark_pos: Array) -> Array:
        fractions = jnp.linspace(0.0, 1.0, self.num_agents)[:, None]
        return landmark_pos[0] + fractions * (landmark_pos[1] - landmark_pos[0])


class MPECircle(MPETask):
    """``mpe_circle``: spread evenly on the circle of radius 0.5 around a landmark."""

    num_landmarks = 1
    agent_size = 0.03
    landmark_size = 0.02

    def __init__(self, num_agents: int = 5, **kwargs) -> None:
        super().__init__(name="mpe_circle", num_agents=num_agents, **kwargs)

    def sample_landmarks(self, key: Array) -> Array:
        return _uniform_centre(key)[None]

    def targets(self, agent_pos: Array, landmark_pos: Array) -> Array:
        rel = agent_pos - landmark_pos[0]
        angles = jnp.mod(jnp.arctan2(rel[:, 1], rel[:, 0]), 2 * math.pi)
        slots = angles.min() + 2 * math.pi / self.num_agents * jnp.arange(self.num_agents)
        return landmark_pos[0] + CIRCLE_RADIUS * jnp.stack([jnp.cos(slots), jnp.sin(slots)], -1)


def make_mpe_navigation(num_agents: int = 5, vision: Optional[float] = 1.0,
                        collision_penalty: float = 0.0, max_steps: int = 25,
                        comm_obs: bool = False, integrator: str = "jaxmarl") -> MPENavigation:
    """The paper's simple spread (``mpe_navigation``); see the module docstring."""
    return MPENavigation(num_agents, vision=vision, collision_penalty=collision_penalty,
                         max_steps=max_steps, comm_obs=comm_obs, integrator=integrator)


def make_mpe_line(num_agents: int = 5, vision: Optional[float] = 1.0,
                  collision_penalty: float = 0.0, max_steps: int = 25,
                  comm_obs: bool = False, integrator: str = "jaxmarl") -> MPELine:
    """The paper's line control (``mpe_line``); see the module docstring."""
    return MPELine(num_agents, vision=vision, collision_penalty=collision_penalty,
                   max_steps=max_steps, comm_obs=comm_obs, integrator=integrator)


def make_mpe_circle(num_agents: int = 5, vision: Optional[float] = 1.0,
                    collision_penalty: float = 0.0, max_steps: int = 25,
                    comm_obs: bool = False, integrator: str = "jaxmarl") -> MPECircle:
    """The paper's circle control (``mpe_circle``); see the module docstring."""
    return MPECircle(num_agents, vision=vision, collision_penalty=collision_penalty,
                     max_steps=max_steps, comm_obs=comm_obs, integrator=integrator)
