"""Throughput of MPE simple spread (5 agents): raw env stepping and full DPO training.

    python benchmarks/throughput.py                       # num_envs 16, 64, 256, 1024
    python benchmarks/throughput.py --num-envs 64 256 --updates 5
    taskset -c 0 python benchmarks/throughput.py --matched --jaxmarl-script PATH/ippo_ff_mpe.py

``--matched``: the issue-13 table. At each (epochs, minibatches, width, envs) of
``MATCHED`` and 128-step rollouts: the raw env (random actions, same envs and
steps), dpo-jax IPPO with shared parameters, IPPO and DPO with independent ones
(``TrainConfig(num_steps=128, num_epochs=E, num_minibatches=M, hidden_size=W,
hidden_layer_norm=False, share_params=...)``), and, given ``--jaxmarl-script``,
JaxMARL's own ``baselines/IPPO/ippo_ff_mpe.py`` (fetched separately, never copied
here; hydra/wandb stubbed, its hidden width 64 replaced by W in memory). Each is a
call of an AOT-compiled ``jit(make_train(cfg))`` of ``--updates`` updates,
compile excluded: a row's programs are all compiled and called once untimed, then
timed round-robin ``--repeats`` times (so the VM's drifts hit all of them alike),
each keeping its fastest call; every rate is printed with its ratio to the raw env and to JaxMARL.

For each ``num_envs`` it measures, on whatever device JAX sees,
(a) env steps/s of stepping the envs with uniformly random actions inside one
    compiled ``lax.scan`` (auto-reset included), and
(b) env steps/s of full DPO training (rollout + GAE + 15 epochs + beta
    adaptation, one compiled ``make_train`` run of ``--updates`` updates),
with compile times reported separately (``lower().compile()``), each run timed
after compilation and the best of ``--repeats`` runs kept. One "env step" is one
step of one environment (all 5 agents act). Prints a table and writes JSON to
``benchmarks/results/throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from typing import Any

import jax

import dpo_jax
from dpo_jax.training.rollout import random_rollout


def _best_time(fn, args, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def bench_raw(env, num_envs: int, num_steps: int, repeats: int) -> dict:
    """Random-action stepping of ``num_envs`` envs for ``num_steps`` steps."""

    def run(key):
        _, (_, _, _, records) = random_rollout(env, key, num_envs, num_steps)
        return records.reward.sum()

    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - t0
    run_s = _best_time(compiled, (key,), repeats)
    return {"compile_s": compile_s, "run_s": run_s,
            "env_steps_per_s": num_envs * num_steps / run_s}


def bench_train(env, num_envs: int, updates: int, repeats: int) -> dict:
    """Full DPO training for ``updates`` updates of ``num_envs`` x 25 steps."""
    cfg = dpo_jax.TrainConfig(algo="dpo", num_envs=num_envs,
                              total_timesteps=updates * num_envs * env.max_steps)
    train = dpo_jax.make_train(cfg, env)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    run_s = _best_time(compiled, (key,), repeats)
    steps = dpo_jax.num_updates(cfg, env) * num_envs * env.max_steps
    return {"compile_s": compile_s, "run_s": run_s, "env_steps_per_s": steps / run_s,
            "updates": updates, "s_per_update": run_s / updates}


MATCHED = ((4, 4, 64, 16), (4, 4, 64, 64), (15, 1, 64, 16), (15, 1, 128, 16),
           (15, 1, 128, 64))
"""(epochs, minibatches, width, num_envs) of the matched-settings table; the
first two are JaxMARL's defaults, the last two the paper's epochs and width."""


def _compiled(train, key) -> tuple[Any, float]:
    """``train`` compiled ahead of time and called once untimed; (program, compile s)."""
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key))
    return compiled, compile_s


def _interleaved_best(programs: dict, repeats: int) -> dict[str, float]:
    """Time each ``(program, key)`` ``repeats`` times, round-robin (so that the
    machine's drifts hit every entry alike), and keep each one's fastest call."""
    best = {name: float("inf") for name in programs}
    for _ in range(repeats):
        for name, (compiled, key) in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(key))
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def load_jaxmarl(script: str, width: int):
    """JaxMARL's IPPO-FF MPE module, imported with hydra/wandb stubbed and its
    hard-coded hidden width 64 set to ``width`` (in memory only)."""
    import sys
    import types

    for name in ("hydra", "wandb", "omegaconf"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["hydra"].main = lambda **kw: (lambda f: f)
    sys.modules["wandb"].log = lambda *a, **kw: None
    sys.modules["omegaconf"].OmegaConf = None
    source = pathlib.Path(script).read_text()
    patched = source.replace("64, kernel_init=orthogonal(np.sqrt(2))",
                             f"{width}, kernel_init=orthogonal(np.sqrt(2))")
    if patched.count(f"{width}, kernel_init") < 4:
        raise SystemExit(f"{script}: did not find the four hidden layers of width 64")
    module = types.ModuleType(f"jaxmarl_ippo_ff_mpe_{width}")
    sys.modules[module.__name__] = module  # flax's dataclasses look the module up
    exec(compile(patched, script, "exec"), module.__dict__)
    return module


def jaxmarl_train(script: str, epochs: int, minibatches: int, width: int, num_envs: int,
                  updates: int, num_agents: int):
    """JaxMARL's IPPO ``train(key)`` at the given settings, 128-step rollouts."""
    module = load_jaxmarl(script, width)
    config = {
        "LR": 5e-4, "NUM_ENVS": num_envs, "NUM_STEPS": 128,
        "TOTAL_TIMESTEPS": updates * num_envs * 128, "UPDATE_EPOCHS": epochs,
        "NUM_MINIBATCHES": minibatches, "GAMMA": 0.99, "GAE_LAMBDA": 0.95,
        "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
        "ACTIVATION": "tanh", "ENV_NAME": "MPE_simple_spread_v3",
        "ENV_KWARGS": {"num_agents": num_agents, "num_landmarks": num_agents},
        "ANNEAL_LR": True,
    }
    return module.make_train(config)


def our_train(env, epochs: int, minibatches: int, width: int, num_envs: int,
              updates: int, algo: str, shared: bool):
    """dpo-jax's ``train(key)`` at the matched settings (``hidden_layer_norm=False``)."""
    cfg = dpo_jax.TrainConfig(algo=algo, num_envs=num_envs, num_steps=128,
                              num_epochs=epochs, num_minibatches=minibatches,
                              hidden_size=width, hidden_layer_norm=False,
                              share_params=shared,
                              total_timesteps=updates * num_envs * 128)
    return dpo_jax.make_train(cfg, env)


def matched_table(args, env) -> list[dict]:
    """The matched-settings rows (see the module docstring)."""
    rows = []
    variants = (("IPPO shared", "ippo", True), ("IPPO independent", "ippo", False),
                ("DPO independent", "dpo", False))
    chosen = [MATCHED[i] for i in args.matched_rows] if args.matched_rows else MATCHED
    for epochs, minibatches, width, num_envs in chosen:
        row = {"epochs": epochs, "minibatches": minibatches, "width": width,
               "num_envs": num_envs,
               "raw env": bench_raw(env, num_envs, 128, args.repeats)}
        trains = {}
        if args.jaxmarl_script:
            trains["JaxMARL IPPO (shared)"] = (jaxmarl_train(
                args.jaxmarl_script, epochs, minibatches, width, num_envs, args.updates,
                args.num_agents), jax.random.PRNGKey(0))
        for name, algo, shared in variants:
            trains[name] = (our_train(env, epochs, minibatches, width, num_envs,
                                      args.updates, algo, shared), jax.random.key(0))
        programs, compile_s = {}, {}
        for name, (train, key) in trains.items():
            compiled, compile_s[name] = _compiled(train, key)
            programs[name] = (compiled, key)
        best = _interleaved_best(programs, args.repeats)
        for name in programs:
            row[name] = {"compile_s": compile_s[name], "run_s": best[name],
                         "env_steps_per_s": args.updates * num_envs * 128 / best[name]}
        raw = row["raw env"]["env_steps_per_s"]
        peer = row.get("JaxMARL IPPO (shared)", {}).get("env_steps_per_s")
        cells = []
        for name in ("JaxMARL IPPO (shared)",) + tuple(v[0] for v in variants):
            if name not in row:
                continue
            rate = row[name]["env_steps_per_s"]
            row[name]["of_raw_env"] = rate / raw
            row[name]["vs_jaxmarl"] = rate / peer if peer else None
            vs = f", {rate / peer:.2f}x JaxMARL" if peer else ""
            cells.append(f"{name} {rate:,.0f} ({rate / raw:.3f} of raw{vs})")
        print(f"{epochs}/{minibatches}/{width}, {num_envs} envs: raw {raw:,.0f}; "
              + "; ".join(cells), flush=True)
        rows.append(row)
    print("\n| epochs / minibatches / width, envs | raw env | JaxMARL IPPO (shared) | "
          "IPPO shared | IPPO independent | DPO independent |\n|---|---|---|---|---|---|")
    for r in rows:
        raw = r["raw env"]["env_steps_per_s"]
        cells = []
        for name in ("JaxMARL IPPO (shared)", "IPPO shared", "IPPO independent",
                     "DPO independent"):
            if name not in r:
                cells.append("not run")
                continue
            rate = r[name]["env_steps_per_s"]
            vs = r[name]["vs_jaxmarl"]
            cells.append(f"{rate / 1e3:.1f}k ({rate / raw:.3f} of raw"
                         + (f", {vs:.2f}x" if vs and name != "JaxMARL IPPO (shared)" else "")
                         + ")")
        print(f"| {r['epochs']} / {r['minibatches']} / {r['width']}, {r['num_envs']} | "
              f"{raw / 1e3:.0f}k | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description="MPE spread throughput: raw env and DPO")
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--raw-steps", type=int, default=200, help="steps per raw-env run")
    p.add_argument("--updates", type=int, default=3, help="DPO updates per timed run")
    p.add_argument("--repeats", type=int, default=2, help="timed runs; best is kept")
    p.add_argument("--num-agents", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                   "throughput_<device>.json, throughput_matched_<device>.json)")
    p.add_argument("--matched", action="store_true",
                   help="the matched-settings table against JaxMARL (see above)")
    p.add_argument("--matched-rows", type=int, nargs="+", default=None,
                   help="indices into MATCHED (default: every row)")
    p.add_argument("--jaxmarl-script", default=None,
                   help="path of JaxMARL's baselines/IPPO/ippo_ff_mpe.py (with --matched)")
    args = p.parse_args()

    env = dpo_jax.make_env("mpe_spread", num_agents=args.num_agents)
    device = jax.devices()[0]
    device_name = f"{device.platform}:{device.device_kind}"
    cores = len(os.sched_getaffinity(0))
    print(f"device {device_name}  jax {jax.__version__}  cpus {os.cpu_count()}, "
          f"{cores} allowed")
    safe = device_name.replace(":", "_").replace(" ", "_").lower()
    if args.matched:
        rows = matched_table(args, env)
        out = pathlib.Path(args.out or f"benchmarks/results/throughput_matched_{safe}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "matched settings vs JaxMARL IPPO-FF (MPE spread, 128-step "
                         "rollouts, second call of an AOT-compiled train, compile excluded)",
            "command": "python benchmarks/throughput.py --matched"
                       + (" --jaxmarl-script PATH" if args.jaxmarl_script else "")
                       + f" --updates {args.updates} --repeats {args.repeats}",
            "device": device_name, "jax": jax.__version__, "cores_allowed": cores,
            "machine": platform.machine(), "num_agents": args.num_agents,
            "updates": args.updates, "rows": rows}, indent=2))
        print(f"\nwrote {out}")
        return
    rows = []
    for num_envs in args.num_envs:
        raw = bench_raw(env, num_envs, args.raw_steps, args.repeats)
        trn = bench_train(env, num_envs, args.updates, args.repeats)
        rows.append({"num_envs": num_envs, "raw": raw, "train": trn})
        print(f"num_envs {num_envs:>5}: raw {raw['env_steps_per_s']:>12,.0f} steps/s "
              f"(compile {raw['compile_s']:.1f} s) | DPO train "
              f"{trn['env_steps_per_s']:>9,.0f} steps/s (compile {trn['compile_s']:.1f} s, "
              f"{trn['s_per_update']:.2f} s/update)", flush=True)

    header = ("| num_envs | raw env steps/s | raw compile s | DPO train env steps/s "
              "| DPO compile s | s/update |")
    print("\n" + header + "\n|" + "---|" * 6)
    for r in rows:
        print(f"| {r['num_envs']} | {r['raw']['env_steps_per_s']:,.0f} | "
              f"{r['raw']['compile_s']:.1f} | {r['train']['env_steps_per_s']:,.0f} | "
              f"{r['train']['compile_s']:.1f} | {r['train']['s_per_update']:.2f} |")

    out = pathlib.Path(args.out or f"benchmarks/results/throughput_{safe}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "mpe_spread throughput (raw random-action env stepping; full DPO "
                     "training, 15 epochs, 1 minibatch, 25-step rollouts)",
        "command": "python benchmarks/throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v is not None),
        "device": device_name, "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "num_agents": args.num_agents,
        "raw_steps": args.raw_steps, "results": rows,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
