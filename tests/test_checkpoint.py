"""Chunked training with orbax checkpoints: a run stopped after K updates and
resumed gives exactly the metrics of the uninterrupted run (same keys, CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import checkpoint, experiments


def _setup(name):
    if name == "closure":
        env = dpo_jax.make_env("mpe_spread", num_agents=3)
    else:  # a pytree env, passed to the program as an argument
        env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = dpo_jax.TrainConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 5,
                              num_epochs=2, num_minibatches=2, hidden_size=16)
    obj = dpo_jax.stack_params([dpo_jax.objective_params(cfg, env.num_agents, algo=a)
                                for a in ("dpo", "ippo")])
    return cfg, env, experiments.stack_keys(3, 2), obj


def _assert_same(a, b):
    assert set(a.metrics) == set(b.metrics)
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    for x, y in zip(jax.tree.leaves(a.result.agents), jax.tree.leaves(b.result.agents)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    # a pytree env (an argument of the program); a closure env (MPE) is covered by
    # tests/test_cli.py, whose stopped and resumed job logs the one-piece run's metrics
    cfg, env, keys, obj = _setup("pytree")
    whole = experiments.run(cfg, env, keys, obj=obj, progress=False)
    assert whole.metrics["loss"].shape[1] == 5
    # stopped after 2 updates, then resumed: chunks of 2 and 1 from the checkpoint
    first = experiments.run(cfg, env, keys, obj=obj, progress=False,
                            checkpoint_dir=tmp_path / "b", checkpoint_every=2,
                            stop_after=2)
    assert first.metrics["loss"].shape[1] == 2
    resumed = experiments.run(cfg, env, keys, obj=obj, progress=False,
                              checkpoint_dir=tmp_path / "b", checkpoint_every=2,
                              resume=True)
    _assert_same(whole, resumed)
    assert checkpoint.checkpoints(tmp_path / "b") == [2, 4, 5]


def test_checkpoint_misuse_is_refused(tmp_path):
    cfg, env, keys, obj = _setup("closure")
    experiments.run(cfg, env, keys, obj=obj, progress=False, checkpoint_dir=tmp_path,
                    checkpoint_every=5, stop_after=5)
    with pytest.raises(ValueError, match="already holds a run"):
        experiments.run(cfg, env, keys, obj=obj, progress=False, checkpoint_dir=tmp_path)
    other = dpo_jax.TrainConfig(**{**cfg.__dict__, "entropy_coef": 0.02})
    with pytest.raises(ValueError, match="belongs to another run.*config"):
        experiments.run(other, env, keys, obj=obj, progress=False,
                        checkpoint_dir=tmp_path, checkpoint_every=5, resume=True)
    with pytest.raises(ValueError, match="belongs to another run.*keys"):
        experiments.run(cfg, env, experiments.stack_keys(4, 2), obj=obj, progress=False,
                        checkpoint_dir=tmp_path, checkpoint_every=5, resume=True)
    with pytest.raises(ValueError, match="need checkpoint_dir"):
        experiments.run(cfg, env, keys, obj=obj, progress=False, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every=0"):
        experiments.run(cfg, env, keys, obj=obj, progress=False,
                        checkpoint_dir=tmp_path / "new", checkpoint_every=0)


@pytest.mark.parametrize("algo", ["iql", "iddpg"])
def test_baselines_stopped_and_resumed_equal_the_uninterrupted_run(tmp_path, algo):
    """The state (agents, replay buffer, envs, step count, key) is saved whole."""
    if algo == "iql":
        env = dpo_jax.make_env("stochastic_game_small", num_states=4, episode_length=5)
        cfg = dpo_jax.IQLConfig(total_timesteps=4 * 5 * 5, num_envs=4, batch_size=4,
                                buffer_size=16, hidden_size=8)
    else:
        env = dpo_jax.make_env("continuous_reach", num_agents=2)
        cfg = dpo_jax.IDDPGConfig(total_timesteps=2 * 8 * 5, num_envs=2, num_steps=8,
                                  batch_size=8, buffer_size=64, learning_starts=16,
                                  hidden_size=8)
    keys = experiments.stack_keys(1, 2)
    whole = experiments.run(cfg, env, keys, progress=False)
    assert whole.metrics["loss"].shape[1] == 5
    experiments.run(cfg, env, keys, progress=False, checkpoint_dir=tmp_path,
                    checkpoint_every=2, stop_after=2)
    resumed = experiments.run(cfg, env, keys, progress=False, checkpoint_dir=tmp_path,
                              checkpoint_every=2, resume=True)
    for k in whole.metrics:
        np.testing.assert_array_equal(whole.metrics[k], resumed.metrics[k], err_msg=k)
    for x, y in zip(jax.tree.leaves(whole.result.agents), jax.tree.leaves(resumed.result.agents)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_and_restore_keep_keys_and_zero_size_arrays(tmp_path):
    """orbax refuses zero-size arrays (MPE tasks' empty communication state): they
    are left out and rebuilt from the state restored into; None fields and typed
    keys round-trip."""
    state = {"w": jnp.arange(6.0).reshape(2, 3), "c": jnp.zeros((2, 5, 0)),
             "key": jax.random.split(jax.random.key(1), 2), "n": jnp.ones((2,), jnp.int32),
             "goal": None}  # a None field, as JaxMARL MPE states have
    checkpoint.save(tmp_path, 0, 3, state, {"loss": np.ones((2, 3))})
    like = jax.tree.map(jnp.zeros_like, state)
    restored, metrics = checkpoint.restore(tmp_path, 3, like, {"loss": np.zeros((2, 3))})
    np.testing.assert_array_equal(restored["w"], state["w"])
    np.testing.assert_array_equal(restored["n"], state["n"])
    assert restored["c"].shape == (2, 5, 0) and restored["goal"] is None
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]),
                                  jax.random.key_data(state["key"]))
    np.testing.assert_array_equal(metrics["loss"], np.ones((2, 3)))


def test_the_digest_reads_a_large_leaf_in_bounded_pieces():
    """``state_digest`` hashes a leaf in runs of whole rows of at most
    ``DIGEST_PIECE_BYTES`` (a row alone when larger), which together are the leaf's
    bytes in order, so a multi-GB replay buffer is never copied to the host whole."""
    from dpo_jax.running import checkpoint

    block = jnp.arange(10 * 4, dtype=jnp.float32).reshape(10, 4)  # 16-byte rows
    for limit, most_rows in ((40, 2), (16, 1), (10, 1), (10_000, 10)):
        pieces = [np.asarray(p) for p in checkpoint._row_pieces(block, limit)]
        assert max(len(p) for p in pieces) == most_rows
        np.testing.assert_array_equal(np.concatenate(pieces), np.asarray(block))
    scalar = jnp.float32(2.0)
    assert [np.asarray(p) for p in checkpoint._row_pieces(scalar, 1)] == [np.float32(2.0)]


def test_a_resume_reads_the_saved_state_into_shapes_not_into_a_second_state(tmp_path,
                                                                           monkeypatch):
    """The initial state is freed before the saved one is read: the restore target's
    arrays are shapes (typed keys, a few bytes, stay arrays), and the resumed run is
    the uninterrupted one."""
    cfg, env, keys, obj = _setup("pytree")
    whole = experiments.run(cfg, env, keys, obj=obj, progress=False)
    experiments.run(cfg, env, keys, obj=obj, progress=False, checkpoint_dir=tmp_path,
                    checkpoint_every=2, stop_after=2)
    targets = []
    real = checkpoint.restore_latest

    def spy(folder, like_state, *args, **kwargs):
        targets.append(like_state)
        return real(folder, like_state, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "restore_latest", spy)
    resumed = experiments.run(cfg, env, keys, obj=obj, progress=False,
                              checkpoint_dir=tmp_path, checkpoint_every=2, resume=True)
    _assert_same(whole, resumed)
    leaves = jax.tree.leaves(targets[0])
    shapes = [x for x in leaves if isinstance(x, jax.ShapeDtypeStruct)]
    arrays = [x for x in leaves if isinstance(x, jax.Array)]
    assert shapes and all(jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                          for x in arrays), [type(x) for x in leaves]
