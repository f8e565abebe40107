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
    def feed(printer):
        for u in range(3):
            for r in range(2):
                printer({"update": np.int32(u), "env_steps": np.float32((u + 1) * 10),
                         "episode_return": np.float32(-u), "kl": np.float32([0.1, 0.3])})

    lines = io.StringIO()
    feed(progress.ProgressPrinter(2, 3, 1, lines))  # not a terminal: lines
    text = lines.getvalue().splitlines()
    assert len(text) == 3 and text[-1].startswith("update     3/3") and "kl 0.2000" in text[-1]
    bar = io.StringIO()
    feed(progress.ProgressPrinter(2, 3, 1, bar, bar=True))
    out = bar.getvalue()
    assert "3/3" in out and "return=-2.000" in out and "update     1/3" not in out


def test_run_feeds_loggers_each_chunk_with_the_metrics_of_the_run(tmp_path):
    # chunks equal the one-piece run: tests/test_checkpoint.py and tests/test_cli.py
    env = dpo_jax.make_env("mpe_spread", num_agents=2)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=8, total_timesteps=2 * 8 * 5,
                              num_epochs=1, num_minibatches=1, hidden_size=8)
    keys = experiments.stack_keys(0, 2)

    class Recorder(loggers.Logger):
        def __init__(self):
            super().__init__([{"seed": 0}, {"seed": 1}])
            self.calls = []

        def start(self, first_update, history=None):
            self.calls.append(("start", first_update))

        def write(self, first_update, metrics):
            self.calls.append(("write", first_update, {k: v.copy() for k, v in metrics.items()}))

        def close(self):
            self.calls.append(("close",))

    rec = Recorder()
    chunked = experiments.run(cfg, env, keys, progress=False, chunk_updates=2, loggers=[rec])
    assert [c[:2] for c in rec.calls] == [("start", 0), ("write", 0), ("write", 2),
                                          ("write", 4), ("close",)]
    for name, value in chunked.metrics.items():
        logged = np.concatenate([c[2][name] for c in rec.calls if c[0] == "write"], axis=1)
        np.testing.assert_array_equal(logged, value, err_msg=name)
    with pytest.raises(ValueError, match="name the same chunk size"):
        experiments.run(cfg, env, keys, progress=False, chunk_updates=2, checkpoint_every=3)


def test_a_missing_logger_package_is_named_with_its_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(loggers.LOGGER_PACKAGES, "wandb", "no_such_package_xyz")
    with pytest.raises(ImportError, match=r'pip install "dpo-jax\[wandb\]"'):
        loggers.make_loggers(tmp_path, LABELS, ["wandb"])
    with pytest.raises(ValueError, match="unknown logger"):
        loggers.check_extras(["mlflow"])
