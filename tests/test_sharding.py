"""The run axis sharded over devices gives the metrics of one device.

Forced CPU devices (``--xla_force_host_platform_device_count=4``) need a fresh
process, so the check runs as a subprocess script; it prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, os, warnings
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    import dpo_jax
    from dpo_jax.running import experiments, results

    assert len(jax.devices()) == 4, jax.devices()
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3,
                              num_epochs=2, hidden_size=8)
    report = {}
    # a pytree env (an argument of the program, placed beside the keys); a closure
    # env (MPE) is sharded in the env-axis test and the CLI test below
    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                                for a in ("dpo", "ippo", "dpo", "ippo")])
    keys = experiments.stack_keys(0, 4)
    one = experiments.run(cfg, env, keys, obj=obj, progress=False, devices=jax.devices()[:1])
    four = experiments.run(cfg, env, keys, obj=obj, progress=False, devices=jax.devices())
    report["devices_used"] = [len(o.result.metrics["loss"].sharding.device_set)
                              for o in (one, four)]
    report["max_abs_diff"] = max(
        float(np.max(np.abs(np.asarray(four.metrics[k], np.float64)
                            - np.asarray(one.metrics[k], np.float64))))
        for k in ("loss", "kl", "beta_kl", "episode_return"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        odd = experiments.run(cfg, env, keys[:3], progress=False,
                              obj=jax.tree.map(lambda x: x[:3], obj),
                              devices=jax.devices()[:2])
    report.update(
        padded_shape=list(np.shape(odd.metrics["loss"])),
        padded_diff=float(np.max(np.abs(odd.metrics["loss"] - one.metrics["loss"][:3]))),
        warned=any("padded to 4" in str(w.message) for w in caught))
    # 5 runs on 4 devices: balanced on 3 (2 + 2 + 1 and one padded copy), not 4
    five = experiments.place(cfg, env, experiments.stack_keys(0, 5), None, 5,
                             jax.devices(), "runs")
    report["five_runs"] = [len(five.devices), five.padded]
    print(json.dumps(report))
""")


def test_run_axis_sharding_matches_one_device():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices_used"] == [1, 4], report
    assert report["max_abs_diff"] <= 1e-5, report
    # 3 runs on 2 devices: padded to 4, the copy dropped
    assert report["padded_shape"][0] == 3 and report["padded_diff"] <= 1e-5, report
    assert report["warned"], report
    assert report["five_runs"] == [3, 6], report


ENV_AXIS_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    import dpo_jax
    from dpo_jax.parallel import sharding
    from dpo_jax.running import experiments

    env = dpo_jax.make_env("mpe_spread", num_agents=3)
    keys = experiments.stack_keys(0, 2)
    report = {}
    for share in (False, True):
        cfg = dpo_jax.TrainConfig(num_envs=8, num_steps=8, total_timesteps=8 * 8 * 3,
                                  num_epochs=2, num_minibatches=2, hidden_size=8,
                                  share_params=share)
        outs = {n: experiments.run(cfg, env, keys, progress=False, shard="envs",
                                   devices=jax.devices()[:n]) for n in (1, 4)}
        rel = {k: [float(np.max(np.abs(outs[4].metrics[k] - outs[1].metrics[k]))),
                   float(np.max(np.abs(outs[1].metrics[k])))]
               for k in ("loss", "kl", "beta_kl", "step_reward", "grad_norm",
                         "explained_variance")}
        report[str(share)] = {"diff_and_scale": rel}
    # the program really is data-parallel: the env batch lives on 4 devices and the
    # minibatch gradients are joined by all-reduces
    constrain = sharding.env_constraint(jax.devices())
    train = dpo_jax.make_train(cfg, env, env_constraint=constrain)
    hlo = jax.jit(train).lower(keys[0]).compile().as_text()
    report["all_reduces"] = hlo.count("all-reduce(")
    try:
        experiments.run(dpo_jax.TrainConfig(num_envs=6, num_steps=8,
                                            total_timesteps=6 * 8), env, keys,
                        progress=False, shard="envs")
        report["error"] = None
    except ValueError as err:
        report["error"] = str(err)
    print(json.dumps(report))
""")


def test_env_axis_sharding_matches_one_device():
    """``shard="envs"`` on 4 forced CPU devices gives the one-device run with the
    same ``num_envs`` (shared and independent parameters), compiles to a program
    with gradient all-reduces, and names ``num_envs`` when it does not divide."""
    out = subprocess.run([sys.executable, "-c", ENV_AXIS_SCRIPT], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["all_reduces"] > 0, report
    for share in ("False", "True"):
        r = report[share]
        for k, (diff, scale) in r["diff_and_scale"].items():
            assert diff <= 1e-5 + 1e-4 * scale, (share, k, diff, scale)
    assert "num_envs = 6 over 4 devices" in report["error"], report["error"]


CHUNKED_STATE_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    import dpo_jax
    from jax.sharding import PartitionSpec
    from dpo_jax.baselines.config import IQLConfig
    from dpo_jax.running import experiments, program_cache

    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = IQLConfig(num_envs=2, total_timesteps=2 * env.max_steps * 3, buffer_size=400,
                    batch_size=4, hidden_size=8)
    keys = experiments.stack_keys(0, 4)
    one = experiments.run(cfg, env, keys, progress=False, devices=jax.devices()[:1])
    program_cache.clear()
    four = experiments.run(cfg, env, keys, progress=False, devices=jax.devices(),
                           chunk_updates=1)
    (init_key, init), (run_key, run) = program_cache.entries()
    assert (init_key[0], run_key[0]) == ("init", "run"), (init_key[0], run_key[0])
    specs = {str(s.spec) for s in jax.tree.leaves(init.output_shardings)}
    specs |= {str(s.spec) for s in jax.tree.leaves(run.input_shardings[0][0])}
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(init.out_info))
    memory = run.memory_analysis()
    # the checkpoint digest, read shard by shard, against the whole arrays' bytes
    import hashlib
    from jax.sharding import Mesh, NamedSharding
    from dpo_jax.running import checkpoint
    mesh = Mesh(np.array(jax.devices()), ("runs",))
    x = jnp.arange(8 * 5 * 3, dtype=jnp.float32).reshape(8, 5, 3)
    tree = {"runs": jax.device_put(x, NamedSharding(mesh, PartitionSpec("runs"))),
            "replicated": jax.device_put(x, NamedSharding(mesh, PartitionSpec())),
            "scalar": jnp.float32(3.0), "keys": jax.random.split(jax.random.key(0), 4),
            "cols": jax.device_put(x, NamedSharding(mesh, PartitionSpec(None, None)))}
    reference = hashlib.sha256()
    for leaf in jax.tree.leaves(checkpoint._to_storable(tree)):
        whole = np.ascontiguousarray(np.asarray(leaf))
        reference.update(f"{whole.shape}{whole.dtype}".encode())
        reference.update(whole.tobytes())
    whole_digest = checkpoint.state_digest(tree)
    in_pieces = []
    for limit in (24, 130):  # a row (60 bytes) per piece; two rows per piece
        checkpoint.DIGEST_PIECE_BYTES = limit
        in_pieces.append(checkpoint.state_digest(tree) == reference.hexdigest())
    print(json.dumps({
        "digest_matches": whole_digest == reference.hexdigest(),
        "digest_in_pieces_matches": all(in_pieces),
        "specs": sorted(specs), "state_bytes": state_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        "max_abs_diff": max(float(np.nanmax(np.abs(
            np.asarray(four.metrics[k], np.float64) - np.asarray(one.metrics[k],
                                                                 np.float64))))
            for k in ("loss", "episode_return", "greedy_return"))}))
""")


def test_chunked_run_state_is_split_by_run_and_donated():
    """A chunked run on 4 devices keeps each run's state (a replay buffer here) on
    its own device only -- every leaf split along the run axis, not a replicated
    copy of all runs' buffers on every device -- and donates it to the chunk
    program, which updates it in place; the metrics are the one-device run's. The
    checkpoint digest, which reads such a state shard by shard, equals the SHA-256
    of the whole arrays' bytes."""
    out = subprocess.run([sys.executable, "-c", CHUNKED_STATE_SCRIPT],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["specs"] == ["P('runs',)"], report
    per_device = report["state_bytes"] / 4
    # the chunk program's state argument is one run's (plus the small env tables),
    # and its output reuses that memory
    assert report["argument_bytes"] < 1.5 * per_device, report
    assert report["alias_bytes"] >= 0.99 * per_device, report
    assert report["max_abs_diff"] <= 1e-5, report
    assert report["digest_matches"] and report["digest_in_pieces_matches"], report


MULTI_PROCESS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    pid, out_dir = int(sys.argv[1]), sys.argv[2]
    import jax, numpy as np
    import dpo_jax
    from dpo_jax.running import experiments, results, scripts

    scripts.setup()  # joins the run: the DPO_JAX_* variables are set

    assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3,
                              num_epochs=2, hidden_size=8)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                                for a in ("dpo", "ippo", "dpo")])
    runs = experiments.run(cfg, env, experiments.stack_keys(0, 3), obj=obj,
                           progress=False)  # 3 runs padded to 4 over both hosts
    envs = experiments.run(cfg, env, experiments.stack_keys(0, 1), progress=False,
                           shard="envs")
    results.save_metrics(out_dir, "runs", runs.metrics, {"process": pid})
    results.save_metrics(out_dir, "envs", envs.metrics, {"process": pid})
    # checkpoints written by both processes into one folder, stopped and resumed
    ckpt = sys.argv[3]
    kw = dict(obj=obj, progress=False, checkpoint_dir=ckpt, checkpoint_every=2)
    experiments.run(cfg, env, experiments.stack_keys(0, 3), stop_after=2, **kw)
    resumed = experiments.run(cfg, env, experiments.stack_keys(0, 3), resume=True, **kw)
    results.save_metrics(out_dir, "resumed", resumed.metrics, {"process": pid})
""")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    """Two ``jax.distributed`` processes on localhost (2 CPU devices each, gloo
    collectives) give the single-process metrics, in both shard modes and for a
    checkpointed run stopped and resumed; each process gets all the results and
    only process 0 writes them."""
    import dpo_jax
    from dpo_jax.running import experiments

    import os

    address = f"localhost:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", MULTI_PROCESS_SCRIPT, str(pid),
                               str(tmp_path / f"p{pid}"), str(tmp_path / "ckpt")],
                              env={**os.environ, "DPO_JAX_COORDINATOR": address,
                                   "DPO_JAX_NUM_PROCESSES": "2",
                                   "DPO_JAX_PROCESS_ID": str(pid)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    assert not (tmp_path / "p1").exists()  # process 1 wrote nothing

    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3,
                              num_epochs=2, hidden_size=8)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                                for a in ("dpo", "ippo", "dpo")])
    reference = {
        "runs": experiments.run(cfg, env, experiments.stack_keys(0, 3), obj=obj,
                                progress=False).metrics,
        "envs": experiments.run(cfg, env, experiments.stack_keys(0, 1),
                                progress=False).metrics,
    }
    reference["resumed"] = reference["runs"]
    for name, ref in reference.items():
        saved = json.loads((tmp_path / "p0" / f"{name}.json").read_text())["metrics"]
        for k in ("loss", "kl", "beta_kl", "optimality_ratio"):
            got = np.asarray(saved[k], np.float64)
            assert got.shape == ref[k].shape, (name, k, got.shape, ref[k].shape)
            np.testing.assert_allclose(got, ref[k], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name}: {k}")


def test_distributed_variables_are_checked():
    """``DPO_JAX_*`` variables: unset does nothing, ``auto`` defers to JAX's cluster
    detection, host:port needs both counts, and each mistake names its variable."""
    import pytest

    from dpo_jax.parallel.distributed import distributed_args, initialize_from_environment

    assert distributed_args({}) is None
    assert initialize_from_environment({}) is False
    assert distributed_args({"DPO_JAX_COORDINATOR": "auto", "SLURM_JOB_ID": "7"}) == {
        "initialization_timeout": 120}
    assert distributed_args({"DPO_JAX_COORDINATOR": "h:1", "DPO_JAX_NUM_PROCESSES": "2",
                             "DPO_JAX_PROCESS_ID": "1", "DPO_JAX_INIT_TIMEOUT": "30"}) == {
        "coordinator_address": "h:1", "num_processes": 2, "process_id": 1,
        "initialization_timeout": 30}
    bad = [({"DPO_JAX_COORDINATOR": "host"}, "host:port"),
           ({"DPO_JAX_COORDINATOR": "localhost:notaport", "DPO_JAX_NUM_PROCESSES": "2",
             "DPO_JAX_PROCESS_ID": "0"}, "the port 'notaport' is not a number"),
           ({"DPO_JAX_COORDINATOR": "h:70000"}, "the port '70000'"),
           ({"DPO_JAX_COORDINATOR": "auto"}, "none is set"),
           ({"DPO_JAX_COORDINATOR": "h:1", "DPO_JAX_INIT_TIMEOUT": "soon"},
            "DPO_JAX_INIT_TIMEOUT='soon'"),
           ({"DPO_JAX_COORDINATOR": "h:1", "DPO_JAX_PROCESS_ID": "0"},
            "DPO_JAX_NUM_PROCESSES must be set"),
           ({"DPO_JAX_COORDINATOR": "h:1", "DPO_JAX_NUM_PROCESSES": "two",
             "DPO_JAX_PROCESS_ID": "0"}, "DPO_JAX_NUM_PROCESSES='two'"),
           ({"DPO_JAX_COORDINATOR": "h:1", "DPO_JAX_NUM_PROCESSES": "2",
             "DPO_JAX_PROCESS_ID": "2"}, "DPO_JAX_PROCESS_ID=2 must lie in [0")]
    for environ, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            distributed_args(environ)


def test_shard_mode_errors_name_the_problem():
    import pytest

    import dpo_jax
    from dpo_jax.running import experiments

    env = dpo_jax.make_env("continuous_reach")
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=32)
    with pytest.raises(ValueError, match="shard='env'"):
        experiments.run(cfg, env, experiments.stack_keys(0, 1), progress=False,
                        shard="env")
    with pytest.raises(ValueError, match='shard="envs" supports the policy-gradient'):
        experiments.run(dpo_jax.TrainConfig(algo="iddpg", num_envs=4, num_steps=8,
                                            total_timesteps=320), env,
                        experiments.stack_keys(0, 1), progress=False, shard="envs")
