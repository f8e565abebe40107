"""Pictures of the MPE tasks: one state, a PNG strip of an episode, a GIF.

Agents are coloured discs (their true size, at least ``MIN_RADIUS`` so that they
stay visible), landmarks grey squares, target points crosses, and a dashed line
joins each agent to the target the optimal assignment gives it (the pairing the
reward scores). The dotted square is the agents' start region ``[-1, 1]^2``.

Works with any :class:`dpo_jax.envs.mpe_tasks.MPETask` and with JaxMARL's simple
spread (``mpe_spread``; see :func:`is_renderable`); states are the env's states
(one state, or a pytree with a leading time axis from :func:`collect_episode`). Uses matplotlib's object API (no pyplot state, any
backend); the GIF needs pillow and is skipped with a note when it is missing.
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs.assignment import optimal_assignment
from dpo_jax.envs.base import Array
from dpo_jax.envs.mpe_tasks import MPETask
from dpo_jax.training.rollout import policy_episode

MIN_RADIUS = 0.04
VIEW_LIMIT = 1.6
ActFn = Callable[[Array, Array, Array], Array]


class Frames(NamedTuple):
    """What the pictures show, per frame (numpy, leading axis T)."""

    agents: np.ndarray  # [T, N, 2]
    landmarks: np.ndarray  # [T, L, 2]
    targets: np.ndarray  # [T, N, 2]
    assigned: np.ndarray  # [T, N] index of each agent's target
    step: np.ndarray  # [T]


def is_renderable(env: Any) -> bool:
    """Whether ``env`` can be drawn here: a :class:`MPETask` (line, circle,
    navigation) or JaxMARL's simple spread through :class:`JaxMARLAdapter`
    (as many landmarks as agents, which are then its targets)."""
    if isinstance(env, MPETask):
        return True
    inner = getattr(env, "jaxmarl_env", None)
    return (inner is not None and type(inner).__name__ == "SimpleSpreadMPE"
            and getattr(inner, "num_landmarks", None) == env.num_agents)


def _agent_size(env: Any) -> float:
    if isinstance(env, MPETask):
        return env.agent_size
    return float(env.jaxmarl_env.rad[0])


def frames(env: MPETask, states: Any) -> Frames:
    """Positions, targets and assignment of stacked states (leading time axis).
    For simple spread (``is_renderable``) the landmarks are the targets and the
    lines show the optimal agent-landmark pairing (its reward uses each
    landmark's nearest agent instead)."""
    if not is_renderable(env):
        raise ValueError(f"render: {env!r} cannot be drawn; MPE line/circle/navigation "
                         f"and simple spread can")
    is_task = isinstance(env, MPETask)

    def one(state: Any) -> tuple[Array, ...]:
        step = state.step
        state = state if is_task else state.env_state
        agents, landmarks = state.p_pos[: env.num_agents], state.p_pos[env.num_agents:]
        goals = env.targets(agents, landmarks) if is_task else landmarks
        cost = jnp.linalg.norm(agents[:, None] - goals[None], axis=-1)
        return agents, landmarks, goals, optimal_assignment(cost).cols, step

    return Frames(*(np.asarray(x) for x in jax.jit(jax.vmap(one))(states)))


def _draw(env: MPETask, ax: Any, data: Frames, t: int, title: Optional[str],
          legend: bool = True) -> None:
    from matplotlib.patches import Circle, Rectangle

    colours = [f"C{i % 10}" for i in range(env.num_agents)]
    ax.add_patch(Rectangle((-1, -1), 2, 2, fill=False, linestyle=":", color="0.6"))
    for lm in data.landmarks[t]:
        ax.plot(*lm, marker="s", color="0.35", markersize=7, zorder=2)
    ax.scatter(*data.targets[t].T, marker="x", color="k", s=40, zorder=3)
    for i, (pos, goal) in enumerate(zip(data.agents[t], data.targets[t][data.assigned[t]])):
        ax.plot(*np.stack([pos, goal]).T, linestyle="--", linewidth=0.8, color=colours[i])
        ax.add_patch(Circle(pos, max(_agent_size(env), MIN_RADIUS), color=colours[i],
                            alpha=0.8, zorder=4))
    distance = np.linalg.norm(data.agents[t] - data.targets[t][data.assigned[t]], axis=-1)
    ax.set_title(title if title is not None
                 else f"t = {int(data.step[t])}, mean dist {distance.mean():.3f}", fontsize=9)
    # one view for all frames: at least +-VIEW_LIMIT, wider if an agent wanders off
    limit = max(VIEW_LIMIT, float(np.abs(data.agents).max()) + 2 * MIN_RADIUS)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        from matplotlib.lines import Line2D

        ax.legend(handles=[
            Line2D([], [], marker="o", linestyle="", color="C0", label="agent"),
            Line2D([], [], marker="s", linestyle="", color="0.35", label="landmark"),
            Line2D([], [], marker="x", linestyle="", color="k", label="target point"),
            Line2D([], [], linestyle="--", color="C0", label="agent to its target")],
            fontsize=6, loc="upper right", framealpha=0.7)


def draw_state(env: MPETask, state: Any, ax: Any = None,
               title: Optional[str] = None) -> tuple[Any, Any]:
    """Draw one (unbatched) state on ``ax`` (a new figure if None).

    Returns:
      ``(figure, axes)``.
    """
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(4, 4)).add_subplot()
    data = frames(env, jax.tree.map(lambda x: jnp.asarray(x)[None], state))
    _draw(env, ax, data, 0, title)
    return ax.figure, ax


def collect_episode(env: MPETask, key: Array, act_fn: ActFn) -> tuple[Any, np.ndarray]:
    """One episode of ``env.max_steps`` steps in a compiled scan
    (``rollout.policy_episode``).

    Args:
      act_fn: ``(key, obs [N, obs_dim], avail [N, A]) -> actions [N]``.

    Returns:
      The states ``[T + 1]`` (the reset state first) and the rewards ``[T, N]``.
    """
    states, rewards, _, _ = jax.jit(lambda k: policy_episode(env, k, act_fn))(key)
    return states, np.asarray(rewards)


def save_episode(env: MPETask, states: Any, path: str | pathlib.Path, *,
                 num_frames: int = 6, gif: bool = True, fps: int = 5,
                 title: str = "") -> list[pathlib.Path]:
    """Write ``{path}.png`` (``num_frames`` evenly spaced frames in a row) and,
    if ``gif`` and pillow is installed, ``{path}.gif`` (every frame).

    Returns:
      The files written.
    """
    from matplotlib.figure import Figure

    base = pathlib.Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    data = frames(env, states)
    count = len(data.step)
    picks = np.unique(np.linspace(0, count - 1, min(num_frames, count)).round().astype(int))
    fig = Figure(figsize=(2.6 * len(picks), 2.9))
    for k, t in enumerate(picks):
        _draw(env, fig.add_subplot(1, len(picks), k + 1), data, int(t), None, legend=k == 0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    written = [base.with_suffix(".png")]
    fig.savefig(written[0], dpi=110)
    if gif:
        path_gif = _save_gif(env, data, base.with_suffix(".gif"), fps, title)
        written += [path_gif] if path_gif is not None else []
    return written


def _save_gif(env: MPETask, data: Frames, path: pathlib.Path, fps: int,
              title: str) -> Optional[pathlib.Path]:
    if importlib.util.find_spec("PIL") is None:  # PillowWriter needs pillow
        warnings.warn(f"pillow is not installed: no GIF, only the PNG strip "
                      f"({path.with_suffix('.png')})", RuntimeWarning, stacklevel=2)
        return None
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def update(t: int) -> list:
        ax.clear()
        _draw(env, ax, data, t, None)
        if title:
            fig.suptitle(title, fontsize=10)
        return []

    FuncAnimation(fig, update, frames=len(data.step)).save(path, writer=PillowWriter(fps=fps))
    return path
