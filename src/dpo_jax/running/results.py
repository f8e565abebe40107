"""Results as numbers, tables and files: confidence intervals, the exact step count,
metrics as a pandas DataFrame, and JSON / CSV files.

Metrics everywhere are dicts of ``[runs, updates, ...]`` arrays (trailing axes: one
value per agent for the per-agent metrics).
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from dpo_jax.parallel import sharding

# Two-sided 95% Student-t quantiles by degrees of freedom (n_seeds - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(num_samples: int) -> float:
    """Two-sided 95% Student-t quantile for a mean of ``num_samples`` values (the
    next tabulated degrees of freedom above; 1.96 beyond 30)."""
    df = num_samples - 1
    if df < 1:
        return float("nan")
    for bound in sorted(_T95):
        if df <= bound:
            return _T95[bound]
    return 1.96


def mean_ci95(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and the half-width of its 95% confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    with warnings.catch_warnings():  # all-NaN columns (no episode ended yet) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        if n < 2:
            return mean, np.zeros_like(mean)
        sem = np.nanstd(values, axis=0, ddof=1) / math.sqrt(n)
    return mean, t95(n) * sem


def summarize_final(values: np.ndarray, last_fraction: float = 0.1) -> tuple[float, float]:
    """Mean and 95% CI half-width over runs of each run's mean over its last
    ``last_fraction`` of updates (at least one)."""
    values = np.asarray(values, dtype=np.float64)
    k = max(1, int(round(values.shape[1] * last_fraction)))
    with warnings.catch_warnings():  # a run with no episode ended in its tail: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_run = np.nanmean(values[:, -k:], axis=1)
    mean, half = mean_ci95(per_run)
    return float(mean), float(half)


def exact_env_steps(metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """The exact int64 env-step count after each update, ``[runs, updates]``: the
    running sum of ``update_steps`` (the float32 ``env_steps`` of the program is
    rounded beyond 2**24 steps)."""
    return np.cumsum(np.asarray(metrics["update_steps"], dtype=np.int64), axis=-1)


def agent_mean(value: np.ndarray) -> np.ndarray:
    """``[runs, updates, ...]`` -> ``[runs, updates]``: the NaN-aware mean over
    trailing (agent) axes."""
    value = np.asarray(value, dtype=np.float64)
    flat = value.reshape(value.shape[0], value.shape[1], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(flat, axis=2)


def metrics_frame(metrics: Mapping[str, np.ndarray],
                  labels: Optional[Sequence[Mapping[str, Any]]] = None) -> Any:
    """Metrics as a long pandas DataFrame: one row per run and update, the run's
    ``labels`` (algorithm, ``d_target``, seed, ...) as columns, then ``update``,
    ``env_steps`` and every metric (per-agent ones averaged over agents, NaN-aware).
    """
    import pandas as pd

    first = next(iter(metrics.values()))
    runs, updates = np.shape(first)[:2]
    labels = list(labels) if labels is not None else [{"run": r} for r in range(runs)]
    if len(labels) != runs:
        raise ValueError(f"metrics_frame: {runs} runs but {len(labels)} labels")
    columns: dict[str, Any] = {"run": np.repeat(np.arange(runs), updates)}
    for key in dict.fromkeys(k for lab in labels for k in lab):
        if key != "run":
            columns[key] = np.repeat([lab.get(key) for lab in labels], updates)
    columns["update"] = np.tile(np.arange(updates), runs)
    ordered = ["env_steps"] + sorted(k for k in metrics if k not in ("env_steps", "update"))
    for name in ordered:
        if name not in metrics:
            continue
        value = np.asarray(metrics[name])
        if value.dtype.kind in "iub" and value.ndim == 2:
            columns[name] = value.reshape(-1)
        else:
            columns[name] = agent_mean(value).reshape(-1)
    return pd.DataFrame(columns)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.where(np.isfinite(x), x, np.nan).tolist() if x.dtype.kind == "f" else x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, Mapping):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pathlib.PurePath):
        return str(x)
    return x


def save_json(path: str | pathlib.Path, data: Any) -> Optional[pathlib.Path]:
    """Write ``data`` as indented JSON (numpy values converted, NaN kept); on
    process 0 only (the others return ``None``)."""
    if not sharding.is_main_process():
        return None
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(data), indent=2))
    return path


def read_json(path: str | pathlib.Path, what: str = "a JSON file",
              error: type[ValueError] = ValueError) -> Any:
    """A JSON file's content; ``error`` (a ``ValueError``) naming the file when it is
    missing or not valid JSON."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{str(path)!r} is missing ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{str(path)!r} ({what}) cannot be read: {err}") from None


def save_metrics(out_dir: str | pathlib.Path, name: str,
                 metrics: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> list[pathlib.Path]:
    """Write ``{name}.json`` (all metrics, every run) and ``{name}.csv`` (per update:
    env steps and the mean over runs, and over agents, of every metric). In a
    multi-process run only process 0 writes (the others return ``[]``)."""
    if not sharding.is_main_process():
        return []
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(
        {"meta": _jsonable(dict(meta)), "metrics": _jsonable(dict(metrics))},
        allow_nan=True))
    csv_path = out / f"{name}.csv"
    keys = sorted(metrics)
    with warnings.catch_warnings():  # all-NaN updates stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        columns = {k: np.nanmean(agent_mean(metrics[k]), axis=0) for k in keys}
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for i in range(len(columns[keys[0]])):
            writer.writerow([f"{columns[k][i]:.6g}" for k in keys])
    return [json_path, csv_path]
