"""Checkpoints of a training run that prove themselves.

After every chunk of updates ``running.experiments.run`` saves, in this order:

1. ``metrics/metrics_<start>_<end>.npz``: the metrics since the last checkpoint
   only (so a save costs the same at update 10 and at update 10,000);
2. ``update_<end>/``: the whole state of every run (agents, optimiser states,
   betas, value-norm statistics, env states, keys, replay buffers) with orbax;
3. ``manifests/update_<end>.json``, the *manifest*: a SHA-256 digest of every
   state array, of every file of the state folder and of the metrics file, and the
   run count the state holds. It is written last, atomically (a rename), so a
   checkpoint without one is incomplete.

**Damage is anything that cannot be read.** :func:`restore_latest` walks the
checkpoints from the newest: one whose manifest or state is missing, unreadable (a
directory in a file's place included) or does not match its digests is reported by
path and skipped, and the newest sound one is restored. Bad data are never loaded.
Errors that are not damage stop with their cause (:class:`CheckpointReadError`):
when every file of a state folder matches its digest but orbax cannot read it (a
library that cannot read the format, out of memory), falling back to an older
checkpoint would hide the cause. A state needs no metrics: a metrics file that is
lost or damaged costs only its rows (``Restored.lost`` names them; the loggers keep
what their own files still hold), and ``dpo-jax eval`` reads no metrics at all. A
metric that a later version added is not damage: the updates an earlier version
saved have it NaN (``Restored.unlogged`` names them) and keep every other metric. A
save moves anything unreadable that is in its way aside (``.<name>.damaged-<time>``),
so a damaged entry never blocks the checkpoints after it.
Older state folders are deleted once a newer checkpoint is complete (``keep``
newest kept, 2 by default); the small manifests and metrics files stay.

**Identity and layout.** ``run.json`` records what the run is (config, env, run
count, keys, objective parameters: its *identity*), so that resuming with anything
else fails with a message naming each field that differs with both values, and,
apart, how it was laid out (device count, padded run count, chunk and checkpoint
intervals: its *layouts*, one entry per stretch of updates). A layout never stops a
resume: a state saved with the run axis padded to one device count is restored
onto another (the padding copies are dropped and made anew), and the chunk size is
a property of the process, not of the job.
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
    """A damaged or incomplete checkpoint that was skipped on resume, or lost
    metrics rows."""


class CheckpointReadError(RuntimeError):
    """A checkpoint whose files are intact but cannot be read here (a library
    version that cannot read the format, out of memory): not damage, so no older
    checkpoint is tried in its place."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_empty(x: Any) -> bool:
    return hasattr(x, "shape") and 0 in tuple(x.shape)


def shape_of(state: Any) -> Any:
    """``state`` as a restore target that holds no state memory: each array leaf as a
    ``jax.ShapeDtypeStruct`` with its sharding; typed keys (a few bytes) and other
    leaves kept. A resume passes this to :func:`restore_latest`, so that the initial
    state is freed before the saved one is read (for a replay buffer of several GB,
    the two together would double the job's memory)."""
    def abstract(x: Any) -> Any:
        if _is_key(x) or not isinstance(x, jax.Array):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

    return jax.tree.map(abstract, state)


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


def _row_blocks(leaf: Any) -> list[Any]:
    """The pieces of ``leaf`` whose C-order bytes, one after another, are the whole
    array's: its shards in order when it is split along axis 0 only (a run-sharded
    state; replicas counted once), else the array itself. No piece is assembled
    into a copy of the whole array."""
    shards = getattr(leaf, "addressable_shards", None)
    if not shards or len(shards) == 1 or not getattr(leaf, "is_fully_addressable", False):
        return [leaf]
    blocks: dict[int, Any] = {}
    for shard in shards:
        index = shard.index
        if any(s != slice(None) and (s.start or 0, s.stop) != (0, dim)
               for s, dim in zip(index[1:], leaf.shape[1:])):
            return [leaf]  # split along another axis: read it whole
        first = index[0] if index else slice(None)
        blocks.setdefault(first.start or 0, shard.data)
    starts = sorted(blocks)
    stops = [starts[i + 1] for i in range(len(starts) - 1)] + [leaf.shape[0] if leaf.shape
                                                                 else 1]
    if starts[0] != 0 or any(blocks[a].shape[0] != b - a for a, b in zip(starts, stops)
                             if blocks[a].ndim):
        return [leaf]
    return [blocks[a] for a in starts]


def state_digest(state: Any) -> str:
    """SHA-256 over the shapes, dtypes and bytes of every array of ``state`` (in
    storable form, gathered across processes), in tree order. A run-sharded leaf is
    read shard by shard and hashed from its own memory (the digest is the same as
    of the assembled array), so that a multi-gigabyte replay buffer is not copied
    twice more to be hashed."""
    digest = hashlib.sha256()
    leaves = jax.tree.leaves(sharding.gather(_to_storable(state)))
    for leaf in leaves:
        shape = tuple(np.shape(leaf)) or (1,)  # as np.ascontiguousarray reads a scalar
        digest.update(f"{shape}{np.dtype(leaf.dtype)}".encode())
        for block in _row_blocks(leaf):
            for piece in _row_pieces(block):
                array = np.ascontiguousarray(np.asarray(piece))
                digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


DIGEST_PIECE_BYTES = 64 << 20
"""The most bytes :func:`state_digest` reads into host memory at once."""


def _row_pieces(block: Any, limit: Optional[int] = None) -> Any:
    """``block`` in runs of whole rows (axis 0) of at most ``limit`` bytes (one row
    if a row is larger), whose C-order bytes one after another are the block's.
    A jax array converted to numpy whole keeps its host copy as long as the array
    lives; a piece's copy is freed once hashed."""
    limit = DIGEST_PIECE_BYTES if limit is None else limit
    rows = int(block.shape[0]) if getattr(block, "ndim", 0) else 0
    nbytes = int(np.prod(block.shape, dtype=np.int64)) * np.dtype(block.dtype).itemsize
    if rows <= 1 or nbytes <= limit:
        yield block
        return
    step = max(1, limit // (nbytes // rows))
    for start in range(0, rows, step):
        yield block[start:start + step]


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


RUN_FORMAT = 3
"""``run.json``'s format: 3 (this version) has ``identity`` and ``layouts``; 2
(dpo-jax 0.2.0) has the same entries at the top level, layout ones mixed in."""
IDENTITY_KEYS = ("config", "env", "runs", "keys", "obj")
LAYOUT_KEYS = ("devices", "padded_runs", "shard", "chunk_updates", "checkpoint_every")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def read_run(folder: str | pathlib.Path) -> Optional[dict[str, Any]]:
    """``run.json`` of ``folder`` as ``{"identity": ..., "layouts": [...]}``
    (format 2 upgraded in memory), or ``None`` when there is none."""
    path = pathlib.Path(folder) / RUN_FILE
    if not path.exists():
        return None
    saved = read_json(path, "the run's description")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{str(path)!r} is not a run description (a JSON object)")
    if "identity" in saved:
        if not isinstance(saved.get("layouts"), list) or not saved["layouts"]:
            raise CheckpointError(f"{str(path)!r} lacks its layouts")
        return {"identity": saved["identity"], "layouts": saved["layouts"]}
    if "runs" not in saved:
        raise CheckpointError(f"{str(path)!r} lacks the run count ('runs')")
    identity = {k: saved.get(k) for k in IDENTITY_KEYS}
    layout = {"from_update": 0, "padded_runs": saved.get("padded_runs", saved["runs"]),
              **{k: saved[k] for k in ("chunk_updates", "checkpoint_every") if k in saved}}
    return {"identity": identity, "layouts": [layout]}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def identity_diff(saved: Mapping[str, Any], now: Mapping[str, Any],
                  config_defaults: Optional[Mapping[str, Any]] = None) -> list[str]:
    """``field: saved X, now Y`` for every identity field that differs; config
    fields one by one. A config field the saved run lacks (a later version added it)
    counts as its default (``config_defaults``), which keeps the earlier behaviour;
    an ``obj`` field it lacks is not compared (it carries a config field's value)."""
    saved, now = _jsonable(dict(saved)), _jsonable(dict(now))
    defaults = _jsonable(dict(config_defaults or {}))
    lines = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            for field in sorted(set(a) | set(b)):
                fa = a.get(field, defaults.get(field, "<absent>"))
                if fa != b.get(field, "<absent>"):
                    lines.append(f"config.{field}: saved {_short(fa)}, now "
                                 f"{_short(b.get(field, '<absent>'))}")
        elif key == "obj" and isinstance(a, dict) and isinstance(b, dict):
            # a field the saved run lacks (0.3.0 wrote the objective's ten) is one
            # of the config's numbers, compared above
            for field in sorted(set(a) | (set(b) if not a else set())):
                if a.get(field, "<absent>") != b.get(field, "<absent>"):
                    lines.append(f"obj.{field}: saved {_short(a.get(field, '<absent>'))}, "
                                 f"now {_short(b.get(field, '<absent>'))}")
        elif a != b:
            lines.append(f"{key}: saved {_short(a)}, now {_short(b)}")
    return lines


def check_run(folder: str | pathlib.Path, identity: Mapping[str, Any],
              config_defaults: Optional[Mapping[str, Any]] = None) -> Optional[dict]:
    """The saved ``run.json`` (``read_run``) after checking that its identity is
    ``identity``; ``CheckpointError`` naming every field that differs, with both
    values. Writes nothing (``record_run`` does, once the run has resumed)."""
    saved = read_run(folder)
    if saved is None:
        return None
    diff = identity_diff(saved["identity"], identity, config_defaults)
    if diff:
        raise CheckpointError(f"checkpoint folder {str(folder)!r} belongs to another run "
                              f"({'; '.join(diff)}); use a new folder or the same settings")
    return saved


DEVICE_LAYOUT_KEYS = ("devices", "padded_runs", "shard")
"""The layout fields whose change can move a run's numbers by float rounding."""


def layout_changes(saved: Mapping[str, Any], layout: Mapping[str, Any],
                   keys: tuple[str, ...] = LAYOUT_KEYS) -> list[str]:
    """``field: saved X, now Y`` for the layout fields among ``keys`` that differ from
    the last saved layout (fields the saved run did not record are not compared)."""
    return [f"{k}: saved {saved[k]!r}, now {layout.get(k)!r}" for k in keys
            if k in saved and saved[k] != layout.get(k)]


def record_run(folder: str | pathlib.Path, identity: Mapping[str, Any],
               layout: Mapping[str, Any], from_update: int,
               saved: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``run.json`` (format ``RUN_FORMAT``): the identity and the layouts,
    with ``layout`` added from ``from_update`` on when it differs from the last one
    (process 0 only)."""
    if not sharding.is_main_process():
        return
    layouts = [dict(x) for x in (saved or {}).get("layouts", [])]
    layouts = [x for x in layouts if x.get("from_update", 0) < from_update]
    entry = {"from_update": from_update, **_jsonable(dict(layout))}
    if not layouts or {k: layouts[-1].get(k) for k in LAYOUT_KEYS} != {
            k: entry.get(k) for k in LAYOUT_KEYS}:
        layouts.append(entry)
    path = pathlib.Path(folder) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = {"format": RUN_FORMAT, "identity": _jsonable(dict(identity)), "layouts": layouts}
    _clear_way(path)
    write_atomic(path, json.dumps(text, indent=1).encode())


_MANIFEST_KEYS = ("updates_done", "chunk", "metrics_file", "metrics_sha256", "state",
                  "state_sha256")


def _manifest(path: pathlib.Path) -> dict:
    """A checkpoint manifest, checked for its keys; ``CheckpointError`` naming it."""
    manifest = read_json(path, "a checkpoint manifest")
    if not isinstance(manifest, dict) or any(k not in manifest for k in _MANIFEST_KEYS):
        raise CheckpointError(f"{str(path)!r} is not a checkpoint manifest (it needs "
                              f"{', '.join(_MANIFEST_KEYS)})")
    return manifest


def saved_runs(folder: str | pathlib.Path, updates_done: Optional[int] = None) -> int:
    """How many runs the state saved after ``updates_done`` updates holds (the run
    axis, padded to the device count of the process that saved it): from its
    manifest, else from the layout of ``run.json`` in force then (default: the
    last)."""
    folder = pathlib.Path(folder)
    if updates_done is not None:
        try:
            manifest = _manifest(_manifest_path(folder, updates_done))
            if "padded_runs" in manifest:
                return int(manifest["padded_runs"])
        except CheckpointError:
            pass
    run = read_run(folder)
    if run is None:
        raise CheckpointError(f"{str(folder / RUN_FILE)!r} is missing (the run's "
                              f"description)")
    layouts = run["layouts"]
    if updates_done is not None:
        layouts = [x for x in layouts if x.get("from_update", 0) < updates_done] or layouts
    try:
        return int(layouts[-1]["padded_runs"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{str(folder / RUN_FILE)!r} lacks the run count "
                              f"('padded_runs')") from None


def _move_aside(path: pathlib.Path, expected: str) -> None:
    """Move what is at ``path`` aside to ``.<name>.damaged-<time>``, with a warning
    naming the ``expected`` kind, so that a save is never blocked by it."""
    import time

    aside = path.with_name(f".{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    warnings.warn(f"{str(path)!r} was not {expected}: moved aside to {aside.name}",
                  CheckpointWarning, stacklevel=3)


def _clear_way(path: pathlib.Path) -> None:
    """Move whatever is at ``path`` and is not a regular file (a directory, a
    dangling link, ...) aside (``_move_aside``)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        _move_aside(path, "a file")


def _folder_digests(folder: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): file_digest(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def save(folder: str | pathlib.Path, start: int, updates_done: int, state: Any,
         chunk_metrics: Mapping[str, np.ndarray], keep: int = 2) -> pathlib.Path:
    """Save the checkpoint after ``updates_done`` updates: the metrics of updates
    ``start .. updates_done - 1`` (``[runs, updates, ...]`` host arrays, the real
    runs), the state (its run axis padded or not), then the manifest; then delete
    state folders older than the ``keep`` newest. Returns the manifest's path."""
    import orbax.checkpoint as ocp

    folder = pathlib.Path(folder).absolute()
    main = sharding.is_main_process()
    metrics_file = _metrics_path(folder, start, updates_done)
    if main:
        for sub in (MANIFESTS, METRICS):
            if (folder / sub).is_file():
                _move_aside(folder / sub, "a folder")
            (folder / sub).mkdir(parents=True, exist_ok=True)
        _clear_way(metrics_file)
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in chunk_metrics.items()})
        write_atomic(metrics_file, buffer.getvalue())
    fault_point("after_metrics", updates_done)
    state_path = _state_path(folder, updates_done)
    if main and (state_path.is_symlink() or state_path.is_file()):
        _move_aside(state_path, "a folder")
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(state_path, _to_storable(state), force=True)
        checkpointer.wait_until_finished()
    finally:  # its worker threads, also after an error (else exit can hang)
        checkpointer.close()
    fault_point("after_state", updates_done)
    digest = state_digest(state)
    manifest = _manifest_path(folder, updates_done)
    if main:
        _clear_way(manifest)
        write_atomic(manifest, json.dumps({
            "updates_done": updates_done, "chunk": [start, updates_done],
            "metrics_file": metrics_file.name, "metrics_sha256": file_digest(metrics_file),
            "state": state_path.name, "state_sha256": digest,
            "padded_runs": _leading(state) or 0,
            "state_files": _folder_digests(state_path),
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
    ``updates_done`` updates, one line per checkpoint it had to skip, the
    update ranges ``(start, end)`` whose metrics were lost (their rows NaN, see
    :func:`_load_metrics`) with one line each saying why, and the ranges saved by a
    version that did not log some of today's metrics, with their names (NaN there)."""

    updates_done: int
    state: Any
    metrics: dict[str, np.ndarray]
    skipped: list[str]
    lost: list[tuple[int, int, str]] = []
    unlogged: list[tuple[int, int, tuple[str, ...]]] = []


def _read_chunk(folder: pathlib.Path, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One metrics file named by a manifest, checked against its digest;
    ``CheckpointError`` when it is missing, unreadable or damaged."""
    path = folder / METRICS / str(entry["metrics_file"])
    try:
        if file_digest(path) != entry["metrics_sha256"]:
            raise CheckpointError(f"{str(path)!r} does not match its digest")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} is missing") from None
    except Exception as err:  # a directory in its place, no permission, a broken zip
        raise CheckpointError(f"{str(path)!r} cannot be read ({type(err).__name__}: "
                              f"{_first_words(err)})") from None


def _lost_rows(like: Mapping[str, Any], runs: int, start: int, end: int,
               update_steps: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    """Rows for updates ``start .. end - 1`` whose metrics are lost: NaN for
    floats, ``False`` for flags, 0 for counters, the true index for ``update``, and
    each run's usual ``update_steps`` (the median of its known ones, which is exact
    for the policy-gradient family's fixed rollouts) so that step counts go on."""
    out = {}
    for k, v in like.items():
        shape = (runs, end - start) + tuple(v.shape[2:])
        dtype = np.dtype(v.dtype)
        if k == "update":
            out[k] = np.broadcast_to(np.arange(start, end, dtype=dtype), shape).copy()
        elif k == "update_steps" and update_steps is not None:
            out[k] = np.repeat(update_steps[:, None], end - start, axis=1).astype(dtype)
        elif np.issubdtype(dtype, np.floating):
            out[k] = np.full(shape, np.nan, dtype)
        else:
            out[k] = np.zeros(shape, dtype)
    return out


def _load_metrics(folder: pathlib.Path, updates_done: int, like: Mapping[str, Any],
                  num_runs: int) -> tuple[dict[str, np.ndarray], list[tuple[int, int, str]],
                                          list[tuple[int, int, tuple[str, ...]]]]:
    """The metrics of updates ``0 .. updates_done - 1`` of the ``num_runs`` real runs,
    from the chunk files that the manifests up to ``updates_done`` name, each checked
    against its digest; the ranges whose file (or manifest) is lost or damaged,
    filled by :func:`_lost_rows`; and the ranges whose sound file lacks some of
    ``like``'s metrics, with their names: a version that did not log them saved it
    (a later version added a metric), so only those metrics are filled there, the
    same way, and nothing is lost."""
    by_start: dict[int, dict] = {}
    for n in _manifest_numbers(folder):
        if n <= updates_done:
            try:
                entry = _manifest(_manifest_path(folder, n))
                by_start[int(entry["chunk"][0])] = entry
            except (CheckpointError, TypeError, ValueError, IndexError):
                continue  # its rows are reported lost below
    parts: list[tuple[int, int, Optional[dict[str, np.ndarray]], str]] = []
    at = 0
    while at < updates_done:
        entry = by_start.get(at)
        if entry is None:
            nxt = min([s for s in by_start if s > at] + [updates_done])
            parts.append((at, nxt, None, "no readable manifest covers them"))
            at = nxt
            continue
        end = min(int(entry["chunk"][1]), updates_done)
        try:
            data = _read_chunk(folder, entry)
            parts.append((at, end, {k: data[k][:num_runs, :end - at]
                                    for k in like if k in data}, ""))
        except CheckpointError as err:
            parts.append((at, end, None, str(err)))
        at = end
    known = [p[2]["update_steps"] for p in parts if p[2] is not None and "update_steps" in p[2]]
    steps = (np.median(np.concatenate(known, axis=1), axis=1) if known else None)
    lost = [(a, b, why) for a, b, data, why in parts if data is None]
    unlogged = [(a, b, tuple(k for k in like if k not in data))
                for a, b, data, _ in parts if data is not None and set(like) - set(data)]
    chunks = [{**_lost_rows({k: v for k, v in like.items() if data is None or k not in data},
                            num_runs, a, b, steps), **(data or {})}
              for a, b, data, _ in parts]
    if not chunks:
        return {k: np.zeros((num_runs, 0) + tuple(v.shape[2:]), v.dtype)
                for k, v in like.items()}, lost, unlogged
    return ({k: np.concatenate([c[k] for c in chunks], axis=1) for k in like}, lost,
            unlogged)


def _leading(tree: Any) -> Optional[int]:
    leaves = [x for x in jax.tree.leaves(tree) if getattr(x, "ndim", 0)]
    return int(leaves[0].shape[0]) if leaves else None


def _is_resource_error(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err)


def _check_state_files(state_path: pathlib.Path, manifest: Mapping[str, Any]) -> bool:
    """Whether the manifest lists the state folder's files (then each is checked
    against its digest: ``CheckpointError`` naming the first that is missing,
    unreadable or altered)."""
    files = manifest.get("state_files")
    if not isinstance(files, dict):
        return False
    for name, digest in files.items():
        path = state_path / name
        try:
            ok = file_digest(path) == digest
        except FileNotFoundError:
            raise CheckpointError(f"{str(path)!r} is missing") from None
        except OSError as err:
            raise CheckpointError(f"{str(path)!r} cannot be read ({type(err).__name__})"
                                  ) from None
        if not ok:
            raise CheckpointError(f"{str(path)!r} does not match its digest: the saved "
                                  f"state is damaged")
    return True


def restore(folder: str | pathlib.Path, updates_done: int, like_state: Any,
            like_metrics: Optional[Mapping[str, Any]] = None,
            num_runs: Optional[int] = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The state and metrics saved after ``updates_done`` updates, with the
    structure, dtypes and shardings of ``like_state`` and the metric names and
    dtypes of ``like_metrics`` (``None``: no metrics are read; lost rows are NaN,
    see :func:`restore_latest`).

    ``num_runs``: the real runs; when the state was saved with its run axis padded
    to another size than ``like_state``'s (another device count), the padding copies
    are dropped and made anew for ``like_state``'s size. Raises ``CheckpointError``
    naming the file when the manifest or state is missing, unreadable or does not
    match its digests, and ``CheckpointReadError`` when the files are intact but
    cannot be read here."""
    state, metrics, _, _ = _restore(folder, updates_done, like_state, like_metrics, num_runs)
    return state, metrics


def _restore(folder: str | pathlib.Path, updates_done: int, like_state: Any,
             like_metrics: Optional[Mapping[str, Any]], num_runs: Optional[int]
             ) -> tuple[Any, dict[str, np.ndarray], list[tuple[int, int, str]],
                        list[tuple[int, int, tuple[str, ...]]]]:
    """:func:`restore`, with the lost metric ranges and those saved without some
    metrics (``Restored.unlogged``)."""
    import orbax.checkpoint as ocp

    folder = pathlib.Path(folder).absolute()
    manifest_path = _manifest_path(folder, updates_done)
    manifest = _manifest(manifest_path)
    state_path = folder / str(manifest["state"])
    if not state_path.is_dir():
        raise CheckpointError(f"{str(state_path)!r} is missing (state pruned or not saved)")
    now = _leading(like_state)
    saved = saved_runs(folder, updates_done) if now is not None else None
    num_runs = num_runs if num_runs is not None else (min(now, saved) if now else 0)
    if now is not None and not 1 <= num_runs <= min(now, saved):
        raise CheckpointError(f"{str(state_path)!r} holds {saved} runs (padded); "
                              f"{num_runs} real runs cannot be restored from it")
    verified = _check_state_files(state_path, manifest)
    storable = _to_storable(like_state)
    if saved == now:
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
    else:  # another padding: read whole onto one device, then re-pad
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            (saved,) + tuple(x.shape[1:]), x.dtype, sharding=one), storable)
    checkpointer = ocp.StandardCheckpointer()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = checkpointer.restore(state_path, target)
    except Exception as err:  # orbax/tensorstore raise many types for damaged files
        cause = f"{type(err).__name__}: {_first_words(err)}"
        if verified or _is_resource_error(err):
            raise CheckpointReadError(
                f"{str(state_path)!r} cannot be read here, and it is not damaged (every "
                f"file matches its digest): {cause}. Check the installed orbax / "
                f"tensorstore versions and the free memory; no older checkpoint was "
                f"tried in its place") from err
        raise CheckpointError(f"{str(state_path)!r} cannot be read ({cause})") from None
    finally:
        checkpointer.close()
    state = _from_storable(stored, like_state)  # keys wrapped; shapes as stored
    if state_digest(state) != manifest.get("state_sha256"):
        raise CheckpointError(f"{str(state_path)!r} does not match the digest in "
                              f"{str(manifest_path)!r}: the saved state is damaged")
    if saved != now:
        state = sharding.pad_runs(sharding.drop_padding(state, num_runs), num_runs, now)
    if like_metrics is None:
        return state, {}, [], []
    metrics, lost, unlogged = _load_metrics(folder, updates_done, like_metrics, num_runs)
    return state, metrics, lost, unlogged


def _manifest_numbers(folder: pathlib.Path) -> list[int]:
    """The update counts of every entry named like a manifest (files or not)."""
    manifests = folder / MANIFESTS
    if not manifests.is_dir():
        return []
    return sorted(int(m.group(1)) for name in os.listdir(manifests)
                  for m in [_MANIFEST.match(name)] if m)


def restore_latest(folder: str | pathlib.Path, like_state: Any,
                   like_metrics: Optional[Mapping[str, Any]] = None,
                   num_runs: Optional[int] = None) -> Optional[Restored]:
    """The newest sound checkpoint of ``folder`` (see the module docstring and
    :func:`restore`), or ``None`` when it holds none at all, or only saves that a
    stopped process left without a manifest (nothing was kept: the run starts over,
    with a ``CheckpointWarning``). Raises ``CheckpointError`` listing every
    checkpoint tried when there are manifests and none is sound."""
    folder = pathlib.Path(folder).absolute()
    skipped: list[str] = []
    numbers = _manifest_numbers(folder)
    started = sorted({int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else [])
                      for m in [_STEP.match(p.name)] if m and p.is_dir()} - set(numbers))
    for n in started:
        if n > max(numbers, default=-1):
            skipped.append(f"{_state_path(folder, n)} is incomplete (no manifest: the "
                           f"process stopped while saving it)")
    for n in sorted(numbers, reverse=True):
        try:
            state, metrics, lost, unlogged = _restore(folder, n, like_state, like_metrics,
                                                      num_runs)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return Restored(n, state, metrics, skipped, lost, unlogged)
    if skipped and not numbers:  # only saves cut short: nothing was ever kept
        warnings.warn(f"{'; '.join(skipped)}: no checkpoint was completed, so the run "
                      f"starts from update 0 (the next save replaces it)", CheckpointWarning,
                      stacklevel=3)
        return None
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
