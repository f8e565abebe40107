"""Learning curves as matplotlib Figures.

:func:`plot_curves` returns the Figure: a notebook draws it inline when it is the
cell's value, a script saves it (``path=``). The user's matplotlib backend is never
changed: the figure is made with pyplot (so that notebooks display it) and closed
again (so it is neither shown twice nor kept open).
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from dpo_jax.parallel import sharding
from dpo_jax.running.results import mean_ci95
from dpo_jax.running.stats import MIN_RUNS

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis, ignoring NaNs (same length)."""
    if window <= 1:
        return values
    finite = np.isfinite(values)
    csum = np.cumsum(np.where(finite, values, 0.0), axis=-1)
    ccount = np.cumsum(finite, axis=-1)
    pad = np.zeros(values.shape[:-1] + (window,))
    csum = np.concatenate([pad, csum], axis=-1)
    ccount = np.concatenate([pad, ccount], axis=-1)
    total = csum[..., window:] - csum[..., :-window]
    count = ccount[..., window:] - ccount[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plot_curves(
    curves: Curves,
    *,
    title: str = "",
    ylabel: str = "episode return",
    hlines: Optional[Mapping[str, float]] = None,
    smooth: Optional[int] = None,
    path: Optional[str | pathlib.Path] = None,
) -> Any:
    """Learning curves, mean over runs with a 95% confidence band (clipped to the
    runs' own range: a mean cannot leave it); below ``stats.MIN_RUNS`` runs, where a
    t-band means little, each run as a thin line instead; returns the
    ``matplotlib.figure.Figure``.

    Args:
      curves: label -> ``(env_steps [U], values [runs, U])``.
      title: the axes' title.
      ylabel: the y axis's label.
      hlines: label -> a constant drawn as a dashed line (e.g. a random policy).
      smooth: each run is first smoothed by a trailing moving average over this
        many updates (default: U / 40, at least 1); the band is the 95% CI over runs.
      path: also save the figure there (PNG; on process 0 of a multi-process run).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (steps, values) in curves.items():
        window = smooth if smooth is not None else max(1, len(steps) // 40)
        smoothed = moving_average(np.asarray(values, np.float64), window)
        mean, half = mean_ci95(smoothed)
        runs = smoothed.shape[0]
        line, = ax.plot(steps, mean, label=f"{label} (n={runs})")
        if runs < MIN_RUNS:
            for run in smoothed:
                ax.plot(steps, run, linewidth=0.6, alpha=0.5, color=line.get_color())
        else:
            with np.errstate(invalid="ignore"):
                low = np.maximum(mean - half, np.nanmin(smoothed, axis=0))
                high = np.minimum(mean + half, np.nanmax(smoothed, axis=0))
            ax.fill_between(steps, low, high, alpha=0.2, color=line.get_color())
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="gray" if "random" in label else "black",
                   label=label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if any(np.asarray(v).shape[0] < MIN_RUNS for _, v in curves.values()):
        ax.text(0.01, 0.01, f"fewer than {MIN_RUNS} runs: thin lines are single runs",
                transform=ax.transAxes, fontsize=7, color="gray")
    fig.tight_layout()
    plt.close(fig)  # no second copy in notebooks, nothing left open in scripts
    if path is not None and sharding.is_main_process():
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
