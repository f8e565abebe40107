"""``benchmarks/long_runs.py``'s Welch interval against scipy's own."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
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


@pytest.fixture(scope="module")
def game_job(tmp_path_factory):
    """DPO, IPPO, DPO w/o kl and IQL on a small stochastic game, one job folder."""
    from dpo_jax.running import cli

    out = tmp_path_factory.mktemp("long") / "job"
    assert cli.main(["train", "stochastic_game_small", "--env-arg", "num_states=4",
                     "episode_length=5", "--num-envs", "4", "--num-steps", "5",
                     "--num-epochs", "1", "--num-minibatches", "1", "--total-timesteps", "200",
                     "--algos", "dpo", "ippo", "dpo_no_kl", "iql", "--seeds", "2",
                     "--hidden-size", "8",
                     "--progress", "1", "--out", str(out)]) == 0
    return out


def final(out: pathlib.Path, file: str, key: str, algo: str | None = None) -> np.ndarray:
    """Each run's mean over its last 10% of updates, straight from the JSONL rows (of
    ``algo``'s runs only, if given)."""
    rows = [json.loads(line) for line in (out / file).read_text().splitlines()]
    rows = [r for r in rows if algo is None or r["algo"] == algo]
    runs = sorted({r["run"] for r in rows})
    values = [[r[key] for r in sorted(rows, key=lambda r: r["update"]) if r["run"] == run]
              for run in runs]
    k = max(1, int(round(len(values[0]) * 0.1)))
    return np.array([np.mean(np.asarray(v[-k:], float)) for v in values])


def test_a_job_with_iql_scores_its_recurrent_policy_by_greedy_episodes(game_job):
    """On the game the PG members are scored by their exact J/J*, IQL by its greedy
    episodes' return / J*; both read here straight from the JSONL rows."""
    got = long_runs.analyse([game_job], points=3, reps=50, logs=[None])
    optimum = got["reference"]["j_star"]
    iql, ippo = got["entries"]["iql"], got["entries"]["ippo"]
    np.testing.assert_allclose(iql["final"], final(game_job, "metrics_iql.jsonl",
                                                   "greedy_return") / optimum, rtol=1e-6)
    np.testing.assert_allclose(iql["tail"]["memoryless_optimality_ratio"],
                               final(game_job, "metrics_iql.jsonl", "optimality_ratio").mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(ippo["final"], final(game_job, "metrics.jsonl",
                                                    "optimality_ratio", "ippo"), rtol=1e-6)
    assert iql["score"].startswith("greedy") and ippo["score"] == "exact J/J*"
    assert got["versus_ippo"]["iql"]["against"] == "ippo"


def test_an_ablation_is_compared_with_dpo_and_with_ippo(game_job):
    """DPO w/o kl - DPO and - IPPO at the end: scipy's Welch interval on each run's final
    J/J* read straight from the JSONL rows; DPO itself and IQL have no DPO comparison."""
    got = long_runs.analyse([game_job], points=3, reps=50, logs=[None])
    runs = {algo: final(game_job, "metrics.jsonl", "optimality_ratio", algo)
            for algo in ("dpo", "ippo", "dpo_no_kl")}
    assert set(got["versus_dpo"]) == {"dpo_no_kl"}
    for against, key in (("dpo", "versus_dpo"), ("ippo", "versus_ippo")):
        v = got[key]["dpo_no_kl"]
        ci = stats.ttest_ind(runs["dpo_no_kl"], runs[against],
                             equal_var=False).confidence_interval(0.95)
        assert v["against"] == against and len(v["along"]) == 3
        np.testing.assert_allclose([v["end"]["low"], v["end"]["high"]], [ci.low, ci.high],
                                   rtol=1e-5)


def test_iql_s_summaries_lead_with_its_greedy_episodes_and_name_the_proxy(game_job):
    """summary.json and Results.summary() give IQL the J/J* of its greedy episodes and
    keep the memoryless proxy's apart; the PG entries keep their exact J/J*."""
    import dpo_jax

    optimum = long_runs.analyse([game_job], points=3, reps=50, logs=[None])[
        "reference"]["j_star"]
    greedy = final(game_job, "metrics_iql.jsonl", "greedy_return") / optimum
    proxy = final(game_job, "metrics_iql.jsonl", "optimality_ratio")
    entries = json.loads((game_job / "summary.json").read_text())["programs"]
    iql, ippo = entries["iql"]["entries"]["iql"], entries["pg"]["entries"]["ippo"]
    assert iql["final_greedy_optimality_ratio_mean"] == pytest.approx(greedy.mean(), rel=1e-6)
    assert iql["final_memoryless_optimality_ratio_mean"] == pytest.approx(proxy.mean(),
                                                                         rel=1e-6)
    assert "final_optimality_ratio_mean" not in iql
    assert ippo["final_optimality_ratio_mean"] == pytest.approx(
        final(game_job, "metrics.jsonl", "optimality_ratio", "ippo").mean(), rel=1e-6)
    table = dpo_jax.load(game_job).summary()
    assert table.loc["iql", "final_greedy_optimality_ratio"] == pytest.approx(greedy.mean(),
                                                                             rel=1e-6)
    assert np.isnan(table.loc["iql", "final_optimality_ratio"])
    assert np.isnan(table.loc["ippo", "final_greedy_optimality_ratio"])


def test_the_archive_keeps_every_stride_th_update_and_the_last():
    header = "run,algo,update,kl\r\n"
    rows = [f"{r},dpo,{u},0.5\r\n" for u in range(25) for r in range(2)]
    kept, stride = long_runs.thinned([header] + rows, most=10)
    assert stride == 3
    assert kept[0] == header
    assert [int(line.split(",")[2]) for line in kept[1:]] == [
        u for u in (2, 5, 8, 11, 14, 17, 20, 23, 24) for _ in range(2)]
    assert long_runs.thinned([header] + rows, most=25) == ([header] + rows, 1)


def test_the_random_reference_on_the_game_is_the_uniform_policys_exact_j():
    """Against numpy: the uniform policy's expected return, step by step from the start
    state, and J* from the env's own dynamic programming."""
    import dpo_jax

    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    rewards = np.asarray(env.tables.rewards, np.float64)
    moves = np.asarray(env.tables.transitions, np.float64).mean(axis=1)
    dist, total = np.eye(env.num_states)[env.start_state], 0.0
    for _ in range(env.episode_length):
        total += dist @ rewards.mean(axis=1)
        dist = dist @ moves
    got = long_runs.game_reference(env)
    assert got["j_star"] == env.optimal_return()
    assert got["random_ratio"] == pytest.approx(total / env.optimal_return(), rel=1e-5)


def test_a_game_job_records_the_random_policy_s_exact_return(game_job):
    """summary.json's random reference on an episodic game is the uniform policy's
    exact J (numpy, step by step), not a Monte Carlo draw."""
    import dpo_jax

    env = dpo_jax.load(game_job).env
    rewards = np.asarray(env.tables.rewards, np.float64).mean(axis=1)
    moves = np.asarray(env.tables.transitions, np.float64).mean(axis=1)
    dist, total = np.eye(env.num_states)[env.start_state], 0.0
    for _ in range(env.episode_length):
        total, dist = total + dist @ rewards, dist @ moves
    summary = json.loads((game_job / "summary.json").read_text())
    assert summary["random_return"] == pytest.approx(total, rel=1e-5)


def test_the_archive_names_each_metrics_file_s_stride(game_job, tmp_path):
    """A folder with a PG and an IQL metrics file of other update counts: each file's
    own stride, read back from the archived files."""
    import gzip

    strides = long_runs.archive(game_job, None, tmp_path, most=4)
    for name, stride in strides.items():
        full = (game_job / name).read_text().splitlines()
        kept = gzip.decompress((tmp_path / f"{name}.gz").read_bytes()).decode().splitlines()
        column = full[0].split(",").index("update")
        updates = sorted({int(line.split(",")[column]) for line in full[1:]})
        assert stride == -(-len(updates) // 4)
        assert sorted({int(line.split(",")[column]) for line in kept[1:]}) == [
            u for u in updates if u % stride == stride - 1 or u == updates[-1]]
    assert set(strides) == {"metrics.csv", "metrics_iql.csv"}
