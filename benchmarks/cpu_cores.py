"""One core against every core, and dpo-jax against its peers, measured in one run.

    python benchmarks/cpu_cores.py                                   # all parts, ~20 min on 2 cores
    python benchmarks/cpu_cores.py --parts quickstart paper --repeats 1
    python benchmarks/cpu_cores.py --jaxmarl-script PATH/ippo_ff_mpe.py \\
        --authors-tree PATH/on-policy-main --authors-python PATH/bin/python

Every measured job is a fresh process (so each pays its own start-up), run
round-robin ``--repeats`` times so that the machine's drifts hit every entry alike:

- ``quickstart``: ``python examples/mpe_spread.py`` (DPO and IPPO x 3 seeds, 400k
  steps, one program) on one core (``taskset -c 0`` and ``DPO_JAX_CPU_DEVICES=1``)
  and on every core (the default: one XLA device per core). Also the cold and the
  warm start: the same job twice on an empty persistent compilation cache.
- ``paper``: ``dpo-jax train mpe_navigation --preset paper --algos dpo ippo
  --seeds 3`` (the paper's Table 2: 15 epochs, 128 units) on one core and all cores.
- ``jaxmarl`` (with ``--jaxmarl-script``): JaxMARL's own IPPO-FF MPE script
  (``baselines/IPPO/ippo_ff_mpe.py``, fetched separately, never part of dpo-jax) and
  dpo-jax's IPPO with shared parameters at the same settings (16 envs x 128 steps,
  4 epochs x 4 minibatches, 64 tanh units, 5 agents), 3 seeds each: per core (each
  alone on one core) and per machine (every core: JaxMARL's script as it runs, on
  JAX's single CPU device, XLA threading over the cores; dpo-jax split over them).
- ``authors`` (with ``--authors-tree``/``--authors-python``): the authors' PyTorch
  code (``benchmarks/authors_worker.py``, their defaults, one seed per process as
  they run it, anomaly detection on as shipped and off) on their matrix game and MPE
  navigation (5 agents): per core (one process on one core) and per machine (one
  process per core at once); dpo-jax's ``authors`` preset on the same task, one env
  per run, 3 seeds, on one core and on all cores.

Compile time is excluded from every env-steps-per-second figure (each job reports
its own training time); wall time includes everything. Writes
``benchmarks/results/cpu_cores.json`` with the machine's core count and prints
the tables. Parts not named in ``--parts`` keep their results from an earlier run
on the same machine; each part records the command (``script_command``) and date
that measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
PARTS = ("quickstart", "paper", "jaxmarl", "authors")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quickstart-steps", type=int, default=400_000)
    p.add_argument("--paper-steps", type=int, default=100_000)
    p.add_argument("--jaxmarl-script", default=None)
    p.add_argument("--jaxmarl-updates", type=int, default=30)
    p.add_argument("--authors-tree", default=None)
    p.add_argument("--authors-python", default=None)
    p.add_argument("--authors-steps", type=int, default=3000)
    p.add_argument("--out", default="benchmarks/results/cpu_cores.json")
    return p.parse_args()


def cores() -> int:
    from dpo_jax.runtime import usable_cores

    return usable_cores()


def run(cmd: list[str], one_core: bool, env: Optional[dict] = None,
        cache: Optional[str] = "off", split: bool = True) -> dict[str, Any]:
    """``cmd`` in a fresh process, on core 0 only or on all (``split``: with dpo-jax's
    default of one XLA device per core; else JAX's own single CPU device, as a
    program that is not dpo-jax runs); wall time and output."""
    full = {**os.environ, **(env or {}), "DPO_JAX_CACHE_DIR": cache or "off"}
    full.pop("XLA_FLAGS", None)
    if one_core:
        full["DPO_JAX_CPU_DEVICES"] = "1"
        cmd = ["taskset", "-c", "0", *cmd]
    elif split:
        full.pop("DPO_JAX_CPU_DEVICES", None)
    else:
        full["DPO_JAX_CPU_DEVICES"] = "off"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "stdout": proc.stdout}


def quickstart(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """The quick start on one core and on all, then cold vs warm compile."""
    def job(one_core: bool, out: str, cache: str = "off") -> dict[str, Any]:
        cmd = [sys.executable, "examples/mpe_spread.py", "--total-timesteps",
               str(args.quickstart_steps), "--out", out, "--progress", "1000000"]
        r = run(cmd, one_core, cache=cache)
        summary = json.loads((pathlib.Path(out) / "summary.json").read_text())
        timing = summary["timing"]["pg"]
        return {"wall_s": r["wall_s"], "compile_s": timing["compile_s"],
                "train_s": timing["run_s"], "env_steps_per_s": timing["env_steps_per_s"],
                "final_return": {e: [v["final_episode_return"], v["ci95"]]
                                 for e, v in summary["entries"].items()}}

    rows: dict[str, list] = {"one core": [], "all cores": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for name in rows:
                rows[name].append(job(name == "one core", f"{tmp}/{name}{i}"))
                print(f"quickstart {name}: {rows[name][-1]}", flush=True)
        cache = f"{tmp}/cache"
        cold = job(False, f"{tmp}/cold", cache)
        warm = job(False, f"{tmp}/warm", cache)
    return {"runs": rows, "cold_cache": cold, "warm_cache": warm,
            "command": f"python examples/mpe_spread.py --total-timesteps "
                       f"{args.quickstart_steps}"}


def paper(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    rows: dict[str, list] = {"one core": [], "all cores": []}
    base = ["-m", "dpo_jax", "train", "mpe_navigation", "--preset", "paper",
            "--algos", "dpo", "ippo", "--seeds", "3", "--total-timesteps",
            str(args.paper_steps), "--progress", "0", "--checkpoint-every", "1000000"]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for name in rows:
                out = f"{tmp}/{name.replace(' ', '_')}{i}"
                r = run([sys.executable, *base, "--out", out], name == "one core")
                pg = json.loads((pathlib.Path(out) / "summary.json").read_text())["programs"]["pg"]
                rows[name].append({"wall_s": r["wall_s"], "compile_s": pg["compile_s"],
                                   "train_s": pg["run_s"],
                                   "env_steps_per_s": pg["env_steps_per_s"]})
                print(f"paper {name}: {rows[name][-1]}", flush=True)
    return {"runs": rows, "command": "dpo-jax " + " ".join(base[2:])}


JAXMARL_DRIVER = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
import jax
from throughput import jaxmarl_train, our_train
import dpo_jax
which, updates, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from dpo_jax.running import scripts
scripts.setup()
if which == "jaxmarl":
    train = jax.vmap(jaxmarl_train({script!r}, 4, 4, 64, 16, updates, 5))
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    compiled = jax.jit(train).lower(keys).compile()
    t0 = time.perf_counter(); jax.block_until_ready(compiled(keys)); t = time.perf_counter() - t0
else:
    from dpo_jax.running import experiments
    env = dpo_jax.make_env("mpe_spread", num_agents=5)
    cfg = dpo_jax.jaxmarl_ippo_config(total_timesteps=updates * 16 * 128)
    out = experiments.run(cfg, env, experiments.stack_keys(0, seeds), progress=False)
    t = out.run_s
print(json.dumps({{"train_s": t, "env_steps_per_s": seeds * updates * 16 * 128 / t,
                   "devices": jax.device_count()}}))
"""


def jaxmarl(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    driver = JAXMARL_DRIVER.format(bench=str(ROOT / "benchmarks"), script=args.jaxmarl_script)
    rows: dict[str, list] = {}
    for _ in range(repeats):
        for which in ("jaxmarl", "dpo-jax"):
            for scope in ("one core", "all cores"):
                r = run([sys.executable, "-c", driver, which, str(args.jaxmarl_updates), "3"],
                        scope == "one core", split=which == "dpo-jax")
                result = {**json.loads(r["stdout"].strip().splitlines()[-1]),
                          "wall_s": r["wall_s"]}
                rows.setdefault(f"{which}, {scope}", []).append(result)
                print(f"jaxmarl-matched {which} {scope}: {result}", flush=True)
    return {"runs": rows, "settings": "JaxMARL ippo_ff_mpe.yaml: 16 envs x 128 steps, "
            "4 epochs x 4 minibatches, 64 tanh units, shared parameters, 5 agents, 3 seeds, "
            f"{args.jaxmarl_updates} updates"}


def authors(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """Their code one process per seed (per core: alone on core 0; per machine: one
    process per core at once), and dpo-jax's authors preset on the same tasks."""
    worker = ROOT / "benchmarks" / "authors_worker.py"
    n = cores()
    rows: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for task in ("game", "mpe"):
                for anomaly in (True, False):
                    label = f"authors {task}, anomaly detection {'on' if anomaly else 'off'}"
                    for scope, procs in (("one core", 1), ("all cores", n)):
                        cmds = [[args.authors_python, str(worker), "--authors-tree",
                                 args.authors_tree, "--task", task, "--algo", "dpo",
                                 "--seed", str(s + 1), "--steps", str(args.authors_steps),
                                 "--out", f"{tmp}/{task}{s}.json"]
                                + (["--anomaly"] if anomaly else []) for s in range(procs)]
                        t0 = time.perf_counter()
                        running = [subprocess.Popen(  # each process on its own core
                            ["taskset", "-c", str(i % n)] + c,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                            for i, c in enumerate(cmds)]
                        for proc in running:
                            proc.wait()
                        wall = time.perf_counter() - t0
                        results = [json.loads(pathlib.Path(f"{tmp}/{task}{s}.json").read_text())
                                   for s in range(procs)]
                        steps = sum(r["curve"][-1]["env_steps"] for r in results)
                        rows.setdefault(f"{label}, {scope}", []).append({
                            "processes": procs, "wall_s": wall,
                            "train_s": max(r["wall_s"] for r in results),
                            "env_steps_per_s": steps / max(r["wall_s"] for r in results)})
                        print(f"{label} {scope}: {rows[f'{label}, {scope}'][-1]}", flush=True)
            for task, env_name in (("game", "stochastic_game_authors"),
                                   ("mpe", "mpe_navigation")):
                for scope in ("one core", "all cores"):
                    out = f"{tmp}/ours_{task}"
                    env_args = (["--env-arg", f"path={args.authors_tree}/a_mat_model/"
                                 "random_matrix_game_3.pkl"] if task == "game" else [])
                    steps = 30 * 200 if task == "game" else 25 * 200
                    cmd = [sys.executable, "-m", "dpo_jax", "train", env_name, *env_args,
                           "--preset", "authors", "--algos", "dpo", "--seeds", "3",
                           "--total-timesteps", str(steps), "--progress", "0",
                           "--checkpoint-every", "1000000", "--out", out]
                    shutil.rmtree(out, ignore_errors=True)
                    r = run(cmd, scope == "one core")
                    pg = json.loads((pathlib.Path(out) / "summary.json").read_text())["programs"]["pg"]
                    rows.setdefault(f"dpo-jax authors preset {task}, {scope}", []).append({
                        "wall_s": r["wall_s"], "compile_s": pg["compile_s"],
                        "train_s": pg["run_s"], "env_steps_per_s": pg["env_steps_per_s"]})
                    print(f"dpo-jax {task} {scope}: {rows[f'dpo-jax authors preset {task}, {scope}'][-1]}",
                          flush=True)
    return {"runs": rows, "authors_steps_per_process": args.authors_steps}


def best(entries: list[dict], key: str = "env_steps_per_s") -> float:
    return max(e[key] for e in entries)


def report(results: dict[str, Any]) -> None:
    print(f"\nmachine: {results['machine']}")
    if "quickstart" in results:
        q = results["quickstart"]["runs"]
        one, every = q["one core"], q["all cores"]
        print("\n| quick start | wall s (best) | train s (best) | env steps/s (best) |\n|---|---|---|---|")
        for name, rows in q.items():
            print(f"| {name} | {min(r['wall_s'] for r in rows):.1f} | "
                  f"{min(r['train_s'] for r in rows):.1f} | {best(rows):,.0f} |")
        print(f"all cores / one core: env steps/s {best(every) / best(one):.2f}x, wall "
              f"{min(r['wall_s'] for r in one) / min(r['wall_s'] for r in every):.2f}x")
        c, w = results["quickstart"]["cold_cache"], results["quickstart"]["warm_cache"]
        print(f"cold cache: compile {c['compile_s']:.1f} s, wall {c['wall_s']:.1f} s; "
              f"warm cache: compile {w['compile_s']:.1f} s, wall {w['wall_s']:.1f} s")
    if "paper" in results:
        p = results["paper"]["runs"]
        print(f"\npaper settings: one core {best(p['one core']):,.0f} env steps/s, all cores "
              f"{best(p['all cores']):,.0f} ({best(p['all cores']) / best(p['one core']):.2f}x)")
    if "jaxmarl" in results:
        j = results["jaxmarl"]["runs"]
        for scope in ("one core", "all cores"):
            ours, theirs = best(j[f"dpo-jax, {scope}"]), best(j[f"jaxmarl, {scope}"])
            print(f"matched settings, {scope}: dpo-jax {ours:,.0f}, JaxMARL {theirs:,.0f} "
                  f"env steps/s ({ours / theirs:.2f}x)")
    if "authors" in results:
        a = results["authors"]["runs"]
        for task in ("game", "mpe"):
            for scope in ("one core", "all cores"):
                ours = best(a[f"dpo-jax authors preset {task}, {scope}"])
                for anomaly in ("on", "off"):
                    theirs = best(a[f"authors {task}, anomaly detection {anomaly}, {scope}"])
                    print(f"{task}, {scope}: dpo-jax {ours:,.0f} vs authors (anomaly "
                          f"detection {anomaly}) {theirs:,.0f} env steps/s ({ours / theirs:.1f}x)")


def kept_parts(out: pathlib.Path, machine: str) -> dict[str, Any]:
    """The parts already in ``out`` when it was measured on the same machine, each
    stamped with the command and date that produced it (a run of some ``--parts``
    keeps the others)."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return {}
    if old.get("machine") != machine:
        return {}
    return {name: {"script_command": old.get("command", ""), "script_date": old.get("date", ""),
                   **old[name]} for name in PARTS if name in old}


def main() -> None:
    args = parse_args()
    import jax

    command = "python benchmarks/cpu_cores.py " + " ".join(sys.argv[1:])
    date = time.strftime("%Y-%m-%d")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores "
               f"({cores()} usable), {platform.processor() or 'cpu'}")
    out = pathlib.Path(args.out)
    results: dict[str, Any] = {
        **kept_parts(out, machine), "command": command, "machine": machine,
        "usable_cores": cores(), "jax": jax.__version__, "date": date}
    parts = {"quickstart": quickstart, "paper": paper, "jaxmarl": jaxmarl, "authors": authors}
    for name in args.parts:
        if name == "jaxmarl" and not args.jaxmarl_script:
            print("jaxmarl: skipped (no --jaxmarl-script)")
            continue
        if name == "authors" and not (args.authors_tree and args.authors_python):
            print("authors: skipped (no --authors-tree / --authors-python)")
            continue
        results[name] = {**parts[name](args, args.repeats), "script_command": command,
                         "script_date": date, "repeats": args.repeats}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))  # after every part: partial results
    report(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
