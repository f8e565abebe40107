"""MJX against MuJoCo's C engine, every robot of the paper: the largest qpos
difference over 8 steps from the same state under the same random controls, and
the largest reward difference from Gymnasium's reward formulas.

    python benchmarks/mjx_vs_c_engine.py          # one MJX compile per robot, ~10 CPU minutes

Runs the slow tests of ``tests/test_mamujoco.py`` (the assertions are the tests'),
which record what they measured into ``benchmarks/results/mjx_vs_c_engine.json``.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mjx_vs_c_engine.json"


def main() -> int:
    OUT.unlink(missing_ok=True)
    env = {**os.environ, "DPO_JAX_FULL": "1", "DPO_JAX_RECORD": str(OUT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_mamujoco.py"), "-k",
                           "c_engine"], env=env, cwd=ROOT)
    if proc.returncode != 0:
        return proc.returncode
    import jax
    import mujoco

    data = json.loads(OUT.read_text())
    data.update({"command": "python benchmarks/mjx_vs_c_engine.py",
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, mujoco "
                            f"{mujoco.__version__}", "jax": jax.__version__,
                 "date": time.strftime("%Y-%m-%d")})
    OUT.write_text(json.dumps(data, indent=1))
    for robot, row in data["robots"].items():
        print(f"{robot}: max |qpos diff| {row['max_qpos_diff']:.1e} over {row['steps']} steps "
              f"({row['max_qpos_diff_first_steps']:.1e} over the first {row['strict_steps']}), "
              f"max reward diff {row['max_reward_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
