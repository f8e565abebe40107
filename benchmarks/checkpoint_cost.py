"""What a checkpoint costs as a run grows: the time of each chunk's save and the
disk the checkpoint folder holds, over a run of ``--chunks`` chunks of one update.

    python benchmarks/checkpoint_cost.py --chunks 1000
    PYTHONPATH=OLD/src python benchmarks/checkpoint_cost.py --label before --out ...

Each save (``running.checkpoint.save``, or ``dpo_jax.checkpoint.save`` of a
checkout whose modules are not in subpackages, for a before/after comparison) is
timed; the table gives the mean save time over the first and the last 10% of
chunks, the slope per 100 chunks, and the folder's size at the end. The run: 8 runs
of DPO on ``mpe_spread`` (3 agents; 2 envs x 8 steps, 8 units: training is
negligible, the save is what is measured), ``checkpoint_every=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunks", type=int, default=1000)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--label", default="after")
    p.add_argument("--out", default="benchmarks/results/checkpoint_cost.json")
    return p.parse_args()


def folder_bytes(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    args = parse_args()
    import jax

    import dpo_jax
    try:  # this checkout
        from dpo_jax.running import checkpoint, experiments, scripts

        scripts.setup("1")
    except ImportError:  # a checkout from before the subpackages
        from dpo_jax import checkpoint, experiments
    durations: list[float] = []
    original = checkpoint.save

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = original(*a, **k)
        durations.append(time.perf_counter() - t0)
        return out

    checkpoint.save = timed
    env = dpo_jax.make_env("mpe_spread", num_agents=3)
    cfg = dpo_jax.TrainConfig(num_envs=2, num_steps=8, total_timesteps=2 * 8 * args.chunks,
                              num_epochs=1, hidden_size=8)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "ckpt"
        t0 = time.perf_counter()
        experiments.run(cfg, env, experiments.stack_keys(0, args.runs), progress=False,
                        checkpoint_dir=folder, checkpoint_every=1)
        wall = time.perf_counter() - t0
        size = folder_bytes(folder)
    d = np.asarray(durations)
    tenth = max(1, len(d) // 10)
    slope = np.polyfit(np.arange(len(d)), d, 1)[0] * 100
    row = {"command": "python benchmarks/checkpoint_cost.py " + " ".join(sys.argv[1:]),
           "code": "this checkout" if hasattr(checkpoint, "MANIFESTS") else
                   "a checkout from before per-chunk metrics (PYTHONPATH)",
           "chunks": len(d), "runs": args.runs, "wall_s": wall,
           "save_s_first_10pct": float(d[:tenth].mean()),
           "save_s_last_10pct": float(d[-tenth:].mean()),
           "save_s_total": float(d.sum()), "slope_s_per_100_chunks": float(slope),
           "folder_bytes_at_end": size, "save_s": d.round(5).tolist()}
    out = pathlib.Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.label] = row
    data.update({"command": "; ".join(  # each label's own run, as recorded in its row
                     f"{label}: {r['command']}" for label, r in data.items()
                     if isinstance(r, dict) and "command" in r),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                 "jax": jax.__version__, "date": time.strftime("%Y-%m-%d")})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(f"{args.label}: {len(d)} saves, first 10% {row['save_s_first_10pct'] * 1e3:.1f} ms, "
          f"last 10% {row['save_s_last_10pct'] * 1e3:.1f} ms, +{slope * 1e3:.2f} ms per 100 "
          f"chunks, folder {size / 2**20:.1f} MiB, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
