"""Checkpoints of a training run with orbax: the whole ``TrainState`` of every run
(agents, optimiser states, betas, value-norm statistics, env states, keys) and the
metrics so far, after every chunk of updates.

A folder holds one sub-folder per checkpoint, ``update_<n>`` (``n`` updates done),
and ``run.json``, which records what the run is (config, env, number of runs,
chunk size) so that resuming with anything else fails with a message naming the
difference. Typed PRNG keys are stored as their raw ``key_data`` and wrapped again
on restore. In a multi-process run every process calls ``save`` / ``restore``
(orbax writes each array once, coordinated across processes).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

_STEP = re.compile(r"^update_(\d+)$")
RUN_FILE = "run.json"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_empty(x: Any) -> bool:
    return hasattr(x, "shape") and 0 in tuple(x.shape)


def _to_storable(tree: Any) -> Any:
    """Typed keys as key data; zero-size arrays (e.g. MPE's empty communication
    state), which orbax refuses to save, as ``None``."""
    return jax.tree.map(lambda x: None if _is_empty(x) else
                        jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_storable(stored: Any, like: Any) -> Any:
    """``stored`` back in ``like``'s form: keys wrapped, zero-size arrays rebuilt.
    ``None`` counts as a leaf on both sides: the empty arrays stored as ``None``
    and the state's own ``None`` fields (e.g. JaxMARL MPE's ``goal``)."""
    is_none = lambda x: x is None  # noqa: E731
    like_leaves, treedef = jax.tree.flatten(like, is_leaf=is_none)
    stored_leaves = jax.tree.leaves(stored, is_leaf=is_none)
    if len(stored_leaves) != len(like_leaves):
        raise ValueError(f"checkpoint holds {len(stored_leaves)} entries, the state to "
                         f"restore into {len(like_leaves)}")

    def back(s: Any, t: Any) -> Any:
        if t is None:
            return None
        if _is_empty(t):
            return jnp.zeros(t.shape, t.dtype)
        if _is_key(t):
            return jax.random.wrap_key_data(s, impl=jax.random.key_impl(t))
        return s

    return treedef.unflatten([back(s, t) for s, t in zip(stored_leaves, like_leaves)])


def _path(folder: str | pathlib.Path, updates_done: int) -> pathlib.Path:
    """The checkpoint sub-folder after ``updates_done`` updates (matches ``_STEP``)."""
    return pathlib.Path(folder).absolute() / f"update_{updates_done:08d}"


def checkpoints(folder: str | pathlib.Path) -> list[int]:
    """The update counts of the checkpoints in ``folder``, ascending."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    found = (_STEP.match(p.name) for p in folder.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def latest(folder: str | pathlib.Path) -> Optional[int]:
    """The largest update count saved in ``folder``, or ``None``."""
    steps = checkpoints(folder)
    return steps[-1] if steps else None


def check_run(folder: str | pathlib.Path, description: Mapping[str, Any]) -> None:
    """Write ``run.json`` on first use; afterwards raise ``ValueError`` naming every
    entry that differs from ``description`` (a resume with another config)."""
    path = pathlib.Path(folder) / RUN_FILE
    text = json.loads(json.dumps(description, default=str))
    if not path.exists():
        if jax.process_index() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(text, indent=1))
        return
    saved = json.loads(path.read_text())
    diff = sorted(k for k in set(saved) | set(text) if saved.get(k) != text.get(k))
    if diff:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {text.get(k)!r}" for k in diff)
        raise ValueError(f"checkpoint folder {str(folder)!r} belongs to another run "
                         f"({detail}); use a new folder or the same settings")


def saved_runs(folder: str | pathlib.Path) -> int:
    """How many runs the folder's states hold (the run axis, padded to the device
    count when the run was split over devices), from ``run.json``."""
    path = pathlib.Path(folder) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} is missing: not a checkpoint folder")
    saved = json.loads(path.read_text())
    return int(saved.get("padded_runs", saved["runs"]))


def metrics_like(chunk_metrics: Mapping[str, Any], updates_done: int
                 ) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes of the metrics saved after ``updates_done`` updates, from those of
    one chunk (``[runs, chunk, ...]`` leaves, arrays or ``ShapeDtypeStruct``):
    ``restore``'s ``like_metrics``."""
    return {k: jax.ShapeDtypeStruct((v.shape[0], updates_done) + tuple(v.shape[2:]),
                                    v.dtype) for k, v in chunk_metrics.items()}


def save(folder: str | pathlib.Path, updates_done: int, state: Any,
         metrics: Mapping[str, np.ndarray]) -> pathlib.Path:
    """Save ``state`` (a pytree of arrays, e.g. the stacked ``TrainState`` of every
    run) and the metrics of updates ``0 .. updates_done - 1`` as ``update_<n>``."""
    import orbax.checkpoint as ocp

    path = _path(folder, updates_done)
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(path, {"state": _to_storable(state), "metrics": dict(metrics)},
                          force=True)
        checkpointer.wait_until_finished()
    finally:  # its worker threads, also after an error (else exit can hang)
        checkpointer.close()
    return path


def restore(folder: str | pathlib.Path, updates_done: int, like_state: Any,
            like_metrics: Mapping[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    """The state and metrics saved at ``updates_done``, with the structure, dtypes
    and shardings of ``like_state`` (e.g. a freshly initialised state) and metric
    leaves shaped as ``like_metrics`` (arrays or ``ShapeDtypeStruct``)."""
    import orbax.checkpoint as ocp

    path = _path(folder, updates_done)
    target = {
        "state": jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(like_state)),
        "metrics": {k: jax.ShapeDtypeStruct(np.shape(v), np.dtype(v.dtype))
                    for k, v in like_metrics.items()},
    }
    checkpointer = ocp.StandardCheckpointer()
    try:
        restored = checkpointer.restore(path, target)
    finally:
        checkpointer.close()
    metrics = {k: np.asarray(v) for k, v in restored["metrics"].items()}
    return _from_storable(restored["state"], like_state), metrics
