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


def test_window_means_compare_curves_of_other_batch_sizes_at_equal_env_steps():
    # two entries of one job: 10 updates of 100 steps, and 4 updates of 250 steps
    fine_steps, coarse_steps = np.arange(1, 11) * 100.0, np.arange(1, 5) * 250.0
    fine = np.vstack([np.arange(10.0), np.arange(10.0) + 1])
    coarse = np.vstack([np.arange(4.0), np.arange(4.0) * 2])
    # steps in (500, 1000]: fine updates 6..10 (values 5..9), coarse updates 3..4
    np.testing.assert_allclose(long_runs.window_means(fine_steps, fine, 1000, 500),
                               [7.0, 8.0])
    np.testing.assert_allclose(long_runs.window_means(coarse_steps, coarse, 1000, 500),
                               [2.5, 5.0])
    # a window with no update takes the nearest one
    np.testing.assert_allclose(long_runs.window_means(coarse_steps, coarse, 600, 50),
                               [1.0, 2.0])


def test_sittings_count_the_first_program_s_headers(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("device: 2 x cpu\niql: 5 runs\nupdate 1\niql: 5 runs\nupdate 9\n"
                   "== peak RSS 1 kB\n")
    assert long_runs.sittings(log) == 2
    log.write_text("pg: 20 runs\niql: 5 runs\npg: 20 runs\niql: 5 runs\npg: 20 runs\n")
    assert long_runs.sittings(log) == 3
    assert long_runs.sittings(tmp_path / "missing.log") is None
