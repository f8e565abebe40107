"""rliable statistics against brute-force references: IQM as the mean of the middle
half, optimality gap, P(X > Y) by counting pairs, performance profiles by
counting runs, fixed-reference normalisation by hand, P(X > Y) and its interval for
samplers whose answer is known, and the bootstrap CI of a mean against the
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


def test_normalisation_uses_fixed_references_only(raw):
    random, reference = {"a": 0.5, "b": 1.0}, {"a": 2.0, "b": 9.0}
    norm = stats.normalize(raw, "reference", random, reference)
    for t, task in enumerate(["a", "b"]):
        for algo in raw:
            expect = (raw[algo][task] - random[task]) / (reference[task] - random[task])
            np.testing.assert_allclose(norm[algo][:, t], expect)
    # adding a run changes no other run's score: the references are not the runs
    more = {algo: dict(by_task) for algo, by_task in raw.items()}
    more["dpo"]["a"] = np.append(raw["dpo"]["a"], 100.0)
    more["dpo"]["b"] = np.append(raw["dpo"]["b"], -100.0)
    again = stats.normalize(more, "reference", random, reference)
    np.testing.assert_allclose(again["ippo"], norm["ippo"])
    np.testing.assert_allclose(again["dpo"][:8], norm["dpo"])
    above = stats.normalize(raw, "random", random)
    np.testing.assert_allclose(above["dpo"][:, 1], raw["dpo"]["b"] - 1.0)
    np.testing.assert_allclose(stats.normalize(raw, "none")["ippo"][:, 0], raw["ippo"]["a"])
    with pytest.raises(ValueError, match="minimum and maximum"):
        stats.normalize(raw, "minmax")
    with pytest.raises(ValueError, match="reference score .* of tasks \\['b'\\]"):
        stats.normalize(raw, "reference", random, {"a": 2.0})
    with pytest.raises(ValueError, match="every algorithm needs every task"):
        stats.normalize({"dpo": raw["dpo"], "ippo": {"a": raw["ippo"]["a"]}}, "none")


def test_probability_of_improvement_of_known_samplers():
    from scipy.stats import norm as gaussian

    rng = np.random.default_rng(7)
    covered, points = 0, []
    for _ in range(20):  # identical samplers: a 95% interval covers 0.5 about 19 times
        x, y = rng.normal(0, 1, (30, 1)), rng.normal(0, 1, (30, 1))
        (p, low, high), = stats.improvement({"x": x, "y": y}, [("x", "y")],
                                            reps=500).values()
        covered += low <= 0.5 <= high
        points.append(p)
    assert covered >= 16  # P(fewer than 16 of 20 | coverage 0.95) < 0.3%
    assert abs(np.mean(points) - 0.5) < 0.05
    shift = 1.0  # X ~ N(1, 1), Y ~ N(0, 1): P(X > Y) = Phi(1 / sqrt(2)) = 0.760
    x, y = rng.normal(shift, 1, (200, 1)), rng.normal(0, 1, (200, 1))
    (p, low, high), = stats.improvement({"x": x, "y": y}, [("x", "y")], reps=2000).values()
    want = gaussian.cdf(shift / np.sqrt(2))
    assert low <= want <= high and p == pytest.approx(want, abs=0.05)
    assert high - low < 0.15


def test_too_few_runs_give_point_estimates_without_intervals():
    two = {"dpo": np.array([[0.1], [0.2]]), "ippo": np.array([[0.3], [0.4]])}
    assert "below 5" in stats.too_few_runs(two)
    agg = stats.aggregate(two, reps=100)
    assert agg["dpo"]["Mean"][0] == pytest.approx(0.15)
    assert all(np.isnan(v[1]) and np.isnan(v[2]) for a in agg.values() for v in a.values())
    (p, low, high), = stats.improvement(two, [("dpo", "ippo")]).values()
    assert p == 0.0 and np.isnan(low) and np.isnan(high)  # all of 4 pairs lost: no CI


def test_point_estimates_by_brute_force(raw):
    norm = stats.normalize(raw, "reference", {"a": 0.0, "b": 0.0}, {"a": 2.0, "b": 10.0})
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
