"""Multi-agent MuJoCo on MuJoCo MJX, in the stacked-array protocol.

One robot is split into parts (``mamujoco_robots``): agent ``i`` drives the
actuators of its joints and observes the joints within ``agent_obsk`` hops
(``mamujoco_obsk``); every agent gets the robot's reward. The physics is MuJoCo MJX
(pure JAX), so rollout and training stay one compiled program.

Task rules follow Gymnasium's v5 environment of the same robot (``TaskRules``):
frame skip, reward terms, healthy/termination rule, reset noise; the model is the
XML Gymnasium ships. As in Gymnasium, positions read after ``mj_step`` (Ant's
torso ``xpos``, Humanoid's mass centre) are those of the last forward pass, and
``cfrc_ext`` is refreshed by ``rne_postconstraint`` after the step.

``physics`` chooses the solver settings (``PhysicsOptions``, ``PHYSICS_PRESETS``):

* ``"fast"`` (default): the XML's integrator and timestep, a conjugate-gradient
  solver capped at 8 iterations and 8 line-search steps, sparse Jacobians (no LAPACK
  call anywhere in the step: see below), and contacts between the floor and the
  robot only (Hopper's and Humanoid's XML also collide body parts with each other).
  Settings of the kind Brax and MuJoCo Playground use for MJX locomotion. Measured
  with the C engine from the same states (``benchmarks/mjx_preset_accuracy.py``,
  200 random-action states per robot), one env step differs from Gymnasium's
  options by a median largest ``qpos`` difference of 7e-17 (HalfCheetah) to 3e-5
  (Ant), 6e-3 for Humanoid (whose body-body contacts this preset drops), and a
  95th percentile of 2e-6 (Hopper) to 2e-2 (Humanoid).
* ``"euler"``: ``"fast"`` with the semi-implicit Euler integrator instead of the
  XML's RK4 (Hopper, Walker2d, Ant, Humanoid): about 6x faster on a CPU, at a
  median one-step ``qpos`` difference of 1e-3 (Hopper) to 4e-2 (Ant).
* ``"gymnasium"``: the XML's options as they are (Newton solver, 100 iterations;
  Humanoid's PGS, which MJX lacks, becomes Newton), for comparisons with the C
  engine. Its dense Cholesky factorisations are LAPACK calls, which under ``vmap``
  on a CPU with few cores risk the XLA thread-pool stall described in the README.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs._imports import import_mjx
from dpo_jax.envs.base import (
    Array,
    ContinuousActions,
    EnvStep,
    MultiAgentEnv,
    ObsCodec,
    codec_from_feature_index,
)
from dpo_jax.envs.mamujoco_obsk import (
    FeatureLayout,
    action_index,
    model_info,
    observation_index,
    validate_partition,
)
from dpo_jax.envs.mamujoco_robots import BODY_CATEGORIES, ROBOTS, Robot


def jax_backend_field(data: object, name: str) -> jax.Array:
    """A field of ``mjx.Data`` that MJX keeps on its JAX backend's data only
    (``data._impl``: ``cfrc_ext``, ``cinert`` in mujoco-mjx 3.x, which has no public
    accessor for them). The one place dpo-jax reads MJX's implementation; a
    ``RuntimeError`` naming the field if a later MJX moves it."""
    impl = getattr(data, "_impl", None)
    value = getattr(impl, name, None) if impl is not None else getattr(data, name, None)
    if value is None:
        raise RuntimeError(f"mujoco.mjx.Data has no {name!r} on its JAX backend "
                           f"(mujoco-mjx {_mjx_version()}): multi-agent MuJoCo's body "
                           f"observations need it; pin mujoco-mjx<4")
    return value


def _mjx_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mujoco-mjx")
    except PackageNotFoundError:
        return "unknown"

PAPER_AGENT_OBSK = 2
PAPER_EPISODE_LENGTH = 1000


@dataclasses.dataclass(frozen=True)
class PhysicsOptions:
    """MuJoCo solver settings applied on top of the XML (module docstring).

    ``None`` keeps the XML's value. ``floor_contacts_only`` turns off collisions
    between the robot's own geoms.
    """

    solver: Optional[str] = "cg"
    iterations: Optional[int] = 8
    ls_iterations: Optional[int] = 8
    integrator: Optional[str] = None
    sparse_jacobian: bool = True
    floor_contacts_only: bool = True


PHYSICS_PRESETS: dict[str, PhysicsOptions] = {
    "fast": PhysicsOptions(),
    "euler": PhysicsOptions(integrator="euler"),
    "gymnasium": PhysicsOptions(solver=None, iterations=None, ls_iterations=None,
                                integrator=None, sparse_jacobian=False,
                                floor_contacts_only=False),
}


def asset_path(xml_file: str) -> str:
    """Path of a MuJoCo model shipped with Gymnasium (``gymnasium[mujoco]``)."""
    import gymnasium

    path = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets",
                        xml_file)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: multi-agent MuJoCo needs the MuJoCo "
                                "models shipped with gymnasium>=1.0")
    return path


def load_model(robot: Robot, physics: PhysicsOptions):
    """The robot's ``mujoco.MjModel`` with ``physics`` applied."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(asset_path(robot.xml_file))
    solvers = {"cg": mujoco.mjtSolver.mjSOL_CG, "newton": mujoco.mjtSolver.mjSOL_NEWTON}
    if physics.solver is not None:
        if physics.solver not in solvers:
            raise ValueError(f"PhysicsOptions.solver={physics.solver!r} is invalid: "
                             f"expected one of {sorted(solvers)} or None")
        model.opt.solver = solvers[physics.solver]
    elif model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON  # MJX has no PGS
    integrators = {"euler": mujoco.mjtIntegrator.mjINT_EULER,
                   "rk4": mujoco.mjtIntegrator.mjINT_RK4,
                   "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}
    if physics.integrator is not None:
        if physics.integrator not in integrators:
            raise ValueError(f"PhysicsOptions.integrator={physics.integrator!r} is "
                             f"invalid: expected one of {sorted(integrators)} or None")
        model.opt.integrator = integrators[physics.integrator]
    if physics.iterations is not None:
        model.opt.iterations = physics.iterations
    if physics.ls_iterations is not None:
        model.opt.ls_iterations = physics.ls_iterations
    if physics.sparse_jacobian:
        model.opt.jacobian = mujoco.mjtJacobian.mjJAC_SPARSE
    if physics.floor_contacts_only:
        # the world's geoms collide with everything, the robot's with the world only
        on_world = model.geom_bodyid == 0
        model.geom_contype[:] = np.where(on_world, 1, 2)
        model.geom_conaffinity[:] = np.where(on_world, 2, 1)
    return model


def _resolve_robot(robot: str) -> Robot:
    key = robot.lower().replace("-", "").replace("_", "")
    for r in ROBOTS.values():
        if r.name.replace("_", "") == key:
            return r
    raise ValueError(f"unknown robot {robot!r}; expected one of {sorted(ROBOTS)}")


class MaMuJoCoState(NamedTuple):
    """The MJX simulation state and the steps taken in this episode."""

    data: object  # mujoco.mjx.Data
    time_step: Array  # [] int32


class MaMuJoCo(MultiAgentEnv):
    """One robot, several agents (module docstring).

    Args:
      robot: ``hopper``, ``half_cheetah`` (or ``halfcheetah``), ``walker2d``, ``ant``
        or ``humanoid``.
      partition: the name of one of the robot's partitions (``3x1``, ``3x2``, ...;
        see ``ROBOTS[robot].graph.partitions``) or your own, a sequence of joint-name
        sequences, one per agent.
      agent_obsk: hops of the joint graph an agent observes (paper: 2).
      max_steps: episode time limit (paper: 1000).
      physics: ``"fast"``, ``"gymnasium"`` or a ``PhysicsOptions``.
    """

    def __init__(self, robot: str = "hopper",
                 partition: Union[str, Sequence[Sequence[str]]] = "3x1",
                 agent_obsk: int = PAPER_AGENT_OBSK,
                 max_steps: int = PAPER_EPISODE_LENGTH,
                 physics: Union[str, PhysicsOptions] = "fast"):
        mjx = import_mjx()

        self.robot = _resolve_robot(robot)
        graph, rules = self.robot.graph, self.robot.rules
        if isinstance(partition, str):
            if partition not in graph.partitions:
                raise ValueError(f"unknown partition {partition!r} of {self.robot.name}; "
                                 f"expected one of {sorted(graph.partitions)} or a "
                                 "sequence of joint-name sequences")
            self.partition_name = partition
            partition = graph.partitions[partition]
        else:
            self.partition_name = "custom"
        self.partition = validate_partition(graph, partition)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps={max_steps!r} is invalid: expected a positive int")
        if isinstance(physics, str):
            if physics not in PHYSICS_PRESETS:
                raise ValueError(f"physics={physics!r} is invalid: expected one of "
                                 f"{sorted(PHYSICS_PRESETS)} or a PhysicsOptions")
            physics = PHYSICS_PRESETS[physics]
        self.physics = physics
        self.agent_obsk = agent_obsk
        self.max_steps = max_steps
        self.name = f"mamujoco_{self.robot.name}_{self.partition_name}"

        self.mj_model = load_model(self.robot, physics)
        self.mjx_model = mjx.put_model(self.mj_model)
        info = model_info(self.mj_model, graph)
        self.obs_index, self.obs_entries = observation_index(
            graph, info, self.partition, agent_obsk)
        self.ctrl_index, action_dim = action_index(info, self.partition)
        self.layout = FeatureLayout(info.nq, info.nv, info.nbody)
        self.num_agents = len(self.partition)
        self.obs_dim = int(self.obs_index.shape[1])
        low, high = self.mj_model.actuator_ctrlrange.T
        self.action_spec = ContinuousActions(action_dim, float(low.min()), float(high.max()))
        self.dt = float(self.mj_model.opt.timestep) * rules.frame_skip

        observed = {e[0] for entries in self.obs_entries for e in entries}
        self._needs_body_forces = ("cfrc_ext" in observed or rules.contact_cost_weight > 0)
        self._needs_forward_at_reset = bool(observed - {"qpos", "qvel"}) or (
            rules.velocity_of != "root_qpos")
        self._torso = int(info.body_id.get("torso", 1))
        self._body_mass = np.asarray(self.mj_model.body_mass, np.float32)

    # -- physics ----------------------------------------------------------------
    def _forward_extras(self, data):
        mjx = import_mjx()

        if self._needs_body_forces:
            data = mjx.rne_postconstraint(self.mjx_model, data)
        return data

    def _x_position(self, data) -> Array:
        of = self.robot.rules.velocity_of
        if of == "root_qpos":
            return data.qpos[0]
        if of == "torso_xpos":
            return data.xpos[self._torso, 0]
        mass = jnp.asarray(self._body_mass)
        return (mass @ data.xipos[:, 0]) / mass.sum()

    def _observe(self, data) -> Array:
        graph = self.robot.graph
        qvel = data.qvel
        if graph.qvel_clip is not None:
            qvel = jnp.clip(qvel, -graph.qvel_clip, graph.qvel_clip)
        body = {"cfrc_ext": jax_backend_field(data, "cfrc_ext"), "cvel": data.cvel,
                "cinert": jax_backend_field(data, "cinert")}
        if graph.body_clip is not None:
            body = {k: jnp.clip(v, -graph.body_clip, graph.body_clip)
                    for k, v in body.items()}
        features = jnp.concatenate(
            [data.qpos, qvel, data.qfrc_actuator]
            + [body[c].reshape(-1) for c in BODY_CATEGORIES] + [jnp.zeros((1,))])
        return features[jnp.asarray(self.obs_index)].astype(jnp.float32)

    def observation_codec(self) -> ObsCodec:
        """Observations are ``features[obs_index]``: store each observed feature once
        (Humanoid 17x1: 283 floats instead of 17 x 52 = 884)."""
        return codec_from_feature_index(self.obs_index, self.layout.offsets["pad"])

    def controls(self, actions: Array) -> Array:
        """The actuator vector ``[nu]`` from the agents' actions ``[N, action_dim]``."""
        flat = jnp.concatenate([actions.reshape(-1), jnp.zeros((1,), actions.dtype)])
        return flat[jnp.asarray(self.ctrl_index)]

    # -- task rules ---------------------------------------------------------------
    def is_healthy(self, data) -> Array:
        rules = self.robot.rules
        qpos, healthy = data.qpos, jnp.array(True)
        if rules.healthy_z_range is not None:
            lo, hi = rules.healthy_z_range
            z = qpos[rules.root_z_index]
            healthy &= ((lo <= z) & (z <= hi)) if rules.inclusive_z else ((lo < z) & (z < hi))
        if rules.healthy_angle_range is not None:
            lo, hi = rules.healthy_angle_range
            healthy &= (lo < qpos[2]) & (qpos[2] < hi)
        if rules.healthy_state_range is not None:
            lo, hi = rules.healthy_state_range
            state = jnp.concatenate([qpos, data.qvel])[2:]
            healthy &= jnp.all((lo < state) & (state < hi))
        if rules.inclusive_z:  # Ant-v5 also requires a finite state
            healthy &= jnp.all(jnp.isfinite(jnp.concatenate([qpos, data.qvel])))
        return healthy

    def reward_terms(self, x_before: Array, data, ctrl: Array) -> dict[str, Array]:
        """Gymnasium v5's reward terms for one env step (``TaskRules``)."""
        rules = self.robot.rules
        x_velocity = (self._x_position(data) - x_before) / self.dt
        terms = {
            "forward_reward": rules.forward_reward_weight * x_velocity,
            "healthy_reward": rules.healthy_reward * self.is_healthy(data),
            "ctrl_cost": rules.ctrl_cost_weight * jnp.sum(jnp.square(ctrl)),
            "contact_cost": jnp.zeros(()),
        }
        if rules.contact_cost_weight > 0:
            forces = jax_backend_field(data, "cfrc_ext")
            if rules.contact_force_range is not None:
                forces = jnp.clip(forces, *rules.contact_force_range)
            cost = rules.contact_cost_weight * jnp.sum(jnp.square(forces))
            if rules.contact_cost_max is not None:
                cost = jnp.minimum(cost, rules.contact_cost_max)
            terms["contact_cost"] = cost
        terms["reward"] = (terms["forward_reward"] + terms["healthy_reward"]
                           - terms["ctrl_cost"] - terms["contact_cost"])
        terms["x_velocity"] = x_velocity
        return terms

    # -- protocol -----------------------------------------------------------------
    def _env_step(self, data, reward: Array, terminated: Array, time_step: Array) -> EnvStep:
        return EnvStep(
            state=MaMuJoCoState(data, time_step),
            obs=self._observe(data),
            avail_actions=jnp.ones((self.num_agents, 1), bool),
            reward=jnp.broadcast_to(reward, (self.num_agents,)).astype(jnp.float32),
            terminated=terminated,
            truncated=(time_step >= self.max_steps) & ~terminated,
            info={"x_position": self._x_position(data).astype(jnp.float32)},
        )

    def reset(self, key: Array) -> EnvStep:
        mjx = import_mjx()

        rules, m = self.robot.rules, self.mj_model
        qpos_key, qvel_key = jax.random.split(key)
        s = rules.reset_noise_scale
        qpos = jnp.asarray(m.qpos0) + jax.random.uniform(qpos_key, (m.nq,), minval=-s,
                                                         maxval=s)
        if rules.qvel_noise == "normal":
            qvel = s * jax.random.normal(qvel_key, (m.nv,))
        else:
            qvel = jax.random.uniform(qvel_key, (m.nv,), minval=-s, maxval=s)
        data = mjx.make_data(self.mjx_model).replace(qpos=qpos, qvel=qvel)
        if self._needs_forward_at_reset:
            data = self._forward_extras(mjx.forward(self.mjx_model, data))
        return self._env_step(data, jnp.zeros(()), jnp.array(False),
                              jnp.zeros((), jnp.int32))

    def step(self, key: Array, state: MaMuJoCoState, actions: Array) -> EnvStep:
        mjx = import_mjx()

        del key  # the dynamics are deterministic
        ctrl = self.controls(actions)
        x_before = self._x_position(state.data)
        data = state.data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, self.robot.rules.frame_skip,
                                 lambda _, d: mjx.step(self.mjx_model, d), data)
        data = self._forward_extras(data)
        terms = self.reward_terms(x_before, data, ctrl)
        terminated = jnp.array(False)
        if self.robot.rules.terminate_when_unhealthy:
            terminated = ~self.is_healthy(data)
        return self._env_step(data, terms["reward"], terminated, state.time_step + 1)


def make_mamujoco(robot: str = "hopper",
                  partition: Union[str, Sequence[Sequence[str]]] = "3x1",
                  agent_obsk: int = PAPER_AGENT_OBSK,
                  max_steps: int = PAPER_EPISODE_LENGTH,
                  physics: Union[str, PhysicsOptions] = "fast") -> MaMuJoCo:
    """``make_env("mamujoco", robot=..., partition=..., agent_obsk=2)``."""
    return MaMuJoCo(robot, partition, agent_obsk, max_steps, physics)


def mamujoco_task_factory(robot: str, partition: str):
    """A factory of one paper task (``make_env("mamujoco_hopper_3x1")``)."""

    def factory(agent_obsk: int = PAPER_AGENT_OBSK, max_steps: int = PAPER_EPISODE_LENGTH,
                physics: Union[str, PhysicsOptions] = "fast") -> MaMuJoCo:
        return MaMuJoCo(robot, partition, agent_obsk, max_steps, physics)

    factory.__name__ = f"make_mamujoco_{robot}_{partition}"
    return factory
