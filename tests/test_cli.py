"""The ``dpo-jax`` command line end to end: a job trained, stopped and resumed by the
CLI logs exactly the metrics of the same programs run in one piece by
``experiments.run``; ``eval`` restores exactly the trained agents and scores
them as a plain Python episode loop does; ``plot`` writes rliable's statistics;
bad flags are named with the allowed values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.core import agents as agents_lib
from dpo_jax.running import cli, evaluate, experiments, loggers, runspec

SMALL = ["--preset", "cpu", "--num-envs", "4", "--num-steps", "16", "--num-epochs", "2",
         "--num-minibatches", "2", "--hidden-size", "16", "--total-timesteps", "256",
         "--checkpoint-every", "2", "--seeds", "2", "--algos", "dpo", "ippo",
         "--env-arg", "num_agents=3", "--progress", "0"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 4-update job trained by the CLI in two pieces (stopped after 2, resumed),
    and the same programs run in one piece."""
    out = tmp_path_factory.mktemp("cli") / "job"
    argv = ["train", "mpe_spread", *SMALL, "--out", str(out)]
    assert cli.main(argv + ["--stop-after", "2"]) == 0
    assert len(loggers.read_jsonl(out / "metrics.jsonl")) == 2 * 4  # 2 updates x 4 runs
    assert cli.main(argv + ["--resume"]) == 0
    spec = runspec.RunSpec.load(out)
    env = dpo_jax.make_env("mpe_spread", num_agents=3)
    (program,) = runspec.plan(spec, env)
    whole = experiments.run(program.config, env, program.keys, obj=program.obj,
                            progress=False)
    return out, program, whole


def test_logs_of_a_stopped_and_resumed_job_equal_the_one_piece_run(job):
    out, program, whole = job
    rows = loggers.read_jsonl(out / "metrics.jsonl")
    assert len(rows) == 4 * 4  # every update of every run, once
    assert {(r["algo"], r["d_target"]) for r in rows} == {("dpo", 0.01), ("ippo", None)}
    for row in rows:
        r, u = row["run"], row["update"]
        assert row["seed"] == r % 2
        assert row["env_steps"] == int(whole.metrics["env_steps"][r, u])
        for name in ("episode_return", "kl", "beta_kl", "loss", "entropy", "value_loss"):
            expect = np.asarray(whole.metrics[name][r, u], np.float32)
            if name == "beta_kl" and row["algo"] == "ippo":  # no KL penalty: null in logs
                expect = np.full_like(expect, np.nan)
            got = np.asarray(row[name], np.float64).astype(np.float32)
            np.testing.assert_array_equal(got, expect, err_msg=f"{name} run {r} update {u}")
    header = (out / "metrics.csv").read_text().splitlines()
    assert len(header) == 1 + 16 and header[0].startswith("run,algo,d_target,seed,update,")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["programs"]["pg"]["entries"]) == {"dpo", "ippo"}
    assert summary["command"] == "dpo-jax " + " ".join(["train", "mpe_spread", *SMALL,
                                                         "--out", str(out), "--resume"])
    assert "CPU cores" in summary["machine"]
    assert (out / "learning_curve.png").stat().st_size > 0


def test_eval_restores_the_trained_agents_and_scores_like_a_plain_loop(job):
    out, program, whole = job
    pol = evaluate.load_policies(out)
    assert pol.updates_done == 4
    for a, b in zip(jax.tree.leaves(pol.params), jax.tree.leaves(whole.result.agents.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    scores = evaluate.evaluate(pol.env, pol.policy, pol.params, jax.random.key(7), 3)
    assert scores["episode_return"].shape == (4, 3)
    # run 1, episode 0 replayed step by step in Python with argmax actions
    run_key = jax.random.split(jax.random.key(7), 4)[1]
    ep_key = jax.random.split(run_key, 3)[0]
    params = jax.tree.map(lambda x: x[1], pol.params)
    reset_key, steps_key = jax.random.split(ep_key)
    step = pol.env.reset(reset_key)
    total = 0.0
    for k in jax.random.split(steps_key, pol.env.max_steps):
        logits = agents_lib.policy_params(pol.agents, params, step.obs, step.avail_actions)
        step = pol.env.step(jax.random.split(k)[1], step.state, jnp.argmax(logits, -1))
        total += float(np.mean(step.reward))
        if bool(step.terminated | step.truncated):
            break
    np.testing.assert_allclose(scores["episode_return"][1, 0], total, rtol=1e-5)
    # and, independent of evaluate's keys: its mean greedy return over 48 episodes
    # against a plain loop's over 48 episodes of its own keys (4 standard errors)
    many = evaluate.evaluate(pol.env, pol.policy, pol.params, jax.random.key(11), 48)
    step_fn, logits_fn = jax.jit(pol.env.step), jax.jit(
        lambda o, a: agents_lib.policy_params(pol.agents, params, o, a))
    loop = []
    for k in jax.random.split(jax.random.key(12), 48):
        a, b = jax.random.split(k)
        step, ret = jax.jit(pol.env.reset)(a), 0.0
        for j in jax.random.split(b, pol.env.max_steps):
            step = step_fn(j, step.state, jnp.argmax(logits_fn(step.obs, step.avail_actions), -1))
            ret += float(np.mean(step.reward))
            if bool(step.terminated | step.truncated):
                break
        loop.append(ret)
    ours = many["episode_return"][1]
    se = np.sqrt(ours.var(ddof=1) / len(ours) + np.var(loop, ddof=1) / len(loop))
    assert abs(ours.mean() - np.mean(loop)) < 4 * se, (ours.mean(), np.mean(loop), se)

    assert cli.main(["eval", str(out), "--episodes", "4", "--render"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["entries"]) == {"dpo", "ippo"} and len(result["runs"]) == 4
    drawn = sorted(p.name for p in (out / "render").iterdir())
    assert drawn == ["dpo_d0p01_s0.gif", "dpo_d0p01_s0.png", "ippo_s0.gif", "ippo_s0.png"]


def test_plot_writes_rliable_statistics_of_the_jobs(job, tmp_path):
    out, _, _ = job
    rows = loggers.read_jsonl(out / "metrics.jsonl")
    assert cli.main(["plot", str(out), "--to", str(tmp_path), "--reps", "300"]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["command"].startswith("dpo-jax plot ") and "machine" in stats
    # the raw score of a run: its mean return over the last 10% of updates (>= 1)
    last = max(r["update"] for r in rows)
    expect = sorted(r["episode_return"] for r in rows
                    if r["update"] == last and r["algo"] == "dpo")
    (task,) = stats["tasks"]
    assert sorted(stats["raw_scores"]["dpo"][task]) == pytest.approx(expect)
    assert set(stats["probability_of_improvement"]) == {"dpo,ippo"}
    for name in ("aggregates.png", "performance_profile.png",
                 "probability_of_improvement.png", f"curves_{out.name}.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_score_episode_masks_the_steps_after_the_end():
    rewards = np.arange(12, dtype=np.float32).reshape(6, 2)  # [T, N]
    ended_at = 3
    done = np.arange(6) >= ended_at  # cumulative, as policy_episode returns it
    won = np.array([0, 0, 0, 1, 0, 0], np.float32)
    out = evaluate.score_episode(jnp.asarray(rewards), jnp.asarray(done),
                                 {"won": jnp.asarray(won), "grid": jnp.zeros((6, 2))})
    assert float(out["episode_return"]) == pytest.approx(rewards[:4].mean(-1).sum())
    assert float(out["episode_length"]) == 4 and float(out["won"]) == 1.0
    assert "grid" not in out  # only per-episode scalars
    never = evaluate.score_episode(jnp.asarray(rewards), jnp.zeros(6, bool), {})
    assert float(never["episode_length"]) == 6
    assert float(never["episode_return"]) == pytest.approx(rewards.mean(-1).sum())


def _gl_backend_works(backend: str) -> bool:
    """Does ``mujoco.Renderer`` open under ``MUJOCO_GL=backend``? Asked of MuJoCo in
    a child process (a failed context can abort the process that tried)."""
    code = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco/>'); "
            "mujoco.Renderer(m, 8, 8).close()")
    env = {**os.environ, "MUJOCO_GL": backend}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          timeout=300).returncode == 0


def test_the_mujoco_renderer_draws_or_names_the_missing_gl_backend(tmp_path):
    """Drawn in a child process with the first backend that works: the test's own
    process (which imported mujoco through MJX) never opens a GL context, so a machine
    without OpenGL gets a message, not an abort."""
    env = dpo_jax.make_env("mamujoco_hopper_3x1")
    states = jax.jit(jax.vmap(lambda k: env.reset(k).state))(jax.random.split(jax.random.key(0), 3))
    working = [b for b in ("egl", "osmesa") if _gl_backend_works(b)]
    files, message = evaluate.render_mujoco(env, states, tmp_path / "hopper",
                                            backends=("egl", "osmesa"))
    if working:
        from PIL import Image
        assert len(files) == 1 and Image.open(files[0]).n_frames == 3, message
        assert f"MUJOCO_GL={working[0]}" in message
    else:
        assert files == [] and "MUJOCO_GL=egl" in message and "OpenGL" in message
    files, message = evaluate.render_mujoco(env, states, tmp_path / "none",
                                            backends=("no_such_backend",))
    assert files == [] and not (tmp_path / "none.gif").exists()
    assert "MUJOCO_GL=no_such_backend:" in message and "libosmesa" in message


def test_the_gl_backends_tried_follow_the_users_setting():
    from dpo_jax.running.mujoco_frames import candidate_backends

    assert candidate_backends({"MUJOCO_GL": "osmesa", "DISPLAY": ":0"}) == ("osmesa",)
    assert candidate_backends({"DISPLAY": ":0"}) == ("glfw", "egl", "osmesa")
    assert candidate_backends({}) == ("egl", "osmesa")


def _exit_message(capsys, argv):
    try:
        status = cli.main(argv)
    except SystemExit as stop:  # tyro's parse errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.parametrize("argv, words", [
    (["trian"], ["unknown command 'trian'", "train", "eval", "plot"]),
    (["train", "mpe_spred"], ["unknown environment 'mpe_spred'", "mpe_spread"]),
    (["train", "mpe_spread", "--algos", "dpo", "sac"], ["sac", "--algos", "ippo_kl", "iql"]),
    (["train", "mpe_spread", "--num-envs", "0"], ["num_envs=0", "positive int"]),
    (["train", "mpe_spread", "--sqrt-kl-form", "root"], ["root", "sqrt_of_mean"]),
    (["train", "mpe_spread", "--preset", "gpu"], ["--preset", "paper", "cpu", "jaxmarl"]),
    (["train", "mpe_spread", "--env-arg", "num_agent=3"], ["num_agent", "num_agents"]),
    (["train", "mpe_spread", "--env-arg", "num_agents"], ["--env-arg", "KEY=VALUE"]),
    (["train", "mpe_spread", "--bogus", "1"], ["Unrecognized", "--bogus"]),
    (["train", "mpe_spread", "--log", "mlflow"], ["mlflow", "tensorboard", "wandb"]),
    (["train", "mpe_spread", "--d-targets", "-1"], ["d_target=-1", "> 0"]),
    (["train", "mpe_spread", "--stop-after", "0"], ["--stop-after 0", ">= 1"]),
    (["train", "mpe_spread", "--algos", "dpo", "iql", "--shard", "envs"],
     ["--shard envs", "IQL"]),
    (["eval", "/nonexistent/job"], ["spec.json", "dpo-jax train"]),
    (["plot", "/nonexistent/job"], ["spec.json"]),
    (["plot", "/x", "--normalization", "zscore"], ["zscore", "reference"]),
])
def test_bad_flags_are_named_with_the_allowed_values(capsys, argv, words):
    status, text = _exit_message(capsys, argv)
    assert status == 2
    flat = " ".join(text.split()).replace("│", "")
    flat = " ".join(flat.split())
    for word in words:
        assert word in flat, (word, flat)


def test_job_folder_misuse_is_refused(capsys, job, tmp_path):
    out, _, _ = job
    status, text = _exit_message(capsys, ["train", "mpe_spread", *SMALL, "--out", str(out)])
    assert status == 2 and "already holds a job" in text and "--resume" in text
    changed = [*SMALL, "--out", str(out), "--resume", "--seed", "5"]
    status, text = _exit_message(capsys, ["train", "mpe_spread", *changed])
    assert status == 2 and "seed: saved 0, now 5" in text  # the field and both values


def test_presets_set_the_config_defaults_and_flags_override_them():
    paper = cli.parse_train(["smax_3m"])
    assert cli.train_config(paper) == dpo_jax.paper_config("smax")
    assert paper.d_targets == (0.02,)  # the family's d_target, shown in --help too
    cpu = cli.parse_train(["mpe_line", "--preset", "cpu", "--hidden-size", "32"])
    assert cli.train_config(cpu) == dpo_jax.paper_config(
        "mpe", **{**dpo_jax.config.CPU_BATCH, "hidden_size": 32})
    jm = cli.parse_train(["mpe_spread", "--preset", "jaxmarl"])
    assert cli.train_config(jm) == dpo_jax.jaxmarl_ippo_config(d_target=0.01)
    authors = cli.parse_train(["smax_3m", "--preset", "authors", "--algos", "dpo", "ippo"])
    assert cli.train_config(authors) == dpo_jax.preset("authors", "smax_3m")
    assert authors.algos == ("dpo", "ippo")
    assert cli.parse_env_args(["num_agents=3", "team_reward=True", "name=abc"]) == {
        "num_agents": 3, "team_reward": True, "name": "abc"}


def test_every_config_field_is_a_flag_and_the_algo_choices_match(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    import dataclasses
    import re
    flags = set(re.findall(r"(--[a-z0-9-]+)", text))
    for field in dataclasses.fields(dpo_jax.TrainConfig):
        if field.name in ("algo", "d_target"):  # set per entry: --algos, --d-targets
            assert "--" + field.name.replace("_", "-") not in flags
            continue
        assert "--" + field.name.replace("_", "-") in flags, field.name
    assert {"--algos", "--d-targets", "--cpu-devices"} <= flags
    import typing
    assert set(typing.get_args(cli.Algo)) == set(dpo_jax.ALGORITHMS + dpo_jax.BASELINE_ALGORITHMS)
    assert cli.main(["envs"]) == 0
    listing = capsys.readouterr().out
    assert "mpe_spread" in listing and "num_agents=5" in listing


def test_runspec_plan_layout():
    cfg = dpo_jax.TrainConfig(total_timesteps=1000, num_envs=4, num_steps=25)
    spec = runspec.RunSpec("mpe_spread", {"num_agents": 2}, cfg,
                           algos=("dpo", "ippo", "iql"), d_targets=(0.1, 1.0), seeds=3)
    assert runspec.RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    pg, iql = runspec.plan(spec)
    assert [(e.algo, e.d_target) for e in runspec.entries(spec)] == [
        ("dpo", 0.1), ("dpo", 1.0), ("ippo", None)]
    assert len(pg.labels) == 9 and pg.keys.shape == (9,)
    np.testing.assert_array_equal(np.asarray(pg.obj.d_target)[:6],
                                  np.float32([0.1] * 3 + [1.0] * 3))
    np.testing.assert_array_equal(np.asarray(pg.obj.use_clip), [0] * 6 + [1] * 3)
    # common random numbers: every entry reuses the same seed keys
    data = np.asarray(jax.random.key_data(pg.keys))
    np.testing.assert_array_equal(data[:3], data[3:6])
    assert iql.name == "iql" and iql.obj is None
    assert iql.config == dpo_jax.IQLConfig(total_timesteps=1000, num_envs=4)
    with pytest.raises(ValueError, match="twice"):
        runspec.RunSpec("mpe_spread", {}, cfg, algos=("dpo", "dpo"))


@pytest.mark.parametrize("algo", ["iql", "iddpg"])
def test_eval_of_saved_baselines_scores_like_a_plain_loop(tmp_path, algo):
    """IQL (GRU state and previous action carried) and IDDPG (deterministic actor)
    agents restored from their checkpoints; one greedy episode replayed in Python."""
    from dpo_jax.baselines import iddpg, iql

    out = tmp_path / algo
    if algo == "iql":
        task = ["stochastic_game_small", "--env-arg", "num_states=4", "episode_length=5",
                "--num-envs", "4", "--total-timesteps", "80"]
    else:
        task = ["continuous_reach", "--num-envs", "2", "--num-steps", "8",
                "--total-timesteps", "48"]
    assert cli.main(["train", *task, "--algos", algo, "--seeds", "2", "--hidden-size", "8",
                     "--checkpoint-every", "2", "--progress", "0", "--out", str(out)]) == 0
    assert evaluate.saved_programs(out) == [algo]
    pol = evaluate.load_policies(out, algo)
    scores = evaluate.evaluate(pol.env, pol.policy, pol.params, jax.random.key(3), 2)
    params = jax.tree.map(lambda x: x[1], pol.params)
    ep_key = jax.random.split(jax.random.split(jax.random.key(3), 2)[1], 2)[0]
    reset_key, steps_key = jax.random.split(ep_key)
    step = pol.env.reset(reset_key)
    cfg = pol.program.config
    if algo == "iql":
        net = iql.RNNQNetwork(pol.env.action_spec.num_actions, cfg.hidden_size)
        hidden = jnp.zeros((pol.env.num_agents, cfg.hidden_size))
        last = jnp.zeros((pol.env.num_agents, pol.env.action_spec.num_actions))
    else:
        nets = iddpg.make_networks(cfg, pol.env.action_spec)
    total = 0.0
    for k in jax.random.split(steps_key, pol.env.max_steps):
        if algo == "iql":
            hidden, q = iql.act(net, params, hidden, jnp.concatenate([step.obs, last], -1))
            action = jnp.argmax(jnp.where(step.avail_actions, q, -jnp.inf), -1)
            last = jax.nn.one_hot(action, pol.env.action_spec.num_actions)
        else:
            action = jnp.stack([nets.actor.apply(jax.tree.map(lambda x: x[i], params["actor"]),
                                                 step.obs[i])
                                for i in range(pol.env.num_agents)])
            action = jnp.clip(action, pol.env.action_spec.low, pol.env.action_spec.high)
        step = pol.env.step(jax.random.split(k)[1], step.state, action)
        total += float(np.mean(step.reward))
        if bool(step.terminated | step.truncated):
            break
    np.testing.assert_allclose(scores["episode_return"][1, 0], total, rtol=1e-5, atol=1e-6)
    assert cli.main(["eval", str(out), "--episodes", "2", "--stochastic"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert list(result["entries"]) == [algo]
    assert result["programs"][algo]["updates_done"] == dpo_jax.num_updates(cfg, pol.env)
