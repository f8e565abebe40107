"""The run axis sharded over devices gives the metrics of one device.

Forced CPU devices (``--xla_force_host_platform_device_count=4``) need a fresh
process, so the check runs as a subprocess script; it prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, os, warnings
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    import dpo_jax
    from dpo_jax import experiments

    assert len(jax.devices()) == 4, jax.devices()
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3,
                              num_epochs=2, hidden_size=8)
    report = {}
    for name, env in (("closure", dpo_jax.make_env("continuous_reach")),
                      ("pytree", dpo_jax.make_env("stochastic_game_small", num_states=4))):
        obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                                    for a in ("dpo", "ippo", "dpo", "ippo")])
        keys = experiments.stack_keys(0, 4)
        outs = {n: experiments.run(cfg, env, keys, obj=obj, progress=False,
                                   devices=jax.devices()[:n]) for n in (1, 4)}
        spread = {n: len(o.result.metrics["loss"].sharding.device_set) for n, o in outs.items()}
        diff = {n: max(float(np.max(np.abs(np.asarray(o.metrics[k], np.float64)
                                            - np.asarray(outs[1].metrics[k], np.float64))))
                       for k in ("loss", "kl", "beta_kl", "episode_return"))
                for n, o in outs.items()}
        report[name] = {"devices_used": spread, "max_abs_diff": diff}
        if name == "pytree":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                odd = experiments.run(cfg, env, keys[:3], progress=False,
                                      obj=jax.tree.map(lambda x: x[:3], obj),
                                      devices=jax.devices()[:2])
            report[name].update(
                padded_shape=list(np.shape(odd.metrics["loss"])),
                padded_diff=float(np.max(np.abs(odd.metrics["loss"]
                                                - outs[1].metrics["loss"][:3]))),
                warned=any("padded to 4" in str(w.message) for w in caught))
    print(json.dumps(report))
""")


def test_run_axis_sharding_matches_one_device():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for name, r in report.items():
        assert r["devices_used"] == {"1": 1, "4": 4}, (name, r)
        for n, diff in r["max_abs_diff"].items():
            assert diff <= 1e-5, (name, n, diff)
    padded = report["pytree"]  # 3 runs on 2 devices: padded to 4, the copy dropped
    assert padded["padded_shape"][0] == 3 and padded["padded_diff"] <= 1e-5, padded
    assert padded["warned"], padded
