"""Metric loggers fed from the host after each chunk of updates.

The training program never writes anything: ``experiments.run`` hands each
logger the metrics of the chunk it has just run (``[runs, updates, ...]`` numpy
arrays, ``env_steps`` already the exact int64 count) with the index of the
chunk's first update. A run in one piece (no ``chunk_updates``, the baselines)
feeds its loggers once, at the end.

- :class:`JsonlLogger` (always, in the CLI): one JSON object per run and update,
  the run's labels (algorithm, ``d_target``, seed, ...) included, per-agent
  metrics as lists, NaN as ``null``.
- :class:`CsvLogger` (always, in the CLI): the same rows with per-agent metrics
  averaged over agents, one column per metric.
- :class:`TensorBoardLogger` (``pip install "dpo-jax[tensorboard]"``): one
  tensorboardX event folder per run, scalars against the update index
  (``env_steps`` is one of them).
- :class:`WandbLogger` (``pip install "dpo-jax[wandb]"``): one W&B run per
  training run, grouped; ``WANDB_MODE=offline`` works without an account.

On resume ``start(first_update, history)`` receives the metrics of every update
before ``first_update`` from the checkpoint itself: the file loggers rewrite their
files from it (rows written after the last checkpoint are dropped, rows lost in a
crash between a checkpoint and its log write come back), TensorBoard and W&B add the
rows they had not received (each keeps the count it logged in ``logged.json``). So
every update appears exactly once, whenever the process stopped. Updates whose
checkpoint metrics were lost (``lost``: a deleted or damaged metrics file) keep the
rows the file loggers' own files still hold; only where those are gone too do they
become ``null``.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

Labels = Mapping[str, Any]
SKIPPED = ("update",)  # the row index itself


def run_name(labels: Labels) -> str:
    """A file-safe name of one run from its labels, e.g. ``dpo_d0p01_s0`` or, with
    a swept field, ``dpo_actor_lr0p0003_s0``."""
    parts = []
    for key, value in labels.items():
        if value is None:
            continue
        if key == "seed":
            parts.append(f"s{value}")
        elif key == "d_target":  # no dot: the name is also a file stem
            parts.append(f"d{value:g}".replace(".", "p"))
        elif isinstance(value, float):  # a swept field: its name and value, no dot
            parts.append(f"{key}{value:g}".replace(".", "p").replace("+", ""))
        else:
            parts.append(str(value))
    return "_".join(parts) or "run"


def _scalar(x: Any) -> Optional[float | int]:
    # float32 as its shortest decimal (0.01, not 0.009999999776482582)
    value = float(str(x)) if isinstance(x, np.float32) else (
        x.item() if isinstance(x, np.generic) else x)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(x: np.ndarray) -> Any:
    """A metric value of one run and update as JSON: a number, ``None`` for NaN/inf,
    or a (nested) list for per-agent values."""
    if x.ndim == 0:
        return _scalar(x[()])
    return [_plain(v) for v in x]


def _agent_mean(x: np.ndarray) -> float:
    """The mean over trailing (agent) axes, NaN-aware, as a float."""
    flat = np.asarray(x, np.float64).reshape(-1)
    finite = flat[np.isfinite(flat)]
    return float(finite.mean()) if finite.size else float("nan")


class Logger:
    """Receives each chunk's metrics. Subclasses override ``write``."""

    def __init__(self, labels: Sequence[Labels]) -> None:
        self.labels = [dict(lab) for lab in labels]

    def start(self, first_update: int,
              history: Optional[Mapping[str, np.ndarray]] = None,
              lost: Sequence[tuple[int, int]] = ()) -> None:
        """Called once before the first chunk; on resume ``first_update`` > 0 and
        ``history`` holds the metrics of updates ``0 .. first_update - 1``, NaN in
        the ``lost`` ranges ``(start, end)``, whose metrics the checkpoint lost."""

    def write(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Metrics of updates ``first_update ..`` of every run, leaves ``[runs, K, ...]``."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files or services."""

    def _check(self, metrics: Mapping[str, np.ndarray]) -> int:
        runs = {np.shape(v)[0] for v in metrics.values()}
        if runs != {len(self.labels)}:
            raise ValueError(f"{type(self).__name__}: metrics have leading (run) sizes "
                             f"{sorted(runs)}, but {len(self.labels)} runs are labelled")
        return int(np.shape(metrics["env_steps"])[1])


class _FileLogger(Logger):
    """A file of rows keyed by ``update``; ``start`` rewrites it from the history,
    keeping its own rows of the ``lost`` updates."""

    def __init__(self, path: str | pathlib.Path, labels: Sequence[Labels]) -> None:
        super().__init__(labels)
        self.path = pathlib.Path(path)

    def _update_of(self, line: str, header: Optional[str]) -> Optional[int]:
        """The update a line of the file is about (``None``: not a row)."""
        raise NotImplementedError

    HEADER = False
    """Whether the file's first line is a header (written before any kept row)."""

    def _kept_lines(self, lost: Sequence[tuple[int, int]]
                    ) -> tuple[list[str], dict[int, list[str]]]:
        """This file's header (if it keeps rows and has one) and its lines of the
        ``lost`` updates, by update (only updates with a line for every run), read
        before the file is rewritten."""
        if not lost or not self.path.is_file():
            return [], {}
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return [], {}
        header = lines[0] if lines else None
        kept: dict[int, list[str]] = {}
        for line in lines:
            update = self._update_of(line, header)
            if update is not None and any(a <= update < b for a, b in lost):
                kept.setdefault(update, []).append(line)
        kept = {u: rows for u, rows in kept.items() if len(rows) == len(self.labels)}
        return ([header] if kept and self.HEADER and header is not None else []), kept

    def _columns_of(self, metrics: Mapping[str, Any]) -> list[str]:
        """The fields of a row of these metrics, in order (the CSV header, the JSON
        keys): run, labels, update, metric names."""
        label_keys = list(self.labels[0]) if self.labels else []
        return ["run", *label_keys, "update", *sorted(k for k in metrics if k not in SKIPPED)]

    def _restate(self, preamble: list[str], kept: dict[int, list[str]],
                 history: Mapping[str, np.ndarray]) -> tuple[list[str], dict[int, list[str]]]:
        """The kept lines in the form the ``history``'s metrics are written in (they
        may have been written by a version that logged other metrics)."""
        return preamble, kept

    def start(self, first_update: int,
              history: Optional[Mapping[str, np.ndarray]] = None,
              lost: Sequence[tuple[int, int]] = ()) -> None:
        preamble, kept = self._kept_lines(lost)
        if kept and history is not None:
            preamble, kept = self._restate(preamble, kept, history)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(line + "\n" for line in preamble))
        if not (first_update and history is not None):
            return
        at = 0
        for update in sorted(kept) + [first_update]:  # history between kept rows
            if update > at:
                self.write(at, {k: np.asarray(v)[:, at:update] for k, v in history.items()})
            if update < first_update:
                with self.path.open("a") as f:
                    f.write("".join(line + "\n" for line in kept[update]))
            at = update + 1


class _CountingLogger(Logger):
    """A logger that cannot rewrite what it sent: it records in ``{folder}/logged.json``
    how many updates it has logged, and on resume adds the missing history."""

    def __init__(self, folder: pathlib.Path, labels: Sequence[Labels]) -> None:
        super().__init__(labels)
        self.folder = folder
        self._logged = 0

    def logged(self) -> int:
        """Updates logged by an earlier process (0 when unknown)."""
        try:
            return int(json.loads((self.folder / "logged.json").read_text())["updates"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _set_logged(self, count: int) -> None:
        self._logged = count
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logged.json").write_text(json.dumps({"updates": count}))

    def _catch_up(self, first_update: int,
                  history: Optional[Mapping[str, np.ndarray]]) -> int:
        """Log ``history``'s updates from the first one not logged yet; returns where
        the earlier process's log is to be cut (``purge_step``)."""
        done = min(self.logged(), first_update) if first_update else 0
        if history is not None and done < first_update:
            self.write(done, {k: np.asarray(v)[:, done:first_update]
                              for k, v in history.items()})
        self._set_logged(first_update)
        return done


class JsonlLogger(_FileLogger):
    """``metrics.jsonl``: one object per run and update (see the module docstring)."""

    def _update_of(self, line: str, header: Optional[str]) -> Optional[int]:
        try:
            update = json.loads(line).get("update")
        except (ValueError, AttributeError):
            return None
        return update if isinstance(update, int) else None

    def _restate(self, preamble: list[str], kept: dict[int, list[str]],
                 history: Mapping[str, np.ndarray]) -> tuple[list[str], dict[int, list[str]]]:
        """Kept rows with ``null`` for the metrics they lack, and without those that
        ``history`` does not log."""
        keys = self._columns_of(history)
        restated = {}
        for update, lines in kept.items():
            rows = [json.loads(line) for line in lines]
            restated[update] = [line if list(row) == keys else
                                json.dumps({k: row.get(k) for k in keys})
                                for line, row in zip(lines, rows)]
        return preamble, restated

    def write(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        count = self._check(metrics)
        names = sorted(k for k in metrics if k not in SKIPPED)
        with self.path.open("a") as f:
            for k in range(count):
                for r, labels in enumerate(self.labels):
                    row = {"run": r, **labels, "update": first_update + k}
                    row.update({n: _plain(np.asarray(metrics[n][r, k])) for n in names})
                    f.write(json.dumps(row, allow_nan=False) + "\n")


def read_jsonl(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file; ``ValueError`` naming the file and the
    line when one is not a JSON object (a file cut short by a crash or a copy)."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} cannot be read: {err}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(path)!r}, line {number}: not a JSON row ({err.msg}); "
                             f"the file may be cut short: resume the job (--resume) to "
                             f"rewrite it from its checkpoints") from None
        if not isinstance(row, dict):
            raise ValueError(f"{str(path)!r}, line {number}: not a JSON object")
        rows.append(row)
    return rows


class CsvLogger(_FileLogger):
    """``metrics.csv``: the JSONL rows with per-agent metrics averaged over agents."""

    HEADER = True

    def __init__(self, path: str | pathlib.Path, labels: Sequence[Labels]) -> None:
        super().__init__(path, labels)
        self._columns: Optional[list[str]] = None

    def _update_of(self, line: str, header: Optional[str]) -> Optional[int]:
        if header is None or line == header:
            return None
        columns = next(csv.reader([header]))
        try:
            return int(next(csv.reader([line]))[columns.index("update")])
        except (ValueError, IndexError, StopIteration):
            return None

    def start(self, first_update: int,
              history: Optional[Mapping[str, np.ndarray]] = None,
              lost: Sequence[tuple[int, int]] = ()) -> None:
        self._columns = None
        super().start(first_update, history, lost)

    def _restate(self, preamble: list[str], kept: dict[int, list[str]],
                 history: Mapping[str, np.ndarray]) -> tuple[list[str], dict[int, list[str]]]:
        """Kept rows under ``history``'s header: each value moved to its column by
        name, ``nan`` for a metric the file's header lacks (a version that did not
        log it wrote it), metrics ``history`` does not log dropped."""
        columns = self._columns_of(history)
        old = next(csv.reader(preamble)) if preamble else []
        if old == columns:
            return preamble, kept
        header = _csv_line(columns)
        restated = {}
        for update, lines in kept.items():
            rows = [dict(zip(old, values)) for values in csv.reader(lines)]
            restated[update] = [_csv_line([row.get(c, "nan") for c in columns])
                                for row in rows]
        return [header], restated

    def write(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        count = self._check(metrics)
        names = sorted(k for k in metrics if k not in SKIPPED)
        columns = self._columns_of(metrics)
        new_file = self.path.stat().st_size == 0
        if self._columns is None and not new_file:  # rows kept by start: their header
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != columns:
                raise ValueError(f"CsvLogger: {str(self.path)!r} has the header {header}, "
                                 f"but the rows to append have {columns}")
        if self._columns is None:
            self._columns = columns
        elif columns != self._columns:
            raise ValueError(f"CsvLogger: the metric names changed between chunks "
                             f"({self._columns} -> {columns})")
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(columns)
            for k in range(count):
                for r, labels in enumerate(self.labels):
                    values = [_agent_mean(metrics[n][r, k]) for n in names]
                    writer.writerow([r, *labels.values(), first_update + k,
                                     *(f"{v:.8g}" for v in values)])


def _csv_line(values: Sequence[Any]) -> str:
    """One CSV line (no line end), quoted as ``csv.writer`` quotes."""
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the {extra} logger needs {module!r}: pip install "
                          f"\"dpo-jax[{extra}]\"") from None


class TensorBoardLogger(_CountingLogger):
    """One tensorboardX event folder per run under ``log_dir``; every metric (mean
    over agents) as a scalar against the update index."""

    def __init__(self, log_dir: str | pathlib.Path, labels: Sequence[Labels]) -> None:
        super().__init__(pathlib.Path(log_dir), labels)
        self.log_dir = pathlib.Path(log_dir)
        self._tbx = _require("tensorboardX", "tensorboard")
        self._writers: list[Any] = []

    def start(self, first_update: int,
              history: Optional[Mapping[str, np.ndarray]] = None,
              lost: Sequence[tuple[int, int]] = ()) -> None:
        # purge_step drops the events from the first update not kept (a resume)
        purge = min(self.logged(), first_update) if first_update else None
        self._writers = [
            self._tbx.SummaryWriter(str(self.log_dir / run_name(lab)),
                                    purge_step=purge or None)
            for lab in self.labels]
        self._catch_up(first_update, history)

    def write(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        count = self._check(metrics)
        names = sorted(k for k in metrics if k not in SKIPPED)
        for r, writer in enumerate(self._writers):
            for k in range(count):
                update = first_update + k
                for n in names:
                    value = _agent_mean(metrics[n][r, k])
                    if math.isfinite(value):
                        writer.add_scalar(n, value, global_step=update)
            writer.flush()
        self._set_logged(first_update + count)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


class WandbLogger(_CountingLogger):
    """One Weights & Biases run per training run, in group ``group``, with the
    config and labels; metrics (mean over agents) logged at step = update. The run
    ids are kept in ``{out}/wandb_ids.json`` so that a resume continues the same
    W&B runs. Set ``WANDB_MODE=offline`` to log without an account."""

    def __init__(self, out: str | pathlib.Path, labels: Sequence[Labels], *,
                 project: str = "dpo-jax", group: Optional[str] = None,
                 config: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(pathlib.Path(out) / "wandb_state", labels)
        self._wandb = _require("wandb", "wandb")
        self.out = pathlib.Path(out)
        self.project, self.group = project, group or self.out.name
        self.config = dict(config or {})
        self._runs: list[Any] = []

    def start(self, first_update: int,
              history: Optional[Mapping[str, np.ndarray]] = None,
              lost: Sequence[tuple[int, int]] = ()) -> None:
        ids_path = self.out / "wandb_ids.json"
        ids = json.loads(ids_path.read_text()) if ids_path.exists() and first_update else {}
        for lab in self.labels:
            name = run_name(lab)
            run = self._wandb.init(
                project=self.project, group=self.group, name=name, id=ids.get(name),
                resume="allow" if ids.get(name) else None, dir=str(self.out),
                config={**self.config, **lab}, reinit="create_new")
            ids[name] = run.id
            self._runs.append(run)
        self.out.mkdir(parents=True, exist_ok=True)
        ids_path.write_text(json.dumps(ids, indent=1))
        self._catch_up(first_update, history)

    @property
    def run_ids(self) -> list[str]:
        """The W&B run ids in use, one per training run."""
        return [run.id for run in self._runs]

    def write(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        count = self._check(metrics)
        names = sorted(k for k in metrics if k not in SKIPPED)
        for r, run in enumerate(self._runs):
            for k in range(count):
                row = {n: _agent_mean(metrics[n][r, k]) for n in names}
                run.log({n: v for n, v in row.items() if math.isfinite(v)},
                        step=first_update + k)
        self._set_logged(first_update + count)

    def close(self) -> None:
        for run in self._runs:
            run.finish()
        self._runs = []


LOGGERS = ("tensorboard", "wandb")
"""The optional loggers ``make_loggers`` adds by name (JSONL and CSV are always on)."""
LOGGER_PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb"}
"""The package each optional logger needs."""


def check_extras(extra: Sequence[str]) -> None:
    """Raise ``ValueError`` naming an unknown logger, and ``ImportError`` with the
    ``pip install`` line for one whose package is missing (before any training)."""
    import importlib.util

    unknown = sorted(set(extra) - set(LOGGERS))
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}: expected any of {LOGGERS}")
    for name in extra:
        if importlib.util.find_spec(LOGGER_PACKAGES[name]) is None:
            raise ImportError(f"the {name} logger needs {LOGGER_PACKAGES[name]!r}: pip install "
                              f"\"dpo-jax[{name}]\"")


def make_loggers(out: str | pathlib.Path, labels: Sequence[Labels],
                 extra: Sequence[str] = (), config: Optional[Mapping[str, Any]] = None,
                 prefix: str = "metrics") -> list[Logger]:
    """``{out}/{prefix}.jsonl`` and ``.csv`` loggers, plus each of ``extra``
    (``"tensorboard"``: ``{out}/tensorboard/<run>``; ``"wandb"``)."""
    out = pathlib.Path(out)
    check_extras(extra)
    loggers: list[Logger] = [JsonlLogger(out / f"{prefix}.jsonl", labels),
                             CsvLogger(out / f"{prefix}.csv", labels)]
    if "tensorboard" in extra:
        loggers.append(TensorBoardLogger(out / "tensorboard", labels))
    if "wandb" in extra:
        loggers.append(WandbLogger(out, labels, config=config))
    return loggers
