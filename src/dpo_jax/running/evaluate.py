"""Saved policies: load a job's last checkpoint, run evaluation episodes, render.

``load_policies(out, program)`` reads ``{out}/spec.json`` (written by ``dpo-jax
train``), rebuilds the env and the program's initial state, and restores the
latest checkpoint into it (``"pg"``: the policy-gradient sweep, ``{out}/checkpoints``;
``"iql"`` / ``"iddpg"``: ``{out}/checkpoints_<algo>``). ``evaluate`` then runs
``num_episodes`` whole episodes per run, greedy (the distribution's mode: argmax
of the masked logits, the Gaussian's mean; IQL's highest available Q with its GRU
state carried; IDDPG's deterministic actor) or stochastic (sampled as in training;
IQL epsilon-greedy at its final epsilon; IDDPG with its exploration noise), all
runs and episodes in one compiled call. An episode is scored as
in training: its return (mean over agents), its length, and the env's per-episode
info at its end (SMAX: ``won``, so the mean is the win rate).

``render_episode`` draws one episode: MPE tasks and simple spread as a PNG strip
and a GIF (``dpo_jax.running.render``); MuJoCo tasks as GIF frames drawn by
``mujoco.Renderer`` in a child process (``dpo_jax.running.mujoco_frames``: a
failed OpenGL context can abort a process), with the first backend that works
(``MUJOCO_GL``, else glfw with a display, egl, osmesa); without one it returns a
message saying so instead of failing.
"""

from __future__ import annotations

import functools
import pathlib
import warnings
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.core import agents as agents_lib
from dpo_jax.running import checkpoint, render
from dpo_jax.core.agents import Agents
from dpo_jax.baselines import iddpg, iql
from dpo_jax.config import BASELINE_ALGORITHMS
from dpo_jax.envs import make_env
from dpo_jax.envs.base import MultiAgentEnv
from dpo_jax.running.experiments import env_is_pytree
from dpo_jax.core.networks import distribution
from dpo_jax.training.rollout import policy_episode
from dpo_jax.running.runspec import Program, RunSpec, plan
from dpo_jax.training.trainer import make_trainer, policy_metrics

Array = jax.Array
ActFn = Callable[[Array, Array, Array], Array]
CHECKPOINTS = "checkpoints"


PolicyFn = Callable[[Any, bool], tuple[Callable[..., Any], Any]]


class Policies(NamedTuple):
    """The trained agents of every run of one program of a job: ``policy(run_params,
    greedy) -> (act, carry)`` for ``rollout.policy_episode`` (``carry`` ``None``:
    a stateless ``act``); ``agents`` for the policy-gradient family, else ``None``."""

    spec: RunSpec
    env: MultiAgentEnv
    program: Program
    policy: PolicyFn
    params: Any  # leaves [runs, ...] (and the agent axis unless shared)
    updates_done: int
    agents: Optional[Agents] = None


def policy_act(agents: Agents, params: Any, greedy: bool) -> ActFn:
    """``act(key, obs [N, obs_dim], avail [N, A]) -> actions`` of one run's agents:
    the mode of each agent's distribution (``greedy``) or a sample."""

    def act(key: Array, obs: Array, avail: Array) -> Array:
        dist = distribution(agents_lib.policy_params(agents, params, obs, avail),
                            agents.action_spec)
        return dist.mode() if greedy else dist.sample(seed=key)

    return act


def score_episode(rewards: Array, done: Array, info: dict[str, Array]) -> dict[str, Array]:
    """Return (mean over agents), length and final info of one episode from
    ``policy_episode``'s ``rewards [T, N]``, cumulative ``done [T]`` and ``info``.
    An episode that did not end within the scan is scored over all its steps."""
    steps = done.shape[0]
    ended = jnp.any(done)
    last = jnp.where(ended, jnp.argmax(done), steps - 1)
    live = jnp.arange(steps) <= last
    out = {"episode_return": jnp.sum(jnp.where(live, rewards.mean(-1), 0.0)),
           "episode_length": (last + 1).astype(jnp.float32)}
    for name, value in info.items():
        if jnp.ndim(value) == 1:  # per-episode scalars (SMAX's won)
            out[name] = value[last].astype(jnp.float32)
    return out


def pg_policy(agents: Agents) -> PolicyFn:
    """``Policies.policy`` of policy-gradient agents (stateless)."""
    return lambda run_params, greedy: (policy_act(agents, run_params, greedy), None)


def evaluate(env: MultiAgentEnv, policy: PolicyFn, params: Any, key: Array,
             num_episodes: int, greedy: bool = True) -> dict[str, np.ndarray]:
    """``num_episodes`` episodes of every run in ``params`` (leading run axis),
    one compiled call; returns ``{name: [runs, episodes]}``.

    Keys: episode ``e`` of run ``r`` uses ``split(split(key, runs)[r],
    num_episodes)[e]`` (``rollout.policy_episode`` then splits it into the reset key
    and the steps' keys), so a run's episodes are independent and reproducible."""
    if not (isinstance(num_episodes, int) and num_episodes >= 1):
        raise ValueError(f"num_episodes={num_episodes!r}: expected an int >= 1")
    runs = jax.tree.leaves(params)[0].shape[0]

    def one_run(run_params: Any, run_key: Array, env: MultiAgentEnv) -> dict[str, Array]:
        act, carry = policy(run_params, greedy)

        def one_episode(k: Array) -> dict[str, Array]:
            _, rewards, done, info = policy_episode(env, k, act, carry)
            return score_episode(rewards, done, info)

        return jax.vmap(one_episode)(jax.random.split(run_key, num_episodes))

    keys = jax.random.split(key, runs)
    if env_is_pytree(env):  # large tables as an argument, not constants (make_train)
        out = jax.jit(jax.vmap(one_run, in_axes=(0, 0, None)))(params, keys, env)
    else:
        out = jax.jit(jax.vmap(lambda p, k: one_run(p, k, env)))(params, keys)
    return {k: np.asarray(v) for k, v in out.items()}


def saved_programs(out: str | pathlib.Path) -> list[str]:
    """The programs of a ``dpo-jax train`` folder that have a checkpoint (``"pg"``,
    ``"iql"``, ``"iddpg"``), in training order."""
    out = pathlib.Path(out)
    spec = RunSpec.load(out)
    names = (["pg"] if any(a not in BASELINE_ALGORITHMS for a in spec.algos) else []) + [
        a for a in spec.algos if a in BASELINE_ALGORITHMS]
    return [n for n in names if checkpoint.latest(out / checkpoint_folder(n)) is not None]


def checkpoint_folder(program: str) -> str:
    """A program's checkpoint folder inside a job folder."""
    return CHECKPOINTS if program == "pg" else f"{CHECKPOINTS}_{program}"


def load_policies(out: str | pathlib.Path, program: str = "pg") -> Policies:
    """The agents of the latest checkpoint of one program (``"pg"``: the policy-
    gradient sweep; ``"iql"``, ``"iddpg"``) of a ``dpo-jax train`` output folder."""
    out = pathlib.Path(out)
    spec = RunSpec.load(out)
    env = make_env(spec.env, **spec.env_kwargs)
    programs = {p.name: p for p in plan(spec, env)}
    if program not in programs:
        raise ValueError(f"{str(out)!r} has no program {program!r}: it trained "
                         f"{sorted(programs)}")
    prog = programs[program]
    folder = out / checkpoint_folder(program)
    if checkpoint.latest(folder) is None:
        raise FileNotFoundError(f"{str(folder)!r} holds no complete checkpoint (was the "
                                f"run stopped before its first one?)")
    trainer = make_trainer(prog.config, env)
    env_arg = (env,) if env_is_pytree(env) else ()
    in_axes = (0, 0 if prog.obj is not None else None) + ((None,) if env_arg else ())
    init = jax.jit(jax.vmap(trainer.init, in_axes=in_axes))
    # the real runs' shapes (restore drops padding); the initial state is freed at once
    target = checkpoint.shape_of(init(prog.keys, prog.obj, *env_arg))
    restored = checkpoint.restore_latest(folder, target, None, num_runs=len(prog.labels))
    for line in restored.skipped:
        warnings.warn(f"skipped a checkpoint: {line}", checkpoint.CheckpointWarning,
                      stacklevel=2)
    state, done = restored.state, restored.updates_done
    params = jax.tree.map(lambda x: x[:len(prog.labels)], state.agents.params)
    if program == "iql":
        return Policies(spec, env, prog, lambda p, g: iql.eval_policy(prog.config, env, p, g),
                        params, done)
    if program == "iddpg":
        return Policies(spec, env, prog,
                        lambda p, g: iddpg.eval_policy(prog.config, env, p, g), params, done)
    agents = agents_lib.make_agents(prog.config, env, trainer.num_updates)
    return Policies(spec, env, prog, pg_policy(agents), params, done, agents)


def exact_metrics(pol: Policies) -> dict[str, np.ndarray]:
    """The env's exact metrics of each run's stochastic policy (``env.policy_metrics``:
    the stochastic game's ``exact_return`` J(pi) and ``optimality_ratio`` J(pi)/J*),
    ``[runs]`` each, as the trainer logs them (``trainer.policy_metrics``); empty
    when the env has none or the program is not the policy-gradient family's."""
    if pol.agents is None:
        return {}
    one = functools.partial(policy_metrics, pol.agents)
    if env_is_pytree(pol.env):  # large tables as an argument, not constants
        out = jax.jit(jax.vmap(lambda p, env: one(env, p), in_axes=(0, None)))(
            pol.params, pol.env)
    else:
        out = jax.jit(jax.vmap(lambda p: one(pol.env, p)))(pol.params)
    return {k: np.asarray(v) for k, v in out.items()}


def render_episode(env: MultiAgentEnv, policy: PolicyFn, run_params: Any, key: Array,
                   path: str | pathlib.Path, greedy: bool = True,
                   title: str = "") -> tuple[list[pathlib.Path], str]:
    """One episode of one run's agents drawn to ``{path}.png`` / ``.gif``; returns
    the files written and a message (why nothing was drawn, or what was)."""
    act, carry = policy(run_params, greedy)
    states, rewards, done, info = jax.jit(
        lambda k: policy_episode(env, k, act, carry))(key)
    score = score_episode(rewards, done, info)
    length = int(score["episode_length"])
    states = jax.tree.map(lambda x: x[:length + 1], states)
    caption = f"{title} return {float(score['episode_return']):.2f}".strip()
    if render.is_renderable(env):
        files = render.save_episode(env, states, path, title=caption)
        return files, f"drew {length} steps"
    if hasattr(env, "mj_model"):
        return render_mujoco(env, states, path)
    return [], f"no renderer for {env.name}: evaluation only (MPE and MuJoCo tasks draw)"


def render_mujoco(env: Any, states: Any, path: str | pathlib.Path, width: int = 320,
                  height: int = 240, fps: Optional[int] = None,
                  backends: Optional[Sequence[str]] = None
                  ) -> tuple[list[pathlib.Path], str]:
    """Frames of MJX states (``MaMuJoCoState``, leading time axis) drawn by
    ``mujoco.Renderer`` into ``{path}.gif``, in a child process with the first
    OpenGL backend that works (``dpo_jax.running.mujoco_frames``; ``backends``: the
    ``MUJOCO_GL`` values to try, default ``MUJOCO_GL`` if set, else glfw with a
    display, egl, osmesa). Without any returns no file and a message naming each
    backend's error and what to install or set."""
    from dpo_jax.running import mujoco_frames

    gif = pathlib.Path(path).with_suffix(".gif")
    fps = fps or max(1, round(1 / env.dt))
    qpos = np.asarray(states.data.qpos)
    used, errors = mujoco_frames.draw_gif(env.mj_model, qpos, np.asarray(states.data.qvel),
                                          gif, width, height, fps, backends)
    if used is None:
        tried = "; ".join(f"MUJOCO_GL={b}: {e}" for b, e in errors.items())
        return [], (f"MuJoCo frames skipped: mujoco.Renderer found no OpenGL backend "
                    f"(set MUJOCO_GL=egl with a GPU driver or Mesa's libEGL, or "
                    f"MUJOCO_GL=osmesa with libosmesa installed). Tried {tried}")
    return [gif], f"drew {qpos.shape[0]} MuJoCo frames (MUJOCO_GL={used})"
