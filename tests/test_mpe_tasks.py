"""The paper's MPE tasks: reward, observation, landmark/target geometry, protocol,
and a scripted policy against a random one. References are numpy/scipy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import dpo_jax
from dpo_jax.envs.mpe_tasks import MPETask

TASKS = ("mpe_navigation", "mpe_line", "mpe_circle")
AGENT_SIZE = {"mpe_navigation": 0.05, "mpe_line": 0.03, "mpe_circle": 0.03}
BATCH = 8  # one batch size everywhere: each new shape compiles the step again


def _ref_targets(name: str, agents: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The authors' target points, written out in numpy."""
    num = len(agents)
    if name == "mpe_navigation":
        return landmarks
    if name == "mpe_line":
        direction = (landmarks[1] - landmarks[0]) / np.linalg.norm(landmarks[1] - landmarks[0])
        return np.stack([landmarks[0] + i * 1.25 / (num - 1) * direction for i in range(num)])
    rel = agents - landmarks[0]
    angles = np.arctan2(rel[:, 1], rel[:, 0])
    angles = np.where(angles < 0, angles + 2 * np.pi, angles)
    slots = angles.min() + 2 * np.pi / num * np.arange(num)
    return landmarks[0] + 0.5 * np.stack([np.cos(slots), np.sin(slots)], -1)


def _ref_reward(name: str, agents: np.ndarray, landmarks: np.ndarray,
                penalty: float) -> float:
    """-mean assigned distance (scipy) - penalty * ordered colliding pairs / (2N)."""
    num = len(agents)
    goals = _ref_targets(name, agents, landmarks)
    dist = np.linalg.norm(agents[:, None] - goals[None], axis=-1)
    rows, cols = linear_sum_assignment(dist)
    reward = -dist[rows, cols].mean()
    ordered_pairs = sum(
        np.linalg.norm(agents[a] - agents[b]) < 2 * AGENT_SIZE[name]
        for a in range(num) for b in range(num) if a != b)
    return float(np.clip(reward - penalty * ordered_pairs / (2 * num), -15, 15))


class Compiled:
    """One env and its jitted, vmapped reset/step, compiled once per module. Keys
    come from an int seed inside the program and actions may be numpy arrays, so
    the tests run no eager JAX ops (each costs a compilation)."""

    def __init__(self, env: MPETask) -> None:
        self.env = env

        def keys(seed: jax.Array, num: int) -> jax.Array:
            return jax.random.split(jax.random.key(seed), num)

        self.reset = jax.jit(lambda seed, num: jax.vmap(env.reset)(keys(seed, num)),
                             static_argnums=1)
        self.step = jax.jit(lambda seed, state, actions: jax.vmap(env.step)(
            keys(seed, actions.shape[0]), state, actions))
        self.team_reward = jax.jit(env.team_reward)


@pytest.fixture(scope="module", params=TASKS)
def task(request) -> Compiled:
    return Compiled(dpo_jax.make_env(request.param))


def _tile(tree):
    """``BATCH`` copies of one env state."""
    return jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], BATCH, axis=0), tree)


def _random_layout(name: str, rng: np.random.Generator, num: int = 5):
    agents = rng.uniform(-1, 1, size=(num, 2))
    landmarks = {"mpe_navigation": rng.uniform(-1, 1, size=(num, 2)),
                 "mpe_line": np.array([[0.1, -0.2], [0.1 + 1.25 * np.cos(2.0),
                                                     -0.2 + 1.25 * np.sin(2.0)]]),
                 "mpe_circle": np.array([[0.2, 0.1]])}[name]
    return agents, landmarks


# -- reward -----------------------------------------------------------------


def test_agents_exactly_on_their_targets_get_zero_reward(task):
    env = task.env
    rng = np.random.default_rng(0)
    _, landmarks = _random_layout(env.name, rng)
    if env.name == "mpe_circle":  # agents on the circle, the smallest angle 0.3
        angles = 0.3 + 2 * np.pi / 5 * np.arange(5)
        goals = landmarks[0] + 0.5 * np.stack([np.cos(angles), np.sin(angles)], -1)
    else:
        goals = _ref_targets(env.name, np.zeros((5, 2)), landmarks)
    state = env.make_state(goals[rng.permutation(5)], landmarks)
    reward, info = task.team_reward(state)
    assert abs(float(reward)) < 1e-5 and float(info["target_distance"]) < 1e-5
    # through the compiled step: at rest, no-op actions keep the agents in place
    out = task.step(0, _tile(state), np.zeros((BATCH, 5), np.int32))
    np.testing.assert_allclose(np.asarray(out.reward), 0.0, atol=1e-5)


def _colliding_layout(name: str, rng: np.random.Generator, trial: int):
    """Agents 0 and 1 collide, and on odd trials agents 2 and 3 too."""
    agents, landmarks = _random_layout(name, rng)
    agents[1] = agents[0] + [0.5 * AGENT_SIZE[name], 0.0]
    if trial % 2:
        agents[3] = agents[2] + [0.0, 1.5 * AGENT_SIZE[name]]
    return agents, landmarks


def test_reward_matches_the_assignment_formula(task):
    rng = np.random.default_rng(1)
    for trial in range(4):
        agents, landmarks = _colliding_layout(task.env.name, rng, trial)
        reward, info = task.team_reward(task.env.make_state(agents, landmarks))
        expected = _ref_reward(task.env.name, agents, landmarks, 0.0)
        np.testing.assert_allclose(float(reward), expected, rtol=1e-5, atol=1e-6)
        assert float(info["collisions"]) == (2.0 if trial % 2 else 1.0)


def test_collision_penalty_matches_the_authors_normalisation():
    env = dpo_jax.make_env("mpe_navigation", collision_penalty=0.7)
    team_reward = jax.jit(env.team_reward)
    rng = np.random.default_rng(2)
    for trial in range(2):
        agents, landmarks = _colliding_layout(env.name, rng, trial)
        reward, _ = team_reward(env.make_state(agents, landmarks))
        np.testing.assert_allclose(float(reward), _ref_reward(env.name, agents, landmarks, 0.7),
                                   rtol=1e-5)


def test_reward_is_clipped_at_minus_15():
    env = dpo_jax.make_env("mpe_circle", num_agents=3, collision_penalty=100.0)
    agents = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01]])  # three colliding pairs
    reward, info = jax.jit(env.team_reward)(env.make_state(agents, np.zeros((1, 2))))
    assert float(info["collisions"]) == 3.0 and float(reward) == -15.0
    assert _ref_reward("mpe_circle", agents, np.zeros((1, 2)), 100.0) == -15.0


# -- observation ------------------------------------------------------------


def test_vision_zeroes_entities_at_distance_vision_or_more():
    agents = np.array([[0.0, 0.0], [0.6, 0.0], [0.0, -1.0]])  # agent 2 at distance 1.0
    landmarks = np.array([[0.0, 0.5], [-0.9, 0.9]])  # landmark 1 at distance 1.27
    vel = np.array([[0.1, -0.2], [0.0, 0.0], [0.3, 0.3]])
    env = dpo_jax.make_env("mpe_line", num_agents=3)
    full = dpo_jax.make_env("mpe_line", num_agents=3, vision=None)
    obs, obs_full = (np.asarray(jax.jit(e.observe)(e.make_state(agents, landmarks, vel)))
                     for e in (env, full))
    assert obs.shape == (3, env.obs_dim) == (3, 4 + 2 * 2 + 2 * 2)
    np.testing.assert_allclose(obs[0], [0.1, -0.2, 0, 0,  # own vel, own pos
                                        0, 0.5, 0, 0,  # landmark 0 seen, 1 not
                                        0.6, 0, 0, 0], atol=1e-6)  # agent 1 seen, 2 not
    # agent 1 sees landmark 0 (0.78) and agent 0 (0.6); agent 2 (1.17) is zeroed
    np.testing.assert_allclose(obs[1, 4:], [-0.6, 0.5, 0, 0, -0.6, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(obs_full[0, 4:], [0, 0.5, -0.9, 0.9, 0.6, 0, 0, -1.0],
                               atol=1e-6)


def test_comm_obs_appends_the_silent_agents_zeros_after_the_observation():
    agents = np.array([[0.0, 0.0], [0.6, 0.0], [0.0, -1.0]])
    landmarks = np.array([[0.0, 0.5], [-0.9, 0.9], [0.2, 0.2]])
    plain = dpo_jax.make_env("mpe_navigation", num_agents=3, vision=None)
    comm = dpo_jax.make_env("mpe_navigation", num_agents=3, vision=None, comm_obs=True)
    # the authors' navigation_control_full: 2 + 2 + 2 L + 2 (N-1) + 2 (N-1) floats
    assert comm.obs_dim == plain.obs_dim + 4 == 2 + 2 + 6 + 4 + 4
    obs, obs_comm = (np.asarray(e.observe(e.make_state(agents, landmarks)))
                     for e in (plain, comm))
    np.testing.assert_array_equal(obs_comm[:, :plain.obs_dim], obs)
    np.testing.assert_array_equal(obs_comm[:, plain.obs_dim:], 0.0)


def _np_mpe_step(pos, vel, actions, lagged: bool, dt=0.1, damping=0.25, accel=5.0):
    """One physics step of far-apart agents (no contact force), numpy. Actions as
    JaxMARL's discrete decoder: 1/2 -/+x, 3/4 -/+y. ``lagged``: JaxMARL's order
    (move by the old velocity); else the original MPE's (``core.py``:
    ``integrate_state``: damp, add force, move by the new velocity)."""
    force = np.zeros_like(pos)
    for i, a in enumerate(actions):
        if a:
            force[i, 0 if a <= 2 else 1] = (1.0 if a % 2 == 0 else -1.0) * accel
    new_vel = vel * (1 - damping) + force * dt
    return pos + (vel if lagged else new_vel) * dt, new_vel


@pytest.mark.parametrize("integrator", ["jaxmarl", "mpe"])
def test_integrator_moves_agents_as_the_numpy_physics(integrator):
    env = dpo_jax.make_env("mpe_navigation", num_agents=3, integrator=integrator)
    pos = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, -3.0]])  # no contacts
    vel = np.array([[0.3, -0.2], [0.0, 0.5], [-0.4, 0.1]])
    state = env.make_state(pos, np.zeros((3, 2)), vel)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    for t in range(6):
        actions = rng.integers(0, 5, size=3)
        out = step(jax.random.key(t), state, jnp.asarray(actions, jnp.int32))
        state = out.state
        pos, vel = _np_mpe_step(pos, vel, actions, lagged=integrator == "jaxmarl")
        np.testing.assert_allclose(np.asarray(state.p_pos[:3]), pos, atol=1e-5)
        np.testing.assert_allclose(np.asarray(state.p_vel[:3]), vel, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.obs[:, :4]),
                                   np.concatenate([vel, pos], 1), atol=1e-5)


# -- landmarks and targets --------------------------------------------------


def test_line_landmark_one_is_inside_the_arena_at_distance_1_25():
    env = dpo_jax.make_env("mpe_line")
    sample = jax.jit(lambda: jax.vmap(env.sample_landmarks)(
        jax.random.split(jax.random.key(3), 4096)))
    landmarks = np.asarray(sample(), np.float64)
    assert np.all(np.abs(landmarks[:, 0]) <= 0.25)
    assert np.all(np.abs(landmarks[:, 1]) < 1.0)
    np.testing.assert_allclose(np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=-1),
                               1.25, rtol=1e-5)
    goals = np.asarray(jax.jit(env.targets)(np.zeros((5, 2)), landmarks[0]))
    np.testing.assert_allclose(goals, _ref_targets("mpe_line", np.zeros((5, 2)),
                                                   landmarks[0]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.diff(goals, axis=0), axis=-1), 1.25 / 4,
                               rtol=1e-5)


def test_circle_targets_are_evenly_spaced_at_radius_half():
    env = dpo_jax.make_env("mpe_circle", num_agents=6)
    targets = jax.jit(env.targets)
    rng = np.random.default_rng(4)
    for _ in range(5):
        agents = rng.uniform(-1, 1, size=(6, 2)).astype(np.float32)
        centre = rng.uniform(-0.25, 0.25, size=(1, 2)).astype(np.float32)
        goals = np.asarray(targets(agents, centre), np.float64)
        rel = goals - centre
        np.testing.assert_allclose(np.linalg.norm(rel, axis=-1), 0.5, rtol=1e-5)
        gaps = np.diff(np.unwrap(np.arctan2(rel[:, 1], rel[:, 0])))
        np.testing.assert_allclose(gaps, 2 * math.pi / 6, rtol=1e-5)
        np.testing.assert_allclose(goals, _ref_targets("mpe_circle", agents, centre),
                                   atol=1e-5)


# -- protocol ---------------------------------------------------------------


def test_reset_and_step_under_jit_and_vmap(task):
    env, batch = task.env, BATCH
    rng = np.random.default_rng(2)
    first = out = task.reset(0, batch)
    for t in range(env.max_steps):
        out = task.step(t, out.state, rng.integers(0, 5, size=(batch, 5)))
        assert bool(np.any(out.truncated)) == (t + 1 == env.max_steps)
    for step in (first, out):
        assert step.obs.shape == (batch, 5, env.obs_dim) and step.obs.dtype == jnp.float32
        assert step.avail_actions.shape == (batch, 5, 5) and step.avail_actions.dtype == bool
        assert step.reward.shape == (batch, 5)
        assert step.terminated.shape == step.truncated.shape == (batch,)
        assert set(step.info) == {"target_distance", "collisions"}
        assert all(v.shape == (batch,) and v.dtype == jnp.float32 for v in step.info.values())
    np.testing.assert_array_equal(np.asarray(first.reward), 0.0)
    assert not np.any(out.terminated) and np.all(out.truncated)
    reward = np.asarray(out.reward)
    np.testing.assert_allclose(reward, np.repeat(reward[:, :1], 5, axis=1))  # shared
    assert env.obs_dim == {"mpe_navigation": 22, "mpe_line": 16, "mpe_circle": 14}[env.name]


def _scripted_actions(name: str, state) -> np.ndarray:
    """Each agent accelerates towards its assigned target (a PD rule on the
    dominant axis). JaxMARL's actions: 1 = -x, 2 = +x, 3 = -y, 4 = +y."""
    pos_all, vel_all = np.asarray(state.p_pos), np.asarray(state.p_vel)
    actions = np.zeros(pos_all.shape[:1] + (5,), np.int32)
    for e, (pos, vel) in enumerate(zip(pos_all, vel_all)):
        agents, landmarks = pos[:5], pos[5:]
        goals = _ref_targets(name, agents, landmarks)
        _, cols = linear_sum_assignment(np.linalg.norm(agents[:, None] - goals[None], axis=-1))
        push = (goals[cols] - agents) - 0.3 * vel[:5]
        axis = np.argmax(np.abs(push), axis=1)
        value = push[np.arange(5), axis]
        actions[e] = np.where(np.abs(value) > 0.05, 1 + 2 * axis + (value > 0), 0)
    return actions


def test_scripted_policy_scores_far_above_random(task):
    env, batch = task.env, BATCH
    rng = np.random.default_rng(3)
    results = {}
    for policy in ("scripted", "random"):
        out = task.reset(5, batch)
        total = np.zeros(batch)
        for t in range(env.max_steps):
            if policy == "scripted":
                actions = _scripted_actions(env.name, out.state)
            else:
                actions = rng.integers(0, 5, size=(batch, 5)).astype(np.int32)
            out = task.step(50 + t, out.state, actions)
            total += np.asarray(out.reward)[:, 0]
        results[policy] = (total.mean(), float(np.mean(out.info["target_distance"])))
    (scripted, scripted_final), (random, random_final) = results["scripted"], results["random"]
    assert scripted > 0.5 * random, results  # returns are negative: a 2x smaller cost
    assert scripted_final < 0.1 < 0.5 < random_final, results


# -- construction -----------------------------------------------------------


def test_make_env_rejects_unknown_and_invalid_arguments():
    with pytest.raises(TypeError, match="num_landmarks"):
        dpo_jax.make_env("mpe_navigation", num_landmarks=3)
    with pytest.raises(ValueError, match="num_agents"):
        dpo_jax.make_env("mpe_line", num_agents=1)
    with pytest.raises(ValueError, match="vision"):
        dpo_jax.make_env("mpe_circle", vision=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        dpo_jax.make_env("mpe_circle", max_steps=0)
    with pytest.raises(ValueError, match="integrator"):
        dpo_jax.make_env("mpe_line", integrator="euler")
    with pytest.raises((TypeError, ValueError), match="comm_obs"):
        dpo_jax.make_env("mpe_line", comm_obs="yes")
    env = dpo_jax.make_env("mpe_navigation", num_agents=3, vision=None,
                           collision_penalty=1.0, max_steps=10)
    assert (env.num_agents, env.obs_dim, env.max_steps, env.vision) == (3, 14, 10, None)
    assert {"mpe_navigation", "mpe_line", "mpe_circle"} <= set(dpo_jax.list_envs())


def test_render_draws_a_state_and_writes_a_strip_and_gif(tmp_path):
    from dpo_jax.running import render

    env = dpo_jax.make_env("mpe_circle", num_agents=3)
    states = [env.make_state(np.array([[0.1 * t, 0.0], [0.0, 0.5], [-0.5, 0.0]]),
                             np.zeros((1, 2))) for t in range(3)]
    fig, ax = render.draw_state(env, states[0])
    assert ax in fig.axes and len(ax.patches) == 1 + 3  # arena and three agents
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states)
    files = render.save_episode(env, stacked, tmp_path / "episode", num_frames=2)
    assert [f.suffix for f in files] == [".png", ".gif"]
    assert all(f.stat().st_size > 0 for f in files)
