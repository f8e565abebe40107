"""The policy-objective family (DPO, IPPO, IPPO-KL, ablations) and eq. 20's beta rule.

Every member is one formula with numeric switches, so that the algorithm is data
inside the compiled program (a sweep over algorithms or ``d_target`` is a
``vmap``). For agent i, with ratio ``r = pi^i(a|o) / pi_old^i(a|o)``, advantage
``A`` and per-sample analytic ``KL = KL(pi_old^i(.|o) || pi^i(.|o))``:

    surrogate = adv_scale * E[ r A ]                      (use_clip = 0)
              = adv_scale * E[ min(r A, clip(r, 1-eps, 1+eps) A) ]   (use_clip = 1)
    loss = -surrogate + sqrt_on * beta_1 * S + kl_on * beta_2 * E[KL] - c_ent * E[H]

with ``S = sqrt(max(E[KL], eps))`` (eq. 19, the paper) or
``S = E[sqrt(max(KL, eps))]`` (the reference code). The members:

============  =========  ========  =======  ==========
algo          use_clip   sqrt_on   kl_on    adv_scale
============  =========  ========  =======  ==========
dpo           0          1         1        1/N (paper) or 1
ippo_kl       0          0         1        1/N (paper) or 1
dpo_no_sqrt   = ippo_kl
dpo_no_kl     0          1         0        1/N (paper) or 1
ippo          1          0         0        1
============  =========  ========  =======  ==========

The floor eps (``kl_sqrt_eps``, 1e-8) matters: at the first gradient step of each
update the new policy equals the old one, KL = 0, and d sqrt(x)/dx is infinite
there. Analytically grad(KL) = 0 at KL = 0, but in float32 it is rounding noise
(~1e-8 per logit), which ``sqrt(KL + eps)`` would amplify by 1/(2 sqrt(eps))
(5e5 for the reference code's eps = 1e-12). Below the floor the term is the
constant sqrt(eps) and contributes exactly zero gradient (0 is a subgradient of
sqrt(KL) at its minimum); above it the gradient is grad(KL) / (2 sqrt(KL)), at most
grad(KL) / (2 sqrt(eps)), finite.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpo_jax.config import TrainConfig, is_int

Array = jax.Array


class ObjectiveParams(NamedTuple):
    """A run's numbers: the objective-family member, its beta rule, and every other
    numeric hyperparameter (``config.SWEEPABLE_FIELDS``), as traced data of the
    compiled program, so that runs with different values share one program.

    The first ten fields select the member and eq. 20's rule; the rest are the
    ``TrainConfig`` fields of the same names (optimiser, losses, GAE, value
    normalisation, beta bounds, the sqrt's epsilon, the Gaussian policy's initial
    log-std). ``value_clip`` and ``huber_delta`` are 0 where the config's value is
    ``None`` (off: the program then has no clip / Huber loss and ignores them).

    All fields are float32 scalars (or arrays with a leading sweep axis when
    ``vmap``-ed); build them with :func:`objective_params`. A NamedTuple cannot
    check its own fields, so values made with ``_replace`` are checked where they
    are used: ``validate_objective_params`` on the host (``objective_params``,
    ``experiments.run``, an un-traced ``train(key, obj)``) and
    ``objective_params_ok`` inside the program (an invalid ``obj`` marks the run
    not ``finite``, so ``check_finite`` raises).
    """

    use_clip: Array
    clip_eps: Array
    sqrt_on: Array
    kl_on: Array
    adv_scale: Array
    d_target: Array
    delta: Array
    omega: Array
    init_beta_sqrt: Array
    init_beta_kl: Array
    beta_min: Array
    beta_max: Array
    kl_sqrt_eps: Array
    entropy_coef: Array
    value_coef: Array
    value_clip: Array
    huber_delta: Array
    value_norm_beta: Array
    adv_norm_eps: Array
    gamma: Array
    gae_lambda: Array
    actor_lr: Array
    critic_lr: Array
    adam_eps: Array
    max_grad_norm: Array
    init_log_std: Array


OBJECTIVE_FIELDS = ObjectiveParams._fields[:10]
"""The fields that select the objective-family member and eq. 20's rule."""

HYPERPARAMETER_FIELDS = ObjectiveParams._fields[10:]
"""The fields that carry ``TrainConfig``'s other numeric hyperparameters."""

_INF = float("inf")

# field -> (lower bound, lower bound inclusive, upper bound, upper bound inclusive,
# what is expected)
_BOUNDS: dict[str, tuple[float, bool, float, bool, str]] = {
    "use_clip": (0.0, True, 1.0, True, "a number in [0, 1] (a switch)"),
    "sqrt_on": (0.0, True, 1.0, True, "a number in [0, 1] (a switch)"),
    "kl_on": (0.0, True, 1.0, True, "a number in [0, 1] (a switch)"),
    "clip_eps": (0.0, False, _INF, True, "a finite number > 0"),
    "adv_scale": (0.0, False, _INF, True, "a finite number > 0"),
    "d_target": (0.0, False, _INF, True, "a finite number > 0"),
    "delta": (1.0, False, _INF, True, "a finite number > 1 (eq. 20's band)"),
    "omega": (1.0, False, _INF, True, "a finite number > 1 (eq. 20's factor)"),
    "init_beta_sqrt": (0.0, False, _INF, True, "a finite number > 0"),
    "init_beta_kl": (0.0, False, _INF, True, "a finite number > 0"),
    "beta_min": (0.0, False, _INF, True, "a finite number > 0"),
    "beta_max": (0.0, False, _INF, True, "a finite number > beta_min"),
    "kl_sqrt_eps": (0.0, True, _INF, True, "a finite number >= 0"),
    "entropy_coef": (0.0, True, _INF, True, "a finite number >= 0"),
    "value_coef": (0.0, False, _INF, True, "a finite number > 0"),
    "value_clip": (0.0, True, _INF, True,
                   "a finite number > 0 (0: off, where the config's value_clip is None)"),
    "huber_delta": (0.0, True, _INF, True,
                    "a finite number > 0 (0: off, where the config's huber_delta is None)"),
    "value_norm_beta": (0.0, False, 1.0, False, "a number in (0, 1)"),
    "adv_norm_eps": (0.0, False, _INF, True, "a finite number > 0"),
    "gamma": (0.0, False, 1.0, True, "a number in (0, 1]"),
    "gae_lambda": (0.0, True, 1.0, True, "a number in [0, 1]"),
    "actor_lr": (0.0, False, _INF, True, "a finite number > 0"),
    "critic_lr": (0.0, False, _INF, True, "a finite number > 0"),
    "adam_eps": (0.0, False, _INF, True, "a finite number > 0"),
    "max_grad_norm": (0.0, False, _INF, True, "a finite number > 0"),
    "init_log_std": (-_INF, False, _INF, False, "a finite number"),
}


def _field_ok(value: Array, field: str):
    """Elementwise validity of one field (numpy or jnp, whichever ``value`` is)."""
    xp = np if isinstance(value, np.ndarray) else jnp
    low, low_in, high, high_in, _ = _BOUNDS[field]
    ok = xp.isfinite(value) & ((value >= low) if low_in else (value > low))
    return ok & ((value <= high) if high_in else (value < high))


def _is_traced(tree: object) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


PER_AGENT_FIELDS = ("d_target", "delta", "omega", "init_beta_sqrt", "init_beta_kl")
"""Fields that may hold one value per agent (``[N]``): they act only in eq. 20's
adaptation and the initial betas, which are per agent. The others select the
objective and are one value per run."""


def validate_objective_params(obj: "ObjectiveParams", num_agents: Optional[int] = None,
                              runs: Optional[int] = None) -> "ObjectiveParams":
    """Raise ``ValueError`` naming the first invalid field (and sweep index) of a
    concrete ``obj``; return it unchanged. Traced values (inside ``jit`` /
    ``vmap``) are skipped here and checked in-graph by ``objective_params_ok``.

    With ``num_agents`` the shapes are checked too: each field is a scalar per run
    or, for ``PER_AGENT_FIELDS``, ``[num_agents]``; with ``runs`` every field has a
    leading run axis of that size first."""
    if not isinstance(obj, ObjectiveParams):
        raise ValueError(f"obj must be an ObjectiveParams (see objective_params), "
                         f"got {type(obj).__name__}")
    if _is_traced(obj):
        return obj
    if num_agents is not None:
        lead = () if runs is None else (runs,)
        for field in ObjectiveParams._fields:
            shape = tuple(np.shape(getattr(obj, field)))
            allowed = [lead] + ([lead + (num_agents,)] if field in PER_AGENT_FIELDS else [])
            if shape not in allowed:
                raise ValueError(
                    f"ObjectiveParams.{field} has shape {shape}: expected "
                    + " or ".join(str(a) for a in allowed)
                    + (f" (one value per agent: the env has {num_agents} agents)"
                       if field in PER_AGENT_FIELDS else " (one value per run)"))
    for field in ObjectiveParams._fields:
        value = np.asarray(getattr(obj, field), dtype=np.float64)
        ok = _field_ok(np.atleast_1d(value), field)
        if field == "beta_max":
            ok = ok & (np.atleast_1d(value) > np.atleast_1d(
                np.asarray(obj.beta_min, np.float64)))
        bad = np.argwhere(~ok)
        if len(bad):
            where = f" at sweep index {tuple(int(i) for i in bad[0])}" if value.ndim else ""
            shown = np.atleast_1d(value)[tuple(bad[0])]
            raise ValueError(f"ObjectiveParams.{field}={float(shown)!r}{where} is invalid: "
                             f"expected {_BOUNDS[field][4]}")
    return obj


def check_switched_on(obj: "ObjectiveParams", cfg: TrainConfig) -> None:
    """``ValueError`` when ``obj`` (concrete) turns off a loss term the config's
    program has: ``value_clip`` / ``huber_delta`` of 0 where the config's value is a
    number (0 stands for the config's ``None`` only)."""
    if _is_traced(obj):
        return
    for field in ("value_clip", "huber_delta"):
        values = np.asarray(getattr(obj, field), np.float64)
        if getattr(cfg, field) is not None and np.any(values <= 0):
            raise ValueError(f"ObjectiveParams.{field}=0 switches the term off, but the "
                             f"config's {field}={getattr(cfg, field)!r} compiled it in: "
                             f"give a number > 0, or set {field}=None in the config")


def objective_params_ok(obj: "ObjectiveParams") -> Array:
    """``[]`` bool, inside the program: every field of ``obj`` is valid."""
    return jnp.all(jnp.stack([jnp.all(_field_ok(getattr(obj, f), f))
                              for f in ObjectiveParams._fields]
                             + [jnp.all(obj.beta_max > obj.beta_min)]))


_SWITCHES: dict[str, tuple[float, float, float, bool]] = {
    # algo: (use_clip, sqrt_on, kl_on, penalised member -> 1/N applies)
    "dpo": (0.0, 1.0, 1.0, True),
    "ippo_kl": (0.0, 0.0, 1.0, True),
    "dpo_no_sqrt": (0.0, 0.0, 1.0, True),
    "dpo_no_kl": (0.0, 1.0, 0.0, True),
    "ippo": (1.0, 0.0, 0.0, False),
}


def objective_params(
    cfg: TrainConfig, num_agents: int, algo: str | None = None, **overrides: float
) -> ObjectiveParams:
    """The ``ObjectiveParams`` of ``algo`` (default ``cfg.algo``) under ``cfg``.

    ``overrides`` replace fields by name, e.g. ``d_target=0.1``.
    """
    algo = cfg.algo if algo is None else algo
    if not (is_int(num_agents) and num_agents >= 1):
        raise ValueError(f"objective_params: num_agents={num_agents!r} is invalid: expected "
                         "a positive int (the env's num_agents)")
    if algo not in _SWITCHES:
        raise ValueError(f"unknown algo {algo!r}; expected one of {sorted(_SWITCHES)}")
    unknown = set(overrides) - set(ObjectiveParams._fields)
    if unknown:
        raise ValueError(
            f"unknown ObjectiveParams field(s) {sorted(unknown)}; "
            f"fields are {ObjectiveParams._fields}"
        )
    use_clip, sqrt_on, kl_on, penalised = _SWITCHES[algo]
    adv_scale = 1.0 / num_agents if (penalised and cfg.scale_adv_by_num_agents) else 1.0
    values = dict(
        use_clip=use_clip, clip_eps=cfg.clip_eps, sqrt_on=sqrt_on, kl_on=kl_on,
        adv_scale=adv_scale, d_target=cfg.d_target, delta=cfg.delta, omega=cfg.omega,
        init_beta_sqrt=cfg.init_beta_sqrt, init_beta_kl=cfg.init_beta_kl,
        **{f: (0.0 if getattr(cfg, f) is None else getattr(cfg, f))
           for f in HYPERPARAMETER_FIELDS},
    )
    values.update(overrides)
    obj = ObjectiveParams(**{k: np.asarray(v, np.float32) for k, v in values.items()})
    return validate_objective_params(obj)


def stack_params(params: list[ObjectiveParams]) -> ObjectiveParams:
    """Stack several members along a new leading axis, for ``vmap`` sweeps."""
    if _is_traced(params):
        return jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    return jax.tree.map(lambda *xs: np.stack(xs), *params)


def masked_mean(x: Array, weights: Array | None = None,
                axis: int | tuple[int, ...] | None = None) -> Array:
    """``x.mean(axis)``, or its mean over the samples whose ``weights`` (0/1) are 1
    (0 when none is): the expectation over active agents' samples only."""
    if weights is None:
        return x.mean(axis)
    return jnp.sum(weights * x, axis) / jnp.maximum(jnp.sum(weights, axis), 1.0)


def safe_sqrt(x: Array, eps: float, eps_mode: str = "floor") -> Array:
    """``sqrt(max(x, eps))`` (``eps_mode="floor"``: constant, zero gradient below
    eps) or ``sqrt(max(x + eps, eps))`` (``"added"``: the authors' code)."""
    if eps_mode == "floor":
        return jnp.sqrt(jnp.maximum(x, eps))
    if eps_mode == "added":
        return jnp.sqrt(jnp.maximum(x + eps, eps))
    raise ValueError(f"unknown kl_sqrt_eps_mode {eps_mode!r}")


def sqrt_kl_term(kl: Array, form: str, eps: float, weights: Array | None = None,
                 eps_mode: str = "floor") -> Array:
    """The sqrt-KL penalty of eq. 19 from per-sample KLs ``[B]``.

    ``form="sqrt_of_mean"``: sqrt(E[KL]) (paper); ``"mean_of_sqrt"``: E[sqrt(KL)]
    (reference code); each square root through :func:`safe_sqrt` with ``eps`` and
    ``eps_mode``. See the module docstring for the floor. ``weights`` restricts the
    expectation to active samples (``masked_mean``).
    """
    kl = jnp.maximum(kl, 0.0)
    if form == "sqrt_of_mean":
        return safe_sqrt(masked_mean(kl, weights), eps, eps_mode)
    if form == "mean_of_sqrt":
        return masked_mean(safe_sqrt(kl, eps, eps_mode), weights)
    raise ValueError(f"unknown sqrt_kl_form {form!r}")


class PolicyLossAux(NamedTuple):
    """Diagnostics of one policy-loss evaluation (scalars)."""

    surrogate: Array
    kl: Array
    sqrt_kl: Array
    entropy: Array
    clip_frac: Array


def policy_loss(
    log_prob: Array,
    old_log_prob: Array,
    advantages: Array,
    kl: Array,
    entropy: Array,
    beta_sqrt: Array,
    beta_kl: Array,
    obj: ObjectiveParams,
    *,
    entropy_coef: float,
    sqrt_kl_form: str = "sqrt_of_mean",
    kl_sqrt_eps: float = 1e-8,
    kl_sqrt_eps_mode: str = "floor",
    weights: Array | None = None,
) -> tuple[Array, PolicyLossAux]:
    """One agent's policy loss (to minimise): minus eq. 19's objective, or IPPO's.

    Args:
      log_prob: ``[B]`` log pi^i(a|o) under the parameters being updated.
      old_log_prob: ``[B]`` the same under the rollout's parameters.
      advantages: ``[B]`` the agent's advantages.
      kl: ``[B]`` per-sample KL(pi_old^i || pi^i).
      entropy: ``[B]`` per-sample entropy of pi^i.
      beta_sqrt: the agent's current beta_1 (scalar).
      beta_kl: the agent's current beta_2 (scalar).
      obj: the objective-family member (scalars).
      weights: optional ``[B]`` 0/1 active mask; every expectation (surrogate, KL,
        sqrt-KL, entropy) is then over the active samples only (MAPPO's
        ``use_policy_active_masks``).

    Returns:
      ``(loss, aux)``; ``aux.sqrt_kl`` is the penalty term ``S`` as used.
    """
    chex.assert_rank([log_prob, old_log_prob, advantages, kl, entropy], 1)
    chex.assert_equal_shape([log_prob, old_log_prob, advantages, kl, entropy])
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - obj.clip_eps, 1.0 + obj.clip_eps) * advantages
    per_sample = jnp.where(obj.use_clip > 0, jnp.minimum(unclipped, clipped), unclipped)
    surrogate = obj.adv_scale * masked_mean(per_sample, weights)
    sqrt_kl = sqrt_kl_term(kl, sqrt_kl_form, kl_sqrt_eps, weights, kl_sqrt_eps_mode)
    kl_mean = masked_mean(kl, weights)
    mean_entropy = masked_mean(entropy, weights)
    loss = (
        -surrogate
        + obj.sqrt_on * beta_sqrt * sqrt_kl
        + obj.kl_on * beta_kl * kl_mean
        - entropy_coef * mean_entropy
    )
    clip_frac = masked_mean((jnp.abs(ratio - 1.0) > obj.clip_eps).astype(jnp.float32), weights)
    return loss, PolicyLossAux(surrogate, kl_mean, sqrt_kl, mean_entropy, clip_frac)


def value_loss(
    values: Array, old_values: Array, targets: Array, value_clip: float | None,
    huber_delta: float | None = None, weights: Array | None = None,
) -> Array:
    """Clipped value loss ``E[max(l(V - y), l(V_clip - y))]`` (PPO/MAPPO).

    ``V_clip = V_old + clip(V - V_old, -c, c)``; ``value_clip=None`` drops the clip.
    ``l(e) = e^2 / 2``, or with ``huber_delta=d`` the Huber loss (``e^2 / 2`` for
    ``|e| <= d``, ``d (|e| - d / 2)`` beyond; MAPPO's ``huber_loss``). ``weights``
    (0/1) averages over active samples only (MAPPO's ``use_value_active_masks``).
    """
    chex.assert_equal_shape([values, old_values, targets])

    def loss(pred: Array) -> Array:
        if huber_delta is None:
            return optax.l2_loss(pred, targets)
        return optax.huber_loss(pred, targets, delta=huber_delta)

    err = loss(values)
    if value_clip is not None:
        v_clipped = old_values + jnp.clip(values - old_values, -value_clip, value_clip)
        err = jnp.maximum(err, loss(v_clipped))
    return masked_mean(err, weights)


def adapt_beta(beta: Array, stat: Array, target: Array, obj: ObjectiveParams,
               beta_min: float, beta_max: float) -> Array:
    """Eq. 20 for one coefficient: x omega if ``stat > target * delta``,
    / omega if ``stat < target / delta``, unchanged otherwise; clipped to
    ``[beta_min, beta_max]`` (reference code)."""
    up = stat > target * obj.delta
    down = stat < target / obj.delta
    beta = jnp.where(up, beta * obj.omega, jnp.where(down, beta / obj.omega, beta))
    return jnp.clip(beta, beta_min, beta_max)


def adapt_betas(
    beta_sqrt: Array,
    beta_kl: Array,
    kl: Array,
    sqrt_kl: Array,
    obj: ObjectiveParams,
    cfg: TrainConfig,
) -> tuple[Array, Array]:
    """Eq. 20 for all agents after an update.

    Args:
      beta_sqrt: ``[N]`` current beta_1.
      beta_kl: ``[N]`` current beta_2.
      kl: ``[N]`` mean KL(pi_old^i || pi_new^i) over the update's whole batch.
      sqrt_kl: ``[N]`` mean sqrt(KL) over the batch (used by the code's rule).

    The bounds are ``obj.beta_min`` / ``obj.beta_max``. ``cfg.shared_betas``
    replaces the statistics by their mean over agents;
    ``cfg.beta_sqrt_rule == "sqrt_kl"`` adapts beta_1 with ``sqrt_kl`` against
    ``sqrt(d_target)`` (reference code) instead of ``kl`` against ``d_target``.
    """
    chex.assert_equal_shape([beta_sqrt, beta_kl, kl, sqrt_kl])
    if cfg.shared_betas:
        kl = jnp.broadcast_to(kl.mean(), kl.shape)
        sqrt_kl = jnp.broadcast_to(sqrt_kl.mean(), sqrt_kl.shape)
    new_kl = adapt_beta(beta_kl, kl, obj.d_target, obj, obj.beta_min, obj.beta_max)
    if cfg.beta_sqrt_rule == "sqrt_kl":
        new_sqrt = adapt_beta(beta_sqrt, sqrt_kl, jnp.sqrt(obj.d_target), obj,
                              obj.beta_min, obj.beta_max)
    else:
        new_sqrt = adapt_beta(beta_sqrt, kl, obj.d_target, obj, obj.beta_min, obj.beta_max)
    return new_sqrt, new_kl
