"""Repeat commands and count the runs that stall in XLA's CPU runtime.

A stall is a child process whose CPU time stops growing for ``--stall-s`` seconds
while it has not exited (XLA's CPU runtime can wedge with every thread parked).
For each stalled run the stacks are dumped with ``py-spy dump --native`` and
``gdb`` (all native threads) when installed. Arms (a name and a shell command each,
run with ``exec`` so the monitored pid is the command's) alternate ABAB... so load
from other processes affects them alike.

    python benchmarks/cpu_hang_check.py --runs 5 \
        --arm "flax_init=python benchmarks/lapack_vmap_deadlock.py --init flax" \
        --arm "dpo_jax_init=python benchmarks/lapack_vmap_deadlock.py --init dpo_jax" \
        --arm "mpe_example=python examples/mpe_spread.py --total-timesteps 60000"

Writes ``benchmarks/results/cpu_hang_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import time

DEFAULT_ARM = ("mpe_example=python examples/mpe_spread.py --total-timesteps 60000 "
               "--seeds 2 --out /tmp/dpo_jax_hang_check --print-every 1000")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads) from /proc, in seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dump_stacks(pid: int, path: pathlib.Path) -> None:
    """Python stacks (py-spy) and every native thread's stack (gdb), when installed."""
    text = ""
    if shutil.which("py-spy"):
        r = subprocess.run(["py-spy", "dump", "--native", "--pid", str(pid)],
                           capture_output=True, text=True)
        text += r.stdout + r.stderr
    if shutil.which("gdb"):
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=300)
        text += "\n\n# gdb: thread apply all bt\n" + r.stdout + r.stderr
    path.write_text(text)


def run_once(cmd: str, stall_s: float, limit_s: float, dump_dir: pathlib.Path,
             tag: str) -> dict:
    """Run ``cmd`` once; return its outcome ("ok", "stall", "timeout", "error")."""
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    last_cpu, last_change = 0.0, time.monotonic()
    outcome = "ok"
    while proc.poll() is None:
        time.sleep(2.0)
        try:
            cpu = cpu_seconds(proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            break
        now = time.monotonic()
        if cpu > last_cpu + 0.05:
            last_cpu, last_change = cpu, now
        elif now - last_change > stall_s:
            outcome = "stall"
        if now - t0 > limit_s:
            outcome = "timeout"
        if outcome != "ok":
            dump_stacks(proc.pid, dump_dir / f"{tag}.txt")
            proc.kill()
            break
    proc.wait()
    if outcome == "ok" and proc.returncode != 0:
        outcome = "error"
    return {"outcome": outcome, "wall_s": round(time.monotonic() - t0, 1),
            "cpu_s": round(last_cpu, 1), "returncode": proc.returncode,
            "stderr_tail": (proc.stderr.read() or "")[-500:] if proc.stderr else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", action="append", default=[],
                   help="NAME=SHELL COMMAND (repeatable); env vars such as XLA_FLAGS may "
                        "be set with an `env X=Y` prefix")
    p.add_argument("--runs", type=int, default=4, help="runs per arm")
    p.add_argument("--stall-s", type=float, default=60.0)
    p.add_argument("--limit-s", type=float, default=900.0)
    p.add_argument("--out", default="benchmarks/results/cpu_hang_check.json")
    args = p.parse_args()
    arms = dict(a.split("=", 1) for a in (args.arm or [DEFAULT_ARM]))
    out = pathlib.Path(args.out)
    dump_dir = out.parent / "cpu_hang_dumps"
    dump_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {name: [] for name in arms}
    for i in range(args.runs):
        for name, cmd in arms.items():
            r = run_once(cmd, args.stall_s, args.limit_s, dump_dir, f"{name}_{i}")
            results[name].append(r)
            print(f"run {i} arm {name:>12}: {r['outcome']:>7}  wall {r['wall_s']:6.1f} s  "
                  f"cpu {r['cpu_s']:6.1f} s", flush=True)
    print(f"\n{'arm':>12} | {'ok':>3} | {'stall':>5} | {'other':>5} | command")
    for name, rs in results.items():
        ok = sum(r["outcome"] == "ok" for r in rs)
        stall = sum(r["outcome"] == "stall" for r in rs)
        print(f"{name:>12} | {ok:3d} | {stall:5d} | {len(rs) - ok - stall:5d} | {arms[name]}")
    out.write_text(json.dumps({
        "arms": arms, "stall_s": args.stall_s,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
