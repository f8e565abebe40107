"""Aggregate results across seeds and tasks with rliable (Agarwal et al., 2021), as the
MARL evaluation protocol of Gorsane et al. (2022) recommends.

Scores are the per-run final returns (mean over the last ``last_fraction`` of
updates, ``final_scores``), normalised per task (``normalize``), gathered as
``{algorithm: [runs, tasks]}``. Then, with rliable's stratified bootstrap (runs
resampled within each task):

- ``aggregate``: IQM, mean, median and optimality gap with 95% CIs;
- ``performance_profile``: the fraction of runs with normalised score above tau;
- ``improvement``: P(X > Y), the probability that a run of X beats a run of Y on
  a task (Mann-Whitney U / (n m), averaged over tasks), e.g. DPO over IPPO.

``plot`` draws the three rliable figures. The bootstrap is seeded (``seed``), so
a result file is reproducible.
"""

from __future__ import annotations

import contextlib
import pathlib
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np

NORMALIZATIONS = ("minmax", "random", "none")
AGGREGATES = ("IQM", "Mean", "Median", "Optimality Gap")
Scores = Mapping[str, np.ndarray]  # algorithm -> [runs, tasks]


def final_scores(values: np.ndarray, last_fraction: float = 0.1) -> np.ndarray:
    """Each run's mean over its last ``last_fraction`` of updates (at least one),
    NaN-aware; ``values`` ``[runs, updates]`` -> ``[runs]``."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2:
        raise ValueError(f"final_scores: expected [runs, updates], got shape {values.shape}")
    if not 0 < last_fraction <= 1:
        raise ValueError(f"last_fraction={last_fraction!r}: expected a number in (0, 1]")
    k = max(1, int(round(values.shape[1] * last_fraction)))
    tail = values[:, -k:]
    if not np.all(np.any(np.isfinite(tail), axis=1)):
        raise ValueError("final_scores: a run has no finite value in its last "
                         f"{k} updates (no episode finished?)")
    return np.nanmean(tail, axis=1)


def normalize(scores: Mapping[str, Mapping[str, np.ndarray]], how: str = "minmax",
              random: Optional[Mapping[str, float]] = None) -> dict[str, np.ndarray]:
    """``{algo: {task: [runs]}}`` -> ``{algo: [runs, tasks]}`` (tasks sorted).

    ``how``: ``"minmax"`` maps each task's lowest run (over all algorithms) to 0
    and its highest to 1; ``"random"`` maps the task's random-policy return
    (``random[task]``) to 0 and its best run to 1; ``"none"`` keeps raw returns.
    Every algorithm needs the same tasks and, per algorithm, the same run count
    on every task (rliable's layout)."""
    if how not in NORMALIZATIONS:
        raise ValueError(f"normalization {how!r}: expected one of {NORMALIZATIONS}")
    if not scores:
        raise ValueError("normalize: no scores")
    tasks = sorted(next(iter(scores.values())))
    for algo, by_task in scores.items():
        if sorted(by_task) != tasks:
            raise ValueError(f"algorithm {algo!r} has tasks {sorted(by_task)}, others "
                             f"{tasks}: every algorithm needs every task")
        counts = {len(np.atleast_1d(v)) for v in by_task.values()}
        if len(counts) != 1:
            raise ValueError(f"algorithm {algo!r} has different run counts over tasks "
                             f"{sorted(counts)}")
    if how == "random":
        missing = sorted(set(tasks) - set(random or {}))
        if missing:
            raise ValueError(f"normalization 'random' needs the random-policy return of "
                             f"tasks {missing}")
    bounds = {}
    for task in tasks:
        every = np.concatenate([np.ravel(s[task]) for s in scores.values()])
        if how == "minmax":
            bounds[task] = every.min(), every.max()
        elif how == "random":
            bounds[task] = float(random[task]), every.max()
        else:
            bounds[task] = 0.0, 1.0
    out = {}
    for algo, by_task in scores.items():
        columns = []
        for task in tasks:
            x = np.asarray(by_task[task], np.float64)
            low, high = bounds[task]
            columns.append((x - low) / (high - low) if high != low else x - low)
        out[algo] = np.stack(columns, axis=1)
    return out


@contextlib.contextmanager
def _seeded_bootstrap(seed: int):
    """rliable's stratified bootstrap draws its indices from numpy's global
    generator (``np.random.choice``; the ``random_state`` it passes to arch is
    not used for them), so it is seeded here and its previous state restored.
    arch's warning about the deprecated ``random_state`` is silenced."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="random_state is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        np.random.set_state(saved)


def _iqm_etc(x: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x),
                     metrics.aggregate_median(x), metrics.aggregate_optimality_gap(x)])


def aggregate(scores: Scores, reps: int = 10_000, seed: int = 0
              ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{algo: {aggregate: (point, ci_low, ci_high)}}`` for ``AGGREGATES`` with 95%
    stratified-bootstrap CIs."""
    from rliable import library as rly

    with _seeded_bootstrap(seed):
        points, intervals = rly.get_interval_estimates(
            dict(scores), _iqm_etc, reps=reps, random_state=np.random.RandomState(seed))
    return {algo: {name: (float(points[algo][i]), float(intervals[algo][0, i]),
                          float(intervals[algo][1, i]))
                   for i, name in enumerate(AGGREGATES)} for algo in scores}


def performance_profile(scores: Scores, taus: Optional[Sequence[float]] = None,
                        reps: int = 2_000, seed: int = 0) -> dict[str, Any]:
    """Run-score distributions: ``{"tau": [...], algo: {"profile", "low", "high"}}``.
    ``taus`` default: 51 points over the range of the scores."""
    from rliable import library as rly

    if taus is None:
        every = np.concatenate([np.ravel(v) for v in scores.values()])
        taus = np.linspace(min(0.0, every.min()), max(1.0, every.max()), 51)
    taus = np.asarray(taus, np.float64)
    # create_performance_profile takes no random_state: its profile function
    # (fraction of runs, over all tasks, scoring above each tau), seeded bootstrap
    with _seeded_bootstrap(seed):
        profiles, cis = rly.get_interval_estimates(
            dict(scores), lambda x: rly.score_distributions(x, taus),
            reps=reps, random_state=np.random.RandomState(seed))
    out: dict[str, Any] = {"tau": taus.tolist()}
    for algo in scores:
        out[algo] = {"profile": np.asarray(profiles[algo]).tolist(),
                     "low": np.asarray(cis[algo][0]).tolist(),
                     "high": np.asarray(cis[algo][1]).tolist()}
    return out


def improvement(scores: Scores, pairs: Sequence[tuple[str, str]], reps: int = 2_000,
                seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``{"X,Y": (P(X > Y), ci_low, ci_high)}`` for each pair ``(X, Y)``."""
    from rliable import library as rly
    from rliable import metrics

    for x, y in pairs:
        for algo in (x, y):
            if algo not in scores:
                raise ValueError(f"probability of improvement: no scores for {algo!r} "
                                 f"(have {sorted(scores)})")
    data = {f"{x},{y}": (scores[x], scores[y]) for x, y in pairs}
    with _seeded_bootstrap(seed):
        points, intervals = rly.get_interval_estimates(
            data, metrics.probability_of_improvement, reps=reps,
            random_state=np.random.RandomState(seed))
    return {k: (float(points[k]), float(np.ravel(intervals[k])[0]),
                float(np.ravel(intervals[k])[1])) for k in data}


def default_pairs(algos: Sequence[str], baseline: str = "ippo") -> list[tuple[str, str]]:
    """Every algorithm against ``baseline`` (DPO vs IPPO first), if it is present."""
    if baseline not in algos:
        return []
    others = sorted((a for a in algos if a != baseline), key=lambda a: (a != "dpo", a))
    return [(a, baseline) for a in others]


def plot(out: str | pathlib.Path, aggregates: Mapping[str, Any],
         profile: Mapping[str, Any], probabilities: Mapping[str, Any],
         xlabel: str = "normalised score") -> list[pathlib.Path]:
    """``aggregates.png``, ``performance_profile.png`` and (with pairs)
    ``probability_of_improvement.png`` in ``out``, drawn by rliable's plot_utils."""
    import matplotlib.pyplot as plt  # figures closed after saving; backend untouched
    from rliable import plot_utils

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    algos = list(aggregates)
    points = {a: np.array([aggregates[a][m][0] for m in AGGREGATES]) for a in algos}
    cis = {a: np.array([[aggregates[a][m][1] for m in AGGREGATES],
                        [aggregates[a][m][2] for m in AGGREGATES]]) for a in algos}
    fig, _ = plot_utils.plot_interval_estimates(
        points, cis, list(AGGREGATES), algorithms=algos, xlabel=xlabel,
        row_height=max(0.37, 1.2 / len(algos)), xlabel_y_coordinate=-0.3)
    files = [out / "aggregates.png"]
    fig.savefig(files[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    taus = np.asarray(profile["tau"])
    plot_utils.plot_performance_profiles(
        {a: np.asarray(profile[a]["profile"]) for a in algos}, taus,
        performance_profile_cis={a: (np.asarray(profile[a]["low"]),
                                     np.asarray(profile[a]["high"])) for a in algos},
        ax=ax, xlabel=f"{xlabel} (tau)")
    ax.legend(ax.get_lines()[:len(algos)], algos, fontsize=8)  # lines, not CI bands
    files.append(out / "performance_profile.png")
    fig.savefig(files[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    if probabilities:
        estimates = {k: np.float64(v[0]) for k, v in probabilities.items()}
        intervals = {k: np.array([[v[1]], [v[2]]]) for k, v in probabilities.items()}
        axes = plot_utils.plot_probability_of_improvement(estimates, intervals)
        fig = axes.figure if hasattr(axes, "figure") else plt.gcf()
        files.append(out / "probability_of_improvement.png")
        fig.savefig(files[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    return files
