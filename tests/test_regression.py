"""Rework must not change results: small fixed runs against metrics recorded with
earlier trainers (``tests/data/regression_mpe_spread.json``: shared and independent
IPPO/DPO recorded with commit 8aa48f8; ``dpo_raising_beta``, where eq. 20 doubles the
betas at every update, with commit b52f2e3). Tolerances allow float summation-order
differences only."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

import dpo_jax

RECORD = json.loads((pathlib.Path(__file__).parent / "data" /
                     "regression_mpe_spread.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORD["cases"]))
def test_metrics_match_the_recorded_run(name):
    case = RECORD["cases"][name]
    env = dpo_jax.make_env("mpe_spread", num_agents=3)
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4,
                              num_epochs=3, hidden_size=32, **case["config"])
    res = jax.jit(dpo_jax.make_train(cfg, env))(jax.random.key(7))
    for key, recorded in case["metrics"].items():
        np.testing.assert_allclose(np.asarray(res.metrics[key], np.float64),
                                   np.asarray(recorded), rtol=2e-4, atol=2e-6,
                                   err_msg=f"{name}: {key}")


def test_the_raising_case_raises_the_betas():
    betas = np.asarray(RECORD["cases"]["dpo_raising_beta"]["metrics"]["beta_kl"])[:, 0]
    np.testing.assert_allclose(betas, [0.01, 0.02, 0.04, 0.08], rtol=1e-6)
