"""``benchmarks/long_runs.py``'s Welch interval against scipy's own."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
from scipy import stats

PATH = pathlib.Path(__file__).parents[1] / "benchmarks" / "long_runs.py"
spec = importlib.util.spec_from_file_location("long_runs", PATH)
long_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(long_runs)


def test_welch_interval_is_scipys():
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.4, -3.0):
        a, b = rng.normal(shift, 1.0, 5), rng.normal(0.0, 0.3, 7)
        got = long_runs.welch(a, b)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        np.testing.assert_allclose([got["low"], got["high"]], [ci.low, ci.high], rtol=1e-10)
        level = ci.low <= 0 <= ci.high
        assert got["verdict"] == ("level" if level else "ahead" if ci.low > 0 else "behind")


def test_one_run_is_not_tested():
    got = long_runs.welch(np.array([1.0]), np.array([0.0, 0.5]))
    assert got["verdict"] == "too few runs" and np.isnan(got["low"])
