"""A hyperparameter grid as one compiled program against one ``train`` call per point.

    python benchmarks/sweep.py                      # the table of docs/sweeps.md
    python benchmarks/sweep.py --total-timesteps 400000

On MPE simple spread (``cpu`` preset, DPO), a 4 x 4 grid of ``actor_lr`` x
``entropy_coef`` x 2 seeds:

- **grid**: one fresh process, ``dpo_jax.train(..., sweep=grid, seeds=2)``: all 32 runs
  in one program;
- **separate, cold**: 16 fresh processes, one ``train(cfg.replace(**point), seeds=2)``
  each, every process with its own empty compilation cache (each compiles: what a
  user without a shared cache, or a library that bakes numbers into the program,
  pays);
- **separate, warm**: the same 16 processes sharing one persistent cache (the first
  compiles, the others load the program: the numbers are data).

Wall time is each process's whole life (imports, env, compile, training), summed
over the processes. Then, in one process, **a second call**: ``train`` with one
changed float after a first call, timed from the call to its first progress line
(the end of update 1), against the first call's. Then **memory**: the peak resident
memory of a process training 1, 4, 16, 64 and 256 points x 2 seeds for one update,
and the largest grid that fits in 24 GiB by a straight-line fit.

Writes ``benchmarks/results/sweep.json``; the docs' table is generated from it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
ENTROPIES = [0.0, 0.003, 0.01, 0.03]
MEMORY_POINTS = (1, 4, 16, 64, 256)
GIB = 1024 ** 3

WORKER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import dpo_jax
spec = json.loads(sys.argv[1])
cfg = dpo_jax.preset("cpu", "mpe_spread", total_timesteps=spec["steps"], **spec["point"])
res = dpo_jax.train(cfg, "mpe_spread", algos=["dpo"], seeds=2, sweep=spec["sweep"],
                    progress=False)
out = res.outputs["pg"]
print(json.dumps({"compile_s": out.compile_s, "run_s": out.run_s,
                  "env_steps_per_s": out.env_steps_per_s,
                  "final": res.summary()["final_episode_return"].tolist(),
                  "inside_s": time.perf_counter() - t0,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""

SECOND_CALL = r"""
import io, json, re, sys, time
import dpo_jax

class FirstLine(io.TextIOBase):
    '''stdout that notes when the first progress line (update 1) arrives.'''
    def __init__(self):
        self.at = None
    def write(self, text):
        if self.at is None and re.search(r"update +1/", text):
            self.at = time.perf_counter()
        return len(text)

steps = int(sys.argv[1])
times = []
for lr in (5e-4, 3e-4):
    cfg = dpo_jax.preset("cpu", "mpe_spread", total_timesteps=steps, actor_lr=lr)
    sink, real = FirstLine(), sys.stdout
    sys.stdout = sink
    t0 = time.perf_counter()
    try:
        res = dpo_jax.train(cfg, "mpe_spread", algos=["dpo"], seeds=2, progress=1)
    finally:
        sys.stdout = real
    times.append({"actor_lr": lr, "to_first_update_s": sink.at - t0,
                  "compile_s": res.outputs["pg"].compile_s,
                  "update_s": res.outputs["pg"].run_s / dpo_jax.num_updates(cfg, res.env)})
print(json.dumps(times))
"""


def run_process(code: str, args: list[str], cache: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh Python with the compilation cache ``cache``; its last
    stdout line (JSON) and wall seconds."""
    env = {**os.environ, "DPO_JAX_CACHE_DIR": cache}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def grid_points() -> list[dict]:
    return [{"actor_lr": lr, "entropy_coef": e} for lr, e in itertools.product(LRS, ENTROPIES)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--total-timesteps", type=int, default=100_000,
                   help="env steps per run (default: 100k)")
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args()
    steps = args.total_timesteps
    points = grid_points()
    sweep = {"actor_lr": LRS, "entropy_coef": ENTROPIES}
    result: dict = {
        "command": "python benchmarks/sweep.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"), "env": "mpe_spread", "preset": "cpu",
        "algo": "dpo", "seeds": 2, "points": len(points), "total_timesteps": steps,
    }
    with tempfile.TemporaryDirectory() as tmp:
        grid, wall = run_process(WORKER, [json.dumps(
            {"steps": steps, "point": {}, "sweep": sweep})], f"{tmp}/grid")
        result["grid"] = {"wall_s": wall, **grid}
        print(f"grid, one process: {wall:7.1f} s (compile {grid['compile_s']:.1f} s, "
              f"train {grid['run_s']:.1f} s)")
        for mode in ("cold", "warm"):
            rows = []
            for i, point in enumerate(points):
                cache = f"{tmp}/{mode}{i}" if mode == "cold" else f"{tmp}/warm"
                out, wall = run_process(WORKER, [json.dumps(
                    {"steps": steps, "point": point, "sweep": None})], cache)
                rows.append({"point": point, "wall_s": wall, **out})
            total = sum(r["wall_s"] for r in rows)
            result[f"separate_{mode}"] = {"wall_s": total, "processes": rows}
            print(f"separate, {mode} cache: {total:7.1f} s over {len(rows)} processes "
                  f"(grid {total / result['grid']['wall_s']:.1f}x faster)")
        second, _ = run_process(SECOND_CALL, [str(steps)], f"{tmp}/second")
        result["second_call"] = second
        print(f"second call, one changed float: first update after "
              f"{second[1]['to_first_update_s']:.2f} s (first call: "
              f"{second[0]['to_first_update_s']:.2f} s)")
        if not args.skip_memory:
            memory = []
            for n in MEMORY_POINTS:
                lrs = list(10 ** (-5 + 3 * i / max(n - 1, 1)) for i in range(n))
                out, _ = run_process(WORKER, [json.dumps(
                    {"steps": 16 * 128, "point": {}, "sweep": [{"actor_lr": x} for x in lrs]})],
                    f"{tmp}/memory")
                rss = out["peak_rss_gib"]
                memory.append({"points": n, "runs": 2 * n, "peak_rss_gib": rss,
                               "compile_s": out["compile_s"]})
                print(f"memory: {n:4d} points x 2 seeds: peak {rss:.2f} GiB")
            xs = [m["runs"] for m in memory]
            ys = [m["peak_rss_gib"] for m in memory]
            slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
            result["memory"] = {"rows": memory, "gib_per_run": slope,
                                "base_gib": ys[0] - slope * xs[0],
                                "largest_points_in_24_gib": int(
                                    (24 - (ys[0] - slope * xs[0])) / slope / 2)}
            print(f"memory: {slope * 1024:.1f} MiB per run; largest grid in 24 GiB: "
                  f"{result['memory']['largest_points_in_24_gib']} points x 2 seeds")
    out = ROOT / "benchmarks" / "results" / "sweep.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
