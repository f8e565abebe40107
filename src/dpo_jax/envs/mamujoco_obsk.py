"""Partitions and ``agent_obsk`` neighbourhoods, computed once when an env is built.

An agent drives the actuators of its joints and observes the joints within
``agent_obsk`` hops of them in the robot's joint graph, where two joints are one hop
apart when some hyper-edge holds both (MaMuJoCo, Peng et al., 2021). Joints are
grouped by distance, each group sorted by name (MaMuJoCo's order); of a joint at
distance d the agent observes ``k_categories[min(d, last)]``. Then come the global
entries (root joint and ``global_bodies``), then zeros up to the longest agent's
observation so that agents stack.

The result is static data: a table of indices into one flat feature vector
(``FeatureLayout``), so that the whole observation of all agents is a single gather
inside the compiled step, and an index table from the agents' stacked actions to
MuJoCo's actuator vector.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from dpo_jax.envs.mamujoco_robots import (
    BODY_CATEGORIES,
    CATEGORIES,
    JOINT_CATEGORIES,
    Partition,
    RobotGraph,
)

Entry = tuple[str, str, int]
"""One observed number: (category, joint or body name, component)."""

BODY_WIDTH = {"cfrc_ext": 6, "cvel": 6, "cinert": 10}


def validate_partition(graph: RobotGraph, partition: Sequence[Sequence[str]]) -> Partition:
    """Check a partition (tuple of joint-name tuples, one per agent) and return it."""
    part = tuple(tuple(agent) for agent in partition)
    if not part or any(not agent for agent in part):
        raise ValueError(f"partition={partition!r} is invalid: expected a non-empty "
                         "sequence of non-empty joint-name sequences")
    names = [j for agent in part for j in agent]
    unknown = sorted(set(names) - set(graph.joints))
    if unknown:
        raise ValueError(f"partition: unknown joint(s) {unknown}; this robot's actuated "
                         f"joints are {list(graph.joints)}")
    repeated = sorted({j for j in names if names.count(j) > 1})
    if repeated:
        raise ValueError(f"partition: joint(s) {repeated} belong to more than one agent")
    return part


def neighbours(graph: RobotGraph) -> dict[str, frozenset[str]]:
    """Joint -> the joints one hop away (sharing a hyper-edge)."""
    adjacent: dict[str, set[str]] = {j: set() for j in graph.joints}
    for edge in graph.hyperedges:
        for joint in edge:
            if joint not in adjacent:
                raise ValueError(f"hyper-edge {edge!r} names {joint!r}, not one of the "
                                 f"robot's joints {list(graph.joints)}")
            adjacent[joint].update(set(edge) - {joint})
    return {j: frozenset(n) for j, n in adjacent.items()}


def k_hop_rings(graph: RobotGraph, agent_joints: Sequence[str], k: int) -> list[list[str]]:
    """Joints at distance exactly 0, 1, ..., k from ``agent_joints``, each sorted."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"agent_obsk={k!r} is invalid: expected an int >= 0")
    adjacent = neighbours(graph)
    ring, seen, rings = set(agent_joints), set(agent_joints), []
    for _ in range(k + 1):
        rings.append(sorted(ring))
        ring = {n for j in ring for n in adjacent[j]} - seen
        seen |= ring
    return rings


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the observation plan needs of a MuJoCo model (see ``model_info``)."""

    joint_qpos: dict[str, tuple[int, int]]  # name -> (first qpos address, width)
    joint_dof: dict[str, tuple[int, int]]  # name -> (first dof address, width)
    joint_body: dict[str, str]  # name -> body name (or "#id" when unnamed)
    body_id: dict[str, int]
    global_joints: tuple[str, ...]  # joints outside the graph, model order
    actuator_of: dict[str, int]  # actuated joint -> actuator index
    nq: int
    nv: int
    nbody: int
    nu: int


def model_info(model, graph: RobotGraph) -> ModelInfo:
    """Read joint/body addresses of an ``mujoco.MjModel``."""
    import mujoco

    def name(obj, i: int) -> str:
        return mujoco.mj_id2name(model, obj, i) or f"#{i}"

    qpos_width = {0: 7, 1: 4, 2: 1, 3: 1}  # free, ball, slide, hinge
    dof_width = {0: 6, 1: 3, 2: 1, 3: 1}
    joints = [name(mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(model.njnt)]
    bodies = [name(mujoco.mjtObj.mjOBJ_BODY, i) for i in range(model.nbody)]
    actuator_of: dict[str, int] = {}
    for u in range(model.nu):
        if model.actuator_trntype[u] == mujoco.mjtTrn.mjTRN_JOINT:
            actuator_of[joints[model.actuator_trnid[u, 0]]] = u
    missing = [j for j in graph.joints if j not in actuator_of]
    if missing:
        raise ValueError(f"joint(s) {missing} of the graph have no actuator in the model")
    return ModelInfo(
        joint_qpos={j: (int(model.jnt_qposadr[i]), qpos_width[int(model.jnt_type[i])])
                    for i, j in enumerate(joints)},
        joint_dof={j: (int(model.jnt_dofadr[i]), dof_width[int(model.jnt_type[i])])
                   for i, j in enumerate(joints)},
        joint_body={j: bodies[model.jnt_bodyid[i]] for i, j in enumerate(joints)},
        body_id={b: i for i, b in enumerate(bodies)},
        global_joints=tuple(j for j in joints if j not in graph.joints),
        actuator_of=actuator_of,
        nq=model.nq, nv=model.nv, nbody=model.nbody, nu=model.nu,
    )


def _body_name(ref: str, info: ModelInfo) -> str:
    if ref.startswith("@"):
        return info.joint_body[ref[1:]]
    if ref not in info.body_id:
        raise ValueError(f"unknown body {ref!r}; bodies: {sorted(info.body_id)}")
    return ref


def _joint_entries(category: str, joint: str, info: ModelInfo) -> list[Entry]:
    width = info.joint_qpos[joint][1] if category == "qpos" else info.joint_dof[joint][1]
    return [(category, joint, c) for c in range(width)]


def _body_entries(category: str, body: str) -> list[Entry]:
    return [(category, body, c) for c in range(BODY_WIDTH[category])]


def _check_categories(categories: Sequence[str]) -> None:
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown observation category {unknown}; expected some of "
                         f"{CATEGORIES}")


def agent_entries(graph: RobotGraph, info: ModelInfo, agent_joints: Sequence[str],
                  k: int) -> list[Entry]:
    """The observation of one agent as a list of entries (module docstring)."""
    for cats in graph.k_categories:
        _check_categories(cats)
    _check_categories(graph.global_categories)
    entries: list[Entry] = []
    seen_bodies: dict[str, set[str]] = {c: set() for c in BODY_CATEGORIES}
    for distance, ring in enumerate(k_hop_rings(graph, agent_joints, k)):
        cats = graph.k_categories[min(distance, len(graph.k_categories) - 1)]
        for joint in ring:
            for cat in cats:
                if cat in JOINT_CATEGORIES:
                    entries += _joint_entries(cat, joint, info)
                    continue
                refs = graph.joint_bodies.get(joint, ("@" + joint,))
                for body in (_body_name(r, info) for r in refs):
                    if body not in seen_bodies[cat]:
                        seen_bodies[cat].add(body)
                        entries += _body_entries(cat, body)
    for cat in graph.global_categories:
        if cat in JOINT_CATEGORIES:
            root = [e for j in info.global_joints for e in _joint_entries(cat, j, info)]
            entries += root[graph.root_qpos_skip:] if cat == "qpos" else root
        else:
            entries += [e for b in graph.global_bodies
                        for e in _body_entries(cat, _body_name(b, info))]
    return entries


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Offsets of each category in the flat feature vector the step builds.

    ``features = [qpos, qvel, qfrc_actuator, cfrc_ext, cvel, cinert, 0]`` (body
    quantities flattened body-major); the final 0 is what padding indexes.
    """

    nq: int
    nv: int
    nbody: int

    @property
    def offsets(self) -> dict[str, int]:
        sizes = {"qpos": self.nq, "qvel": self.nv, "qfrc_actuator": self.nv,
                 **{c: self.nbody * BODY_WIDTH[c] for c in BODY_CATEGORIES}}
        out, total = {}, 0
        for cat in CATEGORIES:
            out[cat] = total
            total += sizes[cat]
        out["pad"] = total
        return out

    def index(self, entry: Entry, info: ModelInfo) -> int:
        cat, name, comp = entry
        off = self.offsets[cat]
        if cat == "qpos":
            return off + info.joint_qpos[name][0] + comp
        if cat in JOINT_CATEGORIES:
            return off + info.joint_dof[name][0] + comp
        return off + info.body_id[name] * BODY_WIDTH[cat] + comp


def observation_index(graph: RobotGraph, info: ModelInfo, partition: Partition,
                      k: int) -> tuple[np.ndarray, list[list[Entry]]]:
    """``[N, obs_dim]`` int32 indices into the feature vector, and each agent's entries."""
    layout = FeatureLayout(info.nq, info.nv, info.nbody)
    per_agent = [agent_entries(graph, info, agent, k) for agent in partition]
    obs_dim = max(len(e) for e in per_agent)
    index = np.full((len(partition), obs_dim), layout.offsets["pad"], np.int32)
    for i, entries in enumerate(per_agent):
        index[i, :len(entries)] = [layout.index(e, info) for e in entries]
    return index, per_agent


def action_index(info: ModelInfo, partition: Partition) -> tuple[np.ndarray, int]:
    """Where each actuator's control comes from in the agents' flattened actions.

    Returns ``(index [nu] int32, action_dim)``: agent ``i``'s slot ``d`` drives the
    actuator of ``partition[i][d]``; ``ctrl = concat(actions.ravel(), [0])[index]``,
    so actuators no agent drives (a partial partition) get 0 and an agent's slots
    beyond its joints (partitions of unequal sizes) are ignored.
    """
    action_dim = max(len(agent) for agent in partition)
    index = np.full((info.nu,), len(partition) * action_dim, np.int32)
    for i, agent in enumerate(partition):
        for d, joint in enumerate(agent):
            index[info.actuator_of[joint]] = i * action_dim + d
    return index, action_dim
