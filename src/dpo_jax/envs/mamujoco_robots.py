"""Multi-agent MuJoCo as data: joint graphs, partitions and Gymnasium's task rules.

Everything that defines a multi-agent MuJoCo task lives here, as plain data, so that
a user can read it, change it or add a partition without touching the simulator:

* ``RobotGraph``: the robot's actuated joints (the graph's nodes), the hyper-edges
  that connect them, the named partitions (joint names per agent), which
  quantities an agent observes of the joints 0, 1, 2, ... hops away
  (``k_categories``) and of the robot's root (``global_categories``), and the
  clipping MaMuJoCo applies (Hopper's velocities to [-10, 10], Ant's body forces to
  [-1, 1]). The graphs and partitions are MaMuJoCo's (Peng et al., 2021; the
  ``multiagent_mujoco`` package the paper used, Apache-2.0), written by joint name;
  indices into the model are derived from the MuJoCo model when an env is built.
* ``TaskRules``: reward, healthy/termination rule, frame skip and reset noise of the
  Gymnasium v5 environment of the same robot (Gymnasium 1.x ``Hopper-v5``,
  ``HalfCheetah-v5``, ``Walker2d-v5``, ``Ant-v5``, ``Humanoid-v5`` with their default
  arguments).

The robot models are the XML files shipped in the ``gymnasium`` package
(``gymnasium/envs/mujoco/assets``, MIT licence; originally OpenAI Gym's).

Body references in ``joint_bodies`` / ``global_bodies`` are body names, or
``"@joint"`` for the body that carries ``joint`` (Ant's lower-leg bodies are
unnamed in the XML).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, Optional

Partition = tuple[tuple[str, ...], ...]

JOINT_CATEGORIES = ("qpos", "qvel", "qfrc_actuator")
BODY_CATEGORIES = ("cfrc_ext", "cvel", "cinert")
CATEGORIES = JOINT_CATEGORIES + BODY_CATEGORIES


@dataclasses.dataclass(frozen=True)
class RobotGraph:
    """A robot's joint graph, its partitions and what agents observe (module doc).

    Attributes:
      joints: the actuated joints, the graph's nodes (one actuator each).
      hyperedges: groups of joints that are mutually one hop apart.
      partitions: named partitions, each a tuple of joint-name tuples (one per agent).
      k_categories: per hop distance, the quantities observed of each joint at that
        distance; the last entry repeats for larger distances.
      global_categories: the quantities observed of the root joint(s) and
        ``global_bodies`` by every agent.
      root_qpos_skip: leading root position coordinates not observed (the x (and
        y) position, as Gymnasium's ``exclude_current_positions_from_observation``).
      joint_bodies: bodies whose ``BODY_CATEGORIES`` quantities a joint contributes;
        joints not listed contribute the body that carries them.
      global_bodies: bodies observed with the global body categories.
      qvel_clip: bound applied to every observed joint velocity (None: none).
      body_clip: bound applied to every observed body quantity (None: none).
    """

    joints: tuple[str, ...]
    hyperedges: tuple[tuple[str, ...], ...]
    partitions: Mapping[str, Partition]
    k_categories: tuple[tuple[str, ...], ...] = (("qpos", "qvel"), ("qpos",))
    global_categories: tuple[str, ...] = ("qpos", "qvel")
    root_qpos_skip: int = 1
    joint_bodies: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    global_bodies: tuple[str, ...] = ()
    qvel_clip: Optional[float] = None
    body_clip: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TaskRules:
    """Reward, termination and reset of a Gymnasium v5 locomotion task.

    reward = forward_reward_weight * v_x + healthy_reward * is_healthy
             - ctrl_cost_weight * |a|^2 - contact cost,
    where v_x is the forward velocity of ``velocity_of`` over one env step (``dt =
    timestep * frame_skip``) and the contact cost is
    ``contact_cost_weight * |clip(cfrc_ext, *contact_force_range)|^2`` capped at
    ``contact_cost_max``.

    ``is_healthy`` holds when the root height ``qpos[root_z_index]`` lies in
    ``healthy_z_range``, the root pitch ``qpos[2]`` in ``healthy_angle_range`` (when
    given), and ``concat(qpos, qvel)[2:]`` in ``healthy_state_range`` (when given);
    bounds are strict except when ``inclusive_z`` (Ant). The episode terminates when
    unhealthy (``terminate_when_unhealthy``).

    Reset: ``qpos = init_qpos + U(-s, s)``; ``qvel = init_qvel + U(-s, s)`` or
    ``+ s * N(0, 1)`` (``qvel_noise``), with ``s = reset_noise_scale``.
    """

    gym_id: str
    frame_skip: int
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: Optional[tuple[float, float]] = None
    healthy_angle_range: Optional[tuple[float, float]] = None
    healthy_state_range: Optional[tuple[float, float]] = None
    inclusive_z: bool = False
    root_z_index: int = 1
    velocity_of: Literal["root_qpos", "torso_xpos", "mass_center"] = "root_qpos"
    contact_cost_weight: float = 0.0
    contact_force_range: Optional[tuple[float, float]] = None
    contact_cost_max: Optional[float] = None
    reset_noise_scale: float = 5e-3
    qvel_noise: Literal["uniform", "normal"] = "uniform"


@dataclasses.dataclass(frozen=True)
class Robot:
    """One robot: its Gymnasium XML asset, graph and task rules."""

    name: str
    xml_file: str
    graph: RobotGraph
    rules: TaskRules


INF = float("inf")

HOPPER = Robot(
    name="hopper",
    xml_file="hopper.xml",
    graph=RobotGraph(
        joints=("thigh_joint", "leg_joint", "foot_joint"),
        hyperedges=(("foot_joint", "leg_joint"), ("leg_joint", "thigh_joint")),
        partitions={"3x1": (("thigh_joint",), ("leg_joint",), ("foot_joint",))},
        qvel_clip=10.0,
    ),
    rules=TaskRules(
        gym_id="Hopper-v5", frame_skip=4, healthy_z_range=(0.7, INF),
        healthy_angle_range=(-0.2, 0.2), healthy_state_range=(-100.0, 100.0),
    ),
)

HALF_CHEETAH = Robot(
    name="half_cheetah",
    xml_file="half_cheetah.xml",
    graph=RobotGraph(
        joints=("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"),
        hyperedges=(("bfoot", "bshin"), ("bshin", "bthigh"), ("bthigh", "fthigh"),
                    ("fthigh", "fshin"), ("fshin", "ffoot")),
        partitions={
            "3x2": (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")),
            "2x3": (("bfoot", "bshin", "bthigh"), ("ffoot", "fshin", "fthigh")),
            "6x1": (("bfoot",), ("bshin",), ("bthigh",), ("ffoot",), ("fshin",),
                    ("fthigh",)),
        },
    ),
    rules=TaskRules(
        gym_id="HalfCheetah-v5", frame_skip=5, ctrl_cost_weight=0.1, healthy_reward=0.0,
        terminate_when_unhealthy=False, reset_noise_scale=0.1, qvel_noise="normal",
    ),
)

WALKER2D = Robot(
    name="walker2d",
    xml_file="walker2d_v5.xml",
    graph=RobotGraph(
        joints=("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint",
                "leg_left_joint", "foot_left_joint"),
        hyperedges=(("foot_joint", "leg_joint"), ("leg_joint", "thigh_joint"),
                    ("foot_left_joint", "leg_left_joint"),
                    ("leg_left_joint", "thigh_left_joint"),
                    ("thigh_joint", "thigh_left_joint")),
        partitions={
            "3x2": (("foot_joint", "leg_joint"), ("thigh_joint", "foot_left_joint"),
                    ("leg_left_joint", "thigh_left_joint")),
            "2x3": (("foot_joint", "leg_joint", "thigh_joint"),
                    ("foot_left_joint", "leg_left_joint", "thigh_left_joint")),
        },
    ),
    rules=TaskRules(
        gym_id="Walker2d-v5", frame_skip=4, healthy_z_range=(0.8, 2.0),
        healthy_angle_range=(-1.0, 1.0),
    ),
)

_ANT_LEGS = (("hip_1", "ankle_1", "front_left_leg", "aux_1"),
             ("hip_2", "ankle_2", "front_right_leg", "aux_2"),
             ("hip_3", "ankle_3", "back_leg", "aux_3"),
             ("hip_4", "ankle_4", "right_back_leg", "aux_4"))

ANT = Robot(
    name="ant",
    xml_file="ant.xml",
    graph=RobotGraph(
        joints=tuple(j for hip, ankle, _, _ in _ANT_LEGS for j in (hip, ankle)),
        hyperedges=tuple((ankle, hip) for hip, ankle, _, _ in _ANT_LEGS)
        + (tuple(hip for hip, _, _, _ in _ANT_LEGS),),
        partitions={
            "4x2": tuple((hip, ankle) for hip, ankle, _, _ in _ANT_LEGS),
            "2x4": (("hip_1", "ankle_1", "hip_2", "ankle_2"),
                    ("hip_3", "ankle_3", "hip_4", "ankle_4")),
            "2x4d": (("hip_1", "ankle_1", "hip_3", "ankle_3"),
                     ("hip_2", "ankle_2", "hip_4", "ankle_4")),
            "8x1": tuple((j,) for hip, ankle, _, _ in _ANT_LEGS for j in (hip, ankle)),
        },
        k_categories=(("qpos", "qvel", "cfrc_ext"), ("qpos",)),
        global_categories=("qpos", "qvel", "cfrc_ext"),
        root_qpos_skip=2,
        # MaMuJoCo's body sets: a hip sees the torso and the upper leg, an ankle the
        # upper leg, the hip's body and the lower leg.
        joint_bodies={
            **{hip: ("torso", upper) for hip, _, upper, _ in _ANT_LEGS},
            **{ankle: (upper, aux, "@" + ankle) for _, ankle, upper, aux in _ANT_LEGS},
        },
        global_bodies=("torso",),
        body_clip=1.0,
    ),
    rules=TaskRules(
        gym_id="Ant-v5", frame_skip=5, ctrl_cost_weight=0.5, healthy_z_range=(0.2, 1.0),
        inclusive_z=True, root_z_index=2, velocity_of="torso_xpos",
        contact_cost_weight=5e-4, contact_force_range=(-1.0, 1.0),
        reset_noise_scale=0.1, qvel_noise="normal",
    ),
)

_HUMANOID_JOINTS = (
    "abdomen_z", "abdomen_y", "abdomen_x", "right_hip_x", "right_hip_z", "right_hip_y",
    "right_knee", "left_hip_x", "left_hip_z", "left_hip_y", "left_knee",
    "right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1",
    "left_shoulder2", "left_elbow",
)
_ABDOMEN = ("abdomen_x", "abdomen_y", "abdomen_z")
_HIP = {side: (f"{side}_hip_x", f"{side}_hip_y", f"{side}_hip_z")
        for side in ("left", "right")}
_ARM = {side: (f"{side}_elbow", f"{side}_shoulder1", f"{side}_shoulder2")
        for side in ("left", "right")}

HUMANOID = Robot(
    name="humanoid",
    xml_file="humanoid.xml",
    graph=RobotGraph(
        joints=_HUMANOID_JOINTS,
        hyperedges=(
            _ABDOMEN, _HIP["right"], _HIP["left"], _ARM["left"], _ARM["right"],
            ("left_knee",) + _HIP["left"], ("right_knee",) + _HIP["right"],
            ("left_shoulder1", "left_shoulder2") + _ABDOMEN,
            ("right_shoulder1", "right_shoulder2") + _ABDOMEN,
            _ABDOMEN + _HIP["left"], _ABDOMEN + _HIP["right"],
        ),
        partitions={
            "17x1": tuple((j,) for j in (
                "left_shoulder1", "left_shoulder2", "abdomen_x", "abdomen_y",
                "abdomen_z", "right_shoulder1", "right_shoulder2", "right_elbow",
                "left_elbow", "left_hip_x", "left_hip_y", "left_hip_z", "right_hip_x",
                "right_hip_y", "right_hip_z", "right_knee", "left_knee")),
            "9|8": (("left_shoulder1", "left_shoulder2", "abdomen_x", "abdomen_y",
                     "abdomen_z", "right_shoulder1", "right_shoulder2", "right_elbow",
                     "left_elbow"),
                    ("left_hip_x", "left_hip_y", "left_hip_z", "right_hip_x",
                     "right_hip_y", "right_hip_z", "right_knee", "left_knee")),
        },
        k_categories=(("qpos", "qvel", "cfrc_ext", "cvel", "cinert", "qfrc_actuator"),
                      ("qpos",)),
        root_qpos_skip=2,
    ),
    rules=TaskRules(
        gym_id="Humanoid-v5", frame_skip=5, forward_reward_weight=1.25,
        ctrl_cost_weight=0.1, healthy_reward=5.0, healthy_z_range=(1.0, 2.0),
        root_z_index=2, velocity_of="mass_center", contact_cost_weight=5e-7,
        contact_cost_max=10.0, reset_noise_scale=1e-2,
    ),
)

ROBOTS: dict[str, Robot] = {r.name: r for r in (HOPPER, HALF_CHEETAH, WALKER2D, ANT,
                                                 HUMANOID)}
"""The five robots of the paper (Sec. 4.3, Table 1), by name."""

PAPER_TASKS: dict[str, tuple[str, str]] = {
    "mamujoco_hopper_3x1": ("hopper", "3x1"),
    "mamujoco_half_cheetah_3x2": ("half_cheetah", "3x2"),
    "mamujoco_walker2d_3x2": ("walker2d", "3x2"),
    "mamujoco_ant_4x2": ("ant", "4x2"),
    "mamujoco_humanoid_17x1": ("humanoid", "17x1"),
}
"""Registry alias -> (robot, partition) of the paper's tasks (agent_obsk = 2)."""
