"""What a training job is, as data: env, config, algorithms, ``d_target`` values, seeds.

The CLI writes a :class:`RunSpec` to ``{out}/spec.json`` before training; ``dpo-jax
eval`` and ``dpo-jax plot`` read it back, and :func:`plan` rebuilds from it exactly
the env, config, keys and objective parameters the training used (so a saved
checkpoint can be restored into a state of the right shape).

Sweep layout: the policy-gradient members of ``algos`` x ``d_targets`` x the
``sweep`` points x ``seeds`` train as ONE compiled program (the algorithm and every
numeric hyperparameter are data, ``ObjectiveParams``); a member trains once per
distinct point of the fields it uses (IPPO does not use ``d_target`` and gets one
entry whatever ``d_targets`` holds; ``running.sweeps.UNUSED_BY``). Every entry
reuses the same ``seeds`` keys (common random numbers across algorithms). IQL /
IDDPG, each its own program, run after it with the config fields they take over
(``baseline_config``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping, NamedTuple, Optional

import jax

from dpo_jax.baselines.config import BaselineConfig, from_train_config, used_fields
from dpo_jax.config import ALGORITHMS, BASELINE_ALGORITHMS, TrainConfig
from dpo_jax.envs import make_env
from dpo_jax.envs.base import MultiAgentEnv
from dpo_jax.core.objectives import ObjectiveParams, objective_params, stack_params
from dpo_jax.running import sweeps
from dpo_jax.running.checkpoint import identity_diff

SPEC_FILE = "spec.json"
JOB_FORMAT = 4
"""The job folder format this version writes (``spec.json``'s ``format``):

- 1: dpo-jax 0.1.0, checkpoints without manifests (not read: finish such a job with
  0.1.0, or start it anew);
- 2: dpo-jax 0.2.0, ``spec.json`` without a format, manifests and metrics in
  sub-folders (read, upgraded in memory: config fields it lacks take their defaults,
  which keep 0.2.0's behaviour, and an empty ``d_targets`` means the config's);
- 3: dpo-jax 0.3.0: ``spec.json`` records its format and the version that wrote
  it, ``run.json`` its identity apart from its device layouts, manifests digest
  every state file (read: ``run.json``'s objective parameters lack the fields 0.4.0
  added, which its config fields give);
- 4: this version: ``spec.json`` holds the job's ``sweep`` points (a 0.3.0 reader
  would ignore them and train another job, so it refuses format 4), and each run's
  objective parameters carry every numeric hyperparameter.
"""
READ_FORMATS = (2, 3, 4)
FORMAT_VERSIONS = {1: "0.1.0", 2: "0.2.0", 3: "0.3.0"}


class JobFormatError(ValueError):
    """A job folder written in a format this version cannot read (both versions
    named in the message, with what to do)."""


def _version() -> str:
    from dpo_jax import __version__

    return __version__


def job_format(out: str | pathlib.Path, data: Optional[Mapping[str, Any]] = None) -> int:
    """The format of the job folder ``out`` (see ``JOB_FORMAT``): ``spec.json``'s
    ``format``, else 1 when its checkpoints have no manifests (dpo-jax 0.1.0), else
    2."""
    if data is not None and "format" in data:
        try:
            return int(data["format"])
        except (TypeError, ValueError):
            raise ValueError(f"{str(pathlib.Path(out) / SPEC_FILE)!r}: format "
                             f"{data['format']!r} is not a number") from None
    out = pathlib.Path(out)
    for folder in out.glob("checkpoints*"):
        states = [p for p in folder.glob("update_*") if p.is_dir()]
        if states and not (folder / "manifests").exists():
            return 1
    return 2


def check_format(out: str | pathlib.Path, fmt: int, written_by: Optional[str]) -> None:
    """``JobFormatError`` naming both versions unless this version reads ``fmt``."""
    if fmt in READ_FORMATS:
        return
    by = written_by or FORMAT_VERSIONS.get(fmt, "an unknown version")
    if fmt > JOB_FORMAT:
        raise JobFormatError(
            f"{str(out)!r} was written by dpo-jax {by} (job format {fmt}), newer than this "
            f"dpo-jax {_version()} (formats {READ_FORMATS[0]}-{JOB_FORMAT}): upgrade dpo-jax "
            f"to use it")
    raise JobFormatError(
        f"{str(out)!r} was written by dpo-jax {by} (job format {fmt}); this dpo-jax "
        f"{_version()} reads formats {READ_FORMATS[0]}-{JOB_FORMAT}: finish or evaluate it "
        f"with dpo-jax {by}, or train it anew in another folder. The folder was not "
        f"changed")


USES_D_TARGET = ("dpo", "ippo_kl", "dpo_no_sqrt", "dpo_no_kl")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training job: ``env`` (a registered name) built with ``env_kwargs``,
    ``config`` (its ``algo`` and ``d_target`` are the defaults of ``algos`` and
    ``d_targets``), ``sweep`` points (``running.sweeps``: dicts of sweepable field ->
    value, each overriding the config), ``seeds`` runs per entry from base seed
    ``seed``."""

    env: str
    env_kwargs: Mapping[str, Any]
    config: TrainConfig
    algos: tuple[str, ...] = ()
    d_targets: tuple[float, ...] = ()
    seeds: int = 1
    seed: int = 0
    sweep: tuple[Mapping[str, float], ...] = ()

    def __post_init__(self) -> None:
        algos = self.algos or (self.config.algo,)
        allowed = ALGORITHMS + BASELINE_ALGORITHMS
        unknown = [a for a in algos if a not in allowed]
        if unknown:
            raise ValueError(f"unknown algorithm(s) {unknown}: expected any of {allowed}")
        if len(set(algos)) != len(algos):
            raise ValueError(f"algos {list(algos)} name an algorithm twice")
        if not (isinstance(self.seeds, int) and self.seeds >= 1):
            raise ValueError(f"seeds={self.seeds!r}: expected an int >= 1")
        for d in self.d_targets:
            TrainConfig(d_target=d)  # the config's own check, with its message
        pts = sweeps.check_points(self.config, sweeps.points(self.sweep))
        swept_d = "d_target" in sweeps.swept_fields(pts)
        if swept_d and self.d_targets:
            raise ValueError("d_target is both in d_targets and in the sweep: give its "
                             "values in one place")
        baselines = [a for a in algos if a in BASELINE_ALGORITHMS]
        if pts and baselines:
            raise ValueError(f"a sweep trains the policy-gradient family in one program; "
                             f"{', '.join(baselines)} take the config's values: train "
                             f"them in a job without a sweep")
        object.__setattr__(self, "sweep", pts)
        object.__setattr__(self, "algos", tuple(algos))
        # no d_targets means the config's one (0.1.0 job folders record []), or the
        # sweep's values when it sets d_target
        object.__setattr__(self, "d_targets", tuple(float(d) for d in self.d_targets)
                           or (() if swept_d else (float(self.config.d_target),)))
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``from_json`` reads it back)."""
        return {"env": self.env, "env_kwargs": dict(self.env_kwargs),
                "config": dataclasses.asdict(self.config), "algos": list(self.algos),
                "d_targets": list(self.d_targets), "seeds": self.seeds, "seed": self.seed,
                "sweep": [dict(p) for p in self.sweep]}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "RunSpec":
        return RunSpec(env=data["env"], env_kwargs=data["env_kwargs"],
                       config=TrainConfig(**data["config"]), algos=tuple(data["algos"]),
                       d_targets=tuple(data["d_targets"]), seeds=data["seeds"],
                       seed=data["seed"], sweep=tuple(data.get("sweep", ())))

    def save(self, out: str | pathlib.Path) -> pathlib.Path:
        """Write ``spec.json`` (format ``JOB_FORMAT``, with the version writing it)."""
        path = pathlib.Path(out) / SPEC_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": JOB_FORMAT, "dpo_jax_version": _version(), **self.to_json()}
        path.write_text(json.dumps(data, indent=1))
        return path

    def diff(self, other: "RunSpec") -> list[str]:
        """``field: saved X, now Y`` for each field of ``other`` (now) that differs
        from this one (saved); config fields one by one (``checkpoint.identity_diff``,
        which names a differing checkpoint the same way)."""
        return identity_diff(self.to_json(), other.to_json())

    @staticmethod
    def load(out: str | pathlib.Path) -> "RunSpec":
        """The job of an output folder, upgraded in memory from an older format it
        reads (``JOB_FORMAT``); ``JobFormatError`` naming both versions for one it
        does not, ``ValueError`` naming ``spec.json`` when it is unreadable or
        incomplete (``FileNotFoundError`` when missing)."""
        path = pathlib.Path(out) / SPEC_FILE
        if not path.exists():
            raise FileNotFoundError(f"{str(out)!r} holds no {SPEC_FILE}: not an output "
                                    f"folder of `dpo-jax train`")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{str(path)!r} cannot be read: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} is not a job description (a JSON object)")
        check_format(out, job_format(out, data), data.get("dpo_jax_version"))
        config = data.get("config")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(config) - known) if isinstance(config, dict) else []
        if unknown:
            raise JobFormatError(
                f"{str(path)!r} has config fields this dpo-jax {_version()} does not know "
                f"({', '.join(unknown)}): it was written by dpo-jax "
                f"{data.get('dpo_jax_version', 'another version')}; use that version")
        try:
            return RunSpec.from_json(data)
        except KeyError as err:
            raise ValueError(f"{str(path)!r} lacks the entry {err}") from None
        except TypeError as err:
            raise ValueError(f"{str(path)!r} is not a job description: {err}") from None


class Program(NamedTuple):
    """One compiled training program of a job: ``name`` (``"pg"`` for the policy-
    gradient sweep, else the baseline's algorithm), its config, keys, objective
    parameters (``None`` for baselines) and one label dict per run (``seed``: the
    index of the run's key among the ``seeds`` keys of the base seed)."""

    name: str
    config: TrainConfig | BaselineConfig
    keys: jax.Array
    obj: Optional[ObjectiveParams]
    labels: list[dict[str, Any]]


class Entry(NamedTuple):
    """One entry of the policy-gradient program: an algorithm, its ``d_target``
    (``None`` where it uses none) and the sweep point's fields it uses."""

    algo: str
    d_target: Optional[float]
    point: Mapping[str, float]


def swept(spec: RunSpec) -> list[str]:
    """The fields the job's sweep sets besides ``d_target`` (label columns)."""
    return [f for f in sweeps.swept_fields(spec.sweep) if f != "d_target"]


def entries(spec: RunSpec) -> list[Entry]:
    """The entries of the policy-gradient program: ``algos`` x ``d_targets`` x the
    sweep points, each algorithm once per distinct point of the fields it uses."""
    d_targets = spec.d_targets or (spec.config.d_target,)
    points = [dict(p) for p in spec.sweep] or [{}]
    out: list[Entry] = []
    for algo in spec.algos:
        if algo in BASELINE_ALGORITHMS:
            continue
        seen = set()
        for d in d_targets:
            for point in points:
                used = sweeps.used_point(algo, point)
                d_used = used.pop("d_target", d) if algo in USES_D_TARGET else None
                key = (d_used, tuple(sorted(used.items())))
                if key not in seen:
                    seen.add(key)
                    out.append(Entry(algo, d_used, used))
    return out


def varies_d_target(spec: RunSpec) -> bool:
    """Whether the job trains more than one ``d_target`` value."""
    return len(spec.d_targets) > 1 or len(
        {p["d_target"] for p in spec.sweep if "d_target" in p}) > 1


def entry_name(spec: RunSpec, algo: str, d_target: Optional[float],
               point: Optional[Mapping[str, Any]] = None) -> str:
    """How results name an entry: the algorithm, with ``d=<d_target>`` when the job
    varies ``d_target`` (and the algorithm uses it), then each swept field it uses as
    ``field=value``."""
    parts = [algo]
    if d_target is not None and varies_d_target(spec):
        parts.append(f"d={d_target:g}")
    for field in swept(spec):
        value = (point or {}).get(field)
        if value is not None:
            parts.append(f"{field}={value:g}")
    return " ".join(parts)


def entry_runs(spec: RunSpec, labels: list[Mapping[str, Any]]) -> dict[str, list[int]]:
    """The run indices of each entry (``entry_name``), in the labels' order."""
    groups: dict[str, list[int]] = {}
    for r, lab in enumerate(labels):
        name = entry_name(spec, lab["algo"], lab["d_target"], lab)
        groups.setdefault(name, []).append(r)
    return groups


def run_label(spec: RunSpec, entry: Entry, seed: int) -> dict[str, Any]:
    """One run's labels: ``algo``, ``d_target``, each swept field (``None`` where
    the algorithm ignores it), ``seed``."""
    return {"algo": entry.algo, "d_target": entry.d_target,
            **{f: entry.point.get(f) for f in swept(spec)}, "seed": seed}


def label_keys(spec: RunSpec) -> tuple[str, ...]:
    """The label columns of the job's runs (``run`` first, as the logs write them)."""
    return ("run", "algo", "d_target", *swept(spec), "seed")


def plan(spec: RunSpec, env: Optional[MultiAgentEnv] = None) -> list[Program]:
    """The job's programs, in training order (see the module docstring)."""
    env = make_env(spec.env, **spec.env_kwargs) if env is None else env
    keys = jax.random.split(jax.random.key(spec.seed), spec.seeds)
    programs = []
    pg = entries(spec)
    if pg:
        cfg = spec.config.replace(algo=pg[0].algo)
        members = []
        for entry in pg:
            fields = dict(entry.point)
            if entry.d_target is not None:
                fields["d_target"] = entry.d_target
            members.append(objective_params(cfg.replace(**fields), env.num_agents,
                                            algo=entry.algo))
        obj = stack_params([m for m in members for _ in range(spec.seeds)])
        labels = [run_label(spec, entry, s) for entry in pg for s in range(spec.seeds)]
        programs.append(Program("pg", cfg, jax.numpy.concatenate([keys] * len(pg)), obj,
                                labels))
    for algo in spec.algos:
        if algo in BASELINE_ALGORITHMS:
            labels = [{"algo": algo, "d_target": None, "seed": s}
                      for s in range(spec.seeds)]
            programs.append(Program(algo, baseline_config(spec.config, algo), keys, None,
                                    labels))
    return programs


def baseline_config(cfg: TrainConfig, algo: str) -> BaselineConfig:
    """IQL's / IDDPG's config from the job's ``TrainConfig``: the fields it takes
    over (``baselines.config.used_fields``), the rest its own defaults; the
    policy-gradient fields of the job (epochs, d_target, ...) are not for it."""
    base = TrainConfig(algo=algo, **{f: getattr(cfg, f) for f in used_fields(algo)})
    return from_train_config(base)
