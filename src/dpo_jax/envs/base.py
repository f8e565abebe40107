"""The stacked-array environment protocol every trainer in dpo-jax consumes.

All agents of a cooperative task are stacked on a leading axis of length
``num_agents``: observations ``[N, obs_dim]``, rewards ``[N]``, actions ``[N]``
(discrete) or ``[N, action_dim]`` (continuous). An environment is a plain Python
object holding static data (shapes, tables); its ``reset`` and ``step`` are pure
JAX functions, so they can be ``jit``-ed, ``vmap``-ed over environments and
``scan``-ned over time.

Episode ends come in two kinds, which the trainer treats differently:

* ``terminated``: the episode reached a terminal state; the value of what follows
  is zero (no bootstrap).
* ``truncated``: the episode was cut by a time limit; the return continues in
  principle, so advantage estimation bootstraps from the value of the final
  observation.

``step`` never resets: the trainer's rollout does (``rollout.py``), which lets it
keep the final observation of a truncated episode for the bootstrap.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.config import is_int

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DiscreteActions:
    """Each agent picks one of ``num_actions`` actions (possibly masked)."""

    num_actions: int


@dataclasses.dataclass(frozen=True)
class ContinuousActions:
    """Each agent outputs a vector in the box ``[low, high]^action_dim``."""

    action_dim: int
    low: float = -1.0
    high: float = 1.0


ActionSpec = Union[DiscreteActions, ContinuousActions]


class EnvStep(NamedTuple):
    """What ``reset`` and ``step`` return (one environment, all agents stacked).

    Attributes:
      state: the environment's own state pytree.
      obs: ``[N, obs_dim]`` float32 observation of each agent after the step.
      avail_actions: ``[N, num_actions]`` bool mask of the actions each agent may
        take next (all True when the env has no mask; ``[N, 1]`` for continuous).
      reward: ``[N]`` float32 reward of each agent for this step (zeros on reset).
      terminated: ``[]`` bool, the episode ended in a terminal state.
      truncated: ``[]`` bool, the episode was cut by the time limit.
      info: dict of ``[]`` float32 per-episode quantities that are meaningful at the
        episode's last step (e.g. ``won``); the rollout averages them over the
        episodes that finish. Same keys on reset and step.
    """

    state: Any
    obs: Array
    avail_actions: Array
    reward: Array
    terminated: Array
    truncated: Array
    info: dict[str, Array]


class ObsCodec(NamedTuple):
    """A lossless compact form of the stacked observations ``[N, obs_dim]``, for
    environments whose agents observe overlapping parts of one feature vector
    (multi-agent MuJoCo: each agent sees its joints' k-hop neighbourhood, so the
    same feature appears in several agents' rows, and rows are zero-padded).

    ``compact_index [C]``: for each distinct observed feature, one flat position
    in ``obs.reshape(-1)`` that holds it. ``expand_index [N, obs_dim]``: for each
    observation entry, its feature's position in the compact vector, or ``C`` for
    a padding zero. Replay buffers store ``C`` floats per observation instead of
    ``N * obs_dim`` (``encode_obs`` / ``decode_obs``).
    """

    compact_index: np.ndarray
    expand_index: np.ndarray


def codec_from_feature_index(feature_index: np.ndarray, pad: int) -> ObsCodec:
    """The codec of observations built as ``features[feature_index]`` (``[N, D]``
    ints), where index ``pad`` is a constant 0."""
    feature_index = np.asarray(feature_index)
    flat = feature_index.reshape(-1)
    features, first = np.unique(flat, return_index=True)
    keep = features != pad
    position = {int(f): i for i, f in enumerate(features[keep])}
    compact = len(position)
    expand = np.array([position.get(int(f), compact) for f in flat], np.int32)
    return ObsCodec(first[keep].astype(np.int32), expand.reshape(feature_index.shape))


def encode_obs(codec: ObsCodec, obs: Array) -> Array:
    """``[..., N, obs_dim]`` -> ``[..., C]``."""
    flat = obs.reshape(obs.shape[:-2] + (-1,))
    return flat[..., jnp.asarray(codec.compact_index)]


def decode_obs(codec: ObsCodec, compact: Array) -> Array:
    """``[..., C]`` -> ``[..., N, obs_dim]`` (exact inverse of ``encode_obs`` on the
    env's observations)."""
    padded = jnp.concatenate([compact, jnp.zeros(compact.shape[:-1] + (1,), compact.dtype)],
                             axis=-1)
    return padded[..., jnp.asarray(codec.expand_index)]


class MultiAgentEnv(abc.ABC):
    """Base class of the stacked-array environments.

    Subclasses set ``name``, ``num_agents``, ``obs_dim``, ``action_spec`` and
    ``max_steps`` (the episode time limit) and implement ``reset`` and ``step``.
    They may implement ``policy_metrics`` to report exact quantities of a policy
    (the stochastic game reports J(pi) and J(pi)/J*).

    ``resets_on_done`` (True): the rollout starts a new episode where one ended. An
    env that sets it False keeps its state after ``terminated`` / ``truncated``
    (the stochastic game's ``never_reset`` mode: the ends only mask the bootstrap).
    """

    name: str
    num_agents: int
    obs_dim: int
    action_spec: ActionSpec
    max_steps: int
    resets_on_done: bool = True

    @abc.abstractmethod
    def reset(self, key: Array) -> EnvStep:
        """Start an episode."""

    @abc.abstractmethod
    def step(self, key: Array, state: Any, actions: Array) -> EnvStep:
        """Advance one step without resetting at the episode's end."""

    @property
    def is_discrete(self) -> bool:
        return isinstance(self.action_spec, DiscreteActions)

    @property
    def mask_dim(self) -> int:
        """Width of ``avail_actions``: the number of discrete actions, else 1."""
        spec = self.action_spec
        return spec.num_actions if isinstance(spec, DiscreteActions) else 1

    def policy_metrics(
        self, action_probs: Callable[[Array], Array]
    ) -> dict[str, Array]:
        """Exact metrics of a policy, computed inside the compiled program.

        Args:
          action_probs: maps observations ``[B, N, obs_dim]`` to the stacked
            agents' action probabilities ``[B, N, num_actions]``.

        Returns:
          A dict of scalar arrays; empty for environments without exact metrics.
        """
        del action_probs
        return {}

    @property
    def has_active_mask(self) -> bool:
        """Whether agents can be inactive (dead) inside an episode; see
        ``active_agents``. False by default: every agent always acts."""
        return False

    def active_agents(self, state: Any) -> Array:
        """``[N]`` bool: the agents alive in ``state``, whose action matters. Dead
        agents' samples are left out of the losses, the KL means and the beta
        adaptation when ``TrainConfig.active_masks`` is on (MAPPO's active masks).
        All True by default."""
        del state
        return jnp.ones((self.num_agents,), bool)

    def observation_codec(self) -> Optional[ObsCodec]:
        """A lossless compact form of the observations (``ObsCodec``), or ``None``
        (the default) when there is nothing to share between agents' rows."""
        return None

    def random_actions(self, key: Array, avail_actions: Array) -> Array:
        """Uniformly random valid actions for all agents (for baselines and benches)."""
        spec = self.action_spec
        if isinstance(spec, DiscreteActions):
            logits = jnp.where(avail_actions, 0.0, -jnp.inf)
            return jax.random.categorical(key, logits, axis=-1)
        return jax.random.uniform(
            key, (self.num_agents, spec.action_dim), minval=spec.low, maxval=spec.high
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, num_agents={self.num_agents}, "
            f"obs_dim={self.obs_dim}, action_spec={self.action_spec}, "
            f"max_steps={self.max_steps})"
        )


JAXMARL_ENV_ATTRIBUTES = ("agents", "reset", "step_env", "observation_space", "action_space")
"""What the JaxMARL adapter uses of a JaxMARL ``MultiAgentEnv``."""


def _looks_like_jaxmarl(env: object) -> bool:
    return all(hasattr(env, a) for a in JAXMARL_ENV_ATTRIBUTES)


def validate_env(env: object, where: str = "make_train") -> MultiAgentEnv:
    """Raise ``ValueError`` unless ``env`` is a stacked-protocol ``MultiAgentEnv``
    with sane sizes; return it. Called by every trainer before it builds anything,
    so a wrong object fails here and not as an ``AttributeError`` deep in tracing."""
    if isinstance(env, MultiAgentEnv):
        for field in ("num_agents", "obs_dim", "max_steps"):
            value = getattr(env, field, None)
            if not is_int(value) or value < 1:
                raise ValueError(f"{where}: env {type(env).__name__}.{field}={value!r} is "
                                 "invalid: expected a positive int")
        spec = getattr(env, "action_spec", None)
        if not isinstance(spec, (DiscreteActions, ContinuousActions)):
            raise ValueError(f"{where}: env {type(env).__name__}.action_spec={spec!r} is "
                             "invalid: expected DiscreteActions or ContinuousActions")
        return env
    if isinstance(env, str):
        raise ValueError(f"{where}: env={env!r} is a name, not an environment; build it "
                         f"first: dpo_jax.make_env({env!r}) (dpo_jax.list_envs() lists "
                         "the names)")
    if _looks_like_jaxmarl(env):
        raise ValueError(f"{where}: env is a raw JaxMARL environment "
                         f"({type(env).__name__}); wrap it in the stacked protocol first: "
                         "dpo_jax.envs.JaxMARLAdapter(env), or build it with "
                         "dpo_jax.make_env('jaxmarl', env_id=...)")
    raise ValueError(f"{where}: env must be a dpo_jax MultiAgentEnv (build one with "
                     f"dpo_jax.make_env), got {type(env).__name__}")
