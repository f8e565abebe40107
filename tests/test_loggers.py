"""Host-side loggers: JSONL / CSV rows (and their truncation on resume), TensorBoard
event files read back with an independent TFRecord reader, W&B offline runs, the
progress bar; and ``experiments.run`` feeding them chunk by chunk."""

from __future__ import annotations

import csv
import io
import json
import struct

import numpy as np
import pytest

import dpo_jax
from dpo_jax.running import experiments, loggers, progress

LABELS = [{"algo": "dpo", "d_target": 0.01, "seed": 0},
          {"algo": "ippo", "d_target": None, "seed": 0}]


def _chunk(first, count, runs=2, agents=3):
    updates = np.arange(first, first + count)
    ret = np.stack([updates * 1.0 + r for r in range(runs)]).astype(np.float32)
    kl = np.broadcast_to(ret[..., None] / 10, (runs, count, agents)).copy()
    if first == 0:
        ret[0, 0] = np.nan  # no episode finished yet
    return {"update": np.stack([updates] * runs), "episode_return": ret, "kl": kl,
            "env_steps": np.stack([(updates + 1) * 100] * runs).astype(np.int64)}


def test_jsonl_and_csv_rows_and_their_rebuild_from_the_checkpoint_history(tmp_path):
    logs = [loggers.JsonlLogger(tmp_path / "m.jsonl", LABELS),
            loggers.CsvLogger(tmp_path / "m.csv", LABELS)]
    for log in logs:
        log.start(0)
        log.write(0, _chunk(0, 3))
    # a stop after update 2 with a checkpoint after update 1: resume from 2, the
    # checkpoint's metrics of updates 0-1 as history; row 2 of the first process goes
    for log in logs:
        log.start(2, _chunk(0, 2))
        log.write(2, _chunk(2, 2))
    rows = loggers.read_jsonl(tmp_path / "m.jsonl")
    assert [(r["run"], r["update"]) for r in rows] == [
        (0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]
    assert rows[0]["episode_return"] is None  # NaN as null: valid JSON
    assert rows[1] == {"run": 1, "algo": "ippo", "d_target": None, "seed": 0, "update": 0,
                       "episode_return": 1.0, "kl": [0.1, 0.1, 0.1], "env_steps": 100}
    with (tmp_path / "m.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["update"]) for r in table] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert table[7]["algo"] == "ippo" and table[7]["d_target"] == ""
    assert float(table[7]["kl"]) == pytest.approx(0.4)  # mean over the 3 agents
    assert table[0]["episode_return"] == "nan"
    # a crash after a checkpoint at 3 but before its rows were written: the resume
    # writes them from the checkpoint's history
    for log in logs:
        log.start(0)
        log.write(0, _chunk(0, 1))
        log.start(3, _chunk(0, 3))
    rows = loggers.read_jsonl(tmp_path / "m.jsonl")
    assert [r["update"] for r in rows] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="3 runs are labelled"):
        loggers.JsonlLogger(tmp_path / "x.jsonl", LABELS + LABELS[:1]).write(0, _chunk(0, 1))


def test_kept_rows_of_an_earlier_version_take_todays_columns(tmp_path):
    """Rows kept on resume (their checkpoint metrics lost) were written by a version
    without ``grad_norm`` and with ``old``: they are restated under today's columns,
    by name, instead of being left under a header that the new rows do not match."""
    earlier = {**_chunk(0, 3), "old": np.ones((2, 3), np.float32)}
    logs = [loggers.JsonlLogger(tmp_path / "m.jsonl", LABELS),
            loggers.CsvLogger(tmp_path / "m.csv", LABELS)]
    for log in logs:
        log.start(0)
        log.write(0, earlier)

    def today(first, count):
        return {**_chunk(first, count), "grad_norm": np.full((2, count), 5.0, np.float32)}
    history = today(0, 3)
    history["episode_return"][:, 1] = np.nan  # update 1: lost, kept from the files
    for log in logs:
        log.start(3, history, lost=[(1, 2)])
        log.write(3, today(3, 1))
    with (tmp_path / "m.csv").open() as f:
        lines = list(csv.reader(f))
    header, table = lines[0], [dict(zip(lines[0], line)) for line in lines[1:]]
    assert all(len(line) == len(header) for line in lines)
    assert "old" not in header and "grad_norm" in header
    assert [r["grad_norm"] for r in table if r["update"] == "1"] == ["nan", "nan"]
    assert [r["grad_norm"] for r in table if r["update"] == "3"] == ["5", "5"]
    assert [r["episode_return"] for r in table if r["update"] == "1"] == ["1", "2"]
    assert [float(r["kl"]) for r in table if r["update"] == "1"] == pytest.approx([0.1, 0.2])
    rows = loggers.read_jsonl(tmp_path / "m.jsonl")
    kept = [r for r in rows if r["update"] == 1]
    assert [r["episode_return"] for r in kept] == [1.0, 2.0]
    assert all(r["grad_norm"] is None and "old" not in r for r in kept)
    assert [list(r) for r in kept] == [list(r) for r in rows if r["update"] == 3]
    # rows that cannot be restated are refused, not appended under another header
    csv_log = loggers.CsvLogger(tmp_path / "m.csv", LABELS)
    with pytest.raises(ValueError, match="has the header"):
        csv_log.write(4, earlier)


def _tfrecords(path):
    """Records of a TFRecord file: u64 length, u32 crc, data, u32 crc."""
    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        yield data[at + 12:at + 12 + length]
        at += 12 + length + 4


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2

    log = loggers.TensorBoardLogger(tmp_path, LABELS)
    log.start(0)
    log.write(0, _chunk(0, 3))
    log.close()
    for r, lab in enumerate(LABELS):
        (events,) = (tmp_path / loggers.run_name(lab)).glob("events.out.tfevents.*")
        scalars = {}
        for record in _tfrecords(events):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
        expect = _chunk(0, 3)
        for u in range(3):
            if np.isfinite(expect["episode_return"][r, u]):
                assert scalars["episode_return"][u] == pytest.approx(
                    expect["episode_return"][r, u])
            assert scalars["kl"][u] == pytest.approx(expect["kl"][r, u].mean(), rel=1e-6)
        assert 0 not in scalars["episode_return"] or r == 1  # NaN is not logged


def test_wandb_offline_runs_and_resume_reuses_them(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = loggers.WandbLogger(tmp_path, LABELS, config={"env": "test"})
    log.start(0)
    log.write(0, _chunk(0, 2))
    log.close()
    ids = json.loads((tmp_path / "wandb_ids.json").read_text())
    assert set(ids) == {"dpo_d0p01_s0", "ippo_s0"}
    runs = sorted(p.name for p in (tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(any(i in name for name in runs) for i in ids.values())
    again = loggers.WandbLogger(tmp_path, LABELS)
    again.start(2, _chunk(0, 2))
    assert again.run_ids == [ids["dpo_d0p01_s0"], ids["ippo_s0"]]
    again.close()


def test_progress_bar_on_request_and_plain_lines_otherwise():
    def feed(printer):  # three chunks of one update, 2 runs
        for u in range(3):
            printer.update(u, {"update_steps": np.full((2, 1), 10),
                               "env_steps": np.full((2, 1), (u + 1) * 10),
                               "episode_return": np.full((2, 1), -float(u)),
                               "kl": np.array([[[0.1, 0.3]], [[0.1, 0.3]]])}, 0.5)

    lines = io.StringIO()
    feed(progress.ProgressPrinter(2, 3, lines))  # not a terminal: lines
    text = lines.getvalue().splitlines()
    assert len(text) == 3 and text[-1].startswith("update     3/3") and "kl 0.2000" in text[-1]
    assert "steps/s        40" in text[-1]  # 2 runs x 10 steps in 0.5 s
    bar = io.StringIO()
    feed(progress.ProgressPrinter(2, 3, bar, bar=True))
    out = bar.getvalue()
    assert "3/3" in out and "return=-2.000" in out and "update     1/3" not in out


def test_a_chunked_run_is_one_program_without_host_callbacks():
    """Progress and logs come from the host between chunks, so the compiled chunk
    program has no host callback (XLA's persistent cache can keep it)."""
    import jax
    import jax.numpy as jnp

    from dpo_jax.training.trainer import make_trainer

    env = dpo_jax.make_env("stochastic_game_small", num_states=4)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=4, total_timesteps=2 * 4 * 5, hidden_size=8)
    trainer = make_trainer(cfg, env, 2)
    state = jax.vmap(trainer.init, in_axes=(0, None, None))(
        experiments.stack_keys(0, 2), None, env)
    text = jax.jit(jax.vmap(trainer.run, in_axes=(0, None, None, None))).lower(
        state, jnp.int32(0), None, env).as_text()
    assert "callback" not in text.lower()
    lines = io.StringIO()
    out = experiments.run(cfg, env, experiments.stack_keys(0, 2), progress=2, stream=lines)
    assert [line.split()[1] for line in lines.getvalue().splitlines()] == ["2/5", "4/5", "5/5"]
    assert out.metrics["loss"].shape[1] == 5
