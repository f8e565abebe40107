"""MuJoCo frames drawn in a child process, one OpenGL backend after another.

``mujoco`` picks its OpenGL backend (``MUJOCO_GL``: ``glfw``, ``egl`` or ``osmesa``)
once, when it is imported, and a failed context can leave the process unable to try
again: on a headless machine a second ``mujoco.Renderer`` after a failed one aborts
the whole interpreter (a C++ ``abort``, not an exception). Training, evaluation and
notebooks import ``mujoco`` through MJX long before anything is drawn, so frames are
never drawn in the caller's process: :func:`draw_gif` saves the model (MJB) and the
states to a temporary folder and runs ``python -m dpo_jax.running.mujoco_frames`` on
them, with ``MUJOCO_GL`` set to each candidate backend in turn until one draws.

Candidates (:func:`candidate_backends`): ``MUJOCO_GL`` alone when the user set it;
otherwise ``glfw`` when a display is set (``DISPLAY`` / ``WAYLAND_DISPLAY``), then
``egl`` (a GPU driver or Mesa's EGL) and ``osmesa`` (Mesa's software renderer).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Optional, Sequence

import numpy as np


def candidate_backends(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The ``MUJOCO_GL`` values to try, in order (the user's own setting alone)."""
    chosen = environ.get("MUJOCO_GL", "").strip()
    if chosen:
        return (chosen,)
    display = bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return (("glfw",) if display else ()) + ("egl", "osmesa")


def draw_gif(mj_model: Any, qpos: np.ndarray, qvel: np.ndarray, gif: pathlib.Path,
             width: int, height: int, fps: int,
             backends: Optional[Sequence[str]] = None, timeout_s: float = 600.0
             ) -> tuple[Optional[str], dict[str, str]]:
    """Frames of ``qpos``/``qvel`` (``[T, nq]``/``[T, nv]``) drawn into ``gif``.

    Returns the backend that drew them (``None`` when none could) and, per backend
    tried and failed, the last line of its error."""
    import mujoco

    qpos, qvel = np.asarray(qpos), np.asarray(qvel)
    if qpos.ndim != 2 or qvel.ndim != 2 or qpos.shape[0] != qvel.shape[0]:
        raise ValueError(f"draw_gif: qpos {qpos.shape} and qvel {qvel.shape} must be "
                         "[T, nq] and [T, nv] with the same T")
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dpo-jax-frames-") as tmp:
        mjb, states = f"{tmp}/model.mjb", f"{tmp}/states.npz"
        mujoco.mj_saveModel(mj_model, mjb, None)
        np.savez(states, qpos=qpos, qvel=qvel)
        for backend in backends or candidate_backends():
            env = {**os.environ, "MUJOCO_GL": backend}
            env.pop("PYOPENGL_PLATFORM", None)  # mujoco sets it to match MUJOCO_GL
            cmd = [sys.executable, "-m", "dpo_jax.running.mujoco_frames", mjb, states,
                   str(gif), str(width), str(height), str(fps)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                      timeout=timeout_s)
            except subprocess.TimeoutExpired:
                errors[backend] = f"no answer within {timeout_s:.0f} s"
                continue
            if proc.returncode == 0:
                return backend, errors
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            errors[backend] = (lines[-1].strip() if lines
                               else f"exit status {proc.returncode}")[:300]
    return None, errors


def _draw(mjb: str, states: str, gif: str, width: int, height: int, fps: int) -> int:
    """The child's work: every state's frame, then the GIF; the frame count."""
    import mujoco
    from PIL import Image

    model = mujoco.MjModel.from_binary_path(mjb)
    arrays = np.load(states)
    qpos, qvel = arrays["qpos"], arrays["qvel"]
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, height, width)
    images = []
    try:
        for t in range(qpos.shape[0]):
            data.qpos[:], data.qvel[:] = qpos[t], qvel[t]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data)
            images.append(Image.fromarray(renderer.render()))
    finally:
        renderer.close()
    out = pathlib.Path(gif)
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
    return len(images)


if __name__ == "__main__":
    mjb_path, states_path, gif_path, w, h, rate = sys.argv[1:7]
    _draw(mjb_path, states_path, gif_path, int(w), int(h), int(rate))
