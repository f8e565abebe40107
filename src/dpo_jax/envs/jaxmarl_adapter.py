"""Adapter from any JaxMARL ``MultiAgentEnv`` (dicts keyed by agent) to the stacked form.

JaxMARL environments return dicts of per-agent arrays and reset themselves inside
``step``; they signal episode ends with one ``done`` flag and do not say whether
the end was a terminal state or a time limit. The adapter:

* stacks observations (zero-padded to the widest agent), rewards and action masks
  along a leading agent axis in ``env.agents`` order;
* calls ``step_env`` (the step *without* JaxMARL's auto-reset), so the trainer sees
  the final observation of an episode and resets itself;
* counts steps itself and enforces the time limit ``max_steps`` (read from the env
  unless given): the episode is *truncated* after exactly ``max_steps`` steps, and
  *terminated* when the env says done earlier. (JaxMARL's MPE reports done one
  step late, after 26 steps for ``max_steps=25``; the adapter cuts at 25.) An env
  whose terminal states coincide with the time limit is treated as truncated
  (bootstrapped) there: MPE has no terminal states, so this is exact for it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from dpo_jax.envs._imports import import_jaxmarl
from dpo_jax.envs.base import (
    JAXMARL_ENV_ATTRIBUTES,
    ContinuousActions,
    DiscreteActions,
    EnvStep,
    MultiAgentEnv,
)

Array = jax.Array


class AdapterState(NamedTuple):
    """The wrapped env's state plus the step count within the episode."""

    env_state: Any
    step: Array


def _space_size(space: Any) -> int:
    shape = getattr(space, "shape", ())
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def _action_spec(space: Any) -> DiscreteActions | ContinuousActions:
    if hasattr(space, "n"):
        return DiscreteActions(num_actions=int(space.n))
    low = jnp.asarray(getattr(space, "low", -1.0))
    high = jnp.asarray(getattr(space, "high", 1.0))
    return ContinuousActions(
        action_dim=_space_size(space), low=float(low.min()), high=float(high.max())
    )


def _overrides(env: Any, method: str) -> bool:
    """Whether ``env`` implements ``method`` beyond JaxMARL's abstract base."""
    import_jaxmarl()
    from jaxmarl.environments.multi_agent_env import MultiAgentEnv as JaxMARLBase

    impl = getattr(type(env), method, None)
    return impl is not None and impl is not getattr(JaxMARLBase, method, None)


class JaxMARLAdapter(MultiAgentEnv):
    """Wrap a JaxMARL ``MultiAgentEnv`` into dpo-jax's stacked-array protocol.

    Args:
      env: a JaxMARL environment (``jaxmarl.make(...)`` or your own subclass).
      name: name reported in results (defaults to the class name).
      max_steps: episode time limit; defaults to ``env.max_steps``.
      info_keys: keys of the env's ``info`` dict to keep as per-episode metrics
        (each must be a per-agent dict or a scalar; per-agent values are averaged).
      team_reward: if True every agent receives the mean of the agents' rewards
        (turns per-agent shaping, such as MPE's local collision penalty, into one
        shared reward); default False keeps each agent's own reward.
    """

    def __init__(
        self,
        env: Any,
        *,
        name: Optional[str] = None,
        max_steps: Optional[int] = None,
        info_keys: Sequence[str] = (),
        team_reward: bool = False,
    ) -> None:
        missing = [a for a in JAXMARL_ENV_ATTRIBUTES if not hasattr(env, a)]
        if missing:
            raise ValueError(
                f"JaxMARLAdapter: env ({type(env).__name__}) is not a JaxMARL "
                f"MultiAgentEnv: it lacks {missing}; pass jaxmarl.make(...) or a "
                "subclass of jaxmarl's MultiAgentEnv")
        self._env = env
        self.agents: list[str] = list(env.agents)
        self.name = name or type(env).__name__
        self.num_agents = len(self.agents)
        specs = {_action_spec(env.action_space(a)) for a in self.agents}
        if len(specs) != 1:
            raise ValueError(
                f"{self.name}: agents have different action spaces {specs}; the "
                "stacked protocol needs one action space for all agents"
            )
        self.action_spec = specs.pop()
        self._obs_dims = [_space_size(env.observation_space(a)) for a in self.agents]
        self.obs_dim = max(self._obs_dims)
        limit = max_steps if max_steps is not None else getattr(env, "max_steps", None)
        if limit is None:
            raise ValueError(
                f"{self.name}: the env has no `max_steps`; pass max_steps= to the adapter"
            )
        self.max_steps = int(limit)
        self.info_keys = tuple(info_keys)
        self.team_reward = team_reward
        self._has_mask = isinstance(self.action_spec, DiscreteActions) and _overrides(
            env, "get_avail_actions"
        )

    @property
    def jaxmarl_env(self) -> Any:
        """The wrapped JaxMARL environment."""
        return self._env

    def _stack_obs(self, obs: dict[str, Array]) -> Array:
        rows = [
            jnp.pad(obs[a].reshape(-1).astype(jnp.float32), (0, self.obs_dim - d))
            for a, d in zip(self.agents, self._obs_dims)
        ]
        return jnp.stack(rows)

    def _avail(self, env_state: Any) -> Array:
        if self._has_mask:
            avail = self._env.get_avail_actions(env_state)
            return jnp.stack([avail[a] for a in self.agents]).astype(bool)
        return jnp.ones((self.num_agents, self.mask_dim), dtype=bool)

    def _info(self, info: dict[str, Any]) -> dict[str, Array]:
        out = {}
        for key in self.info_keys:
            value = info[key]
            if isinstance(value, dict):
                value = jnp.stack([jnp.asarray(value[a]) for a in self.agents]).mean()
            out[key] = jnp.asarray(value, dtype=jnp.float32).mean()
        return out

    def reset(self, key: Array) -> EnvStep:
        obs, env_state = self._env.reset(key)
        zeros = jnp.zeros((), dtype=bool)
        return EnvStep(
            state=AdapterState(env_state, jnp.zeros((), jnp.int32)),
            obs=self._stack_obs(obs),
            avail_actions=self._avail(env_state),
            reward=jnp.zeros((self.num_agents,), jnp.float32),
            terminated=zeros,
            truncated=zeros,
            info={k: jnp.zeros((), jnp.float32) for k in self.info_keys},
        )

    def step(self, key: Array, state: AdapterState, actions: Array) -> EnvStep:
        action_dict = {a: actions[i] for i, a in enumerate(self.agents)}
        obs, env_state, rewards, dones, info = self._env.step_env(
            key, state.env_state, action_dict
        )
        step = state.step + 1
        done = jnp.asarray(dones["__all__"], dtype=bool)
        truncated = step >= self.max_steps
        reward = jnp.stack([rewards[a] for a in self.agents]).astype(jnp.float32)
        if self.team_reward:
            reward = jnp.broadcast_to(reward.mean(), reward.shape)
        return EnvStep(
            state=AdapterState(env_state, step),
            obs=self._stack_obs(obs),
            avail_actions=self._avail(env_state),
            reward=reward,
            terminated=done & ~truncated,
            truncated=truncated,
            info=self._info(info),
        )


def make_jaxmarl_env(env_id: str, *, adapter_kwargs: Optional[dict] = None, **kwargs: Any) -> JaxMARLAdapter:
    """``jaxmarl.make(env_id, **kwargs)`` wrapped by :class:`JaxMARLAdapter`.

    JaxMARL's constructors take ``**kwargs`` and drop what they do not know, so the
    keyword arguments are checked here against the ``__init__`` parameters of the
    env's class and its bases; an unknown one raises ``ValueError``."""
    import_jaxmarl()
    import jaxmarl

    if kwargs:
        _check_jaxmarl_kwargs(env_id, type(jaxmarl.make(env_id)), kwargs)
    return JaxMARLAdapter(jaxmarl.make(env_id, **kwargs), name=env_id, **(adapter_kwargs or {}))


def _check_jaxmarl_kwargs(env_id: str, env_class: type, kwargs: dict) -> None:
    import inspect

    from dpo_jax.envs.registry import EnvArgumentError

    accepted: set[str] = set()
    for cls in env_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        accepted |= {p.name for p in inspect.signature(init).parameters.values()
                     if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise EnvArgumentError(
            f"make_env('jaxmarl', env_id={env_id!r}): unknown keyword argument(s) "
            f"{unknown}; {env_class.__name__} accepts: {', '.join(sorted(accepted))}")


def make_mpe_spread(
    num_agents: int = 5,
    num_landmarks: Optional[int] = None,
    max_steps: int = 25,
    local_ratio: float = 0.5,
    team_reward: bool = False,
) -> JaxMARLAdapter:
    """JaxMARL's ``MPE_simple_spread_v3`` (PettingZoo's simple spread), stacked.

    Reward per agent: ``local_ratio`` x its own collision penalty (-1 per contact)
    plus ``1 - local_ratio`` x the global term (minus the sum over landmarks of the
    distance to the nearest agent). Discrete actions (5), 25-step episodes, no
    terminal state. This is *not* the paper's assignment-based spread variant.
    """
    import_jaxmarl()
    import jaxmarl

    from dpo_jax.envs.mpe_tasks import MAX_MPE_AGENTS

    for arg, value in (("num_agents", num_agents), ("num_landmarks", num_landmarks),
                       ("max_steps", max_steps)):
        upper = MAX_MPE_AGENTS if arg != "max_steps" else float("inf")
        if value is None and arg == "num_landmarks":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
            raise ValueError(f"mpe_spread: {arg}={value!r} is invalid: expected an int in "
                             f"[1, {upper}]")
    if not 0.0 <= local_ratio <= 1.0:
        raise ValueError(f"mpe_spread: local_ratio={local_ratio!r} is invalid: expected a "
                         "number in [0, 1]")
    env = jaxmarl.make(
        "MPE_simple_spread_v3",
        num_agents=num_agents,
        num_landmarks=num_landmarks if num_landmarks is not None else num_agents,
        max_steps=max_steps,
        local_ratio=local_ratio,
    )
    return JaxMARLAdapter(env, name="mpe_spread", team_reward=team_reward)
