"""How fast the command line answers: ``--help``, ``--version``, ``train --help`` and a
flag error, and ``import dpo_jax`` (fresh processes, best of ``--repeats``).

    python benchmarks/startup.py

Writes ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = {
    "dpo-jax --help": ["-m", "dpo_jax", "--help"],
    "dpo-jax --version": ["-m", "dpo_jax", "--version"],
    "dpo-jax train smax_3m --help": ["-m", "dpo_jax", "train", "smax_3m", "--help"],
    "dpo-jax train mpe_spread --nonsense (a flag error)": ["-m", "dpo_jax", "train",
                                                          "mpe_spread", "--nonsense"],
    "python -c 'import dpo_jax'": ["-c", "import dpo_jax"],
    "python -c 'import jax' (for comparison)": ["-c", "import jax"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    best = {name: float("inf") for name in CASES}
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True, cwd=ROOT)
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        print(f"{seconds:6.2f} s  {name}")
    out = ROOT / "benchmarks" / "results" / "startup.json"
    out.write_text(json.dumps({
        "command": "python benchmarks/startup.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"), "best_of": args.repeats, "seconds": best}, indent=1))


if __name__ == "__main__":
    main()
