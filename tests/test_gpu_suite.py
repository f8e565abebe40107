"""The GPU benchmark's own code, run small on whatever device the suite has
(``benchmarks/gpu_suite.py --smoke``): every part runs and writes its JSON."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke_runs_every_part(tmp_path):
    out = tmp_path / "gpu_suite.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DPO_JAX_CPU_DEVICES": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["smoke"] and "jax" in data and "device" in data
    (row,) = data["throughput"]
    assert row["dpo-jax DPO (independent)"]["env_steps_per_s"] > 0
    assert row["raw env"]["env_steps_per_s"] > 0
    paper = data["paper"]
    assert set(paper["curves"]) == {"dpo", "ippo"} and paper["updates"] >= 10
    assert len(paper["curves"]["dpo"]["mean"]) == paper["updates"]
    assert {r["task"] for r in data["large"]} == {"smax_3m", "mamujoco_hopper_3x1"}
