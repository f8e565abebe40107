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

**Fixed references only.** Scores are normalised by references that do not depend
on the runs compared (rliable's own practice): the random policy's return (0) and a
reference score (1): the task's optimum where it is known (the stochastic game's
J*) or a score the user names. Normalising by the compared runs' own minimum and
maximum would stretch any gap, however small, to the whole unit interval.

**Too few runs.** Below ``MIN_RUNS`` (5) runs per algorithm and task a bootstrap
interval says nothing (two runs can only be resampled into a handful of sets, and
P(X > Y) of two runs against two is one of five values): the functions then return
point estimates with NaN bounds, and the output says why.
"""

from __future__ import annotations

import contextlib
import pathlib
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np

NORMALIZATIONS = ("reference", "random", "none")
MIN_RUNS = 5
"""The fewest runs per algorithm and task for which intervals are computed."""
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


def normalize(scores: Mapping[str, Mapping[str, np.ndarray]], how: str = "reference",
              random: Optional[Mapping[str, float]] = None,
              reference: Optional[Mapping[str, float]] = None) -> dict[str, np.ndarray]:
    """``{algo: {task: [runs]}}`` -> ``{algo: [runs, tasks]}`` (tasks sorted), by fixed
    references only (the module docstring).

    ``how``: ``"reference"`` maps each task's random-policy return
    (``random[task]``) to 0 and its reference score (``reference[task]``: the
    optimum, or a named score) to 1; ``"random"`` subtracts the random policy's
    return (0 = random, in units of return); ``"none"`` keeps raw returns. Every
    algorithm needs the same tasks and, per algorithm, the same run count on every
    task (rliable's layout)."""
    if how == "minmax":
        raise ValueError("normalization 'minmax' scaled scores by the compared runs' own "
                         "minimum and maximum, which stretches any gap to the whole unit "
                         "interval: use 'reference' (random policy 0, a fixed reference "
                         "score 1), 'random' or 'none'")
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
    needs = {"reference": ("random", "reference"), "random": ("random",), "none": ()}[how]
    given = {"random": random or {}, "reference": reference or {}}
    for name in needs:
        missing = sorted(set(tasks) - set(given[name]))
        if missing:
            what = ("random-policy return" if name == "random" else
                    "reference score (its optimum, or one you name)")
            raise ValueError(f"normalization {how!r} needs the {what} of tasks {missing}")
    bounds = {}
    for task in tasks:
        low = float(given["random"][task]) if needs else 0.0
        high = float(given["reference"][task]) if how == "reference" else low + 1.0
        if high == low:
            raise ValueError(f"task {task!r}: its reference score equals the random "
                             f"policy's return ({low}); nothing can be normalised by it")
        bounds[task] = low, high
    return {algo: np.stack([(np.asarray(by_task[t], np.float64) - bounds[t][0])
                            / (bounds[t][1] - bounds[t][0]) for t in tasks], axis=1)
            for algo, by_task in scores.items()}


def too_few_runs(scores: Scores, min_runs: int = MIN_RUNS) -> Optional[str]:
    """Why no interval is computed (``None`` when every algorithm has at least
    ``min_runs`` runs per task)."""
    counts = {algo: int(np.shape(x)[0]) for algo, x in scores.items()}
    if min(counts.values(), default=0) >= min_runs:
        return None
    few = ", ".join(f"{a} {n}" for a, n in counts.items() if n < min_runs)
    return (f"runs per task ({few}) below {min_runs}: point estimates only, no intervals "
            f"(a bootstrap over so few runs says nothing)")


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


def aggregate(scores: Scores, reps: int = 10_000, seed: int = 0, min_runs: int = MIN_RUNS
              ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{algo: {aggregate: (point, ci_low, ci_high)}}`` for ``AGGREGATES`` with 95%
    stratified-bootstrap CIs (NaN bounds below ``min_runs`` runs: ``too_few_runs``)."""
    from rliable import library as rly

    if too_few_runs(scores, min_runs):
        return {algo: {name: (float(v), float("nan"), float("nan"))
                       for name, v in zip(AGGREGATES, _iqm_etc(np.asarray(x)))}
                for algo, x in scores.items()}
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
                seed: int = 0, min_runs: int = MIN_RUNS) -> dict[str, tuple[float, float, float]]:
    """``{"X,Y": (P(X > Y), ci_low, ci_high)}`` for each pair ``(X, Y)`` (NaN bounds
    below ``min_runs`` runs: ``too_few_runs``)."""
    from rliable import library as rly
    from rliable import metrics

    for x, y in pairs:
        for algo in (x, y):
            if algo not in scores:
                raise ValueError(f"probability of improvement: no scores for {algo!r} "
                                 f"(have {sorted(scores)})")
    data = {f"{x},{y}": (scores[x], scores[y]) for x, y in pairs}
    if too_few_runs({a: scores[a] for pair in pairs for a in pair}, min_runs):
        return {k: (float(metrics.probability_of_improvement(*v)), float("nan"),
                    float("nan")) for k, v in data.items()}
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
         xlabel: str = "normalised score", note: Optional[str] = None) -> list[pathlib.Path]:
    """``aggregates.png``, ``performance_profile.png`` and (with pairs)
    ``probability_of_improvement.png`` in ``out``, drawn by rliable's plot_utils.
    Estimates without intervals (NaN bounds) are drawn as points; ``note`` (e.g. why
    there are no intervals, and the references) is written under each figure."""
    import matplotlib.pyplot as plt  # figures closed after saving; backend untouched
    from rliable import plot_utils

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    algos = list(aggregates)
    names = [m for m in AGGREGATES if m in aggregates[algos[0]]]
    points = {a: np.array([aggregates[a][m][0] for m in names]) for a in algos}
    cis = {a: np.array([[aggregates[a][m][1] for m in names],
                        [aggregates[a][m][2] for m in names]]) for a in algos}
    cis = {a: np.where(np.isfinite(c), c, points[a][None]) for a, c in cis.items()}

    def annotate(fig: Any) -> None:
        """The note under everything the figure draws (its tick labels and x label)."""
        if note:
            bottom = fig.get_tightbbox(fig.canvas.get_renderer()).y0
            y = bottom / fig.get_size_inches()[1] - 0.02
            fig.text(0.01, y, note, fontsize=7, ha="left", va="top", wrap=True)
    fig, _ = plot_utils.plot_interval_estimates(
        points, cis, names, algorithms=algos, xlabel=xlabel,
        row_height=max(0.37, 1.2 / len(algos)), xlabel_y_coordinate=-0.3)
    annotate(fig)
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
    annotate(fig)
    files.append(out / "performance_profile.png")
    fig.savefig(files[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    if probabilities:
        fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.45 * len(probabilities)))
        names = list(probabilities)
        for i, name in enumerate(names):
            p, low, high = probabilities[name]
            if np.isfinite(low) and np.isfinite(high):
                ax.plot([low, high], [i, i], linewidth=6, alpha=0.4, color="C0")
            ax.plot([p], [i], "o", color="C0")
        ax.axvline(0.5, linestyle="--", color="gray", linewidth=1)
        ax.set_xlim(0.0, 1.0)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([f"P({n.split(',')[0]} > {n.split(',')[1]})" for n in names])
        ax.set_xlabel("probability of improvement")
        ax.grid(axis="x", alpha=0.3)
        annotate(fig)
        files.append(out / "probability_of_improvement.png")
        fig.savefig(files[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    return files
