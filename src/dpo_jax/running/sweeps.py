"""Hyperparameter sweeps as data: the points of a sweep, checked field by field.

Every ``config.SWEEPABLE_FIELDS`` value is data of the compiled program (a run's
``ObjectiveParams``), so all the points of a sweep x algorithms x seeds train as ONE
program over the run axis (``dpo_jax.train(..., sweep=...)``, ``dpo-jax train
--sweep``). A sweep is

- a grid, ``{"actor_lr": [1e-4, 3e-4], "entropy_coef": [0.0, 0.01]}`` (every
  combination, the first field varying slowest: :func:`grid`);
- explicit points, ``[{"actor_lr": 1e-4}, {"actor_lr": 3e-4, "entropy_coef": 0.0}]``
  (a field a point leaves out keeps the config's value);
- random search: :func:`random_points` draws such points from ranges.

A point's fields that an algorithm does not use collapse (:data:`UNUSED_BY`): IPPO
has no ``d_target``, betas or sqrt epsilon, the KL-penalised members no ratio clip,
so IPPO trains once per distinct point of the fields it uses, as it gets one entry
whatever ``d_targets`` holds. Its label then holds ``None`` for the unused fields.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from dpo_jax.config import STATIC_FIELDS, SWEEPABLE_FIELDS, TrainConfig, is_real

Point = dict[str, float]
Sweep = Union[Mapping[str, Sequence[float]], Sequence[Mapping[str, float]]]

_PENALTY_ONLY = ("d_target", "delta", "omega", "init_beta_sqrt", "init_beta_kl", "beta_min",
                 "beta_max", "kl_sqrt_eps")
UNUSED_BY: dict[str, frozenset[str]] = {
    "ippo": frozenset(_PENALTY_ONLY),
    "dpo": frozenset({"clip_eps"}),
    "ippo_kl": frozenset({"clip_eps", "init_beta_sqrt", "kl_sqrt_eps"}),
    "dpo_no_sqrt": frozenset({"clip_eps", "init_beta_sqrt", "kl_sqrt_eps"}),
    "dpo_no_kl": frozenset({"clip_eps", "init_beta_kl"}),
}
"""The sweepable fields each policy-gradient member ignores (its objective switches
the term off): points that differ only there are one run of that member."""


def grid(axes: Mapping[str, Sequence[float]]) -> list[Point]:
    """Every combination of the values of ``axes`` (field -> values), the first
    field varying slowest."""
    if not axes:
        return []
    axes = {name: (values.tolist() if isinstance(values, np.ndarray) else values)
            for name, values in axes.items()}
    names = list(axes)
    for name in names:
        values = axes[name]
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"sweep[{name!r}]={values!r}: expected a non-empty list of "
                             f"numbers")
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def random_points(space: Mapping[str, Any], num: int, seed: int = 0) -> list[Point]:
    """``num`` points drawn independently from ``space`` (numpy, ``seed``): per field
    ``(low, high)`` (uniform), ``("log", low, high)`` (log-uniform, both > 0) or a
    list of values (one drawn uniformly)."""
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"random_points: num={num!r}: expected an int >= 1")
    rng = np.random.default_rng(seed)
    points: list[Point] = [{} for _ in range(num)]
    for name, spec in space.items():
        if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "log":
            low, high = float(spec[1]), float(spec[2])
            if not 0 < low < high:
                raise ValueError(f"random_points: {name}={spec!r}: a log range needs "
                                 f"0 < low < high")
            values = np.exp(rng.uniform(math.log(low), math.log(high), num))
        elif isinstance(spec, tuple) and len(spec) == 2:
            low, high = float(spec[0]), float(spec[1])
            if not low < high:
                raise ValueError(f"random_points: {name}={spec!r}: expected low < high")
            values = rng.uniform(low, high, num)
        elif isinstance(spec, list) and spec:
            values = np.asarray(spec, dtype=np.float64)[rng.integers(0, len(spec), num)]
        else:
            raise ValueError(f"random_points: {name}={spec!r}: expected (low, high), "
                             f"('log', low, high) or a list of values")
        for point, value in zip(points, values):
            point[name] = float(value)
    return points


def _check_field(name: str, where: str) -> None:
    if name in SWEEPABLE_FIELDS:
        return
    if name in STATIC_FIELDS:
        raise ValueError(f"{where}: {name} cannot be swept: it is static "
                         f"({STATIC_FIELDS[name]}), so each value is another program; "
                         f"train one job per value. Sweepable: {', '.join(SWEEPABLE_FIELDS)}")
    raise ValueError(f"{where}: unknown field {name!r}; sweepable fields: "
                     f"{', '.join(SWEEPABLE_FIELDS)}")


def points(sweep: Optional[Sweep]) -> list[Point]:
    """The points of ``sweep`` (a grid dict or a list of point dicts; ``None`` or empty:
    none), unchecked."""
    if not sweep:
        return []
    if isinstance(sweep, Mapping):
        return grid(sweep)
    if isinstance(sweep, (str, bytes)) or not isinstance(sweep, Sequence):
        raise ValueError(f"sweep={sweep!r}: expected a dict of field -> values (a grid) or "
                         f"a list of dicts (points)")
    out = []
    for i, point in enumerate(sweep):
        if not isinstance(point, Mapping):
            raise ValueError(f"sweep point {i}: {point!r} is not a dict of field -> value")
        out.append(dict(point))
    return out


def check_points(cfg: TrainConfig, pts: Sequence[Mapping[str, Any]]) -> tuple[Point, ...]:
    """The points, each checked against ``cfg``: every field sweepable (a static or
    unknown one is named, with why), every value a finite real number that the
    config accepts (``TrainConfig``'s own check, with the point named), no point
    twice. Values are returned as Python floats."""
    out: list[Point] = []
    seen: set[tuple] = set()
    for i, point in enumerate(pts):
        where = f"sweep point {i} ({_describe(point)})"
        if not point:
            raise ValueError(f"{where}: a point names at least one field")
        for name, value in point.items():
            _check_field(str(name), where)
            if value is None:
                raise ValueError(f"{where}: {name}=None switches a term off, which changes "
                                 f"the program: set it in the config instead")
            if not is_real(value):
                raise ValueError(f"{where}: {name}={value!r} is invalid: expected a finite "
                                 f"real number")
        clean = {str(k): float(v) for k, v in point.items()}
        try:
            cfg.replace(**clean)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        key = tuple(sorted(clean.items()))
        if key in seen:
            raise ValueError(f"{where}: the sweep holds this point twice")
        seen.add(key)
        out.append(clean)
    return tuple(out)


def swept_fields(pts: Sequence[Mapping[str, float]]) -> list[str]:
    """The fields the points set, in the order they first appear."""
    return list(dict.fromkeys(name for point in pts for name in point))


def used_point(algo: str, point: Mapping[str, float]) -> Point:
    """``point`` without the fields ``algo`` ignores (:data:`UNUSED_BY`)."""
    unused = UNUSED_BY.get(algo, frozenset())
    return {k: v for k, v in point.items() if k not in unused}


def _describe(point: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in point.items())


def parse_cli(items: Sequence[str]) -> dict[str, list[float]]:
    """``--sweep`` arguments, ``FIELD=V1,V2,...`` each, as a grid dict; a
    ``ValueError`` naming the argument that does not parse."""
    axes: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"--sweep {item!r}: expected FIELD=V1,V2,... (e.g. "
                             f"actor_lr=1e-4,3e-4)")
        if name in axes:
            raise ValueError(f"--sweep {item!r}: {name} is swept twice")
        _check_field(name, f"--sweep {item!r}")
        parsed = []
        for text in values.split(","):
            try:
                parsed.append(float(text))
            except ValueError:
                raise ValueError(f"--sweep {item!r}: {text.strip()!r} is not a number"
                                 ) from None
        axes[name] = parsed
    return axes
