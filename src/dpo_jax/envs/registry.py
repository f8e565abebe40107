"""Name -> constructor registry behind ``dpo_jax.make_env``."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from dpo_jax.envs.base import MultiAgentEnv

EnvFactory = Callable[..., MultiAgentEnv]

_REGISTRY: dict[str, EnvFactory] = {}


def register_env(name: str, factory: EnvFactory, *, overwrite: bool = False) -> None:
    """Make ``factory(**kwargs)`` available as ``make_env(name, **kwargs)``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = factory


def list_envs() -> list[str]:
    """The registered environment names, sorted."""
    return sorted(_REGISTRY)


def _check_kwargs(name: str, factory: EnvFactory, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        allowed = ", ".join(sorted(params)) or "(none)"
        raise TypeError(
            f"make_env({name!r}): unknown keyword argument(s) {unknown}; "
            f"this environment accepts: {allowed}"
        )


def make_env(name: str, **kwargs: Any) -> MultiAgentEnv:
    """Build a registered environment in the stacked-array form.

    Raises:
      ValueError: ``name`` is not registered (the message lists close matches and
        every registered name).
      TypeError: a keyword argument the environment does not take.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"unknown environment {name!r}.{hint} Registered: {', '.join(list_envs())}"
        )
    factory = _REGISTRY[name]
    _check_kwargs(name, factory, kwargs)
    return factory(**kwargs)
