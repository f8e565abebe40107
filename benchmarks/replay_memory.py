"""IDDPG replay-buffer memory per seed on multi-agent MuJoCo: full vs compact layout.

    python benchmarks/replay_memory.py                        # 1e6 transitions, all tasks
    python benchmarks/replay_memory.py --tasks mamujoco_humanoid_17x1 --buffer-size 100000

For each task and layout (``IDDPGConfig.compact_replay`` off / on) the script
allocates the flashbax buffer state on the default device, as training does, and
reports the bytes of its arrays and the growth of the process's resident memory
(``VmRSS``, CPU only) while it is alive. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import platform

import jax

import dpo_jax
from dpo_jax.baselines import replay
from dpo_jax.baselines.iddpg import empty_transition, replay_codec
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS
from dpo_jax.training.memory import proc_kib

TASKS = sorted(f"mamujoco_{robot}_{partition}" for robot, partition in PAPER_TASKS.values())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--buffer-size", type=int, default=1_000_000)
    p.add_argument("--out", default="benchmarks/results/replay_memory.json")
    return p.parse_args()


def rss_bytes() -> int:
    """Resident memory of this process (0 where /proc is missing)."""
    return (proc_kib("/proc/self/status", "VmRSS") or 0) * 1024


def measure(env: dpo_jax.MultiAgentEnv, buffer_size: int, compact: bool) -> dict:
    """Allocate the buffer state of one seed and report its size."""
    cfg = dpo_jax.IDDPGConfig(buffer_size=buffer_size, compact_replay=compact)
    empty = empty_transition(env)
    store, _ = replay_codec(env, cfg)
    buffer = replay.make_item_buffer(cfg.buffer_size, cfg.batch_size)
    gc.collect()
    before = rss_bytes()
    state = jax.block_until_ready(jax.jit(lambda: buffer.init(store(empty)))())
    array_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    grown = rss_bytes() - before
    del state
    gc.collect()
    return {"array_bytes": int(array_bytes), "rss_growth_bytes": int(grown)}


def main() -> None:
    args = parse_args()
    rows = {}
    gib = 2.0**30
    print(f"IDDPG replay buffer of {args.buffer_size:,} transitions, one seed "
          f"({jax.devices()[0].platform})")
    print(f"{'task':<28}{'full GiB':>10}{'compact GiB':>13}{'ratio':>7}{'RSS full':>10}"
          f"{'RSS compact':>13}")
    for task in args.tasks:
        env = dpo_jax.make_env(task)
        full = measure(env, args.buffer_size, compact=False)
        compact = measure(env, args.buffer_size, compact=True)
        rows[task] = {"full": full, "compact": compact}
        print(f"{task:<28}{full['array_bytes'] / gib:>10.2f}"
              f"{compact['array_bytes'] / gib:>13.2f}"
              f"{full['array_bytes'] / compact['array_bytes']:>7.2f}"
              f"{full['rss_growth_bytes'] / gib:>10.2f}{compact['rss_growth_bytes'] / gib:>13.2f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": f"python benchmarks/replay_memory.py --tasks {' '.join(args.tasks)} "
                   f"--buffer-size {args.buffer_size}",
        "machine": f"{platform.machine()} {jax.devices()[0].platform}, jax {jax.__version__}",
        "buffer_size": args.buffer_size,
        "results": rows,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
