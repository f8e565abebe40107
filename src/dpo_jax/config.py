"""Typed, validated configuration and the paper's presets (Appendix B, Table 2).

``TrainConfig`` holds everything that shapes the compiled program (sizes, network,
optimiser, the static choices between the paper's and the reference code's
variants). The numbers that select an algorithm of the objective family and its
adaptive-coefficient rule live in :class:`dpo_jax.core.objectives.ObjectiveParams`,
an array pytree built from the config, so that algorithms and ``d_target``
values can be swept with ``vmap`` inside one compiled program.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from typing import Literal, Optional

ALGORITHMS: tuple[str, ...] = ("dpo", "ippo", "ippo_kl", "dpo_no_sqrt", "dpo_no_kl")
"""Members of the policy-objective family. ``dpo_no_sqrt`` (DPO without the sqrt
term) and ``ippo_kl`` (IPPO-KL, PPO's adaptive-KL version per agent) are one
objective under two names, both accepted (``ALGORITHM_ALIASES``)."""

ALGORITHM_ALIASES: dict[str, str] = {"dpo_no_sqrt": "ippo_kl"}
"""Second names of one objective: alias -> canonical name."""

BASELINE_ALGORITHMS: tuple[str, ...] = ("iql", "iddpg")
"""The paper's value-based baselines (``dpo_jax.baselines``): IQL for discrete and
IDDPG for continuous actions. ``TrainConfig(algo=...)`` accepts them too; see
``baselines.config.from_train_config`` for which fields they use."""

SqrtKLForm = Literal["sqrt_of_mean", "mean_of_sqrt"]
SqrtEpsMode = Literal["floor", "added"]
BetaSqrtRule = Literal["kl", "sqrt_kl"]
BetaStatistics = Literal["batch_after_update", "last_minibatch"]
Sampling = Literal["per_agent", "pooled"]
AdvantageNormScope = Literal["agent", "all_agents"]
NanPolicy = Literal["raise", "ignore"]
Activation = Literal["relu", "tanh"]

# d_target per environment family (paper, Appendix B).
PAPER_D_TARGET: dict[str, float] = {
    "stochastic_game": 0.1,
    "mpe": 0.01,
    "mamujoco": 0.001,
    "smax": 0.02,
}


def _require(cond: bool, field: str, value: object, expected: str) -> None:
    if not cond:
        raise ValueError(f"TrainConfig.{field}={value!r} is invalid: expected {expected}")


def is_int(value: object) -> bool:
    """An integer that is not a bool (Python or numpy)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A finite real number that is not a bool (Python or numpy)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


_INT_FIELDS = ("total_timesteps", "num_envs", "num_epochs", "num_minibatches",
               "hidden_size", "num_hidden_layers")
_FLOAT_FIELDS = ("clip_eps", "d_target", "delta", "omega", "init_beta_sqrt", "init_beta_kl",
                 "beta_min", "beta_max", "kl_sqrt_eps", "entropy_coef", "value_coef",
                 "value_norm_beta", "actor_lr", "critic_lr", "adam_eps", "max_grad_norm",
                 "gamma", "gae_lambda", "init_log_std", "adv_norm_eps")
_OPTIONAL_FLOAT_FIELDS = ("value_clip", "huber_delta")
_BOOL_FIELDS = ("scale_adv_by_num_agents", "shared_betas", "value_norm",
                "bootstrap_truncation", "normalize_advantages", "active_masks", "anneal_lr",
                "input_layer_norm", "hidden_layer_norm", "share_params",
                "loss_mean_over_agents")
_CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "sqrt_kl_form": ("sqrt_of_mean", "mean_of_sqrt"),
    "kl_sqrt_eps_mode": ("floor", "added"),
    "beta_sqrt_rule": ("kl", "sqrt_kl"),
    "beta_statistics": ("batch_after_update", "last_minibatch"),
    "sampling": ("per_agent", "pooled"),
    "advantage_norm_scope": ("agent", "all_agents"),
    "activation": ("relu", "tanh"),
    "nan_policy": ("raise", "ignore"),
}


SWEEPABLE_FIELDS: tuple[str, ...] = _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS
"""The numeric fields that travel into the compiled program as traced data, one
value per run (:class:`dpo_jax.core.objectives.ObjectiveParams`): a change of any
of them reuses the compiled program, and ``dpo_jax.train(sweep=...)`` sweeps them
inside one program. ``value_clip`` and ``huber_delta`` are swept among numbers; their
``None`` (clip or Huber loss off) is a different program. Every other field is
static (:data:`STATIC_FIELDS`)."""

STATIC_FIELDS: dict[str, str] = {
    "total_timesteps": "the number of updates is the length of the program's scan",
    "num_envs": "an array shape (the env batch)",
    "num_steps": "an array shape (the rollout length)",
    "num_epochs": "the length of the epochs' scan",
    "num_minibatches": "an array shape (the minibatch split)",
    "hidden_size": "an array shape (the networks' width)",
    "num_hidden_layers": "the networks' structure",
    **{name: "a choice between code paths" for name in _BOOL_FIELDS + tuple(_CHOICE_FIELDS)},
    "algo": "the algorithm: sweep it with algos=[...] (--algos) instead",
}
"""The fields that shape the compiled program, each with why: a sweep of one of
them is refused (train one job per value instead)."""


class _Traced:
    """The value of a swept field in the program's static config (``static_config``):
    the program reads the run's value from its ``ObjectiveParams``, and any use of
    this placeholder (arithmetic, comparison, conversion) fails at trace time."""

    def __repr__(self) -> str:
        return "<traced: the run's ObjectiveParams value>"

    def __reduce__(self) -> str:
        return "TRACED"


TRACED = _Traced()
"""The one placeholder ``static_config`` puts in the sweepable fields."""


def _check_types(cfg: "TrainConfig") -> None:
    """Every field has its declared type (ints not bools, finite reals, real bools,
    one of the allowed strings) before any range check compares values. numpy
    scalars are accepted and stored as Python numbers (the config is hashed by
    ``jit`` as a static value)."""
    for name in _INT_FIELDS + ("num_steps",):
        value = getattr(cfg, name)
        if name == "num_steps" and value is None:
            continue
        _require(is_int(value), name, value, "an int (not a bool)")
        object.__setattr__(cfg, name, int(value))
    for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
        value = getattr(cfg, name)
        if name in _OPTIONAL_FLOAT_FIELDS and value is None:
            continue
        _require(is_real(value), name, value, "a finite real number")
        object.__setattr__(cfg, name, float(value))
    for name in _BOOL_FIELDS:
        value = getattr(cfg, name)
        _require(isinstance(value, bool), name, value, "True or False")
    choices = {"algo": ALGORITHMS + BASELINE_ALGORITHMS, **_CHOICE_FIELDS}
    for name, allowed in choices.items():
        value = getattr(cfg, name)
        _require(isinstance(value, str) and value in allowed, name, value,
                 f"one of {allowed}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of one training run (defaults: the paper's Table 2 and the
    reference code's common hyperparameters).

    Sizes
      total_timesteps: environment steps in total (one step of one env counts once,
        whatever the number of agents). Rounded down to whole updates.
      num_envs: parallel environments.
      num_steps: rollout length per env and update; ``None`` uses the env's
        episode limit (one episode per env per update, as the reference code).
      num_epochs, num_minibatches: passes over each batch and splits per pass.

    Objective (see ``objectives.py`` for the maths)
      algo: one of ``ALGORITHMS``, or of ``BASELINE_ALGORITHMS`` (``"iql"``,
        ``"iddpg"``): ``make_train`` then builds the baseline's own configuration
        from the shared fields (``baselines.config.from_train_config``).
      clip_eps: IPPO's ratio clip (0.2).
      d_target, delta, omega: eq. 20's target KL and adaptation constants.
      init_beta_sqrt, init_beta_kl: initial beta_1, beta_2 (0.01).
      beta_min, beta_max: betas are clipped to this range (reference code).
      sqrt_kl_form: ``"sqrt_of_mean"`` = sqrt(E[KL]) (eq. 19, default) or
        ``"mean_of_sqrt"`` = E[sqrt(KL)] (reference code).
      scale_adv_by_num_agents: the 1/N on the advantage term of eq. 19 (paper: on;
        reference code: off). Applies to the KL-penalised members, not to IPPO.
      shared_betas: one beta pair for all agents, adapted with the agents' mean
        statistic (reference code's default) instead of per agent (paper).
      beta_sqrt_rule: ``"kl"`` adapts beta_1 with KL vs d_target like beta_2
        (eq. 20) or ``"sqrt_kl"`` with E[sqrt KL] vs sqrt(d_target) (reference code).
      kl_sqrt_eps: the epsilon of the square root; keeps gradients finite at KL = 0
        (see ``core/objectives.py``).
      kl_sqrt_eps_mode: ``"floor"``: sqrt(max(KL, eps)), exactly zero gradient
        below eps (default); ``"added"``: sqrt(KL + eps), the authors' code (with
        eps 1e-12).
      beta_statistics: what eq. 20 compares with d_target: ``"batch_after_update"``,
        the mean KL over the whole batch after all epochs (the paper's text,
        default); ``"last_minibatch"``, the KL terms of the last minibatch of the
        last epoch as its loss saw them (the authors' code adapts from those,
        before the next update). Both are logged (``kl``, ``last_minibatch_kl``).
      sampling: ``"per_agent"``: agent i trains on its own samples (eq. 19,
        default); ``"pooled"``: each epoch one permutation shuffles all agents'
        samples together and deals them back out, one column per agent, so agent i
        trains on other agents' observations, actions, advantages and value targets,
        its ratio is pi_i(a_j|o_j) / pi_j,old(a_j|o_j) and its KL is
        KL(pi_j,old || pi_i) (the authors' code: ``shared_buffer.py`` and
        ``rMAPPOPolicy.idv_reshape``).
      entropy_coef, value_coef, value_clip: entropy bonus, value-loss weight and
        clipped value loss range (``None`` disables the clip). With ``value_norm``
        the clip range is in normalised units (as MAPPO).
      value_norm, value_norm_beta: normalise value targets with running statistics
        per agent (MAPPO's ``ValueNorm``, on by default in the code base the paper
        builds on; ``value_norm.py``); ``value_norm_beta`` is the statistics' decay
        per update (0.99999, MAPPO's).
      huber_delta: Huber value loss with this threshold (MAPPO: on, 10.0, applied
        to the normalised error); ``None`` gives the squared error ``e^2 / 2``.
      bootstrap_truncation: at a time-limit truncation, bootstrap GAE from the
        value of the episode's final observation (default, the correct target for a
        critic that does not see the time) or treat it as a terminal state (value
        0), as JaxMARL's IPPO and the MAPPO/authors' code (``use_proper_time_limits``
        off) do.
      normalize_advantages: standardise advantages over the update's batch (the
        MAPPO code base the paper builds on does; the paper is silent).
      advantage_norm_scope: ``"agent"``: each agent's advantages standardised on
        their own (default); ``"all_agents"``: one mean and std over all agents'
        samples together (the authors' code and MAPPO).
      adv_norm_eps: added to the standard deviation the advantages are divided by
        (1e-8; the authors' code 1e-5). It matters once the advantages' spread is
        that small, as on the stochastic game's never-reset training env late in
        training, where A = r - V(s) nearly vanishes.
      active_masks: leave dead agents' samples (SMAX; envs with
        ``has_active_mask``) out of the policy and value losses, the advantage
        statistics, the KL means and eq. 20's beta adaptation (MAPPO's
        ``use_policy_active_masks`` / ``use_value_active_masks``, both on there and
        here; the paper is silent). No effect on envs whose agents never die.

    Optimisation and networks
      actor_lr, critic_lr, adam_eps, max_grad_norm: Adam per agent and network,
        gradients clipped per agent and network by global norm.
      loss_mean_over_agents: divide every agent's gradients (actor and critic) by
        N before the clip and Adam, as the authors' code does: it backpropagates
        one loss, the mean over agents of the agents' losses (``r_mappo.py``,
        ``ppo_update``). The direction of each step is unchanged; its size changes
        through the clip (now at N times the gradient norm) and Adam's ``eps``
        (N times larger relative to the gradient). No effect with
        ``share_params``, whose loss is already the agents' mean.
      anneal_lr: decay both learning rates linearly to 0 over the run, stepwise per
        update (JaxMARL/PureJaxRL's schedule; MAPPO's ``use_linear_lr_decay``,
        off by default there and here).
      gamma, gae_lambda: discount and GAE lambda.
      hidden_size, num_hidden_layers: MLP width and depth ("3-layer MLP" = 2
        hidden ReLU layers + output head).
      activation: ``"relu"`` (MAPPO's default, the paper's code) or ``"tanh"``
        (JaxMARL's IPPO).
      input_layer_norm: LayerNorm on the observation (MAPPO's
        ``use_feature_normalization``, on); JaxMARL's IPPO has none.
      hidden_layer_norm: LayerNorm after each hidden layer (as MAPPO's MLPBase).
      init_log_std: initial state-independent log-std of Gaussian policies.
      share_params: one parameter set for all agents (JaxMARL-style IPPO); the
        paper's setting is False (fully decentralized).

    Safety
      nan_policy: ``"raise"``: from the first update whose loss or gradient is not
        finite the run stops learning (that update is dropped) and
        ``train.check_finite`` / ``experiments.run`` raise an error naming it;
        ``"ignore"`` trains on.
    """

    algo: str = "dpo"
    total_timesteps: int = 1_000_000
    num_envs: int = 64
    num_steps: Optional[int] = None
    num_epochs: int = 15
    num_minibatches: int = 1

    clip_eps: float = 0.2
    d_target: float = 0.01
    delta: float = 1.5
    omega: float = 2.0
    init_beta_sqrt: float = 0.01
    init_beta_kl: float = 0.01
    beta_min: float = 1e-3
    beta_max: float = 1e3
    sqrt_kl_form: SqrtKLForm = "sqrt_of_mean"
    scale_adv_by_num_agents: bool = True
    shared_betas: bool = False
    beta_sqrt_rule: BetaSqrtRule = "kl"
    beta_statistics: BetaStatistics = "batch_after_update"
    kl_sqrt_eps: float = 1e-8
    kl_sqrt_eps_mode: SqrtEpsMode = "floor"
    sampling: Sampling = "per_agent"
    entropy_coef: float = 0.01
    value_coef: float = 1.0
    value_clip: Optional[float] = 0.2
    value_norm: bool = True
    value_norm_beta: float = 0.99999
    huber_delta: Optional[float] = 10.0
    bootstrap_truncation: bool = True
    normalize_advantages: bool = True
    advantage_norm_scope: AdvantageNormScope = "agent"
    adv_norm_eps: float = 1e-8
    active_masks: bool = True

    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    adam_eps: float = 1e-5
    max_grad_norm: float = 10.0
    loss_mean_over_agents: bool = False
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    hidden_size: int = 128
    num_hidden_layers: int = 2
    activation: Activation = "relu"
    input_layer_norm: bool = True
    hidden_layer_norm: bool = True
    init_log_std: float = 0.0
    share_params: bool = False

    nan_policy: NanPolicy = "raise"

    def __post_init__(self) -> None:
        _check_types(self)
        for name in _INT_FIELDS:
            value = getattr(self, name)
            _require(value > 0, name, value, "a positive int")
        _require(self.num_steps is None or self.num_steps > 0, "num_steps", self.num_steps,
                 "None or a positive int")
        for name in ("d_target", "actor_lr", "critic_lr", "adam_eps", "max_grad_norm",
                     "clip_eps", "beta_min", "init_beta_sqrt", "init_beta_kl", "value_coef"):
            value = getattr(self, name)
            _require(value > 0, name, value, "a finite number > 0")
        _require(self.delta > 1, "delta", self.delta, "a finite number > 1")
        _require(self.omega > 1, "omega", self.omega, "a finite number > 1")
        _require(self.beta_max > self.beta_min, "beta_max", self.beta_max,
                 f"a finite number > beta_min={self.beta_min}")
        _require(0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _require(0 <= self.gae_lambda <= 1, "gae_lambda", self.gae_lambda, "a number in [0, 1]")
        _require(self.entropy_coef >= 0, "entropy_coef", self.entropy_coef, "a number >= 0")
        _require(self.value_clip is None or self.value_clip > 0, "value_clip",
                 self.value_clip, "None or a finite number > 0")
        _require(0 < self.value_norm_beta < 1, "value_norm_beta", self.value_norm_beta,
                 "a number in (0, 1)")
        _require(self.huber_delta is None or self.huber_delta > 0, "huber_delta",
                 self.huber_delta, "None or a finite number > 0")
        _require(self.kl_sqrt_eps >= 0, "kl_sqrt_eps", self.kl_sqrt_eps, "a number >= 0")
        _require(self.adv_norm_eps > 0, "adv_norm_eps", self.adv_norm_eps, "a number > 0")
        if self.num_steps is not None:
            self.check_batch(self.num_steps)

    def check_batch(self, num_steps: int) -> None:
        """Check that a batch of ``num_envs * num_steps`` splits into the minibatches."""
        batch = self.num_envs * num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"TrainConfig.num_minibatches={self.num_minibatches} does not divide the "
                f"batch num_envs*num_steps = {self.num_envs}*{num_steps} = {batch}"
            )
        if self.total_timesteps < batch:
            raise ValueError(
                f"TrainConfig.total_timesteps={self.total_timesteps} is smaller than one "
                f"update's batch num_envs*num_steps = {batch}"
            )

    def replace(self, **changes: object) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def static_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as the compiled program sees it: every :data:`SWEEPABLE_FIELDS` value
    replaced by the placeholder :data:`TRACED` (``value_clip`` / ``huber_delta`` keep
    their ``None``, which selects a code path). Two configs that differ only in
    sweepable values have equal static configs, hence one compiled program; the
    program takes those values from its ``ObjectiveParams``, and a use of a
    placeholder fails at trace time, so no field can be read from the config by
    mistake. Not a valid config for anything else (it is not validated)."""
    static = copy.copy(cfg)
    for name in SWEEPABLE_FIELDS:
        if getattr(cfg, name) is not None:
            object.__setattr__(static, name, TRACED)
    return static


def paper_config(env_family: str, **overrides: object) -> TrainConfig:
    """The paper's configuration for an environment family (Appendix B).

    ``env_family`` is one of ``PAPER_D_TARGET``'s keys; only ``d_target`` differs
    between families. ``overrides`` replace any other field.
    """
    if env_family not in PAPER_D_TARGET:
        raise ValueError(
            f"unknown env family {env_family!r}; expected one of {sorted(PAPER_D_TARGET)}"
        )
    fields = {"d_target": PAPER_D_TARGET[env_family], **overrides}
    return TrainConfig(**fields)  # type: ignore[arg-type]


JAXMARL_IPPO_MPE: dict[str, object] = dict(
    algo="ippo", num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4,
    actor_lr=2.5e-4, critic_lr=2.5e-4, anneal_lr=True, max_grad_norm=0.5,
    clip_eps=0.2, value_coef=0.5, value_clip=0.2, value_norm=False, huber_delta=None,
    entropy_coef=0.01, gamma=0.99, gae_lambda=0.95, hidden_size=64,
    num_hidden_layers=2, activation="tanh", input_layer_norm=False,
    hidden_layer_norm=False, bootstrap_truncation=False, share_params=True,
)
"""JaxMARL's ``baselines/IPPO/config/ippo_ff_mpe.yaml`` in ``TrainConfig`` fields.

What remains different (documented, not configurable): JaxMARL has one Adam and
one global-norm clip over actor and critic together (here each network has its
own), normalises advantages per minibatch over all agents (here per agent over
the update's batch). Like JaxMARL, the preset treats the time limit as a terminal
state (``bootstrap_truncation=False``). JaxMARL's MPE episodes last 26 steps
(``done`` comes one step late) and its logged return is multiplied by the number
of agents (``MPELogWrapper``); see ``benchmarks/peer_parity.py``.
"""


def jaxmarl_ippo_config(**overrides: object) -> TrainConfig:
    """JaxMARL's IPPO-FF MPE settings (``JAXMARL_IPPO_MPE``) with ``overrides``;
    ``share_params=False`` gives the same settings with independent agents."""
    return TrainConfig(**{**JAXMARL_IPPO_MPE, **overrides})  # type: ignore[arg-type]


CPU_BATCH: dict[str, object] = dict(num_envs=16, num_steps=128, num_epochs=4,
                                    num_minibatches=4, hidden_size=64)
"""The ``cpu`` preset's batch: JaxMARL's IPPO-FF batch shape (16 envs x 128 steps,
4 epochs x 4 minibatches) with 64 hidden units; everything else as the paper."""

AUTHORS_CODE: dict[str, object] = dict(
    num_envs=1, num_epochs=15, num_minibatches=1, init_beta_sqrt=1.0, init_beta_kl=1.0,
    sqrt_kl_form="mean_of_sqrt", kl_sqrt_eps=1e-12, kl_sqrt_eps_mode="added",
    scale_adv_by_num_agents=False, shared_betas=True, beta_sqrt_rule="sqrt_kl",
    beta_statistics="last_minibatch", sampling="pooled",
    advantage_norm_scope="all_agents", value_norm=False, huber_delta=None,
    bootstrap_truncation=False, entropy_coef=0.0, loss_mean_over_agents=True,
    adv_norm_eps=1e-5,
)
"""The authors' PyTorch code (github PKU-RL/DPO, ``onpolicy/config.py`` and
``r_mappo.py``) as ``TrainConfig`` fields: one rollout thread, 15 epochs on the
whole batch, initial betas 1.0, E[sqrt(KL + 1e-12)], no 1/N, one shared beta pair
adapted from the last minibatch (beta_1 on E[sqrt KL] against sqrt(d_target)),
pooled samples, advantages standardised over all agents, no value normalisation
(``use_popart`` off), no Huber loss, time limits treated as terminal
(``use_proper_time_limits`` off), one loss for all agents, the mean of the agents'
losses (``loss_mean_over_agents``), and no entropy bonus: their ``entropy_coef``
(0.01) multiplies an entropy that is detached from the graph (with per-agent
networks, ``rMAPPOPolicy.evaluate_actions`` gathers the agents' entropies with
``idv_merge``, whose ``torch.tensor`` of 0-d tensors copies them without
gradient), so it changes nothing; their runs with 0, 0.01 and 0.5 are bit
identical. Their other defaults equal ours (Adam 5e-4 with eps 1e-5, grad norm
10, clipped value loss 0.2, gamma 0.99, lambda 0.95, 128 units, input LayerNorm,
gain 0.01 on the policy head). ``d_target`` comes from ``AUTHORS_D_TARGET``; the
env keyword arguments from ``preset_env_kwargs``; their advantages are standardised
with 1e-5 added to the std (``adv_norm_eps``). What stays different: their KL of
categorical policies adds 1e-9 inside the logs."""

AUTHORS_D_TARGET: dict[str, float] = {
    "stochastic_game": 0.01,  # their --dtar_kl default
    "mpe": 0.01,
    "mamujoco": 0.01,
    "smax": 0.02,  # their README's SMAC command: --dtar_kl 0.02
}

PRESETS: tuple[str, ...] = ("paper", "cpu", "jaxmarl", "authors")
"""Named starting configurations (:func:`preset`)."""

_FAMILY_PREFIXES = (("mpe", "mpe"), ("smax", "smax"), ("mamujoco", "mamujoco"),
                    ("stochastic_game", "stochastic_game"))


def env_family(env: object) -> Optional[str]:
    """The paper's env family (a ``PAPER_D_TARGET`` key) of an env name (or of an
    env's ``name``), by prefix; ``None`` for other envs."""
    name = env if isinstance(env, str) else getattr(env, "name", "")
    for prefix, family in _FAMILY_PREFIXES:
        if str(name).startswith(prefix):
            return family
    return None


def preset(name: str, env: object = None, **overrides: object) -> TrainConfig:
    """A named configuration for an environment, with ``overrides``.

    - ``"paper"``: Table 2 (15 epochs on the whole batch, 128 units, Adam 5e-4) with
      the env family's ``d_target`` (0.1 game, 0.01 MPE, 0.001 MuJoCo, 0.02 SMAC).
    - ``"cpu"``: the paper's settings on a CPU-sized batch (``CPU_BATCH``: 16 envs x
      128 steps, 4 epochs x 4 minibatches, 64 units): the quick start's.
    - ``"jaxmarl"``: JaxMARL's IPPO-FF MPE settings (``JAXMARL_IPPO_MPE``).
    - ``"authors"``: the authors' PyTorch code (``AUTHORS_CODE``) with their
      ``d_target`` per family (``AUTHORS_D_TARGET``); their envs' keyword
      arguments (the game's ``never_reset``, MPE's observation and integrator) come
      from ``preset_env_kwargs``.

    ``env`` is a registered env name (or an env) and only selects the family's
    ``d_target``; ``None`` or another env keeps 0.01.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {PRESETS}")
    family = env_family(env)
    if name == "authors":
        fields = {**AUTHORS_CODE, "d_target": AUTHORS_D_TARGET.get(family or "", 0.01)}
        if family == "smax":  # their README's SMAC command
            fields["total_timesteps"] = 2_000_000
    else:
        d_target = PAPER_D_TARGET[family] if family else TrainConfig.d_target
        base = {"paper": {}, "cpu": CPU_BATCH, "jaxmarl": JAXMARL_IPPO_MPE}[name]
        fields = {**base, "d_target": d_target}
    return TrainConfig(**{**fields, **overrides})  # type: ignore[arg-type]


AUTHORS_MPE_TASKS: tuple[str, ...] = ("mpe_navigation", "mpe_line", "mpe_circle")
"""The paper's MPE tasks, whose env keyword arguments the ``authors`` preset sets."""


def preset_env_kwargs(name: str, env: object = None) -> dict[str, object]:
    """Env keyword arguments a preset implies (``env``: a registered env name or an
    env). Under ``"authors"``: the stochastic game's ``never_reset=True`` (their
    training env is reset once); on the three MPE tasks the authors' MPE,
    ``comm_obs=True`` (their observation ends with the other agents' silent
    communication) and ``integrator="mpe"`` (position moved by the updated
    velocity), and on ``mpe_navigation`` ``vision=None`` (their
    ``navigation_control_full`` has its vision mask commented out; their line and
    circle tasks keep it). Other presets and envs: none. The CLI adds them unless
    ``--env-arg`` sets them."""
    if name != "authors":
        return {}
    if env_family(env) == "stochastic_game":
        return {"never_reset": True}
    env_name = env if isinstance(env, str) else getattr(env, "name", "")
    if env_name in AUTHORS_MPE_TASKS:
        kwargs: dict[str, object] = {"comm_obs": True, "integrator": "mpe"}
        if env_name == "mpe_navigation":
            kwargs["vision"] = None
        return kwargs
    return {}


def field_docs() -> dict[str, str]:
    """Each ``TrainConfig`` field's line(s) of help, read from its docstring
    (``name: text`` entries; ``a, b: text`` documents both)."""
    import re

    docs: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    current: list[str] = []
    for line in (TrainConfig.__doc__ or "").splitlines():
        match = re.match(r"^\s{6}([a-z_0-9, ]+):\s+(.*)$", line)
        if match and all(n.strip() in names for n in match.group(1).split(",")):
            current = [n.strip() for n in match.group(1).split(",")]
            for n in current:
                docs[n] = match.group(2).strip()
        elif current and line.startswith("        ") and line.strip():
            for n in current:
                docs[n] += " " + line.strip()
        else:
            current = []
    return docs
