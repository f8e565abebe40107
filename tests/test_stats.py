"""rliable statistics against brute-force references: IQM as the mean of the middle
half, optimality gap, P(X > Y) by counting pairs, performance profiles by
counting runs, min-max normalisation, and the bootstrap CI of a mean against the
normal-theory interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dpo_jax.running import stats


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(0)
    return {"dpo": {"a": rng.normal(1.0, 0.3, 8), "b": rng.normal(5.0, 2.0, 8)},
            "ippo": {"a": rng.normal(0.8, 0.3, 8), "b": rng.normal(4.0, 2.0, 8)}}


def test_minmax_normalisation_by_hand(raw):
    norm = stats.normalize(raw, "minmax")
    for t, task in enumerate(["a", "b"]):
        every = np.concatenate([raw["dpo"][task], raw["ippo"][task]])
        for algo in raw:
            expect = (raw[algo][task] - every.min()) / (every.max() - every.min())
            np.testing.assert_allclose(norm[algo][:, t], expect)
    rand = stats.normalize(raw, "random", random={"a": 0.0, "b": 1.0})
    best_b = max(raw["dpo"]["b"].max(), raw["ippo"]["b"].max())
    np.testing.assert_allclose(rand["dpo"][:, 1], (raw["dpo"]["b"] - 1.0) / (best_b - 1.0))
    with pytest.raises(ValueError, match="random-policy return of tasks"):
        stats.normalize(raw, "random", random={"a": 0.0})
    with pytest.raises(ValueError, match="every algorithm needs every task"):
        stats.normalize({"dpo": raw["dpo"], "ippo": {"a": raw["ippo"]["a"]}})


def test_point_estimates_by_brute_force(raw):
    norm = stats.normalize(raw, "minmax")
    agg = stats.aggregate(norm, reps=500)
    for algo, x in norm.items():
        flat = np.sort(x.ravel())  # 16 scores: the IQM is the mean of the middle 8
        assert agg[algo]["IQM"][0] == pytest.approx(flat[4:12].mean())
        assert agg[algo]["Mean"][0] == pytest.approx(x.mean(axis=0).mean())
        assert agg[algo]["Median"][0] == pytest.approx(np.median(x.mean(axis=0)))
        assert agg[algo]["Optimality Gap"][0] == pytest.approx(np.maximum(1 - x, 0).mean())
        for point, low, high in agg[algo].values():
            assert low <= point <= high
    (p, low, high), = stats.improvement(norm, [("dpo", "ippo")], reps=500).values()
    per_task = []
    for t in range(2):
        wins = [float(a > b) + 0.5 * float(a == b)
                for a, b in itertools.product(norm["dpo"][:, t], norm["ippo"][:, t])]
        per_task.append(np.mean(wins))
    assert p == pytest.approx(np.mean(per_task))
    assert low <= p <= high
    prof = stats.performance_profile(norm, taus=[0.0, 0.25, 0.5, 0.75, 1.0], reps=200)
    for algo, x in norm.items():
        expect = [np.mean(x > tau) for tau in prof["tau"]]
        np.testing.assert_allclose(prof[algo]["profile"], expect)


def test_bootstrap_ci_of_a_mean_matches_normal_theory_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (400, 1))
    point, low, high = stats.aggregate({"x": x}, reps=4000, seed=3)["x"]["Mean"]
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    np.random.seed(5)
    before = np.random.rand()
    np.random.seed(5)
    assert stats.aggregate({"x": x}, reps=4000, seed=3)["x"]["Mean"] == (point, low, high)
    assert np.random.rand() == before  # numpy's global generator is left as it was


def test_final_scores_and_default_pairs():
    values = np.array([[1.0, 2.0, np.nan, 4.0, 6.0] * 4, [0.0] * 20])
    np.testing.assert_allclose(stats.final_scores(values, 0.1), [5.0, 0.0])  # last 2
    with pytest.raises(ValueError, match="no finite value"):
        stats.final_scores(np.array([[1.0, np.nan]]), 0.5)
    assert stats.default_pairs(["ippo", "ippo_kl", "dpo"]) == [("dpo", "ippo"),
                                                               ("ippo_kl", "ippo")]
    assert stats.default_pairs(["dpo"]) == []
