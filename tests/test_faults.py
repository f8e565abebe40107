"""Faults, reproduced first, then handled: a crash at every stage of a checkpoint's
save and log, damaged checkpoints, two jobs in one folder, non-finite values, bad
cluster variables, unreadable files, an unknown platform, per-agent parameters of
the wrong length, and several CPU devices under the CLI.

The jobs run the ``dpo-jax`` command line in subprocesses (a crash is a real
``os._exit`` at the named stage, ``DPO_JAX_FAULT_AT``), sharing one compilation
cache so that each program compiles once for the whole module."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import checkpoint, experiments, loggers

JOB = ["train", "stochastic_game_small", "--preset", "cpu", "--env-arg", "num_states=4",
       "--num-envs", "2", "--num-steps", "8", "--num-epochs", "1", "--num-minibatches", "1",
       "--hidden-size", "8", "--total-timesteps", str(2 * 8 * 6), "--seeds", "2",
       "--algos", "dpo", "ippo", "--checkpoint-every", "2", "--progress", "0"]
"""6 updates of 4 runs, a checkpoint every 2."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla-cache"))


def cli(args, cache, out=None, **env):
    """``dpo-jax ARGS`` in a fresh process; returns it (stdout, stderr, returncode)."""
    argv = [sys.executable, "-m", "dpo_jax", *args] + (["--out", str(out)] if out else [])
    full = {**os.environ, "DPO_JAX_CACHE_DIR": cache, "DPO_JAX_CPU_DEVICES": "1",
            "PYTHONWARNINGS": "default", **{k: str(v) for k, v in env.items()}}
    full = {k: v for k, v in full.items() if v != "UNSET"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=full)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """The uninterrupted job's logs."""
    out = tmp_path_factory.mktemp("reference") / "job"
    proc = cli(JOB, cache, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def rows(out):
    return (out / "metrics.jsonl").read_text()


# -- crashes while saving ------------------------------------------------------------

@pytest.mark.parametrize("stage", ["after_chunk", "after_metrics", "after_state",
                                   "after_manifest", "after_logs"])
def test_a_crash_at_any_stage_of_a_save_loses_no_log_row(stage, tmp_path, cache, reference):
    out = tmp_path / "job"
    crashed = cli(JOB, cache, out, DPO_JAX_FAULT_AT=f"{stage}:4")
    assert crashed.returncode == 86, crashed.stderr[-2000:]  # died at the named stage
    resumed = cli(JOB + ["--resume"], cache, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(out) == rows(reference)  # byte for byte: every update once, same values
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"


def test_a_killed_job_reads_back_as_the_updates_it_logged(tmp_path, cache, reference):
    """A job killed mid-way (a time limit) has no summary.json: it is written when a
    sitting ends. Its folder still reads back, and plots, with the random policy's
    return the job computes at its start, not with no normalisation at all."""
    out = tmp_path / "job"
    assert cli(JOB, cache, out, DPO_JAX_FAULT_AT="after_logs:4").returncode == 86
    assert not (out / "summary.json").exists()
    killed, whole = dpo_jax.load(out), dpo_jax.load(reference)
    assert (killed.status, whole.status) == ("unfinished", "complete")
    assert killed.random_return == json.loads(
        (reference / "summary.json").read_text())["random_return"]
    for name, (steps, values) in whole.curves().items():
        got_steps, got = killed.curves()[name]
        np.testing.assert_array_equal(got_steps, steps[:4])
        np.testing.assert_array_equal(got, values[:, :4])
    before = sorted((p, p.read_bytes()) for p in out.rglob("*") if p.is_file())
    plotted = cli(["plot", str(out), "--to", str(tmp_path / "stats"), "--reps", "200"], cache)
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    assert "normalisation reference" in plotted.stdout  # random policy 0, J* 1
    assert sorted((p, p.read_bytes()) for p in out.rglob("*") if p.is_file()) == before


# -- damaged checkpoints -------------------------------------------------------------

def _array_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The files of array data (orbax's ``d/`` folders) of a checkpoint."""
    return [p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"]


@pytest.mark.parametrize("damage", ["bytes", "truncate", "manifest"])
def test_a_damaged_newest_checkpoint_is_named_and_the_job_falls_back(damage, tmp_path, cache,
                                                                      reference):
    out = tmp_path / "job"
    assert cli(JOB + ["--stop-after", "4"], cache, out).returncode == 0
    newest = out / "checkpoints" / "update_00000004"
    for victim in _array_files(newest) if damage != "manifest" else []:
        data = bytearray(victim.read_bytes())
        if damage == "bytes":  # 14 bytes overwritten in the middle of each data file
            data[len(data) // 2:len(data) // 2 + 14] = b"\x7f" * 14
        else:
            data = data[:len(data) // 3]
        victim.write_bytes(bytes(data))
    if damage == "manifest":
        (out / "checkpoints" / "manifests" / "update_00000004.json").write_text("{not json")
    evaluated = cli(["eval", str(out), "--episodes", "2"], cache)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "update_00000004" in evaluated.stderr and "skipped a checkpoint" in evaluated.stderr
    assert "checkpoint after 2 updates" in evaluated.stdout  # the sound one, not bad data
    resumed = cli(JOB + ["--resume"], cache, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "update_00000004" in resumed.stderr and "after 2 updates" in resumed.stderr
    assert rows(out) == rows(reference)


def test_no_sound_checkpoint_is_an_error_naming_them(tmp_path, cache):
    out = tmp_path / "job"
    assert cli(JOB + ["--stop-after", "2"], cache, out).returncode == 0
    (out / "checkpoints" / "manifests" / "update_00000002.json").write_text("[]")
    resumed = cli(JOB + ["--resume"], cache, out)
    assert resumed.returncode == 2
    assert "no sound checkpoint" in resumed.stderr and "update_00000002" in resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_a_job_stopped_in_its_first_save_starts_over(tmp_path, cache):
    """Killed while writing its first checkpoint (a state folder, no manifest):
    nothing was kept, so --resume trains from update 0, says why, and ends with the
    logs of an uninterrupted run."""
    reference, out = tmp_path / "reference", tmp_path / "job"
    assert cli(JOB, cache, reference).returncode == 0
    assert cli(JOB + ["--stop-after", "2"], cache, out).returncode == 0
    # as if the process died while saving the state (its chunk's metrics were written)
    shutil.rmtree(out / "checkpoints" / "manifests")
    resumed = cli(JOB + ["--resume"], cache, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "update_00000002 is incomplete" in resumed.stderr
    assert "starts from update 0" in resumed.stderr
    assert rows(out) == rows(reference)


# -- two jobs, one folder ------------------------------------------------------------

def test_a_second_job_in_a_locked_folder_names_the_first(tmp_path, cache):
    from dpo_jax.running.lock import folder_lock

    out = tmp_path / "job"
    with folder_lock(out, command="dpo-jax train mpe_spread (the first job)"):
        second = cli(JOB, cache, out)
    assert second.returncode == 2
    assert f"in use by process {os.getpid()}" in second.stderr
    assert "the first job" in second.stderr and "Traceback" not in second.stderr
    assert cli(JOB + ["--stop-after", "2"], cache, out).returncode == 0  # free again


# -- non-finite values ---------------------------------------------------------------

def test_exploding_learning_rates_stop_at_the_chunk_with_the_update_named(tmp_path, cache):
    out = tmp_path / "job"
    proc = cli(JOB + ["--actor-lr", "1e6", "--critic-lr", "1e6"], cache, out)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "non-finite loss or gradient at update" in proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failure"]["update"] >= 0
    failed_at = summary["failure"]["update"]
    saved = checkpoint.checkpoints(out / "checkpoints")
    assert all(n <= failed_at for n in saved)  # nothing saved after the fault
    assert len(loggers.read_jsonl(out / "metrics.jsonl")) == 4 * max(saved, default=0)


class NaNRewardAt(dpo_jax.MultiAgentEnv):
    """Two agents, one action each; reward 1 until env step ``at``, then NaN."""

    name = "nan_reward"
    num_agents, obs_dim, max_steps = 2, 1, 100
    action_spec = dpo_jax.envs.DiscreteActions(2)

    def __init__(self, at: int):
        self.at = at

    def _out(self, t, reward):
        return dpo_jax.envs.EnvStep(t, jnp.zeros((2, 1)), jnp.ones((2, 2), bool),
                                    jnp.full((2,), reward), jnp.array(False),
                                    t >= self.max_steps, {})

    def reset(self, key):
        return self._out(jnp.int32(0), jnp.float32(0))

    def step(self, key, t, actions):
        return self._out(t + 1, jnp.where(t + 1 >= self.at, jnp.nan, 1.0))


def test_a_nan_reward_is_named_as_the_cause(tmp_path):
    dpo_jax.register_env("nan_reward", NaNRewardAt, overwrite=True)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=4, total_timesteps=2 * 4 * 6,
                              hidden_size=8, num_epochs=1)
    with pytest.raises(FloatingPointError, match="a non-finite reward from the env at "
                                                 "update 2 in run"):
        dpo_jax.train(cfg, "nan_reward", env_kwargs={"at": 9}, seeds=1, progress=False,
                      out=tmp_path / "job", checkpoint_every=1)
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["failure"]["cause"] == "a non-finite reward from the env"
    assert checkpoint.checkpoints(tmp_path / "job" / "checkpoints") == [1, 2]
    with pytest.raises(FloatingPointError, match="non-finite reward from the env at update 0"):
        experiments.run(cfg, NaNRewardAt(at=1), experiments.stack_keys(0, 1), progress=False)


# -- bad settings and files, one line each ------------------------------------------

def test_bad_cluster_variables_are_named_without_a_crash(tmp_path, cache):
    malformed = cli(JOB, cache, tmp_path / "a", DPO_JAX_COORDINATOR="localhost:notaport",
                    DPO_JAX_NUM_PROCESSES=2, DPO_JAX_PROCESS_ID=0)
    assert malformed.returncode == 2 and "DPO_JAX_COORDINATOR" in malformed.stderr
    auto = cli(JOB, cache, tmp_path / "b", DPO_JAX_COORDINATOR="auto", SLURM_JOB_ID="UNSET",
               OMPI_COMM_WORLD_SIZE="UNSET")
    assert auto.returncode == 2 and "none is set" in auto.stderr
    import socket

    with socket.socket() as s:  # a loopback port where nobody listens
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    silent = cli(JOB, cache, tmp_path / "c", DPO_JAX_COORDINATOR=f"localhost:{port}",
                 DPO_JAX_NUM_PROCESSES=2, DPO_JAX_PROCESS_ID=1, DPO_JAX_INIT_TIMEOUT=3)
    assert silent.returncode == 2, silent.stderr[-2000:]
    assert f"localhost:{port} failed after at most 3 s" in silent.stderr
    for proc in (malformed, auto, silent):
        assert "Traceback" not in proc.stderr and "Segmentation" not in proc.stderr


@pytest.mark.parametrize("file, content, message", [
    ("spec.json", "{broken", "spec.json"),
    ("spec.json", '{"env": "mpe_spread"}', "spec.json"),
    ("checkpoints/run.json", "{broken", "run.json"),
])
def test_unreadable_job_files_are_named(file, content, message, tmp_path, cache):
    out = tmp_path / "job"
    assert cli(JOB + ["--stop-after", "2"], cache, out).returncode == 0
    (out / file).write_text(content)
    needs = [JOB + ["--resume", "--out", str(out)]]
    if file == "spec.json":
        needs.append(["eval", str(out)])
    else:  # eval needs only a sound state: the manifests record its run count
        assert cli(["eval", str(out), "--episodes", "2"], cache).returncode == 0
    for args in needs:
        proc = cli(args, cache)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    debug = cli(needs[0] + ["--debug"], cache)
    assert "Traceback" in debug.stderr  # --debug shows it


def test_an_unknown_platform_is_named(tmp_path, cache):
    proc = cli(JOB, cache, tmp_path / "job", JAX_PLATFORMS="cuda")
    assert proc.returncode == 1 and "JAX_PLATFORMS='cuda'" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_per_agent_parameters_of_the_wrong_length_name_the_field():
    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=4, total_timesteps=16)
    obj = dpo_jax.objective_params(cfg, 3)._replace(d_target=jnp.full((5,), 0.01))
    with pytest.raises(ValueError, match=r"ObjectiveParams.d_target has shape \(2, 5\): "
                                         r"expected \(2,\) or \(2, 3\)"):
        experiments.run(cfg, env, experiments.stack_keys(0, 2),
                        obj=dpo_jax.stack_params([obj, obj]), progress=False)
    ok = dpo_jax.objective_params(cfg, 3)._replace(d_target=jnp.asarray([0.01, 0.1, 1.0]))
    out = experiments.run(cfg, env, experiments.stack_keys(0, 1),
                          obj=dpo_jax.stack_params([ok]), progress=False)
    assert np.isfinite(out.metrics["beta_kl"]).all()


def test_the_resumed_rate_counts_only_the_steps_trained_after_the_resume(tmp_path, cache):
    out = tmp_path / "job"
    assert cli(JOB + ["--stop-after", "4"], cache, out).returncode == 0
    assert cli(JOB + ["--resume"], cache, out).returncode == 0
    pg = json.loads((out / "summary.json").read_text())["programs"]["pg"]
    trained = 4 * 2 * 2 * 8  # 2 updates of 4 runs x 2 envs x 8 steps after the resume
    assert pg["env_steps_per_s"] == pytest.approx(trained / pg["run_s"], rel=1e-6)


# -- several CPU devices -------------------------------------------------------------

def test_the_cpu_becomes_one_device_per_core_unless_told_otherwise(cache):
    from dpo_jax.runtime import usable_cores

    code = "import dpo_jax, jax; dpo_jax.make_env('continuous_reach'); print(jax.device_count())"

    def devices(**env):
        full = {**os.environ, "DPO_JAX_CACHE_DIR": cache, **env}
        full = {k: v for k, v in full.items() if v != "UNSET"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=full, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split()[-1])

    assert devices(DPO_JAX_CPU_DEVICES="UNSET") == usable_cores()
    assert devices(DPO_JAX_CPU_DEVICES="off") == 1
    assert devices(DPO_JAX_CPU_DEVICES="3") == 3
    assert devices(DPO_JAX_CPU_DEVICES="UNSET",  # the user's own flag is kept
                   XLA_FLAGS="--xla_force_host_platform_device_count=5") == 5

