"""How far one env step under each physics preset lands from Gymnasium's settings.

    python benchmarks/mjx_preset_accuracy.py                 # all robots, 200 states each
    python benchmarks/mjx_preset_accuracy.py --robots hopper ant --steps 500

With MuJoCo's C engine (no MJX, no accelerator needed): a trajectory of ``--steps``
env steps under the ``"gymnasium"`` preset (the XML's own options) with uniformly
random controls visits the states; from each state, one env step (``frame_skip``
physics steps, same controls) is taken under ``"gymnasium"`` and under every other
preset, and the largest absolute ``qpos`` difference is recorded. The table gives
its median and 95th percentile per robot and preset; the JSON holds them with the
command and the machine. The presets change only solver options (``load_model``),
and MJX implements the same algorithms as the C engine, so this isolates the
options' effect from MJX's float32 arithmetic.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np

from dpo_jax.envs.mamujoco import PHYSICS_PRESETS, load_model
from dpo_jax.envs.mamujoco_robots import ROBOTS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--robots", nargs="+", default=sorted(ROBOTS), choices=sorted(ROBOTS))
    p.add_argument("--steps", type=int, default=200, help="states visited per robot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reset-noise", type=float, default=0.1,
                   help="uniform noise on the initial qpos/qvel (Gymnasium's scale)")
    p.add_argument("--out", default="benchmarks/results/mjx_preset_accuracy.json")
    return p.parse_args()


def one_env_step(mujoco, model, data, qpos, qvel, ctrl, frame_skip: int) -> np.ndarray:
    """``qpos`` after ``frame_skip`` physics steps from ``(qpos, qvel)`` with ``ctrl``."""
    mujoco.mj_resetData(model, data)
    data.qpos[:], data.qvel[:], data.ctrl[:] = qpos, qvel, ctrl
    mujoco.mj_forward(model, data)
    for _ in range(frame_skip):
        mujoco.mj_step(model, data)
    return data.qpos.copy()


def measure(robot_name: str, steps: int, seed: int, reset_noise: float) -> dict:
    """Median and 95th percentile of the one-step max |qpos| difference per preset."""
    import mujoco

    robot = ROBOTS[robot_name]
    frame_skip = robot.rules.frame_skip
    models = {name: load_model(robot, preset) for name, preset in PHYSICS_PRESETS.items()}
    datas = {name: mujoco.MjData(m) for name, m in models.items()}
    reference = models["gymnasium"]
    rng = np.random.default_rng(seed)
    low, high = reference.actuator_ctrlrange[:, 0], reference.actuator_ctrlrange[:, 1]
    qpos = reference.qpos0 + rng.uniform(-reset_noise, reset_noise, reference.nq)
    qvel = rng.uniform(-reset_noise, reset_noise, reference.nv)
    diffs: dict[str, list[float]] = {name: [] for name in models if name != "gymnasium"}
    for _ in range(steps):
        ctrl = rng.uniform(low, high)
        ref = one_env_step(mujoco, reference, datas["gymnasium"], qpos, qvel, ctrl,
                           frame_skip)
        for name in diffs:
            other = one_env_step(mujoco, models[name], datas[name], qpos, qvel, ctrl,
                                 frame_skip)
            diffs[name].append(float(np.max(np.abs(other - ref))))
        qpos, qvel = ref, datas["gymnasium"].qvel.copy()
    return {name: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                   "max": float(np.max(v)), "states": len(v)}
            for name, v in diffs.items()}


def main() -> None:
    args = parse_args()
    results = {robot: measure(robot, args.steps, args.seed, args.reset_noise)
               for robot in args.robots}
    presets = sorted(next(iter(results.values())))
    print(f"one env step, max |qpos - qpos_gymnasium| over {args.steps} states "
          "(median / 95th percentile)")
    print(f"{'robot':<12}" + "".join(f"{p:>24}" for p in presets))
    for robot, row in results.items():
        print(f"{robot:<12}" + "".join(
            f"{row[p]['median']:>11.1e} / {row[p]['p95']:<10.1e}" for p in presets))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import mujoco

    out.write_text(json.dumps({
        "command": "python benchmarks/mjx_preset_accuracy.py "
                   f"--robots {' '.join(args.robots)} --steps {args.steps} --seed {args.seed}",
        "machine": f"{platform.machine()} cpu, mujoco {mujoco.__version__} (C engine)",
        "metric": "max over qpos coordinates of |qpos(preset) - qpos(gymnasium)| after "
                  "one env step from the same state and controls",
        "results": results,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
