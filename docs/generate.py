"""Numbers on the docs pages and the README, generated from the committed JSON.

A page holds a block ``<!-- gen: NAME -->`` ... ``<!-- /gen -->``; :func:`render`
fills it with ``TABLES[NAME]()``: a table or a sentence built from a results file,
ending with the command, machine and date that file records (its last commit's
date where the file records none). The mkdocs hook (``docs/hooks.py``) renders
every page as it builds; ``python docs/generate.py`` rewrites the README's blocks
in place and ``--check`` fails when the README differs from what the files say
(the test suite runs it).
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import subprocess
import sys
from typing import Callable, Optional

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- gen: (?P<name>[a-z_0-9]+) -->\n)(?P<body>.*?)(<!-- /gen -->)", re.S)


def load(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def committed(path: str) -> str:
    """The date of the last commit that changed the file (YYYY-MM-DD; a move does not
    count), or 'uncommitted'. A folder is dated by its newest file."""
    folder = ROOT / path
    if folder.is_dir():
        files = [str(p.relative_to(ROOT)) for p in folder.rglob("*") if p.is_file()]
        dates = [committed(f) for f in files]
        return max((d for d in dates if d != "uncommitted"), default="uncommitted")
    try:
        out = subprocess.run(["git", "log", "-1", "--follow", "--diff-filter=AM",
                              "--format=%cs", "--", path], cwd=ROOT,
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "uncommitted"


PLACEHOLDERS = (("--authors-tree", "AUTHORS_TREE"), ("--authors-python", "AUTHORS_PYTHON"),
                ("--jaxmarl-script", "JAXMARL_SCRIPT"))
"""Flags whose values are folders of the machine that ran a command, shown as names:
AUTHORS_TREE is a checkout of the authors' code (github PKU-RL/DPO, its
``on-policy-main``), AUTHORS_PYTHON the Python of its virtual environment,
JAXMARL_SCRIPT JaxMARL's ``ippo_ff_mpe.py``."""


def display_command(command: str) -> str:
    """A recorded command without the folders of the machine that ran it: paths in
    the repository relative to it, the peers' folders as ``PLACEHOLDERS``."""
    command = command.replace(str(ROOT) + "/", "")
    # any other checkout's absolute path to a folder of the repository: relative
    command = re.sub(r"(?<![\w.])/[^\s'\"]*?/(?=(?:benchmarks|examples|docs|src|tests)/)", "",
                     command)
    for flag, name in PLACEHOLDERS:
        command = re.sub(rf"{flag}[ =]\S+", f"{flag} {name}", command)
    return command


def source(path: str, data: dict, command: str = "", machine: str = "") -> str:
    """The provenance line of a table (``command`` / ``machine``: for result files
    that do not record them)."""
    machine = data.get("machine") or data.get("device") or machine
    date = data.get("date") or f"{committed(path)} (commit)"
    command = display_command(data.get("command") or command)
    return (f"*Source: `{path}`; command `{command}`; machine: {machine or 'not recorded'}; "
            f"date {date}.*")


def parts_source(path: str, data: dict, parts: tuple[str, ...]) -> str:
    """The provenance line of a table built from some parts of a result file whose
    parts may come from different runs (each part's ``script_command`` and
    ``script_date``, else the file's own)."""
    runs: dict[tuple[str, str], list[str]] = {}
    for name in parts:
        if name in data:
            part = data[name]
            key = (display_command(part.get("script_command", data.get("command", ""))),
                   part.get("script_date", data.get("date", "")))
            runs.setdefault(key, []).append(name)
    if len(runs) == 1:
        (cmd, date), = runs
        return f"*Source: `{path}`; command `{cmd}`; machine: {data['machine']}; date {date}.*"
    cmds = "; ".join(f"{', '.join(names)}: `{cmd}` ({date})" for (cmd, date), names in runs.items())
    return f"*Source: `{path}`; commands: {cmds}; machine: {data['machine']}.*"


def k(x: float) -> str:
    """A rate in thousands (``12.3k``) or as is below 1,000."""
    return f"{x / 1e3:,.1f}k" if x >= 1e3 else f"{x:,.0f}"


def best(rows: list[dict], key: str = "env_steps_per_s") -> float:
    return max(r[key] for r in rows)


# -- tables ---------------------------------------------------------------------------

def cores_quickstart() -> str:
    path = "benchmarks/results/cpu_cores.json"
    d = load(path)
    q = d["quickstart"]["runs"]
    one, every = q["one core"], q["all cores"]
    lines = ["| quick start | wall s | training s | env steps/s |", "|---|---|---|---|"]
    for name, rows in (("one core (taskset, 1 device)", one),
                       (f"every core ({d['usable_cores']} devices)", every)):
        lines.append(f"| {name} | {min(r['wall_s'] for r in rows):.0f} | "
                     f"{min(r['train_s'] for r in rows):.0f} | {k(best(rows))} |")
    speedup = best(every) / best(one)
    c, w = d["quickstart"]["cold_cache"], d["quickstart"]["warm_cache"]
    lines += ["", f"Every core trains {speedup:.2f}x as fast as one (best of "
                  f"{len(one)} round-robin repeats). First run (empty compilation cache): "
                  f"compile {c['compile_s']:.0f} s, wall {c['wall_s']:.0f} s; second run: "
                  f"compile {w['compile_s']:.1f} s, wall {w['wall_s']:.0f} s.", "",
              parts_source(path, d, ("quickstart",))]
    return "\n".join(lines)


def cores_summary() -> str:
    """One line for the README's first screen."""
    path = "benchmarks/results/cpu_cores.json"
    d = load(path)
    q = d["quickstart"]["runs"]
    parts = [f"every core of a {d['usable_cores']}-core CPU trains the quick start "
             f"{best(q['all cores']) / best(q['one core']):.2f}x as fast as one core"]
    if "jaxmarl" in d:
        j = d["jaxmarl"]["runs"]
        parts.append(f"at JaxMARL's IPPO settings dpo-jax runs "
                     f"{best(j['dpo-jax, one core']) / best(j['jaxmarl, one core']):.2f}x "
                     f"JaxMARL's speed per core and "
                     f"{best(j['dpo-jax, all cores']) / best(j['jaxmarl, all cores']):.2f}x per "
                     f"machine")
    if "authors" in d:
        a = d["authors"]["runs"]
        ours = best(a["dpo-jax authors preset game, one core"])
        off = best(a["authors game, anomaly detection off, one core"])
        on = best(a["authors game, anomaly detection on, one core"])
        ours_all = best(a["dpo-jax authors preset game, all cores"])
        theirs_all = best(a["authors game, anomaly detection on, all cores"])
        parts.append(f"on the authors' matrix game it is {ours / off:.0f}x their PyTorch "
                     f"code per core ({ours / on:.0f}x as shipped, anomaly detection on) and "
                     f"{ours_all / theirs_all:.0f}x per machine")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + f" ({d.get('date', '')}, {d['machine']}; `{path}`)."


def quickstart_time() -> str:
    """The quick start's measured wall time, for the README."""
    path = "benchmarks/results/cpu_cores.json"
    d = load(path)
    q = d["quickstart"]["runs"]
    best = min(q["all cores"], key=lambda r: r["wall_s"])
    one = min(r["wall_s"] for r in q["one core"])
    return (f"It took {best['wall_s']:.0f} s on an otherwise idle {d['usable_cores']}-core CPU "
            f"({d['machine'].split(',')[0]}; {one:.0f} s on one core; `{path}`), "
            f"{best['compile_s']:.0f} s of it compiling (less once the compilation cache "
            f"holds the program); it grows with whatever else the machine runs, since the "
            f"training uses every core.")


def cores_peers() -> str:
    path = "benchmarks/results/cpu_cores.json"
    d = load(path)
    lines = []
    if "paper" in d:
        p = d["paper"]["runs"]
        lines += [f"Paper settings (`{d['paper']['command']}`): one core {k(best(p['one core']))} "
                  f"env steps/s, every core {k(best(p['all cores']))} "
                  f"({best(p['all cores']) / best(p['one core']):.2f}x).", ""]
    if "jaxmarl" in d:
        j = d["jaxmarl"]["runs"]
        lines += ["| matched settings (JaxMARL IPPO-FF MPE) | one core | every core |",
                  "|---|---|---|"]
        for who in ("jaxmarl", "dpo-jax"):
            label = "JaxMARL's own script" if who == "jaxmarl" else "dpo-jax IPPO (shared)"
            lines.append(f"| {label} | {k(best(j[f'{who}, one core']))} | "
                         f"{k(best(j[f'{who}, all cores']))} |")
        lines += ["", d["jaxmarl"]["settings"] + ".", ""]
    if "authors" in d:
        a = d["authors"]["runs"]
        lines += ["| authors' matrix game / MPE navigation, env steps/s | one core | "
                  "every core |", "|---|---|---|"]
        for task in ("game", "mpe"):
            for label, key in ((f"authors' code ({task}), as shipped",
                                f"authors {task}, anomaly detection on"),
                               (f"authors' code ({task}), anomaly detection off",
                                f"authors {task}, anomaly detection off"),
                               (f"dpo-jax `authors` preset ({task})",
                                f"dpo-jax authors preset {task}")):
                lines.append(f"| {label} | {k(best(a[key + ', one core']))} | "
                             f"{k(best(a[key + ', all cores']))} |")
        lines += ["", "Their code runs one seed per process (per core: one process on one "
                  "core; every core: one process per core at once); dpo-jax runs 3 seeds "
                  "in one program, one env per run as their default.", ""]
    lines.append(parts_source(path, d, ("paper", "jaxmarl", "authors")))
    return "\n".join(lines)


def matched_throughput() -> str:
    path = "benchmarks/results/throughput_matched_cpu_cpu.json"
    d = load(path)
    names = ("JaxMARL IPPO (shared)", "IPPO shared", "IPPO independent", "DPO independent")
    lines = ["| epochs / minibatches / width, envs | raw env | " + " | ".join(names) + " |",
             "|---" * (2 + len(names)) + "|"]
    for r in d["rows"]:
        raw = r["raw env"]["env_steps_per_s"]
        peer = r["JaxMARL IPPO (shared)"]["env_steps_per_s"]
        cells = [f"{k(r[n]['env_steps_per_s'])}"
                 + (f" ({r[n]['env_steps_per_s'] / peer:.2f}x)" if n != names[0] else "")
                 for n in names]
        lines.append(f"| {r['epochs']} / {r['minibatches']} / {r['width']}, {r['num_envs']} | "
                     f"{k(raw)} | " + " | ".join(cells) + " |")
    lines += ["", "Env steps per second of training (compile excluded), one core; in "
              "brackets: the ratio to JaxMARL's own script.", "", source(path, d)]
    return "\n".join(lines)


def _parity_rows(d: dict, label: Callable[[str, str, str], str], digits: int) -> list[str]:
    """One row per entry of an ``authors_parity`` report: the last logged point of
    each code with its interval, and the points where they agree."""
    rows = []
    for name, e in d["entries"].items():
        a, o = e["authors"], e["dpo_jax"]
        null = e.get("null_agree")
        rows.append(f"| {label(*name.split('/'))} | "
                    f"{a['mean'][-1]:.{digits}f} +- {a['ci95'][-1]:.{digits}f} | "
                    f"{o['mean'][-1]:.{digits}f} +- {o['ci95'][-1]:.{digits}f} | "
                    f"{sum(e['agree'])}/{len(e['agree'])} | "
                    + ("-" if null is None else f"{sum(null)}/{len(null)}") + " |")
    return rows


def authors_parity() -> str:
    path = "benchmarks/results/authors_parity/parity.json"
    d = load(path)
    lines = ["| task, algorithm, samples | at the end: authors' code | dpo-jax | agree at "
             "logged points | dpo-jax against itself (other seeds) |", "|---|---|---|---|---|"]
    lines += _parity_rows(d, lambda task, algo, sampling:
                          f"{task}, {algo.upper()}, {sampling.replace('_', '-')}", 3)
    agree = [a for e in d["entries"].values() for a in e["agree"]]
    null = [a for e in d["entries"].values() for a in (e.get("null_agree") or [])]
    total = (f"In all: {sum(agree)} of {len(agree)} logged points agree"
             + (f"; dpo-jax against itself with other seeds, {sum(null)} of {len(null)}"
                if null else "") + ".")
    lines += ["", f"{d['seeds']} seeds each; game: exact J/J* after "
              f"{d['game_steps']:,} env steps; MPE: mean episode return over the last tenth "
              f"of {d['mpe_steps']:,} env steps; 95% t-intervals over seeds; agreement: "
              f"Welch's 95% interval of the difference contains 0. {total} Equal codes "
              "disagree at about 1 point in 20 by chance, more where a curve's points move "
              "together.", "", source(path, d)]
    return "\n".join(lines)


def _order(dpo: tuple[float, float, int], ippo: tuple[float, float, int]) -> str:
    """"DPO ahead", "IPPO ahead" or "level": Welch's 95% interval of the difference
    of two means given as (mean, 95% t-half-width, runs)."""
    from scipy import stats

    (m1, h1, n1), (m2, h2, n2) = dpo, ippo
    se1, se2 = h1 / stats.t.ppf(0.975, n1 - 1), h2 / stats.t.ppf(0.975, n2 - 1)
    se = (se1**2 + se2**2) ** 0.5
    dof = se**4 / max(se1**4 / (n1 - 1) + se2**4 / (n2 - 1), 1e-300) if se > 0 else n1 + n2 - 2
    if abs(m1 - m2) <= stats.t.ppf(0.975, dof) * se:
        return "level"
    return "DPO ahead" if m1 > m2 else "IPPO ahead"


def _orderings() -> list[tuple[str, str, str, dict]]:
    """(task, code, sampling, {"dpo": (m, h, n), "ippo": ..., "order": ...}) of the
    parity runs (last logged point) and the pooling runs (final return)."""
    rows = []
    d = load("benchmarks/results/authors_parity/parity.json")
    p = load("benchmarks/results/authors_parity/pooling.json")
    nav_random = p["entries"]["mpe_navigation/dpo/pooled"]["random_return"]  # the same env
    for task, label in (("game", f"matrix game, J/J* ({d['game_steps']:,} steps)"),
                        ("mpe", f"MPE navigation ({d['mpe_steps']:,} steps)")):
        for code, key in (("authors' code", "authors"), ("dpo-jax", "dpo_jax")):
            for sampling in ("pooled", "per_agent"):
                cell = {}
                for algo in ("dpo", "ippo"):
                    e = d["entries"][f"{task}/{algo}/{sampling}"][key]
                    cell[algo] = (e["mean"][-1], e["ci95"][-1], e["runs"])
                cell["order"] = _order(cell["dpo"], cell["ippo"])
                if task == "mpe":
                    cell["random"] = nav_random
                rows.append((label, code, sampling, cell))
    for task in ("mpe_navigation", "mpe_line", "mpe_circle"):
        for sampling in ("pooled", "per_agent"):
            cell = {}
            for algo in ("dpo", "ippo"):
                e = p["entries"][f"{task}/{algo}/{sampling}"]
                cell[algo] = (e["final_return"], e["ci95"], e["runs"])
            cell["order"] = _order(cell["dpo"], cell["ippo"])
            cell["random"] = p["entries"][f"{task}/dpo/{sampling}"]["random_return"]
            rows.append((f"{task} ({p['steps']:,} steps)", "dpo-jax", sampling, cell))
    return rows


def pooling_verdict() -> str:
    """DPO vs IPPO per task, code and sampling mode, each tested (Welch, 95%)."""
    rows = _orderings()
    lines = ["| task | code | pooled samples: DPO vs IPPO | per-agent samples: DPO vs IPPO |",
             "|---|---|---|---|"]
    seen: dict[tuple[str, str], dict[str, dict]] = {}
    for task, code, sampling, cell in rows:
        seen.setdefault((task, code), {})[sampling] = cell
    fmt = "{:.2f}"
    for (task, code), cells in seen.items():
        text = [f"{fmt.format(c['dpo'][0])} vs {fmt.format(c['ippo'][0])}: **{c['order']}**"
                for c in (cells["pooled"], cells["per_agent"])]
        lines.append(f"| {task} | {code} | {text[0]} | {text[1]} |")
    counts = {k: sum(c["order"] == k for *_, c in rows) for k in
              ("DPO ahead", "IPPO ahead", "level")}
    lines += ["", f"Of {len(rows)} comparisons: DPO ahead in {counts['DPO ahead']}, IPPO ahead "
              f"in {counts['IPPO ahead']}, level in {counts['level']} (Welch's 95% interval of "
              "the difference, seeds as samples). Random-policy returns of the three MPE tasks: "
              + ", ".join(f"{t.split(' ')[0]} {c['random']:.1f}" for t, code, s, c in rows
                          if "random" in c and s == "pooled" and t.startswith("mpe_"))
              + " (MPE navigation is `mpe_navigation`).", "",
              "*Sources: `benchmarks/results/authors_parity/parity.json`, "
              "`benchmarks/results/authors_parity/pooling.json`.*"]
    return "\n".join(lines)


def authors_ordering() -> str:
    """DPO vs IPPO per sampling mode, both code bases, for the README: the game as a
    table, then the comparisons where DPO is ahead, one line each."""
    rows = _orderings()
    d = load("benchmarks/results/authors_parity/parity.json")
    game = {(code, s): c for task, code, s, c in rows if task.startswith("matrix game")}
    lines = [f"On the authors' matrix game (exact J/J*, {d['seeds']} seeds, "
             f"{d['game_steps']:,} steps):", "",
             "| | pooled samples: DPO vs IPPO | per-agent samples: DPO vs IPPO |",
             "|---|---|---|"]
    for code in ("authors' code", "dpo-jax"):
        cells = [f"{game[code, s]['dpo'][0]:.2f} vs {game[code, s]['ippo'][0]:.2f}"
                 for s in ("pooled", "per_agent")]
        lines.append(f"| {code} | {cells[0]} | {cells[1]} |")
    ahead = [(task, code, s, c) for task, code, s, c in rows if c["order"] == "DPO ahead"]
    below = all(c["dpo"][0] < c["random"] and c["ippo"][0] < c["random"]
                for *_, c in ahead if "random" in c)
    lines += ["", f"Of {len(rows)} DPO-vs-IPPO comparisons (two code bases, pooled and "
              f"per-agent samples, the game and four MPE runs; Welch's 95% interval of the "
              f"difference), DPO is ahead in {len(ahead)}"
              + (", each with both algorithms below the random policy (its return measured "
                 "in dpo-jax's env)" if ahead and below else "") + (":" if ahead else ".")]
    if ahead:
        lines.append("")
    for task, code, s, c in ahead:
        random = f" (random policy {c['random']:.1f})" if "random" in c else ""
        lines.append(f"- {code}, {task}, {s.replace('_', '-')} samples: DPO {c['dpo'][0]:.2f} "
                     f"vs IPPO {c['ippo'][0]:.2f}{random}")
    lines += ["", "*Source: `benchmarks/results/authors_parity/`.*"]
    return "\n".join(lines)


def update_diff() -> str:
    """One update of the authors' code replayed in dpo-jax (``authors_update_diff.py``)."""
    path = "benchmarks/results/authors_parity/update_diff.json"
    d = load(path)
    lines = ["| case | dpo-jax | max \\|d log-prob\\| before | max \\|d return\\| | "
             "max \\|d prob\\| after | KL(before \\|\\| after): dpo-jax / theirs | "
             "max \\|d param\\| / their largest move |", "|---|---|---|---|---|---|---|"]
    for case, rows in d["cases"].items():
        task, algo = case.split("/")
        name = f"{'MPE navigation' if task == 'mpe' else 'matrix game'}, {algo.upper()}"
        for variant, r in rows.items():
            lines.append(
                f"| {name} | {variant} | {r['max_abs_old_log_prob']:.0e} | "
                f"{r['max_abs_gae_return']:.0e} | {r['max_abs_prob_after']:.0e} | "
                f"{r['kl_before_after_dpo_jax']:.5f} / {r['kl_before_after_authors']:.5f} | "
                f"{r['max_abs_param_after']:.0e} / {r['max_abs_param_move_authors']:.0e} |")
    shaken = ", ".join(f"{case.split('/')[0].replace('mpe', 'MPE')} {case.split('/')[1].upper()} "
                       f"{rows['authors preset']['rounding_sensitivity']:.0e}"
                       for case, rows in d["cases"].items())
    env = d["env_step"]
    return "\n".join(lines + ["", "Rounding sensitivity, the largest change of dpo-jax's own "
                               "action probabilities after the update when the starting "
                               "parameters are perturbed by one part in 1e7: " + shaken + ".",
                               "", f"The env: their MPE navigation and dpo-jax's with the "
                               f"preset's env arguments, {env['steps']} steps from one state "
                               "with three agents in contact under the same random actions, "
                               f"differ by at most {env['max_abs_pos']:.0e} in positions, "
                               f"{env['max_abs_vel']:.0e} in velocities, "
                               f"{env['max_abs_reward']:.0e} in rewards and "
                               f"{env['max_abs_obs']:.0e} in observations.",
                               "", source(path, d)])


def update_chain() -> str:
    """K updates of the authors' code replayed in a chain (``authors_update_diff.py
    --updates K``)."""
    path = "benchmarks/results/authors_parity/update_chain.json"
    d = load(path)
    k = d["updates"]
    picks = (0, 1, k // 2 - 1, k - 1)
    lines = ["| case | dpo-jax | " + " | ".join(f"after update {i + 1}" for i in picks)
             + f" | max \\|d param\\| after {k} / their move at {k} |",
             "|---" * (len(picks) + 3) + "|"]
    for case, modes in d["cases"].items():
        task, algo = case.split("/")
        name = f"{'MPE navigation' if task == 'mpe' else 'matrix game'}, {algo.upper()}"
        for mode, rows in modes.items():
            lines.append(f"| {name} | {mode} | " + " | ".join(
                f"{rows[i]['max_abs_prob_after']:.0e}" for i in picks) +
                f" | {rows[-1]['max_abs_param_after']:.0e} / "
                f"{rows[-1]['max_abs_param_move_authors']:.0e} |")
    lines += ["", "Cells: the largest difference of the action probabilities on each update's "
              "batch after it, dpo-jax against their code. " + " ".join(
                  f"*{mode}*: {what}." for mode, what in d["modes"].items()), "",
              source(path, d)]
    return "\n".join(lines)


def pooling() -> str:
    path = "benchmarks/results/authors_parity/pooling.json"
    d = load(path)
    e = d["entries"]
    lines = ["| task (random policy) | DPO, pooled | IPPO, pooled | DPO, per-agent | "
             "IPPO, per-agent |", "|---|---|---|---|---|"]
    for task in ("mpe_navigation", "mpe_line", "mpe_circle"):
        cells = [f"{e[f'{task}/{a}/{s}']['final_return']:.2f} +- {e[f'{task}/{a}/{s}']['ci95']:.2f}"
                 for s in ("pooled", "per_agent") for a in ("dpo", "ippo")]
        lines.append(f"| {task} ({e[f'{task}/dpo/pooled']['random_return']:.1f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines + ["", f"dpo-jax, the `authors` preset (one env per run), "
                               f"{d['seeds']} seeds x {d['steps']:,} env steps, 5 agents; "
                               "final return = mean over the last 10% of updates.", "",
                               source(path, d)])


def checkpoint_cost() -> str:
    path = "benchmarks/results/checkpoint_cost.json"
    d = load(path)
    lines = ["| | saves | first 10%: ms per save | last 10% | growth per 100 chunks | "
             "folder at the end |", "|---|---|---|---|---|---|"]
    names = {"before": "0.1.0", "after": "0.2.0"}
    for label in ("before", "after"):
        if label not in d:
            continue
        r = d[label]
        lines.append(f"| {names[label]} | {r['chunks']} | {r['save_s_first_10pct'] * 1e3:.0f} | "
                     f"{r['save_s_last_10pct'] * 1e3:.0f} | "
                     f"{r['slope_s_per_100_chunks'] * 1e3:+.1f} ms | "
                     f"{r['folder_bytes_at_end'] / 2**20:.0f} MiB |")
    lines += ["", "0.1.0: every checkpoint saves the whole metrics history and every state "
              "folder is kept; 0.2.0: each checkpoint saves its own chunk's metrics and the two "
              "newest states are kept. Rows labelled `before` in the file ran 0.1.0's code, "
              "`after` 0.2.0's.", "", source(path, d)]
    return "\n".join(lines)


def resume_layouts() -> str:
    path = "benchmarks/results/resume_layouts.json"
    d = load(path)
    lines = ["| started on | resumed on | flags | final return (95% CI) | uninterrupted job, "
             "same start | within its CI | first update that differs | largest relative "
             "difference of a logged return |", "|---|---|---|---|---|---|---|---|"]
    for c in d["cases"]:
        first = c["first_differing_update"]
        differs = "none (bit for bit)" if first is None else f"{first} of {c['updates']}"
        lines.append(
            f"| {c['started_on']} devices | {c['resumed_on']} devices | "
            f"{' '.join(c['extra_flags']) or '-'} | {c['final_return']:.3f} +- "
            f"{c['final_return_ci95']:.3f} | {c['reference_final_return']:.3f} +- "
            f"{c['reference_ci95']:.3f} | {'yes' if c['within_reference_ci'] else 'no'} | "
            f"{differs} | "
            f"{c['max_relative_difference']:.2g} |")
    lines += ["", f"Each job stopped after {d['cases'][0]['stopped_after']} updates and was "
              f"resumed; the job: `{d['job']}`.", "", source(path, d)]
    return "\n".join(lines)


def mamujoco_speed() -> str:
    rows: dict[str, dict] = {}
    cmds = []
    for batch in ("b1", "b64", "b512"):
        path = f"benchmarks/results/mamujoco_speed_cpu_{batch}.json"
        d = load(path)
        cmds.append(source(path, d))
        for r in d["results"]:
            if r["physics"] == "fast":
                rows.setdefault(r["task"], {})[r["batch"]] = r
    lines = ["| task | batch 1: compile s / env steps/s | batch 64 | batch 512 |",
             "|---|---|---|---|"]
    for task, by in rows.items():
        cells = [f"{by[b]['compile_s']:.0f} / {by[b]['env_steps_per_s']:,.0f}" if b in by else "-"
                 for b in (1, 64, 512)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "Random actions with auto-reset, the `fast` physics "
                              "preset."] + ["", *cmds])


def mamujoco_hours() -> str:
    """How long the paper's 10M-step MuJoCo runs take in physics alone at the fastest
    measured CPU rate of each task (``mamujoco_speed``'s files)."""
    best: dict[str, float] = {}
    for batch in ("b1", "b64", "b512"):
        for r in load(f"benchmarks/results/mamujoco_speed_cpu_{batch}.json")["results"]:
            if r["physics"] == "fast":
                best[r["task"]] = max(best.get(r["task"], 0.0), r["env_steps_per_s"])
    hours = {task: 10e6 / rate / 3600 for task, rate in best.items()}
    low, high = min(hours.values()), max(hours.values())
    return (f"At the fastest of these rates, one seed of the paper's 10M-step runs takes "
            f"{low:.1f} ({min(hours, key=hours.get)}) to {high:.1f} hours "
            f"({max(hours, key=hours.get)}) of physics alone on the CPU measured, before any "
            f"learning; the paper's MuJoCo budgets need a GPU.")


def mjx_accuracy() -> str:
    path = "benchmarks/results/mjx_preset_accuracy.json"
    d = load(path)
    lines = ["| robot | fast: median / p95 / max | euler: median / p95 / max |",
             "|---|---|---|"]
    for robot, by in d["results"].items():
        cells = [f"{by[p]['median']:.1e} / {by[p]['p95']:.1e} / {by[p]['max']:.1e}"
                 for p in ("fast", "euler")]
        lines.append(f"| {robot} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", d["metric"] + ".", "", source(path, d)])


def mjx_vs_c_engine() -> str:
    path = "benchmarks/results/mjx_vs_c_engine.json"
    d = load(path)
    lines = ["| robot (physics) | steps | max \\|qpos(MJX) - qpos(C)\\| | over the first steps | "
             "max reward error |", "|---|---|---|---|---|"]
    for robot, r in d["robots"].items():
        lines.append(f"| {robot} | {r['steps']} | {r['max_qpos_diff']:.1e} | "
                     f"{r['max_qpos_diff_first_steps']:.1e} ({r['strict_steps']}) | "
                     f"{r['max_reward_diff']:.1e} |")
    return "\n".join(lines + ["", source(path, d)])


def smax_memory() -> str:
    lines = []
    for path in ("benchmarks/results/smax_memory_envs_cpu.json",
                 "benchmarks/results/smax_memory_cpu_cpu.json"):
        d = load(path)
        lines += ["| num_envs | rollout steps | env steps/s | s per update | compile s | "
                  "peak RSS after run, MiB |", "|---|---|---|---|---|---|"]
        for r in d["results"]:
            lines.append(f"| {r['num_envs']} | {r['num_steps']} | {r['env_steps_per_s']:.0f} | "
                         f"{r['s_per_update']:.1f} | {r['compile_s']:.0f} | "
                         f"{r['peak_rss_mib_after_run']:,.0f} |")
        lines += ["", source(path, d), ""]
    return "\n".join(lines).rstrip()


def scaling() -> str:
    path = "benchmarks/results/scaling_cpu.json"
    d = load(path)
    lines = ["| shard | devices | env steps/s | first update with a loss difference > 1e-5 |",
             "|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['shard']} | {r['devices']} | {k(r['env_steps_per_s'])} | "
                     f"{r['first_update_above_1e-5']} |")
    return "\n".join(lines + ["", source(path, d)])


def peer_parity() -> str:
    path = "benchmarks/results/peer_parity_paper_2m.json"
    d = load(path)
    lines = ["| entry | final return (last 10%) | first 10% |", "|---|---|---|"]
    for e in d["entries"]:
        lines.append(f"| {e['name']} | {e['final_mean']:.2f} +- {e['final_ci95']:.2f} | "
                     f"{e['first10_mean']:.2f} +- {e['first10_ci95']:.2f} |")
    lines.append(f"| uniform random policy | {d['random_policy']['ours']:.2f} | |")
    return "\n".join(lines + ["", f"MPE simple spread, {d['num_agents']} agents, "
                              f"{d['seeds']} seeds, paper settings.", "", source(path, d)])


def mpe_stats() -> str:
    path = "benchmarks/results/mpe_stats/stats.json"
    d = load(path)
    names = [m for m in ("IQM", "Mean", "Optimality Gap") if m in next(iter(
        d["aggregates"].values()))]
    lines = ["| algorithm | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    for algo, agg in d["aggregates"].items():
        lines.append(f"| {algo} | " + " | ".join(_cell(agg[m]) for m in names) + " |")
    probs = "; ".join(f"P({pair.replace(',', ' > ')}) = {_cell(v)}"
                      for pair, v in d["probability_of_improvement"].items())
    scale = {"random": "each run's final return minus the task's random-policy return "
                       "(random: " + ", ".join(f"{t} {r:.2f}" for t, r in d["random"].items())
                       + ")",
             "reference": "random policy 0, reference score 1",
             "none": "raw final returns"}.get(d["normalization"], d["normalization"])
    note = f" {d['note']}." if d.get("note") else ""
    verdicts = []
    for pair, (p, lo, hi) in d["probability_of_improvement"].items():
        x, y = pair.split(",")
        if lo == lo and hi == hi:
            verdicts.append(f"{y.upper()} ahead of {x.upper()}" if hi < 0.5 else
                            f"{x.upper()} ahead of {y.upper()}" if lo > 0.5 else
                            f"{x.upper()} and {y.upper()} level")
    verdict = (f" By the interval of P: {'; '.join(verdicts)}." if verdicts else "")
    return "\n".join(lines + ["", f"Tasks: {', '.join(d['tasks'])}; scores: {scale}; 95% "
                              f"stratified-bootstrap intervals; {probs}.{verdict}{note}", "",
                              source(path, d)])


def theory() -> str:
    path = "benchmarks/results/theory/theory.json"
    d = load(path)
    labels = {"dpo": "DPO (eq. 19, eq. 20's adaptive betas)", "ippo_kl": "IPPO-KL (adaptive beta)",
              "ippo": "IPPO (clip 0.2)", "dpo_theory": "eq. 17 with Theorem 3.2's exact constants"}
    lines = ["| from the uniform policy, exact-advantage updates | final J/J* | updates that "
             "lowered J |", "|---|---|---|"]
    for name, curve in d["curves_optimality_ratio"].items():
        lines.append(f"| {labels.get(name, name)} | {curve[-1]:.3f} | "
                     f"{d['curve_decreases'][name]} |")
    b = d["bound_vs_truth"]
    slack = [t - x for t, x in zip(b["true_improvement"], b["bound"])]
    lines += ["", f"Theorem 3.2's bound held on {len(slack) - b['violations']} of {len(slack)} "
              f"random policy pairs (true improvement minus bound: minimum {min(slack):.2f}, "
              f"median {sorted(slack)[len(slack) // 2]:.1f}).", "",
              f"*Source: `{path}`; command `{d['command']}`; date {committed(path)} (commit).*"]
    return "\n".join(lines)


def quickstart_returns() -> str:
    path = "benchmarks/results/cpu_cores.json"
    d = load(path)
    run = d["quickstart"]["runs"]["one core"][0]["final_return"]
    every = d["quickstart"]["runs"]["all cores"][0]["final_return"]
    cells = "; ".join(f"{e.upper()} {run[e][0]:.2f} +- {run[e][1]:.2f} (one core), "
                      f"{every[e][0]:.2f} +- {every[e][1]:.2f} (every core)" for e in run)
    random_path = "benchmarks/results/collapse_check.json"
    random = load(random_path)
    assert random["env"] == "mpe_spread" and random["num_agents"] == 5, random_path
    return (f"Mean episode return over the last 10% of updates, 95% CI over 3 seeds: {cells} "
            f"(`{path}`); the uniformly random policy scores {random['random_policy_return']:.1f} "
            f"on 5-agent simple spread (`{random_path}`).")


def _flags_table(kind: type) -> str:
    """A markdown table of a CLI dataclass's flags: name, default, help."""
    import dataclasses
    import typing

    lines = ["| flag | default | meaning |", "|---|---|---|"]
    hints = typing.get_type_hints(kind, include_extras=True)
    docs = _field_docstrings(kind)
    for f in dataclasses.fields(kind):
        meta = getattr(hints[f.name], "__metadata__", ())
        text = next((getattr(m, "help", None) for m in meta if getattr(m, "help", None)), None)
        text = " ".join((text or docs.get(f.name, "")).split()).replace("|", "\\|")
        positional = any(type(m).__name__ == "_PositionalCall" or m is getattr(
            __import__("tyro").conf, "Positional", None) for m in meta)
        name = f.name.upper() if positional else "--" + f.name.replace("_", "-")
        default = "" if f.default is dataclasses.MISSING else f"`{f.default!r}`"
        lines.append(f"| `{name}` | {default} | {text} |")
    return "\n".join(lines)


def _field_docstrings(kind: type) -> dict[str, str]:
    """Field docstrings (the string after each field) of a dataclass's source."""
    import ast
    import inspect

    try:
        tree = ast.parse(inspect.getsource(kind).lstrip())
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant)):
            docs[a.target.id] = str(b.value.value)
    return docs


def cli_train() -> str:
    from dpo_jax.config import preset
    from dpo_jax.running import cli

    return (_flags_table(cli._train_args_type(preset("paper")))
            + "\n\nDefaults shown for `--preset paper` and an env of no paper family; "
              "`dpo-jax train ENV --preset P --help` shows the defaults of that preset and "
              "env (e.g. `--d-targets` 0.02 for a SMAX map).")


def cli_eval() -> str:
    from dpo_jax.running import cli

    return _flags_table(cli.EvalArgs)


def cli_plot() -> str:
    from dpo_jax.running import cli

    return _flags_table(cli.PlotArgs)


SMALL_GAME = "python examples/stochastic_game.py --skip-sweep --out benchmarks/results/stochastic_game"
PAPER_GAME = ("python examples/stochastic_game.py --game paper --episode-length 25 --seeds 3 "
              "--num-envs 16 --total-timesteps 100000 --skip-sweep --no-iql "
              "--out benchmarks/results/stochastic_game_paper")
CPU2 = "x86_64, 2 CPU cores"


def _final_by_label(path: str, metric: str = "optimality_ratio",
                    scale: float = 1.0) -> dict[str, tuple[float, float, int]]:
    """Label -> (mean, 95% half-width, runs) of each run's mean over its last 10% of
    ``metric`` / ``scale``."""
    import ast

    import numpy as np

    d = load(path)
    runs = d["meta"]["runs"]
    labels = ast.literal_eval(runs) if isinstance(runs, str) else runs
    values = np.asarray(d["metrics"][metric], np.float64) / scale
    tail = max(1, round(values.shape[1] * 0.1))
    per_run = np.nanmean(values[:, -tail:], axis=1)
    out = {}
    for label in dict.fromkeys(labels):
        rows = per_run[[i for i, lab in enumerate(labels) if lab == label]]
        from dpo_jax.running.results import t95

        half = t95(len(rows)) * rows.std(ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else 0.0
        out[label] = (float(rows.mean()), float(half), len(rows))
    return out


def _row(cells: dict[str, tuple[float, float, int]], names: list[str]) -> str:
    return "| " + " | ".join(f"{cells[n][0]:.3f} +- {cells[n][1]:.3f}" for n in names) + " |"


def game_small() -> str:
    path = "benchmarks/results/stochastic_game/algorithms.json"
    final = _final_by_label(path)
    j_star = float(load("benchmarks/results/stochastic_game/iql.json")["meta"]["J_star"])
    iql = _final_by_label("benchmarks/results/stochastic_game/iql.json", "greedy_return", j_star)
    names = ["dpo", "ippo", "ippo_kl", "dpo_no_kl"]
    lines = ["| DPO (d_target 0.1) | IPPO | IPPO-KL | DPO w/o kl | IQL |", "|---|---|---|---|---|",
             _row(final, names) + f" {iql['iql'][0]:.3f} +- {iql['iql'][1]:.3f} |"]
    return "\n".join(lines + ["", f"Exact J(pi)/J* over the last 10% of updates, "
                               f"{final['dpo'][2]} seeds; IQL: its greedy episodes' sampled "
                               "return / J* (its recurrent policy is not stationary).", "",
                               source(path, load(path), SMALL_GAME, CPU2)])


def _grid_betas(path: str, fraction: float = 0.1) -> str:
    """Where the (delta, omega) grid's betas sit over the last ``fraction`` of updates."""
    metrics = load(path)["metrics"]
    betas = [np.asarray(metrics[k], np.float64) for k in ("beta_sqrt", "beta_kl")]
    tail = max(1, int(round(betas[0].shape[1] * fraction)))
    start = betas[0][:, 0].max()
    top = max(float(b[:, -tail:].max()) for b in betas)
    return (f"In the (delta, omega) grid both betas start at {start:g} and, over the last "
            f"{fraction:.0%} of updates, are at most {top:g} in every run (their floor is "
            f"0.001): the penalties barely act, whatever delta and omega.")


def game_small_sweeps() -> str:
    path = "benchmarks/results/stochastic_game/d_target.json"
    d_final = _final_by_label(path)
    grid_path = "benchmarks/results/stochastic_game/delta_omega.json"
    grid = _final_by_label(grid_path)
    lines = ["| DPO | " + " | ".join(d_final) + " |", "|---" * (len(d_final) + 1) + "|",
             "| J/J* " + _row(d_final, list(d_final)), "",
             "| DPO | " + " | ".join(grid) + " |", "|---" * (len(grid) + 1) + "|",
             "| J/J* " + _row(grid, list(grid)), "",
             _grid_betas(grid_path), "",
             source(path, load(path), "python examples/stochastic_game.py --sweep-only "
                    "--out benchmarks/results/stochastic_game", CPU2), "",
             source(grid_path, load(grid_path),
                    "python examples/stochastic_game.py --delta-omega-grid --seeds 3 "
                    "--out benchmarks/results/stochastic_game", CPU2)]
    return "\n".join(lines)


def game_paper() -> str:
    path = "benchmarks/results/stochastic_game_paper/algorithms.json"
    final = _final_by_label(path)
    sweep_path = "benchmarks/results/stochastic_game_paper/d_target.json"
    sweep = _final_by_label(sweep_path)
    names = ["dpo", "ippo", "ippo_kl", "dpo_no_kl"]
    return "\n".join([
        "| DPO (d_target 0.1) | IPPO | IPPO-KL | DPO w/o kl |", "|---|---|---|---|",
        _row(final, names), "",
        "| DPO | " + " | ".join(sweep) + " |", "|---" * (len(sweep) + 1) + "|",
        "| J/J* " + _row(sweep, list(sweep)), "",
        source(path, load(path), PAPER_GAME, CPU2), "",
        source(sweep_path, load(sweep_path), PAPER_GAME.replace("--skip-sweep", "--sweep-only"),
               CPU2)])


def _tail_stats(path: str, metric: str, fraction: float = 0.1) -> dict[str, tuple[float, float]]:
    """Per entry of a ``save_metrics`` file: the mean over seeds and agents of
    ``metric`` over the last ``fraction`` of updates, and its largest value."""
    import collections

    import numpy as np

    d = load(path)
    groups = collections.defaultdict(list)
    for i, run in enumerate(d["meta"]["runs"]):
        groups[run].append(i)
    values = np.asarray(d["metrics"][metric], float)
    values = values.reshape(values.shape[0], values.shape[1], -1).mean(-1)
    tail = max(1, round(values.shape[1] * fraction))
    return {g: (float(values[idx][:, -tail:].mean()), float(values[idx].max()))
            for g, idx in groups.items()}


def game_small_notes() -> str:
    path = "benchmarks/results/stochastic_game/algorithms.json"
    kl = _tail_stats(path, "kl")
    beta = _tail_stats(path, "beta_kl")
    d_target = load(path)["meta"]["config"]["d_target"]
    return (f"These runs are at 0.6% of the authors' default budget; read them with care. At "
            f"`d_target` {d_target:g} DPO's KL per update over the last 10% of updates (mean "
            f"over seeds and agents) is {kl['dpo'][0]:.4f}, below `d_target / delta` = "
            f"{d_target / 1.5:.4f}, so beta_2 stays at {beta['dpo'][0]:.4f} (its floor is "
            f"0.001) and the penalties barely act; the gap is between an unclipped, 1/N-scaled policy "
            f"gradient and IPPO's clipped one (`{path}`). The `d_target` sweep (Fig. 1b) and "
            f"the (delta, omega) grid (Fig. 9), same game and budget:")


def game_paper_notes() -> str:
    path = "benchmarks/results/stochastic_game_paper/algorithms.json"
    sweep = "benchmarks/results/stochastic_game_paper/d_target.json"
    kl, entropy = _tail_stats(path, "kl"), _tail_stats(path, "entropy")
    d_target = load(path)["meta"]["config"]["d_target"]
    members = ("dpo", "ippo_kl", "dpo_no_kl")
    low = min(kl[m][0] for m in members)
    high = max(kl[m][0] for m in members)
    ent = (min(entropy[m][0] for m in members), max(entropy[m][0] for m in members))
    beta, skl = _tail_stats(sweep, "beta_kl"), _tail_stats(sweep, "kl")
    bound = "d_target=0.01"
    return (f"Over the last 10% of updates (means over seeds and agents), the three unclipped "
            f"members keep a policy entropy of {ent[0]:.2f} to {ent[1]:.2f} (IPPO's: "
            f"{entropy['ippo'][0]:.3f}) while each update moves the policy by a KL of "
            f"{low:.4f} to {high:.4f}, below `d_target / delta` = {d_target / 1.5:.4f}, so the "
            f"penalties never act; IPPO's clip limits each sample's ratio and it learns. A "
            f"binding penalty (`d_target` 0.01: beta_2 {beta[bound][0]:.4f} over the last 10% "
            f"of updates, at most {beta[bound][1]:.4f}, the KL {skl[bound][0]:.4f}) only slows "
            f"the same stalled drift (`{path}`, `{sweep}`). At the full horizon and a million "
            f"steps per run, and without the entropy bonus: [the longest runs]"
            f"(#the-longest-runs-1m-steps-per-run-on-the-paper-size-game-2m-on-mpe).")


def mpe_tasks() -> str:
    lines = ["| task (random policy) | DPO | IPPO | DPO w/o sqrt | DPO w/o kl |",
             "|---|---|---|---|---|"]
    paths = []
    for task in ("mpe_navigation", "mpe_line", "mpe_circle"):
        path = f"benchmarks/results/mpe_tasks/{task}/summary.json"
        paths.append(path)
        d = load(path)
        cells = [f"{d['final'][a]['return']:.2f} +- {d['final'][a]['return_ci95']:.2f}"
                 for a in ("dpo", "ippo", "dpo_no_sqrt", "dpo_no_kl")]
        lines.append(f"| {task} ({d['random_policy_return']:.1f}) | " + " | ".join(cells) + " |")
    d = load(paths[0])
    return "\n".join(lines + ["", "Final episode return (last 10% of updates), 2 seeds x 40k "
                               "env steps, 5 agents.", "",
                               source("benchmarks/results/mpe_tasks/", d,
                                      "python examples/mpe_tasks.py --quick --out "
                                      "benchmarks/results/mpe_tasks", CPU2)])


def smax_3m() -> str:
    path = "benchmarks/results/smax/3m/summary.json"
    d = load(path)
    lines = ["| | episode return | win rate |", "|---|---|---|"]
    for algo in ("dpo", "ippo"):
        f = d["final"][algo]
        lines.append(f"| {algo.upper()} | {f['return']:.2f} +- {f['return_ci95']:.2f} | "
                     f"{f['win_rate']:.2f} +- {f['win_rate_ci95']:.2f} |")
    lines.append(f"| uniform random policy | {d['random_policy']['episode_return']:.2f} | "
                 f"{d['random_policy']['won']:.2f} |")
    return "\n".join(lines + ["", f"{d['seeds']} seeds x {d['env_steps']:,} env steps, the "
                               "last 10% of updates.", "",
                               source(path, d, "python examples/smax.py --map 3m --out benchmarks/results/smax",
                                      CPU2)])


def startup() -> str:
    path = "benchmarks/results/startup.json"
    d = load(path)
    lines = ["| command | seconds (best of %d, a fresh process each) |" % d["best_of"],
             "|---|---|"]
    lines += [f"| `{name}` | {sec:.2f} |" for name, sec in d["seconds"].items()]
    return "\n".join(lines + ["", source(path, d)])


def test_durations() -> str:
    path = "benchmarks/results/test_durations.json"
    d = load(path)
    rows = sorted(d["files"].items(), key=lambda kv: -kv[1]["seconds"])
    lines = ["| file | tests | seconds |", "|---|---|---|"]
    lines += [f"| `{name}` | {r['tests']} | {r['seconds']:.0f} |" for name, r in rows]
    lines += [f"| total | {sum(r['tests'] for _, r in rows)} | "
              f"{sum(r['seconds'] for _, r in rows):.0f} |"]
    total = sum(r["seconds"] for _, r in rows)
    if d.get("wall_seconds"):
        side = (f"; the files ran side by side on pytest-xdist workers, so their "
                f"{total / 60:.1f} min add up to more" if total > d["wall_seconds"] else "")
        lines += ["", f"The suite took {d['wall_seconds'] / 60:.1f} min of wall time{side}."]
    return "\n".join(lines + ["", source(path, d)])


def sweepable_fields() -> str:
    """The fields a sweep may set, from ``config.SWEEPABLE_FIELDS`` and the docstring."""
    from dpo_jax.config import SWEEPABLE_FIELDS, TrainConfig, field_docs

    docs = field_docs()
    lines = ["| field | default (`TrainConfig`) | what it is |", "|---|---|---|"]
    for name in SWEEPABLE_FIELDS:
        text = " ".join(docs.get(name, "").replace("``", "`").split())
        lines.append(f"| `{name}` | {getattr(TrainConfig, name)!r} | {text} |")
    return "\n".join(lines + ["", "*Source: `dpo_jax.config.SWEEPABLE_FIELDS`.*"])


def static_fields() -> str:
    """The fields that shape the program, with why (``config.STATIC_FIELDS``)."""
    from dpo_jax.config import STATIC_FIELDS

    lines = ["| field | static because |", "|---|---|"]
    lines += [f"| `{name}` | {why} |" for name, why in STATIC_FIELDS.items()]
    return "\n".join(lines + ["", "*Source: `dpo_jax.config.STATIC_FIELDS`.*"])


def sweep_benchmark() -> str:
    path = "benchmarks/results/sweep.json"
    d = load(path)
    grid = d["grid"]
    runs = d["points"] * d["seeds"]
    lines = ["| how the grid trains | processes | compiles | wall time (s) | grid's speed-up |",
             "|---|---|---|---|---|",
             f"| one program, `train(..., sweep=grid)` | 1 | 1 | {grid['wall_s']:.0f} | - |"]
    for mode, compiles in (("cold", f"{d['points']}"), ("warm", "1")):
        sep = d[f"separate_{mode}"]
        what = ("each its own empty compilation cache" if mode == "cold"
                else "one shared persistent cache")
        lines.append(f"| one `train` call per point ({what}) | {len(sep['processes'])} | "
                     f"{compiles} | {sep['wall_s']:.0f} | "
                     f"{sep['wall_s'] / grid['wall_s']:.1f}x |")
    per_process = []
    for mode in ("cold", "warm"):
        procs = d[f"separate_{mode}"]["processes"]
        mean = {k: sum(p[k] for p in procs) / len(procs)
                for k in ("wall_s", "compile_s", "run_s", "env_steps_per_s")}
        per_process += ["",
                        f"One call per point, {mode} cache, per process (mean): "
                  f"{mean['wall_s']:.1f} s, of which {mean['compile_s']:.1f} s "
                  f"{'compiling' if mode == 'cold' else 'loading the program from the cache'}, "
                  f"{mean['run_s']:.1f} s training its 2 runs at "
                  f"{mean['env_steps_per_s']:,.0f} env steps/s, and "
                  f"{mean['wall_s'] - mean['compile_s'] - mean['run_s']:.1f} s the rest "
                  f"(interpreter, imports, env, the random policy's baseline)."]
    first, second = d["second_call"]
    lines += ["", f"The grid: {d['points']} points (`actor_lr` x `entropy_coef`) x "
              f"{d['seeds']} seeds = {runs} runs of {d['algo'].upper()} on MPE simple spread "
              f"(`{d['preset']}` preset), {d['total_timesteps']:,} env steps each; wall time "
              f"is each process's whole life (imports, env, compile, training), summed. In the "
              f"grid's process the compile took {grid['compile_s']:.1f} s and the training "
              f"{grid['run_s']:.1f} s ({grid['env_steps_per_s']:,.0f} env steps/s).",
              *per_process, "",
              f"A second `train` call in the same process with one changed float "
              f"(`actor_lr` {first['actor_lr']:g} -> {second['actor_lr']:g}, 2 seeds) reached "
              f"the end of its first update {second['to_first_update_s']:.2f} s after the "
              f"call (program lookup and initial state: {second['compile_s']:.2f} s; one "
              f"update: {second['update_s']:.2f} s); the first call took "
              f"{first['to_first_update_s']:.2f} s, its compile included."]
    memory = d.get("memory")
    if memory:
        lines += ["", "| points x 2 seeds | runs | peak resident memory (GiB) |", "|---|---|---|"]
        lines += [f"| {m['points']} | {m['runs']} | {m['peak_rss_gib']:.2f} |"
                  for m in memory["rows"]]
        lines += ["", f"Memory grows by about {memory['gib_per_run'] * 1024:.0f} MiB per run "
                  f"over a base of {memory['base_gib']:.2f} GiB (a straight line through the "
                  f"first and last rows, each one update of the grid's config): the largest "
                  f"grid of this config that fits in 24 GiB is about "
                  f"{memory['largest_points_in_24_gib']:,} points x 2 seeds."]
    return "\n".join(lines + ["", source(path, d)])


LONG_RUNS = "benchmarks/results/long_runs.json"

_ALONG = {"ahead": "+", "behind": "-", "level": "=", "too few runs": "?"}


def _welch_cell(versus: Optional[dict]) -> str:
    """A member's Welch difference from IPPO at the end, with its interval and verdict."""
    if not versus:
        return "-"
    end = versus["end"]
    return f"{end['diff']:+.3f} [{end['low']:+.3f}, {end['high']:+.3f}] {end['verdict']}"


def _long_verdict(end: dict) -> str:
    return {"ahead": "ahead of IPPO", "behind": "behind IPPO",
            "level": "level with IPPO"}.get(end["verdict"], end["verdict"])


def _cell(v: list, digits: int = 3) -> str:
    p, lo, hi = v
    return (f"{p:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if lo == lo and hi == hi
            else f"{p:.{digits}f}")


def long_runs() -> str:
    """Per long comparison: each entry's final score, its Welch difference from IPPO
    at the end and along the curve, and rliable's IQM and P(entry > IPPO)."""
    from dpo_jax.running.jobs import display_name

    d = load(LONG_RUNS)
    out = []
    for job in d["jobs"]:
        game = job["metric"] == "optimality_ratio"
        score = "J/J*" if game else "return"
        ref = (f"J* = {job['reference']['j_star']:.2f}; the random policy's J/J* "
               f"{job['reference']['random_ratio']:.3f}" if game
               else f"random policy {job['random_return']:.2f}")
        starts = ", ".join(f"`{f['folder']}` {f['sittings']}" for f in job["folders"])
        out += [f"**{job['env']}** ({job['env_steps']:,} env steps per run, "
                f"{job['fraction']:.0%} of {d['reference_steps']:,}; {ref}; "
                f"starts of each job: {starts})", "",
                f"| entry | runs | final {score} | - IPPO at the end (Welch 95%) | "
                f"along the curve | IQM (normalised) | P(entry > IPPO) |",
                "|---|---|---|---|---|---|---|"]
        rl = job["rliable"]
        for name, e in job["entries"].items():
            v = job["versus_ippo"].get(name)
            diff = _welch_cell(v)
            along = ("`" + "".join(_ALONG.get(a["verdict"], "?") for a in v["along"]) + "`"
                     if v else "-")
            pi = rl["probability_of_improvement"].get(f"{name},{v['against']}") if v else None
            out.append(f"| {name} | {e['runs']} | {e['mean']:.3f} +- {e['ci95']:.3f} | "
                       f"{diff} | {along} | {_cell(rl['iqm'][name])} | "
                       f"{_cell(pi) if pi else '-'} |")
        out.append("")
        for name, e in job["entries"].items():
            if e.get("score", "").startswith("greedy"):
                proxy = e["tail"].get("memoryless_optimality_ratio")
                out += [f"{display_name(name)}'s agents are recurrent, so no exact J exists "
                        f"for them: its "
                        f"score is its greedy episodes' return / J* (a Monte Carlo estimate; "
                        f"the training episodes, at epsilon {e['tail']['epsilon']:.2f}, give "
                        f"{e['tail']['episode_return'] / job['reference']['j_star']:.3f})"
                        + (f"; the J/J* it logs, of a memoryless proxy (its Q-network from a "
                           f"zero hidden state and no previous action), is {proxy:.3f}"
                           if proxy is not None else "") + ".", ""]
    out += ["Final score: each run's mean over the last 10% of its updates, mean over runs "
            "+- the 95% t-interval. Along the curve: at 10 evenly spaced env-step counts, "
            "the mean over a window of 5% of the env steps ending there, Welch's 95% "
            "interval of the difference from IPPO: `+` ahead, `-` behind, `=` level. IQM "
            "and P: rliable with 95% stratified-bootstrap intervals on scores normalised by "
            "fixed references only (the game: random policy 0, J* 1; MPE: the return minus "
            "the random policy's). The budget reference: " + d["reference_source"] + ".",
            "", source(LONG_RUNS, d)]
    return "\n".join(out)


def long_runs_ablations() -> str:
    """Per long comparison: each of DPO's ablations against DPO (the paper's Fig. 5
    and 8 show them behind DPO), Welch at the end and along the curve."""
    from dpo_jax.running.jobs import display_name

    d = load(LONG_RUNS)
    lines = ["| task, settings | ablation | final score | DPO's | - DPO at the end (Welch 95%) "
             "| along the curve |", "|---|---|---|---|---|---|"]
    for job in d["jobs"]:
        what = dict(LONG_RUNS_PLANNED).get(job["folders"][0]["folder"], job["env"])
        for name, v in job.get("versus_dpo", {}).items():
            e, ref = job["entries"][name], job["entries"][v["against"]]
            along = "".join(_ALONG.get(a["verdict"], "?") for a in v["along"])
            lines.append(f"| {what} | {display_name(name)} | {e['mean']:.3f} | "
                         f"{ref['mean']:.3f} | {_welch_cell(v)} | `{along}` |")
    return "\n".join(lines + [
        "", "Scores as in the table above (J/J* on the game, the return on MPE); `+` ahead "
        "of DPO, `-` behind, `=` level, at the same 10 points along the curve.", "",
        source(LONG_RUNS, d)])


LONG_RUNS_PLANNED = (
    ("game_paper", "the paper-size stochastic game at the paper's settings"),
    ("game_authors", "the paper-size stochastic game at the authors' settings (pooled samples)"),
    ("mpe_navigation_paper", "MPE navigation at the paper's settings"),
    ("mpe_line_paper", "MPE line at the paper's settings"),
    ("mpe_circle_paper", "MPE circle at the paper's settings"),
)
"""The long comparisons of docs/reproducing.md, by their first job folder."""


def long_runs_verdict() -> str:
    """One sentence per long comparison: DPO against IPPO at the end and along the
    curve; then the planned comparisons the file does not hold."""
    d = load(LONG_RUNS)
    lines = []
    for job in d["jobs"]:
        v = job["versus_ippo"].get("dpo")
        if not v:
            continue
        game = job["metric"] == "optimality_ratio"
        e = job["entries"]
        score = "J/J*" if game else "final return"
        along = [a["verdict"] for a in v["along"]]
        counts = ", ".join(f"{along.count(x)} {x}" for x in ("ahead", "level", "behind")
                           if along.count(x))
        pi = job["rliable"]["probability_of_improvement"].get("dpo,ippo")
        what = dict(LONG_RUNS_PLANNED).get(job["folders"][0]["folder"], job["env"])
        lines.append(f"- {what[0].upper() + what[1:]}, {job['env_steps']:,} env steps per run "
                     f"({job['fraction']:.0%} of {d['reference_steps']:,}), "
                     f"{e['dpo']['runs']} seeds: DPO {score} {e['dpo']['mean']:.3f}, IPPO "
                     f"{e['ippo']['mean']:.3f}; DPO is {_long_verdict(v['end'])} at the end "
                     f"(difference {v['end']['diff']:+.3f}, 95% interval "
                     f"[{v['end']['low']:+.3f}, {v['end']['high']:+.3f}]); along the curve "
                     f"at {len(along)} points: {counts}"
                     + (f"; P(DPO > IPPO) = {_cell(pi)}" if pi else "")
                     + (f"; IQL {e['iql']['mean']:.3f}"
                        + (" (its greedy episodes)" if e["iql"].get("score", "").startswith(
                            "greedy") else "") if "iql" in e else "") + ".")
    held = {job["folders"][0]["folder"]: job for job in d["jobs"]}
    missing = [what for folder, what in LONG_RUNS_PLANNED if folder not in held]
    if "game_paper" in held and "iql" not in held["game_paper"]["entries"]:
        missing.insert(0, "IQL on the paper-size game")
    if missing:
        lines += ["", "Not in the results yet: " + "; ".join(missing) + "."]
    return "\n".join(lines + ["", source(LONG_RUNS, d)])


def long_runs_game_notes() -> str:
    """What the unclipped members' policies do at the end of the paper-settings game
    run: entropy, KL per update and betas over the last 10% of updates."""
    d = load(LONG_RUNS)
    job = next((j for j in d["jobs"] if j["folders"][0]["folder"] == "game_paper"), None)
    if job is None:
        return "The paper-settings game run is not in the results yet."
    e = job["entries"]
    members = [m for m in ("dpo", "ippo_kl", "dpo_no_kl") if m in e]
    ent = [e[m]["tail"]["entropy"] for m in members]
    kl = [e[m]["tail"]["kl"] for m in members]
    betas = [e[m]["tail"][b] for m in members for b in ("beta_kl", "beta_sqrt")
             if b in e[m]["tail"]]
    actions = 5  # the paper-size game's actions per agent
    def span(values: list[float], digits: int) -> str:
        low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
        return low if low == high else f"{low} to {high}"

    return (f"Over the last 10% of updates (means over seeds and agents) the three unclipped "
            f"members' policy entropy is {span(ent, 2)} nats (the uniform "
            f"policy's: ln {actions} = {math.log(actions):.2f}; IPPO's: "
            f"{e['ippo']['tail']['entropy']:.3f}), each update moves the policy by a KL of "
            f"{span(kl, 4)}, and their betas average {span(betas, 4)} (the floor is 0.001): "
            f"the penalties do not act, and after a million steps the policies are still near "
            f"uniform (`{LONG_RUNS}`).")


def long_runs_mpe_notes() -> str:
    """What the policies do at the end of each MPE run at the paper's settings: each
    member's policy entropy and betas over the last 10% of updates."""
    from dpo_jax.envs import make_env

    d = load(LONG_RUNS)
    jobs = [j for j in d["jobs"] if j["env"].startswith("mpe_")]
    if not jobs:
        return "No MPE run is in the results yet."
    lines = ["| task | member | final return | policy entropy (nats) | KL per update | "
             "beta_sqrt | beta_kl |", "|---|---|---|---|---|---|---|"]
    actions = set()
    for job in jobs:
        actions.add(make_env(job["env"], **job["env_kwargs"]).action_spec.num_actions)
        for name, e in job["entries"].items():
            t = e["tail"]
            lines.append(f"| {job['env']} | {name} | {e['mean']:.3f} | {t['entropy']:.3f} | "
                         f"{t['kl']:.4f} | "
                         + " | ".join(f"{t[b]:.4f}" if b in t else "-"
                                      for b in ("beta_sqrt", "beta_kl")) + " |")
    uniform = ", ".join(f"ln {a} = {math.log(a):.2f}" for a in sorted(actions))
    return "\n".join(lines + [
        "", f"Each run's mean over the last 10% of its updates, then the mean over runs and "
        f"agents; the uniform policy's entropy: {uniform}; `-`: the member has no such "
        f"penalty.", "", source(LONG_RUNS, d)])


def entropy_diagnostic() -> str:
    """DPO and IPPO on the paper-size game with and without the entropy bonus."""
    path = "benchmarks/results/long_runs/entropy_diagnostic.json"
    d = load(path)
    job = d["jobs"][0]
    lines = ["| entry | runs | final J/J* | policy entropy (nats) | KL per update | "
             "- IPPO at the end (Welch 95%) |", "|---|---|---|---|---|---|"]
    for name, e in job["entries"].items():
        lines.append(f"| {name} | {e['runs']} | {e['mean']:.3f} +- {e['ci95']:.3f} | "
                     f"{e['tail']['entropy']:.3f} | {e['tail']['kl']:.4f} | "
                     f"{_welch_cell(job['versus_ippo'].get(name))} |")
    return "\n".join(lines + [
        "", f"Trained by `{job['folders'][0]['command']}`: {job['env_steps']:,} env steps "
        "per run, both coefficients in one compiled program; J/J*, entropy and KL: each run's mean "
        "over the last 10% of updates, then the mean over runs (J/J*: +- the 95% t-interval); "
        "the entropy and the KL are means over agents.", "",
        source(path, d)])


TABLES: dict[str, Callable[[], str]] = {
    name: fn for name, fn in globals().items()
    if callable(fn) and getattr(fn, "__module__", None) == __name__
    and not name.startswith("_")
    and name not in ("load", "committed", "source", "parts_source", "k", "best", "render",
                     "main")
}


def render(text: str) -> str:
    """``text`` with every generated block filled from its results file."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise KeyError(f"unknown generated block {name!r}; known: {sorted(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


FIGURES = {"benchmarks/results/authors_parity/parity.png": "docs/figures/parity.png"}
"""Result figures that pages show, copied into ``docs/figures/`` so that the same
relative path works on GitHub, offline and in the site."""


def pages() -> list[pathlib.Path]:
    """The README and every page of the docs: each holds its generated blocks filled
    in (so GitHub and an offline reader see what the site shows)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str]) -> int:
    """Fill every generated block of the README and the docs from the result files
    and copy the figures; with ``--check``, only say which page or figure differs."""
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if "--check" not in argv:
                page.write_text(new)
    for source_path, copy in FIGURES.items():
        data = (ROOT / source_path).read_bytes()
        target = ROOT / copy
        if not target.exists() or target.read_bytes() != data:
            stale.append(copy)
            if "--check" not in argv:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    if "--check" in argv and stale:
        print(f"{', '.join(stale)} differ from their result files: run python docs/generate.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
