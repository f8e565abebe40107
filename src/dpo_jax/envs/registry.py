"""Name -> constructor registry behind ``dpo_jax.make_env``.

Built-in environments are registered by import path (``"module:factory"``, with
optional positional arguments for a factory of factories), so that listing or
checking names imports nothing heavy; the module is imported when the env is
built. ``register_env(name, factory)`` adds your own.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Union

from dpo_jax.config import is_int, is_real
from dpo_jax.envs.base import MultiAgentEnv

EnvFactory = Callable[..., MultiAgentEnv]
LazyFactory = tuple[str, tuple[Any, ...]]  # ("module:attr", args of attr if any)

_REGISTRY: dict[str, Union[EnvFactory, LazyFactory]] = {}


def register_env(name: str, factory: EnvFactory | str, *args: Any,
                 overwrite: bool = False) -> None:
    """Make ``factory(**kwargs)`` available as ``make_env(name, **kwargs)``.

    ``factory`` is a callable, or an import path ``"package.module:attr"`` resolved
    on first use (with ``args``: ``attr(*args)`` is the factory)."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered")
    if isinstance(factory, str):
        if ":" not in factory:
            raise ValueError(f"register_env({name!r}): import path {factory!r} must "
                             f"read 'module:attr'")
        _REGISTRY[name] = (factory, args)
    elif callable(factory) and not args:
        _REGISTRY[name] = factory
    else:
        raise ValueError(f"register_env({name!r}): factory must be a callable or an "
                         f"import path 'module:attr' (args only with a path)")


def factory_of(name: str) -> EnvFactory:
    """The constructor registered as ``name`` (importing its module if needed)."""
    entry = _REGISTRY[name]
    if isinstance(entry, tuple):
        path, args = entry
        module, _, attr = path.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        if args:
            entry = entry(*args)
        _REGISTRY[name] = entry
    return entry


def list_envs() -> list[str]:
    """The registered environment names, sorted."""
    return sorted(_REGISTRY)


class EnvArgumentError(TypeError, ValueError):
    """A keyword argument an environment does not take, or of the wrong type. Both a
    ``TypeError`` (as Python reports unknown arguments) and a ``ValueError`` (as
    every other bad setting in dpo-jax)."""


def _check_kwargs(name: str, factory: EnvFactory, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            allowed = ", ".join(sorted(params)) or "(none)"
            raise EnvArgumentError(
                f"make_env({name!r}): unknown keyword argument(s) {unknown}; "
                f"this environment accepts: {allowed}"
            )
    for key, value in kwargs.items():
        if key in params:
            _check_type(name, key, value, params[key])


_PLAIN_TYPES = {int: "int", float: "float", bool: "bool", str: "str"}


def _check_type(name: str, key: str, value: Any, param: inspect.Parameter) -> None:
    """For an argument annotated with exactly ``int``, ``float``, ``bool`` or ``str``
    (not a union): an int that is not a bool, a finite real, a bool, a string.
    Ranges are each factory's to check."""
    annotation = param.annotation
    annotation = _PLAIN_TYPES.get(annotation, annotation)
    default = {"int": 0, "float": 0.0, "bool": False, "str": ""}.get(annotation)
    if default is None:
        return
    def fail(expected: str) -> None:
        raise EnvArgumentError(f"make_env({name!r}): {key}={value!r} is invalid: "
                               f"expected {expected}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            fail("True or False")
    elif isinstance(default, int):
        if not is_int(value):
            fail("an int")
    elif isinstance(default, float):
        if not is_real(value):
            fail("a finite real number")
    elif isinstance(default, str) and not isinstance(value, str):
        fail("a string")


def make_env(name: str, **kwargs: Any) -> MultiAgentEnv:
    """Build a registered environment in the stacked-array form.

    Raises:
      ValueError: ``name`` is not registered (the message lists close matches and
        every registered name).
      EnvArgumentError (a ``TypeError`` and a ``ValueError``): a keyword argument
        the environment does not take, or a value of the wrong type.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"unknown environment {name!r}.{hint} Registered: {', '.join(list_envs())}"
        )
    factory = factory_of(name)
    _check_kwargs(name, factory, kwargs)
    return factory(**kwargs)
