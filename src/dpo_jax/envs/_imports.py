"""Importing JaxMARL and MJX without losing or cluttering the caller's output.

Importing ``jaxmarl`` (any of its modules) runs ``jaxmarl/environments/__init__.py``,
which prints two lines about "submoduled environments", and
``environments/mabrax/mabrax_env.py``, which sets ``sys.stdout, sys.stderr =
sys.__stdout__, sys.__stderr__``: in a Jupyter kernel every later ``print`` then goes
to the server's terminal instead of the notebook. Importing ``mujoco.mjx`` prints
two "Failed to import warp" lines when the optional Warp backend is absent.

:func:`import_jaxmarl` and :func:`import_mjx` do the first import with the streams
saved and restored, drop those known lines, and pass anything else written (real
warnings included) on to the streams that were in place. Every dpo-jax module
imports JaxMARL and MJX through them.
"""

from __future__ import annotations

import importlib
import io
import sys
from types import ModuleType
from typing import Callable

_JAXMARL_NOISE = frozenset({
    "Importing submoduled environments...",
    "Submoduled environments not found. Skipping import.",
    "Submoduled environments imported successfully.",
})
_MJX_NOISE = ("Failed to import warp:", "Failed to import mujoco_warp:")


def _quiet_import(name: str, is_noise: Callable[[str], bool]) -> ModuleType:
    """Import ``name`` with ``sys.stdout``/``stderr`` (and ``sys.__stdout__``/
    ``__stderr__``) restored afterwards and its output filtered by ``is_noise``."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    saved = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    out, err = io.StringIO(), io.StringIO()
    try:
        # mabrax_env.py resets the streams to sys.__stdout__ / __stderr__ mid-import,
        # so those are redirected too
        sys.stdout = sys.__stdout__ = out
        sys.stderr = sys.__stderr__ = err
        module = importlib.import_module(name)
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved
    kept = [line for line in out.getvalue().splitlines() if not is_noise(line.strip())]
    if kept:
        print("\n".join(kept), file=sys.stdout)
    if err.getvalue():
        sys.stderr.write(err.getvalue())
    return module


def import_jaxmarl() -> ModuleType:
    """``jaxmarl.environments``, imported with the caller's streams left as they were."""
    return _quiet_import("jaxmarl.environments", lambda line: line in _JAXMARL_NOISE)


def import_mjx() -> ModuleType:
    """``mujoco.mjx``, imported without its notice about the optional Warp backend."""
    return _quiet_import("mujoco.mjx", lambda line: line.startswith(_MJX_NOISE))
