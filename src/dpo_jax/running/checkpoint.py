"""Checkpoints of a training run that prove themselves.

After every chunk of updates ``running.experiments.run`` saves, in this order:

1. ``metrics/metrics_<start>_<end>.npz``: the metrics since the last checkpoint
   only (so a save costs the same at update 10 and at update 10,000);
2. ``update_<end>/``: the whole state of every run (agents, optimiser states,
   betas, value-norm statistics, env states, keys, replay buffers) with orbax;
3. ``manifests/update_<end>.json``, the *manifest*: a SHA-256 digest of every
   state array and of the metrics file. It is written last, atomically (a rename),
   so a checkpoint without one is incomplete.

:func:`restore_latest` walks the checkpoints from the newest: one that is
incomplete, unreadable, or whose data do not match its digests is reported by path
and skipped, and the newest sound one is restored, with the metrics of every chunk
up to it (each file checked against its digest). Bad data are never loaded.
Older state folders are deleted once a newer checkpoint is complete (``keep``
newest kept, 2 by default); the small manifests and metrics files stay.

``run.json`` records what the run is (config, env, number of runs, chunk size), so
that resuming with anything else fails with a message naming the difference.
Typed PRNG keys are stored as their raw ``key_data`` and wrapped again on restore;
zero-size arrays (which orbax refuses) are rebuilt. In a multi-process run every
process calls ``save`` / ``restore`` (orbax writes each array once), process 0
writes the manifest and metrics files, and digests are of the gathered arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import warnings
from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.parallel import sharding
from dpo_jax.running import results

_STEP = re.compile(r"^update_(\d+)$")
_MANIFEST = re.compile(r"^update_(\d+)\.json$")
RUN_FILE = "run.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used (named in the message)."""


class CheckpointWarning(UserWarning):
    """A damaged or incomplete checkpoint that was skipped on resume."""


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


def state_digest(state: Any) -> str:
    """SHA-256 over the shapes, dtypes and bytes of every array of ``state`` (in
    storable form, gathered across processes), in tree order."""
    digest = hashlib.sha256()
    leaves = jax.tree.leaves(sharding.gather(_to_storable(state)))
    for leaf in leaves:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_digest(path: pathlib.Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_path(folder: str | pathlib.Path, updates_done: int) -> pathlib.Path:
    return pathlib.Path(folder).absolute() / f"update_{updates_done:08d}"


MANIFESTS = "manifests"
METRICS = "metrics"


def _manifest_path(folder: str | pathlib.Path, updates_done: int) -> pathlib.Path:
    return pathlib.Path(folder).absolute() / MANIFESTS / f"update_{updates_done:08d}.json"


def _metrics_path(folder: str | pathlib.Path, start: int, end: int) -> pathlib.Path:
    return pathlib.Path(folder).absolute() / METRICS / f"metrics_{start:08d}_{end:08d}.npz"


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename, so
    that ``path`` is either absent or whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoints(folder: str | pathlib.Path) -> list[int]:
    """The update counts of the complete checkpoints (with a manifest) in
    ``folder``, ascending."""
    manifests = pathlib.Path(folder) / MANIFESTS
    if not manifests.is_dir():
        return []
    found = (_MANIFEST.match(entry.name) for entry in os.scandir(manifests) if entry.is_file())
    return sorted(int(m.group(1)) for m in found if m)


def latest(folder: str | pathlib.Path) -> Optional[int]:
    """The largest update count with a complete checkpoint in ``folder``, or ``None``."""
    steps = checkpoints(folder)
    return steps[-1] if steps else None


def has_any(folder: str | pathlib.Path) -> bool:
    """Whether ``folder`` holds a checkpoint, complete or not (a run was started)."""
    folder = pathlib.Path(folder)
    return folder.is_dir() and (bool(checkpoints(folder)) or any(
        _STEP.match(p.name) for p in folder.iterdir()))


def read_json(path: pathlib.Path, what: str) -> Any:
    """A JSON file's content, or ``CheckpointError`` naming the file."""
    return results.read_json(path, what, CheckpointError)


def check_run(folder: str | pathlib.Path, description: Mapping[str, Any]) -> None:
    """Write ``run.json`` on first use; afterwards raise ``CheckpointError`` naming
    every entry that differs from ``description`` (a resume with another config)."""
    path = pathlib.Path(folder) / RUN_FILE
    text = json.loads(json.dumps(description, default=str))
    if not path.exists():
        if sharding.is_main_process():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(text, indent=1).encode())
        return
    saved = read_json(path, "the run's description")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{str(path)!r} is not a run description (a JSON object)")
    diff = sorted(k for k in set(saved) | set(text) if saved.get(k) != text.get(k))
    if diff:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {text.get(k)!r}" for k in diff)
        raise CheckpointError(f"checkpoint folder {str(folder)!r} belongs to another run "
                              f"({detail}); use a new folder or the same settings")


_MANIFEST_KEYS = ("updates_done", "chunk", "metrics_file", "metrics_sha256", "state",
                  "state_sha256")


def _manifest(path: pathlib.Path) -> dict:
    """A checkpoint manifest, checked for its keys; ``CheckpointError`` naming it."""
    manifest = read_json(path, "a checkpoint manifest")
    if not isinstance(manifest, dict) or any(k not in manifest for k in _MANIFEST_KEYS):
        raise CheckpointError(f"{str(path)!r} is not a checkpoint manifest (it needs "
                              f"{', '.join(_MANIFEST_KEYS)})")
    return manifest


def saved_runs(folder: str | pathlib.Path) -> int:
    """How many runs the folder's states hold (the run axis, padded to the device
    count when the run was split over devices), from ``run.json``."""
    saved = read_json(pathlib.Path(folder) / RUN_FILE, "the run's description")
    try:
        return int(saved.get("padded_runs", saved["runs"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{str(pathlib.Path(folder) / RUN_FILE)!r} lacks the run "
                              f"count ('runs')") from None


def save(folder: str | pathlib.Path, start: int, updates_done: int, state: Any,
         chunk_metrics: Mapping[str, np.ndarray], keep: int = 2) -> pathlib.Path:
    """Save the checkpoint after ``updates_done`` updates: the metrics of updates
    ``start .. updates_done - 1`` (``[runs, updates, ...]`` host arrays), the state,
    then the manifest; then delete state folders older than the ``keep`` newest.
    Returns the manifest's path."""
    import orbax.checkpoint as ocp

    folder = pathlib.Path(folder).absolute()
    main = sharding.is_main_process()
    metrics_file = _metrics_path(folder, start, updates_done)
    if main:
        for sub in (MANIFESTS, METRICS):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in chunk_metrics.items()})
        write_atomic(metrics_file, buffer.getvalue())
    fault_point("after_metrics", updates_done)
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(_state_path(folder, updates_done), _to_storable(state), force=True)
        checkpointer.wait_until_finished()
    finally:  # its worker threads, also after an error (else exit can hang)
        checkpointer.close()
    fault_point("after_state", updates_done)
    digest = state_digest(state)
    manifest = _manifest_path(folder, updates_done)
    if main:
        write_atomic(manifest, json.dumps({
            "updates_done": updates_done, "chunk": [start, updates_done],
            "metrics_file": metrics_file.name, "metrics_sha256": file_digest(metrics_file),
            "state": _state_path(folder, updates_done).name, "state_sha256": digest,
        }, indent=1).encode())
        fault_point("after_manifest", updates_done)
        prune(folder, keep)
    return manifest


def prune(folder: pathlib.Path, keep: int) -> None:
    """Delete the state folders of all but the ``keep`` newest complete checkpoints
    (and any incomplete state folder older than the newest complete one). The
    folder holds at most ``keep`` + 1 state folders, so this costs the same at every
    save; manifests and metrics live in their own sub-folders."""
    states = sorted(int(m.group(1)) for entry in os.scandir(folder)
                    for m in [_STEP.match(entry.name)] if m and entry.is_dir())
    complete = [n for n in states if _manifest_path(folder, n).exists()]
    kept = set(complete[-keep:])
    newest = complete[-1] if complete else -1
    for n in states:
        if n not in kept and n < newest:
            shutil.rmtree(_state_path(folder, n), ignore_errors=True)


def _first_words(err: Exception, limit: int = 240) -> str:
    """The start of an error's message (tensorstore appends kilobytes of its spec)."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.split(" [tensorstore_spec")[0]
    return text if len(text) <= limit else text[:limit] + "..."


class Restored(NamedTuple):
    """What :func:`restore_latest` found: the state and metrics after
    ``updates_done`` updates, and one line per checkpoint it had to skip."""

    updates_done: int
    state: Any
    metrics: dict[str, np.ndarray]
    skipped: list[str]


def _load_metrics(folder: pathlib.Path, updates_done: int,
                  like: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The metrics of updates ``0 .. updates_done - 1`` from the chunk files that the
    manifests up to ``updates_done`` name, each checked against its digest."""
    parts: list[dict[str, np.ndarray]] = []
    by_start: dict[int, dict] = {}
    for n in checkpoints(folder):
        if n <= updates_done:
            entry = _manifest(_manifest_path(folder, n))
            by_start[int(entry["chunk"][0])] = entry
    at = 0
    while at < updates_done:
        entry = by_start.get(at)
        if entry is None:
            raise CheckpointError(f"{str(folder)!r}: no manifest covers update {at} (the "
                                  f"metrics of updates {at}.. are missing)")
        path = folder / METRICS / entry["metrics_file"]
        if not path.exists() or file_digest(path) != entry["metrics_sha256"]:
            raise CheckpointError(f"{str(path)!r} is missing or does not match its digest")
        with np.load(path) as data:
            parts.append({k: data[k] for k in data.files})
        at = entry["chunk"][1]
    if not parts:
        return {k: np.zeros(v.shape[:1] + (0,) + tuple(v.shape[2:]), v.dtype)
                for k, v in like.items()}
    missing = set(like) - set(parts[0])
    if missing:
        raise CheckpointError(f"{str(folder)!r}: saved metrics lack {sorted(missing)}")
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in like}


def restore(folder: str | pathlib.Path, updates_done: int, like_state: Any,
            like_metrics: Mapping[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    """The state and metrics saved after ``updates_done`` updates, with the
    structure, dtypes and shardings of ``like_state`` and the metric names and
    dtypes of ``like_metrics``; ``CheckpointError`` naming the file when anything is
    missing, unreadable or does not match its digest."""
    import orbax.checkpoint as ocp

    folder = pathlib.Path(folder).absolute()
    manifest_path = _manifest_path(folder, updates_done)
    manifest = _manifest(manifest_path)
    state_path = folder / manifest["state"]
    if not state_path.is_dir():
        raise CheckpointError(f"{str(state_path)!r} is missing (state pruned or not saved)")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(like_state))
    checkpointer = ocp.StandardCheckpointer()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = checkpointer.restore(state_path, target)
    except Exception as err:  # orbax/tensorstore raise many types for damaged files
        raise CheckpointError(f"{str(state_path)!r} cannot be read ({type(err).__name__}: "
                              f"{_first_words(err)})") from None
    finally:
        checkpointer.close()
    state = _from_storable(stored, like_state)
    if state_digest(state) != manifest.get("state_sha256"):
        raise CheckpointError(f"{str(state_path)!r} does not match the digest in "
                              f"{str(manifest_path)!r}: the saved state is damaged")
    return state, _load_metrics(folder, updates_done, like_metrics)


def restore_latest(folder: str | pathlib.Path, like_state: Any,
                   like_metrics: Mapping[str, Any]) -> Optional[Restored]:
    """The newest sound checkpoint of ``folder`` (see the module docstring), or
    ``None`` when it holds none at all. Raises ``CheckpointError`` listing every
    checkpoint tried when none is sound."""
    folder = pathlib.Path(folder).absolute()
    skipped: list[str] = []
    complete = set(checkpoints(folder))
    started = sorted({int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else [])
                      for m in [_STEP.match(p.name)] if m and p.is_dir()} - complete)
    for n in started:
        if n > max(complete, default=-1):
            skipped.append(f"{_state_path(folder, n)} is incomplete (no manifest: the "
                           f"process stopped while saving it)")
    for n in sorted(complete, reverse=True):
        try:
            state, metrics = restore(folder, n, like_state, like_metrics)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return Restored(n, state, metrics, skipped)
    if skipped:
        raise CheckpointError("no sound checkpoint to resume from: " + "; ".join(skipped))
    return None


def metrics_like(chunk_metrics: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    """The metric names, shapes and dtypes of one chunk (``[runs, chunk, ...]``
    leaves, arrays or ``ShapeDtypeStruct``): ``restore``'s ``like_metrics``."""
    return {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for k, v in chunk_metrics.items()}


FAULT_VAR = "DPO_JAX_FAULT_AT"


def fault_point(name: str, updates_done: int) -> None:
    """Test hook: end the process abruptly (``os._exit(86)``, as a SIGKILL would) at
    the named stage of saving the checkpoint after ``updates_done`` updates when
    ``DPO_JAX_FAULT_AT`` is ``<stage>:<updates_done>`` (stages: ``after_chunk``,
    ``after_metrics``, ``after_state``, ``after_manifest``, ``after_logs``). The
    fault-injection tests crash a job at every stage this way."""
    wanted = os.environ.get(FAULT_VAR)
    if wanted and wanted == f"{name}:{updates_done}":
        os._exit(86)
