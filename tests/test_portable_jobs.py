"""A job folder outlives its machine, its version and a lost file.

Each job is the ``dpo-jax`` command line in a fresh process (a device count is fixed
per process), sharing one compilation cache: 3 seeds of DPO on a 4-state game, 6
updates, a checkpoint every 2. The references are the uninterrupted job on 2 and on 1
forced CPU devices."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import checkpoint, loggers

JOB = ["train", "stochastic_game_small", "--preset", "cpu", "--env-arg", "num_states=4",
       "--num-envs", "2", "--num-steps", "8", "--num-epochs", "1", "--num-minibatches", "1",
       "--hidden-size", "8", "--total-timesteps", str(2 * 8 * 6), "--seeds", "3",
       "--algos", "dpo", "--checkpoint-every", "2", "--progress", "0"]
"""6 updates of 3 runs (padded to 4 on 2 devices), a checkpoint every 2: the job of
the folders in tests/data/job_folders."""
OLD = pathlib.Path(__file__).parent / "data" / "job_folders"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla-cache"))


def cli(args, cache, out=None, devices="1", **env):
    """``dpo-jax ARGS`` in a fresh process on ``devices`` CPU devices (the variable,
    which the CLI honours unless --cpu-devices is given)."""
    argv = [sys.executable, "-m", "dpo_jax", *args] + (["--out", str(out)] if out else [])
    full = {**os.environ, "DPO_JAX_CACHE_DIR": cache, "DPO_JAX_CPU_DEVICES": devices,
            **{k: str(v) for k, v in env.items()}}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=full)


def ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def tree_digest(folder: pathlib.Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with its bytes' digest."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                          if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def references(tmp_path_factory, cache):
    """The uninterrupted job on 2 devices and on 1."""
    found = {}
    for devices in ("2", "1"):
        out = tmp_path_factory.mktemp(f"reference{devices}") / "job"
        ok(cli(JOB, cache, out, devices))
        found[devices] = out
    return found


def returns(out):
    """Per run and update: the episode return, from metrics.jsonl."""
    rows = loggers.read_jsonl(out / "metrics.jsonl")
    table = np.full((3, 6), np.nan)
    for row in rows:
        table[row["run"], row["update"]] = row["episode_return"]
    return table


# -- another machine: device count, sharding, progress -------------------------------

@pytest.mark.parametrize("first,then", [
    ("2", "1"), pytest.param("1", "2", marks=pytest.mark.slow)])  # the reverse: DPO_JAX_FULL=1
def test_a_job_resumes_on_another_device_count(first, then, tmp_path, cache, references):
    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "2"], cache, out, first))
    resumed = ok(cli(JOB + ["--resume"], cache, out, then))
    assert f"device: {then} x cpu" in resumed.stdout
    warning = [line for line in resumed.stderr.splitlines() if "device layout" in line]
    assert len(warning) == 1 and f"devices: saved {first}, now {then}" in warning[0]
    got, same = returns(out), returns(references[first])
    assert np.array_equal(got[:, :2], same[:, :2])  # the stretch before the move: exact
    assert np.all(np.isfinite(got))
    # from the move on, the other layout's float rounding: close, not equal in general
    np.testing.assert_allclose(got[:, 2:3], same[:, 2:3], rtol=1e-3, atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    layouts = json.loads((out / "checkpoints" / "run.json").read_text())["layouts"]
    assert [(x["from_update"], x["devices"]) for x in layouts] == [(0, int(first)),
                                                                  (2, int(then))]
    evaluated = ok(cli(["eval", str(out), "--episodes", "2"], cache, devices=first))
    assert "checkpoint after 6 updates" in evaluated.stdout


def test_progress_and_chunks_do_not_decide_a_resume_and_keep_it_exact(tmp_path, cache,
                                                                       references):
    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "2"], cache, out, "2"))
    resumed = ok(cli(JOB + ["--resume", "--progress", "1", "--checkpoint-every", "3"],
                     cache, out, "2"))
    assert "device layout" not in resumed.stderr  # the same devices: nothing to say
    assert (out / "metrics.jsonl").read_text() == (references["2"] / "metrics.jsonl").read_text()


@pytest.mark.slow  # the layout change itself is tested on the device count (CI)
def test_a_resume_that_splits_envs_instead_of_runs_completes(tmp_path, cache):
    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "2"], cache, out, "2"))
    resumed = ok(cli(JOB + ["--resume", "--shard", "envs"], cache, out, "2"))
    assert "shard: saved 'runs', now 'envs'" in resumed.stderr
    assert np.all(np.isfinite(returns(out)))


# -- a lost or unreadable file -------------------------------------------------------

def test_a_lost_metrics_file_costs_only_its_rows(tmp_path, cache, references):
    done = tmp_path / "done"
    shutil.copytree(references["1"], done)
    middle = done / "checkpoints" / "metrics" / "metrics_00000002_00000004.npz"
    middle.unlink()
    evaluated = ok(cli(["eval", str(done), "--episodes", "2"], cache))
    assert "checkpoint after 6 updates" in evaluated.stdout  # eval reads no metrics

    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "4"], cache, out))
    (out / "checkpoints" / "metrics" / "metrics_00000002_00000004.npz").unlink()
    resumed = ok(cli(JOB + ["--resume"], cache, out))
    assert "metrics of updates 2..3 are lost" in resumed.stderr
    # the log file still held those rows: kept, so the log equals the uninterrupted one
    assert (out / "metrics.jsonl").read_text() == (references["1"] / "metrics.jsonl").read_text()
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines == (references["1"] / "metrics.csv").read_text().splitlines()


def test_unreadable_entries_are_damage_and_never_block_a_later_save(tmp_path, cache,
                                                                    references):
    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "4"], cache, out))
    manifest = out / "checkpoints" / "manifests" / "update_00000004.json"
    manifest.unlink()
    manifest.mkdir()  # a directory where the newest manifest was
    metrics = out / "checkpoints" / "metrics" / "metrics_00000000_00000002.npz"
    metrics.unlink()
    metrics.mkdir()  # and one where the oldest metrics file was
    resumed = ok(cli(JOB + ["--resume", "--stop-after", "4"], cache, out))
    assert "update_00000004.json" in resumed.stderr and "after 2 updates" in resumed.stderr
    assert "moved aside" in resumed.stderr  # the save at update 4 cleared its way
    ok(cli(JOB + ["--resume"], cache, out))  # and later resumes go on
    assert checkpoint.checkpoints(out / "checkpoints") == [2, 4, 6]
    assert (out / "metrics.jsonl").read_text() == (references["1"] / "metrics.jsonl").read_text()


def test_intact_files_that_cannot_be_read_stop_with_their_cause(tmp_path, monkeypatch):
    """Not damage (a version that cannot read the format, out of memory): no fallback."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    for n in (1, 2):
        checkpoint.save(tmp_path, n - 1, n, state, {"loss": np.ones((2, 1))})
    like = jax.tree.map(jnp.zeros_like, state)

    def fails(self, *args, **kwargs):
        raise MemoryError("RESOURCE_EXHAUSTED: out of memory")

    monkeypatch.setattr(ocp.StandardCheckpointer, "restore", fails)
    with pytest.raises(checkpoint.CheckpointReadError, match="not damaged.*MemoryError"):
        checkpoint.restore_latest(tmp_path, like, {"loss": np.zeros((2, 1))})


# -- another version -----------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.2.0", "0.3.0"])
def test_a_job_of_an_earlier_version_resumes(version, tmp_path, cache, references):
    """0.2.0 (format 2) and 0.3.0 (format 3, whose run.json records the objective's
    ten parameters, not the hyperparameters 0.4.0 made data) resume and complete."""
    old = tmp_path / f"v{version}"
    shutil.copytree(OLD / f"v{version}", old)
    resumed = ok(cli(JOB + ["--resume"], cache, old))  # saved on 2 devices, resumed on 1
    assert "padded_runs: saved 4, now 3" in resumed.stderr
    got, same = returns(old), returns(references["2"])
    assert np.array_equal(got[:, :2], same[:, :2])
    np.testing.assert_allclose(got[:, 2:3], same[:, 2:3], rtol=1e-3, atol=1e-4)
    assert np.isfinite(got).all()


NEWER = """# a later dpo-jax, which logs one metric more (extra, 7.0 at every update)
import sys
import jax.numpy as jnp
from dpo_jax.training import trainer
from dpo_jax.running.cli import main
exact = trainer.policy_metrics
trainer.policy_metrics = lambda *a: {**exact(*a), "extra": jnp.float32(7.0)}
sys.exit(main(sys.argv[1:]))
"""


def test_a_later_version_that_logs_another_metric_resumes_without_loss(tmp_path, cache,
                                                                       references):
    """Its new metric is null where the earlier version saved, every other metric and
    the step count go on, and the CSV rows kept from the file (the checkpoint's
    metrics of updates 2..3 lost) move under the new header."""
    out = tmp_path / "job"
    ok(cli(JOB + ["--stop-after", "4"], cache, out))
    (out / "checkpoints" / "metrics" / "metrics_00000002_00000004.npz").unlink()
    script = tmp_path / "newer.py"
    script.write_text(NEWER)
    env = {**os.environ, "DPO_JAX_CACHE_DIR": cache, "DPO_JAX_CPU_DEVICES": "1"}
    resumed = ok(subprocess.run([sys.executable, str(script), *JOB, "--resume", "--out",
                                 str(out)], capture_output=True, text=True, timeout=600,
                                env=env))
    assert "updates 0..1 were saved by a version that did not log ['extra']" in resumed.stderr
    assert "metrics of updates 2..3 are lost" in resumed.stderr
    assert "updates 0..1 are lost" not in resumed.stderr
    rows, same = (loggers.read_jsonl(folder / "metrics.jsonl") for folder in (out, references["1"]))
    assert [r["extra"] for r in rows] == [None] * 12 + [7.0] * 6
    assert [r["env_steps"] for r in rows] == [r["env_steps"] for r in same]
    assert [r["episode_return"] for r in rows[:12]] == [r["episode_return"] for r in same[:12]]
    with (out / "metrics.csv").open() as f:
        lines = list(csv.reader(f))
    with (references["1"] / "metrics.csv").open() as f:
        reference = list(csv.DictReader(f))
    table = [dict(zip(lines[0], line)) for line in lines[1:]]
    assert all(len(line) == len(lines[0]) for line in lines)
    assert [r["extra"] for r in table] == ["nan"] * 12 + ["7"] * 6
    for got, want in zip(table[:12], reference[:12]):
        assert {k: got[k] for k in want} == want


def test_a_job_of_0_1_0_is_refused_unchanged(tmp_path, cache):
    oldest = tmp_path / "v0.1.0"
    shutil.copytree(OLD / "v0.1.0", oldest)
    before = tree_digest(oldest)
    for args in (JOB + ["--resume"], ["eval", str(oldest)]):
        refused = cli(args, cache, oldest if args[0] == "train" else None)
        assert refused.returncode == 2, refused.stderr[-2000:]
        message = refused.stderr.strip()
        assert "dpo-jax 0.1.0 (job format 1)" in message
        assert f"dpo-jax {dpo_jax.__version__}" in message and len(message.splitlines()) == 1
        assert tree_digest(oldest) == before


# -- refusals change nothing ---------------------------------------------------------

REFUSALS = {
    "another setting": (JOB + ["--resume", "--actor-lr", "0.001"],
                        "config.actor_lr: saved 0.0005, now 0.001"),
    "another seed count": ([a if a != "3" else "4" for a in JOB] + ["--resume"],
                           "seeds: saved 3, now 4"),
    "no --resume": (JOB, "already holds a job"),
    "a bad device count": (JOB + ["--resume", "--cpu-devices", "abc"], "--cpu-devices='abc'"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_command_leaves_the_folder_byte_identical(case, tmp_path, cache, references):
    out = tmp_path / "job"
    shutil.copytree(references["1"], out)
    before = tree_digest(out)
    args, words = REFUSALS[case]
    refused = cli(args, cache, out)
    assert refused.returncode == 2 and words in refused.stderr, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
    assert tree_digest(out) == before


def test_a_locked_folder_is_refused_unchanged(tmp_path, cache, references):
    from dpo_jax.running.lock import folder_lock

    out = tmp_path / "job"
    shutil.copytree(references["1"], out)
    with folder_lock(out, command="the first job"):
        before = tree_digest(out)
        refused = cli(JOB + ["--resume"], cache, out)
        assert refused.returncode == 2 and "in use by" in refused.stderr
        assert tree_digest(out) == before
    assert not any(p.name.startswith(".dpo-jax.lock") for p in out.iterdir())


# -- requeue, paths, variables -------------------------------------------------------

def test_always_passing_resume_is_a_safe_requeue(tmp_path, cache, references):
    out = tmp_path / "job"
    first = ok(cli(JOB + ["--resume", "--stop-after", "2"], cache, out))  # never started
    assert "holds no job yet: starting it" in first.stdout
    ok(cli(JOB + ["--resume"], cache, out))
    assert (out / "metrics.jsonl").read_text() == (references["1"] / "metrics.jsonl").read_text()
    assert not any(p.name.startswith(".dpo-jax.lock") for p in out.iterdir())
    again = ok(cli(JOB + ["--resume"], cache, out))  # a finished job: says so, keeps it
    assert "were done already: nothing trained" in again.stdout and "nan" not in again.stdout
    assert (out / "metrics.jsonl").read_text() == (references["1"] / "metrics.jsonl").read_text()


def test_bad_paths_and_variables_are_named_with_exit_2(tmp_path, cache):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(["--out", str(a_file)], {}, "is a file, not a folder"),
             (["--out", str(a_file / "job")], {}, "is a file, so no folder"),
             (["--out", ""], {}, "--out ''"),
             ([], {"DPO_JAX_CPU_DEVICES": "abc"}, "DPO_JAX_CPU_DEVICES='abc'"),
             ([], {"DPO_JAX_CPU_DEVICES": "-1"}, "DPO_JAX_CPU_DEVICES='-1'")]
    for extra, env, words in cases:
        devices = env.pop("DPO_JAX_CPU_DEVICES", "1")
        argv = JOB + extra + ([] if extra else ["--out", str(tmp_path / "j")])
        proc = cli(argv, cache, devices=devices)
        assert proc.returncode == 2 and words in proc.stderr, (extra, env, proc.stderr[-1500:])
        assert len(proc.stderr.strip().splitlines()) == 1
    assert a_file.read_text() == "x" and not (tmp_path / "j").exists()
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode == 0:
        try:  # an immutable folder (its permission bits alone do not stop root)
            proc = cli(JOB, cache, frozen / "job")
            assert proc.returncode == 2 and "cannot be written" in proc.stderr, proc.stderr
        finally:
            subprocess.run(["chattr", "-i", str(frozen)], capture_output=True)


def test_plot_names_a_metrics_file_cut_short(tmp_path, cache, references):
    out = tmp_path / "job"
    shutil.copytree(references["1"], out)
    text = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(text[:len(text) // 2])
    proc = cli(["plot", str(out)], cache)
    assert proc.returncode == 2
    assert "metrics.jsonl', line" in proc.stderr and "--resume" in proc.stderr


def test_python_api_misuse_is_named():
    cfg = dpo_jax.preset("cpu", "continuous_reach", total_timesteps=64, num_envs=2,
                         num_steps=8, hidden_size=8)
    with pytest.raises(ValueError, match="stop_after=2 needs a job folder"):
        dpo_jax.train(cfg, "continuous_reach", stop_after=2, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every=0"):
        dpo_jax.train(cfg, "continuous_reach", out="unused", checkpoint_every=0,
                      progress=False)
    assert not pathlib.Path("unused").exists()


# -- the authors' preset, end to end -----------------------------------------------

AUTHORS = {
    "stochastic_game_small": (["--env-arg", "num_states=4", "--total-timesteps", "48",
                               "--num-steps", "8"], {"never_reset": True}),
    "mpe_navigation": (["--env-arg", "num_agents=3", "--total-timesteps", "100"],
                       {"comm_obs": True, "integrator": "mpe", "vision": None}),
}


@pytest.mark.parametrize("env", [
    "stochastic_game_small",
    pytest.param("mpe_navigation", marks=pytest.mark.slow)])  # MPE's: DPO_JAX_FULL=1
def test_the_authors_preset_trains_stops_resumes_and_evaluates(env, tmp_path, cache):
    """``--preset authors`` through the command line: the env arguments it adds reach
    the job (spec.json), and train, stop, resume and eval run on them."""
    extra, env_kwargs = AUTHORS[env]
    job = ["train", env, "--preset", "authors", "--algos", "dpo", "ippo", "--seeds", "2",
           "--hidden-size", "8", "--num-epochs", "2", "--checkpoint-every", "2",
           "--progress", "0", *extra]
    out = tmp_path / "job"
    ok(cli(job + ["--stop-after", "2"], cache, out))
    spec = json.loads((out / "spec.json").read_text())
    assert {k: spec["env_kwargs"][k] for k in env_kwargs} == env_kwargs
    assert spec["config"]["beta_statistics"] == "last_minibatch"
    ok(cli(job + ["--resume"], cache, out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    evaluated = ok(cli(["eval", str(out), "--episodes", "2"], cache))
    assert "dpo" in evaluated.stdout and "ippo" in evaluated.stdout
    rows = loggers.read_jsonl(out / "metrics.jsonl")
    assert {"last_minibatch_kl", "kl"} <= set(rows[0])
    if env.startswith("stochastic_game"):  # the exact J/J* leads, and both agree on it
        entry = summary["programs"]["pg"]["entries"]["dpo"]
        assert "J/J*" in evaluated.stdout
        runs = [r for r in json.loads((out / "eval.json").read_text())["runs"]
                if r["algo"] == "dpo"]
        logged = {r["seed"]: r["optimality_ratio"] for r in rows
                  if r["algo"] == "dpo" and r["update"] == max(x["update"] for x in rows)}
        for run in runs:  # eval's exact J/J* of the saved policy = the last logged one
            assert run["optimality_ratio"] == pytest.approx(logged[run["seed"]], abs=1e-5)
        assert "final_optimality_ratio_mean" in entry
        assert rows[-1]["episode_length"] == 4  # windows of S = 4 steps, not 1-step episodes
