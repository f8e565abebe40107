"""Pieces the off-policy baselines share: result type, initialisation, target
networks, and the bookkeeping of a training update."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs.base import MultiAgentEnv, validate_env

Array = jax.Array
ProgressFn = Callable[[dict[str, np.ndarray]], None]

# PyTorch's default initialisation of nn.Linear and nn.GRUCell weights,
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which the reference code bases (PyMARL, TD3)
# train with. It also keeps LAPACK out of the program: flax's default orthogonal
# recurrent init would call it (see ``dpo_jax.core.initializers`` for why that matters).
# Biases keep flax's zero init (PyTorch draws them from the same uniform range): a
# small departure from the reference code, chosen to keep the networks plain flax.
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class BaselineResult(NamedTuple):
    """What a baseline's ``train(key)`` returns.

    Attributes:
      agents: the final per-agent state (parameters, target parameters and
        optimiser states, leaves stacked on the agent axis 0).
      metrics: per-update metrics, leaves ``[num_updates, ...]``; the names the PPO
        trainer uses (``episode_return``, ``env_steps``, ``finite``, ...) mean the
        same here, so ``check_finite`` applies.
    """

    agents: Any
    metrics: dict[str, Array]


def require_action_space(env: MultiAgentEnv, discrete: bool, algo: str) -> None:
    """Raise ``ValueError`` naming ``algo`` and ``env``'s action space if it is not
    discrete (``discrete=True``) or continuous (``discrete=False``), or if ``env`` is
    not a stacked-protocol environment at all (``validate_env``)."""
    validate_env(env, where=algo)
    if env.is_discrete != discrete:
        wanted = "discrete" if discrete else "continuous"
        other = "IDDPG" if discrete else "IQL"
        raise ValueError(
            f"{algo} needs a {wanted} action space, but {env.name!r} has "
            f"{env.action_spec!r}; use {other} or a PPO-family algorithm instead")


def require_no_objective(obj: Optional[object], algo: str) -> None:
    """``train(key, obj)`` mirrors the PPO trainer; a baseline has no objective params."""
    if obj is not None:
        raise ValueError(f"{algo} takes no objective parameters: call train(key) or "
                         f"train(key, None, env), got obj={obj!r}")


def baseline_result(state: Any, metrics: dict[str, Array]) -> BaselineResult:
    """The ``BaselineResult`` of a final IQL / IDDPG state and its metrics."""
    return BaselineResult(state.agents, metrics)


def hard_target_update(target: Any, online: Any, copy: Array) -> Any:
    """The target parameters replaced by the online ones where ``copy`` (a ``[]`` bool)
    is True: PyMARL's ``_update_targets`` (``q_learner.py``)."""
    return jax.tree.map(lambda t, o: jnp.where(copy, o, t), target, online)


def polyak_update(target: Any, online: Any, tau: float) -> Any:
    """``target <- tau * online + (1 - tau) * target`` leaf by leaf (DDPG's soft update,
    TD3 ``OurDDPG.train``)."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def keep_if(condition: Array, new: Any, old: Any) -> Any:
    """``new`` where the scalar ``condition`` holds, else ``old``, leaf by leaf."""
    return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)

