"""Typed, validated configurations of the IQL and IDDPG baselines.

The paper (Appendix B) fixes only a few numbers of its baselines: IQL is PyMARL's
recurrent Q-learner with individual parameters, 128 hidden units and learning rate
5e-4; IDDPG has 3-layer MLP actor and critic with learning rates 5e-4. Every other
default below is the reference implementation's, named with the file it is read
from:

* PyMARL (https://github.com/oxwhirl/pymarl, master ``c971afd``):
  ``src/config/default.yaml`` and ``src/config/algs/iql.yaml``; the learner
  ``src/learners/q_learner.py``, the agent ``src/modules/agents/rnn_agent.py``.
* DDPG as in Fujimoto's TD3 repository (https://github.com/sfujim/TD3, master
  ``34770cc``): ``main.py`` arguments, ``OurDDPG.py`` and ``utils.py``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal, Optional, Union

from dpo_jax.config import BASELINE_ALGORITHMS, TrainConfig, is_int, is_real

NanPolicy = Literal["raise", "ignore"]


def _require(config: str, cond: bool, field: str, value: object, expected: str) -> None:
    if not cond:
        raise ValueError(f"{config}.{field}={value!r} is invalid: expected {expected}")


def _is_int(value: object, minimum: int) -> bool:
    return is_int(value) and value >= minimum


def _check_types(config: object, floats: tuple[str, ...], bools: tuple[str, ...]) -> None:
    """Float fields are finite reals (stored as float), bool fields real bools, so
    that the range checks after this compare numbers only."""
    name = type(config).__name__
    for field in floats:
        value = getattr(config, field)
        _require(name, is_real(value), field, value, "a finite real number")
        object.__setattr__(config, field, float(value))
    for field in bools:
        value = getattr(config, field)
        _require(name, isinstance(value, bool), field, value, "True or False")


def _positive_ints(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _require(type(config).__name__, _is_int(value, 1), name, value, "a positive int")


def _positive_floats(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _require(type(config).__name__, value > 0, name, value, "a finite number > 0")


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """Independent Q-learning with recurrent agents (PyMARL's IQL, individual parameters).

    Sizes
      algo: always ``"iql"``.
      total_timesteps: environment steps of full-length episodes in total; a run
        makes ``total_timesteps // (num_envs * env.max_steps)`` updates.
      num_envs: episodes collected in parallel per update (PyMARL's
        ``batch_size_run``; iql.yaml runs 1 with the ``episode`` runner).
      gradient_steps: gradient steps per update; ``None`` = ``num_envs``, one per
        collected episode as PyMARL's episode runner (it trains after every episode).

    Replay (PyMARL iql.yaml / default.yaml)
      buffer_size: 5000 episodes (iql.yaml ``buffer_size``).
      batch_size: 32 episodes per gradient step (default.yaml ``batch_size``).

    Learning (PyMARL default.yaml unless stated)
      lr: 5e-4 (paper, Appendix B; default.yaml ``lr`` agrees).
      optim_alpha, optim_eps: RMSprop smoothing 0.99 and epsilon 1e-5, the epsilon
        added outside the square root as PyTorch does (``q_learner.py`` uses
        ``torch.optim.RMSprop``).
      grad_norm_clip: 10, per agent here (PyMARL clips the joint norm of its shared
        network; with individual parameters each agent clips its own).
      gamma: 0.99.
      double_q: True (iql.yaml ``double_q: True``; EPyMARL's iql.yaml too): the
        next action is the online network's masked argmax, valued by the target.
      target_update_interval: 200 episodes (iql.yaml). Checked after every update,
        as PyMARL checks after every training call, so the target is copied every
        ``ceil(200 / num_envs)`` updates (see ``target_update_period``).

    Exploration (PyMARL iql.yaml)
      epsilon_start, epsilon_finish, epsilon_anneal_time: epsilon-greedy, linear
        from 1.0 to 0.05 over 50000 environment steps, then flat.

    Evaluation (PyMARL default.yaml ``test_greedy: True``)
      greedy_eval: after every update also play ``num_envs`` episodes greedily
        (epsilon 0), neither stored nor counted in ``env_steps``, and report their
        mean return as ``greedy_return``: the return of the policy IQL delivers, as
        PyMARL's test runs (which play ``test_nepisode=20`` episodes every
        ``test_interval=2000`` steps). ``episode_return`` is the epsilon-greedy
        behaviour's, like the PPO trainer's is its stochastic policy's.

    Network (PyMARL ``RNNAgent``: fc -> ReLU -> GRUCell -> fc)
      hidden_size: 128 (paper, Appendix B; PyMARL's default is 64).
      obs_last_action: append the agent's previous action, one-hot (zeros at the
        first step), to its observation (default.yaml ``obs_last_action: True``).
        PyMARL's ``obs_agent_id`` is not offered: with individual parameters the
        id is the same constant for every input of a network.

    Safety
      nan_policy: as ``TrainConfig.nan_policy``.
    """

    algo: str = "iql"
    total_timesteps: int = 1_000_000
    num_envs: int = 8
    gradient_steps: Optional[int] = None

    buffer_size: int = 5000
    batch_size: int = 32

    lr: float = 5e-4
    optim_alpha: float = 0.99
    optim_eps: float = 1e-5
    grad_norm_clip: float = 10.0
    gamma: float = 0.99
    double_q: bool = True
    target_update_interval: int = 200

    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_time: int = 50_000

    greedy_eval: bool = True

    hidden_size: int = 128
    obs_last_action: bool = True

    nan_policy: NanPolicy = "raise"

    def __post_init__(self) -> None:
        name = type(self).__name__
        _require(name, self.algo == "iql", "algo", self.algo, "'iql'")
        _check_types(self, ("lr", "optim_alpha", "optim_eps", "grad_norm_clip", "gamma",
                            "epsilon_start", "epsilon_finish"),
                     ("double_q", "greedy_eval", "obs_last_action"))
        _positive_ints(self, ("total_timesteps", "num_envs", "buffer_size", "batch_size",
                              "target_update_interval", "epsilon_anneal_time",
                              "hidden_size"))
        _require(name, self.gradient_steps is None or _is_int(self.gradient_steps, 0),
                 "gradient_steps", self.gradient_steps, "None or an int >= 0")
        _require(name, self.batch_size <= self.buffer_size, "batch_size", self.batch_size,
                 f"at most buffer_size={self.buffer_size}")
        _positive_floats(self, ("lr", "optim_eps", "grad_norm_clip"))
        _require(name, 0 <= self.optim_alpha < 1, "optim_alpha", self.optim_alpha,
                 "a number in [0, 1)")
        _require(name, 0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _require(name, 0 <= self.epsilon_start <= 1, "epsilon_start", self.epsilon_start,
                 "a number in [0, 1]")
        _require(name, 0 <= self.epsilon_finish <= self.epsilon_start, "epsilon_finish",
                 self.epsilon_finish, f"a number in [0, epsilon_start={self.epsilon_start}]")
        _require(name, self.nan_policy in ("raise", "ignore"), "nan_policy",
                 self.nan_policy, "'raise' or 'ignore'")

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps per update (``gradient_steps`` or ``num_envs``)."""
        return self.num_envs if self.gradient_steps is None else self.gradient_steps

    @property
    def target_update_period(self) -> int:
        """Updates between target copies: ``ceil(target_update_interval / num_envs)``."""
        return -(-self.target_update_interval // self.num_envs)

    def replace(self, **changes: object) -> "IQLConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class IDDPGConfig:
    """Independent DDPG: every agent a deterministic actor and a Q critic of its own
    observation and action.

    Sizes
      algo: always ``"iddpg"``.
      total_timesteps: environment steps in total; a run makes
        ``total_timesteps // (num_envs * num_steps)`` updates.
      num_envs, num_steps: parallel environments and steps per env and update
        (episodes continue across updates, with auto-reset).
      gradient_steps: gradient steps per update; ``None`` = ``num_envs * num_steps``,
        one per environment step as TD3's ``main.py`` (``policy.train`` every step).

    Replay and exploration (TD3 repository ``main.py`` / ``utils.py``)
      buffer_size: 1e6 transitions (``ReplayBuffer(max_size=int(1e6))``).
      batch_size: 256 (``--batch_size``).
      learning_starts: 25000 environment steps of uniformly random actions before
        the policy acts and learning begins (``--start_timesteps 25e3``).
      exploration_noise: Gaussian noise std as a fraction of half the action range,
        ``0.1 * (high - low) / 2`` (``--expl_noise 0.1`` times ``max_action``);
        noisy actions are clipped to the box.
      compact_replay: store observations in the env's lossless compact form when
        it has one (``MultiAgentEnv.observation_codec``; multi-agent MuJoCo: each
        observed feature once instead of once per agent that sees it, Humanoid
        17x1 about 3x less replay memory); the samples are bit-identical.

    Learning
      actor_lr, critic_lr: 5e-4 (paper, Appendix B), Adam with PyTorch's default
        epsilon 1e-8 (TD3's ``OurDDPG.py`` uses ``torch.optim.Adam``).
      tau: Polyak rate of both target networks, 0.005 (``--tau``), applied after
        every gradient step (``OurDDPG.train``).
      gamma: 0.99 (``--discount``).
      hidden_size, num_hidden_layers: "3-layer MLPs" (paper, Appendix B): two ReLU
        hidden layers of 128 and a linear head, for actor and critic.

    Safety
      nan_policy: as ``TrainConfig.nan_policy``.
    """

    algo: str = "iddpg"
    total_timesteps: int = 1_000_000
    num_envs: int = 16
    num_steps: int = 50
    gradient_steps: Optional[int] = None

    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 25_000
    exploration_noise: float = 0.1
    compact_replay: bool = True

    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    adam_eps: float = 1e-8
    tau: float = 0.005
    gamma: float = 0.99
    hidden_size: int = 128
    num_hidden_layers: int = 2

    nan_policy: NanPolicy = "raise"

    def __post_init__(self) -> None:
        name = type(self).__name__
        _require(name, self.algo == "iddpg", "algo", self.algo, "'iddpg'")
        _check_types(self, ("exploration_noise", "actor_lr", "critic_lr", "adam_eps", "tau",
                            "gamma"), ("compact_replay",))
        _positive_ints(self, ("total_timesteps", "num_envs", "num_steps", "buffer_size",
                              "batch_size", "hidden_size", "num_hidden_layers"))
        _require(name, self.gradient_steps is None or _is_int(self.gradient_steps, 0),
                 "gradient_steps", self.gradient_steps, "None or an int >= 0")
        _require(name, _is_int(self.learning_starts, 0),
                 "learning_starts", self.learning_starts, "an int >= 0")
        _require(name, self.batch_size <= self.buffer_size, "batch_size", self.batch_size,
                 f"at most buffer_size={self.buffer_size}")
        _positive_floats(self, ("actor_lr", "critic_lr", "adam_eps"))
        _require(name, 0 < self.tau <= 1, "tau", self.tau, "a number in (0, 1]")
        _require(name, 0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _require(name, self.exploration_noise >= 0,
                 "exploration_noise", self.exploration_noise, "a finite number >= 0")
        batch = self.num_envs * self.num_steps
        _require(name, self.total_timesteps >= batch, "total_timesteps",
                 self.total_timesteps, f"at least num_envs*num_steps = {batch}")
        learned = (self.total_timesteps // batch) * batch
        _require(name, learned > self.learning_starts, "total_timesteps",
                 self.total_timesteps,
                 f"more whole updates' steps ({learned} here) than learning_starts="
                 f"{self.learning_starts}: otherwise the run only plays random actions "
                 "and never learns")
        _require(name, self.nan_policy in ("raise", "ignore"), "nan_policy",
                 self.nan_policy, "'raise' or 'ignore'")

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps per update (``gradient_steps`` or ``num_envs * num_steps``)."""
        if self.gradient_steps is None:
            return self.num_envs * self.num_steps
        return self.gradient_steps

    def replace(self, **changes: object) -> "IDDPGConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


BaselineConfig = Union[IQLConfig, IDDPGConfig]

_SHARED_FIELDS = frozenset({"algo", "share_params", "total_timesteps", "num_envs", "gamma",
                            "hidden_size", "nan_policy"})
_BASELINE_FIELDS = {
    "iql": frozenset({"critic_lr", "max_grad_norm"}),
    "iddpg": frozenset({"actor_lr", "critic_lr", "num_hidden_layers", "num_steps"}),
}


def used_fields(algo: str) -> frozenset[str]:
    """The ``TrainConfig`` fields a baseline takes over (``from_train_config``)."""
    return (_SHARED_FIELDS | _BASELINE_FIELDS[algo]) - {"algo", "share_params"}


def from_train_config(cfg: TrainConfig) -> BaselineConfig:
    """The baseline configuration that ``TrainConfig(algo="iql" | "iddpg", ...)`` selects.

    The fields both share carry over: ``total_timesteps``, ``num_envs``, ``gamma``,
    ``hidden_size``, ``nan_policy``; for IQL also ``critic_lr`` (as ``lr``) and
    ``max_grad_norm`` (as ``grad_norm_clip``); for IDDPG also ``actor_lr``,
    ``critic_lr``, ``num_hidden_layers`` and ``num_steps`` (``None``: IDDPG's
    default). IDDPG's ``learning_starts`` is TD3's 25000 capped at a tenth of
    ``total_timesteps``, so that a short run learns after its random warm-up (as
    ``examples/mamujoco.py`` does). Everything else is the baseline's default (see
    ``IQLConfig`` and ``IDDPGConfig``); the other fields (``d_target``,
    ``clip_eps``, ...) do not apply, and setting one to a non-default value warns.
    Build an ``IQLConfig`` / ``IDDPGConfig`` directly to set the rest.
    """
    if cfg.algo not in BASELINE_ALGORITHMS:
        raise ValueError(f"TrainConfig.algo={cfg.algo!r} is not a baseline: expected one "
                         f"of {BASELINE_ALGORITHMS}")
    if cfg.share_params:
        raise ValueError(f"TrainConfig.share_params=True is invalid with algo={cfg.algo!r}: "
                         "the baselines are fully decentralized (individual parameters)")
    used = _SHARED_FIELDS | _BASELINE_FIELDS[cfg.algo]
    ignored = sorted(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in used and getattr(cfg, f.name) != f.default)
    if ignored:
        warnings.warn(
            f"TrainConfig field(s) {ignored} do not apply to algo={cfg.algo!r} and are "
            f"ignored; it uses {sorted(used - {'algo', 'share_params'})} (build "
            f"{'IQLConfig' if cfg.algo == 'iql' else 'IDDPGConfig'} to set its own fields)",
            UserWarning, stacklevel=3)
    shared = dict(total_timesteps=cfg.total_timesteps, num_envs=cfg.num_envs,
                  gamma=cfg.gamma, hidden_size=cfg.hidden_size, nan_policy=cfg.nan_policy)
    if cfg.algo == "iql":
        return IQLConfig(lr=cfg.critic_lr, grad_norm_clip=cfg.max_grad_norm, **shared)
    steps = {} if cfg.num_steps is None else {"num_steps": cfg.num_steps}
    learning_starts = min(IDDPGConfig.learning_starts, cfg.total_timesteps // 10)
    return IDDPGConfig(actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr,
                       num_hidden_layers=cfg.num_hidden_layers,
                       learning_starts=learning_starts, **steps, **shared)
