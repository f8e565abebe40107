"""The LAPACK-free orthogonal initialiser against numpy's QR and flax's initialiser,
and the training program's freedom from LAPACK calls (they deadlock XLA's CPU
runtime under vmap on jaxlib 0.10.2: see ``dpo_jax.core.initializers``)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

import dpo_jax
from dpo_jax.core.initializers import householder_qr, orthogonal


@pytest.mark.parametrize("shape", [(5, 3), (40, 7), (64, 64), (1, 1)])
def test_householder_qr_matches_numpy(shape):
    a = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    q, diag_r = jax.jit(householder_qr)(a)
    q_np, r_np = np.linalg.qr(a.astype(np.float64))
    # the thin QR is unique once R's diagonal is made positive
    q_pos = np.asarray(q) * np.sign(np.asarray(diag_r))
    np.testing.assert_allclose(q_pos, q_np * np.sign(np.diag(r_np)), atol=2e-5)
    np.testing.assert_allclose(np.abs(diag_r), np.abs(np.diag(r_np)), rtol=1e-4)


def test_householder_qr_rejects_wide_matrices():
    with pytest.raises(ValueError, match="rows >= columns"):
        householder_qr(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (128, 5), (3, 2, 4)])
@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_orthogonal_equals_flax_initialiser(shape, scale):
    key = jax.random.key(3)
    ours = np.asarray(orthogonal(scale)(key, shape))
    reference = np.asarray(nn.initializers.orthogonal(scale)(key, shape))
    assert ours.shape == shape
    np.testing.assert_allclose(ours, reference, atol=3e-4 * scale)
    flat = ours.reshape(-1, shape[-1]) / scale
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)


def test_training_program_has_no_lapack_calls():
    env = dpo_jax.make_env("stochastic_game_small")
    cfg = dpo_jax.TrainConfig(total_timesteps=2 * 8 * env.max_steps, num_envs=8)
    train = dpo_jax.make_train(cfg, env)
    keys = jax.random.split(jax.random.key(0), 3)
    hlo = jax.jit(jax.vmap(lambda k: train(k, None, env), in_axes=0)).lower(keys).as_text()
    assert "lapack" not in hlo.lower()
