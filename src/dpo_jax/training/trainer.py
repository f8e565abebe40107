"""``make_train``: one whole training run as one pure, compiled function of a PRNG key.

An outer ``lax.scan`` over updates; each update

1. rolls out ``num_steps`` steps of ``num_envs`` envs (``lax.scan`` over steps,
   ``vmap`` over envs, auto-reset; the agents act with ``vmap`` over their stacked
   parameters) -- ``rollout.py``;
2. computes per-agent GAE with termination vs truncation -- ``advantages.py``;
3. runs ``num_epochs`` x ``num_minibatches`` gradient steps of the objective family
   (``objectives.py``), each agent on its own loss and optimiser -- ``agents.py``;
4. measures KL(pi_old^i || pi_new^i) on the whole batch and adapts beta_1^i,
   beta_2^i (eq. 20).

The algorithm is data (``ObjectiveParams``), so ``jax.vmap(train)(keys, params)``
sweeps seeds, algorithms or ``d_target`` in one compile.

Metrics (``TrainResult.metrics``, one row per update) follow
``rollout.EPISODE_METRICS_RULE`` for the per-episode ones. Eq. 20 compares with
``d_target`` either ``kl`` / ``sqrt_kl`` (the whole batch after the update,
``beta_statistics="batch_after_update"``) or ``last_minibatch_kl`` /
``last_minibatch_sqrt_kl`` (the last minibatch of the last epoch as its loss saw
them, ``"last_minibatch"``, the authors' code); all four are logged, and
``beta_sqrt`` / ``beta_kl`` are the coefficients used during the update, so the next
row's betas follow from this row's by eq. 20. ``env_steps`` is float32
in the program (exact below 2**24 steps, relative error below 1e-7 beyond, never
wrapping); ``update_steps`` (int32, the update's env steps) lets the host recover
the exact count, which ``experiments.run`` writes back as int64.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpo_jax.core import agents as agents_lib
from dpo_jax.core.advantages import gae
from dpo_jax.core.agents import Agents, AgentState
from dpo_jax.baselines import (
    BaselineResult,
    IDDPGConfig,
    IQLConfig,
    make_trainer_iddpg,
    make_trainer_iql,
    num_updates_iddpg,
    num_updates_iql,
)
from dpo_jax.baselines.config import from_train_config
from dpo_jax.training import faults
from dpo_jax.training.chunks import Trainer, chunked_trainer, emit_progress
from dpo_jax.config import BASELINE_ALGORITHMS, TrainConfig, static_config
from dpo_jax.envs.base import MultiAgentEnv, validate_env
from dpo_jax.training.memory import check_memory
from dpo_jax.core.networks import action_probs, distribution, kl_divergence
from dpo_jax.core.objectives import (
    ObjectiveParams,
    PolicyLossAux,
    adapt_betas,
    check_switched_on,
    masked_mean,
    objective_params,
    objective_params_ok,
    policy_loss,
    validate_objective_params,
    value_loss,
)
from dpo_jax.training.rollout import (
    EnvBatch,
    StepRecord,
    carry_episode_metrics,
    episode_stats,
    initial_episode_metrics,
    reset_envs,
    step_envs,
    step_reward,
    updates_to_steps,
)
from dpo_jax.parallel.sharding import EnvConstraint, no_constraint
from dpo_jax.core.value_norm import (
    ValueNormState,
    denormalize,
    init_value_norm,
    normalize,
    update_value_norm,
)

Array = jax.Array
ProgressFn = Callable[[dict[str, np.ndarray]], None]
AnyConfig = Union[TrainConfig, IQLConfig, IDDPGConfig]


class Transition(NamedTuple):
    """One rollout step of E envs, agents stacked: leaves ``[E, N, ...]`` / ``[E]``.
    ``value`` is the critic's output (normalised units with ``cfg.value_norm``)."""

    obs: Array
    avail: Array
    action: Array
    log_prob: Array
    dist_params: Array
    value: Array
    step: StepRecord
    active: Optional[Array] = None  # [E, N] bool: the agent was alive when it acted


class Batch(NamedTuple):
    """Training samples flattened over time and envs: leaves ``[B, N, ...]``.
    ``value`` and ``target`` are in the critic's units (normalised with
    ``cfg.value_norm``); ``advantage`` is in the env's units (or standardised)."""

    obs: Array
    avail: Array
    action: Array
    log_prob: Array
    dist_params: Array
    value: Array
    advantage: Array
    target: Array
    weight: Optional[Array] = None  # [B, N] 0/1 active mask (None: every sample counts)


class TrainState(NamedTuple):
    """The carry of the outer scan."""

    agents: AgentState
    beta_sqrt: Array  # [N] beta_1 of eq. 19
    beta_kl: Array  # [N] beta_2 of eq. 19
    env_batch: EnvBatch
    value_norm: ValueNormState  # running statistics of the value targets [N]
    last_episode: dict[str, Array]  # per-episode metrics of the last episodes that ended
    finite: Array  # False from the first non-finite loss or gradient on
    key: Array


class TrainResult(NamedTuple):
    """What ``train(key)`` returns; ``metrics`` leaves are ``[num_updates, ...]``."""

    agents: AgentState
    beta_sqrt: Array
    beta_kl: Array
    metrics: dict[str, Array]


def rollout(
    env: MultiAgentEnv, agents: Agents, params: Any, env_batch: EnvBatch, key: Array,
    num_steps: int, active_masks: bool = False, constrain: EnvConstraint = no_constraint,
) -> tuple[EnvBatch, Transition]:
    """``num_steps`` steps of all envs with the current policies (``lax.scan``);
    with ``active_masks`` (and an env that has them) also which agents were alive.
    ``constrain`` lays out the env batch after each step (``sharding``'s env axis)."""
    record_active = active_masks and env.has_active_mask

    def one_step(batch: EnvBatch, step_key: Array) -> tuple[EnvBatch, Transition]:
        act_key, env_key = jax.random.split(step_key)
        dist_params = agents_lib.policy_params(agents, params, batch.obs, batch.avail)
        dist = distribution(dist_params, agents.action_spec)
        action, log_prob = dist.sample_and_log_prob(seed=act_key)
        value = agents_lib.values(agents, params, batch.obs)
        active = jax.vmap(env.active_agents)(batch.env_state) if record_active else None
        new_batch, record = step_envs(env, batch, action, env_key)
        return constrain(new_batch, 0), Transition(batch.obs, batch.avail, action, log_prob,
                                     dist_params, value, record, active)

    return jax.lax.scan(one_step, env_batch, jax.random.split(key, num_steps))


def make_batch(
    agents: Agents, params: Any, traj: Transition, cfg: TrainConfig,
    norm: ValueNormState, obj: Optional[ObjectiveParams] = None,
) -> tuple[Batch, ValueNormState, Array]:
    """GAE per agent (bootstrapping truncated episodes from their final
    observation) in the env's units, the value-target statistics updated with
    this batch (``cfg.value_norm``), then time x envs flattened into one sample axis.
    The numbers (``gamma``, ``gae_lambda``, ``value_norm_beta``, ``adv_norm_eps``)
    are the run's ``obj`` (default: ``cfg``'s own); ``cfg`` gives the static choices.

    Returns the batch, the new statistics and the critic's explained variance
    ``[N]`` of the targets (``1 - Var(y - V) / Var(y)`` in env units, before the
    update: 1 is a perfect critic, 0 one no better than a constant).
    """
    obj = objective_params(cfg, traj.obs.shape[-2]) if obj is None else obj
    next_values = agents_lib.values(agents, params, traj.step.next_obs)
    values = denormalize(norm, traj.value)
    terminal = traj.step.terminated if cfg.bootstrap_truncation else traj.step.done
    advantages, targets = gae(
        traj.step.reward, values, denormalize(norm, next_values),
        terminal[..., None], traj.step.done[..., None],
        obj.gamma, obj.gae_lambda,
    )
    axes = (0, 1)
    explained = 1.0 - (targets - values).var(axes) / (targets.var(axes) + 1e-8)
    if cfg.value_norm:
        norm = update_value_norm(norm, targets, obj.value_norm_beta,
                                 shared=agents.share_params)
        targets = normalize(norm, targets)
    weight = None if traj.active is None else traj.active.astype(jnp.float32)
    if cfg.normalize_advantages:
        scope = axes if cfg.advantage_norm_scope == "agent" else (0, 1, 2)
        advantages = standardize(advantages, weight, scope, obj.adv_norm_eps)
    flat = lambda x: None if x is None else x.reshape((-1,) + x.shape[2:])  # noqa: E731
    batch = Batch(
        obs=flat(traj.obs), avail=flat(traj.avail), action=flat(traj.action),
        log_prob=flat(traj.log_prob), dist_params=flat(traj.dist_params),
        value=flat(traj.value), advantage=flat(advantages), target=flat(targets),
        weight=flat(weight),
    )
    return batch, norm, explained


def standardize(x: Array, weight: Optional[Array], axes: tuple[int, ...],
                eps: float = 1e-8) -> Array:
    """``(x - mean) / (std + eps)`` with the statistics over ``axes`` (time and
    envs: per agent; time, envs and agents: over all agents); with ``weight``
    (0/1) over the active samples only."""
    if weight is None:
        return (x - x.mean(axes)) / (x.std(axes) + eps)
    mean = masked_mean(x, weight, axes)
    var = masked_mean((x - mean) ** 2, weight, axes)
    return (x - mean) / (jnp.sqrt(var) + eps)


def agent_loss(
    params: Any, batch: Batch, beta_sqrt: Array, beta_kl: Array, obj: ObjectiveParams,
    agents: Agents, cfg: TrainConfig,
) -> tuple[Array, tuple[PolicyLossAux, Array]]:
    """One agent's actor + critic loss on its samples (leaves ``[B, ...]``): the
    numbers from the run's ``obj``, the static choices from ``cfg``."""
    new_params = agents.actor.apply(params["actor"], batch.obs, batch.avail)
    dist = distribution(new_params, agents.action_spec)
    log_prob = dist.log_prob(batch.action)
    kl = kl_divergence(batch.dist_params, new_params, agents.action_spec)
    pi_loss, aux = policy_loss(
        log_prob, batch.log_prob, batch.advantage, kl, dist.entropy(), beta_sqrt,
        beta_kl, obj, entropy_coef=obj.entropy_coef, sqrt_kl_form=cfg.sqrt_kl_form,
        kl_sqrt_eps=obj.kl_sqrt_eps, kl_sqrt_eps_mode=cfg.kl_sqrt_eps_mode,
        weights=batch.weight,
    )
    new_values = agents.critic.apply(params["critic"], batch.obs)
    v_loss = value_loss(new_values, batch.value, batch.target,
                        None if cfg.value_clip is None else obj.value_clip,
                        None if cfg.huber_delta is None else obj.huber_delta,
                        weights=batch.weight)
    return pi_loss + obj.value_coef * v_loss, (aux, v_loss)


def loss_and_grads(
    agents: Agents, params: Any, batch: Batch, beta_sqrt: Array, beta_kl: Array,
    obj: ObjectiveParams, cfg: TrainConfig,
) -> tuple[Array, tuple[PolicyLossAux, Array], Any]:
    """Per-agent losses ``[N]``, diagnostics and gradients.

    Independent agents: ``vmap`` of ``value_and_grad`` over the agent axis, so the
    gradient of agent i is of agent i's loss only. Shared parameters: the gradient
    of the mean of the agents' losses. The shared set is broadcast to one copy per
    agent so that both cases run the same per-agent batched matmuls; the transpose
    of the broadcast sums the agents' gradients. That is the same gradient, and on
    XLA:CPU 1.39x faster than one matmul over all ``B x N`` samples, whose
    activations do not stay in cache (``benchmarks/investigations/update_ab.py``). With
    ``cfg.loss_mean_over_agents`` independent agents' gradients are divided by N
    (the gradient of the agents' mean loss); the losses returned are unscaled.
    """
    grad_fn = jax.value_and_grad(agent_loss, has_aux=True)
    if not agents.share_params:
        (loss, aux), grads = jax.vmap(grad_fn, in_axes=(0, 1, 0, 0, None, None, None))(
            params, batch, beta_sqrt, beta_kl, obj, agents, cfg
        )
        if cfg.loss_mean_over_agents:  # the gradient of the mean of the agents' losses
            grads = jax.tree.map(lambda g: g / agents.num_agents, grads)
        return loss, aux, grads

    def mean_loss(shared: Any) -> tuple[Array, tuple[Array, Any]]:
        copies = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (agents.num_agents,) + x.shape), shared)
        losses, aux = jax.vmap(agent_loss, in_axes=(0, 1, 0, 0, None, None, None))(
            copies, batch, beta_sqrt, beta_kl, obj, agents, cfg
        )
        return losses.mean(), (losses, aux)

    (_, (loss, aux)), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
    return loss, aux, grads


def _grad_norm(agents: Agents, grads: Any) -> Array:
    if agents.share_params:
        return optax.tree.norm(grads)
    return jax.vmap(optax.tree.norm)(grads)


def pool_samples(batch: Batch, key: Array) -> Batch:
    """All agents' samples shuffled together and dealt back out, one column per
    agent (``TrainConfig.sampling="pooled"``, the authors' code): leaves ``[B, N,
    ...]`` are flattened to ``B * N`` samples, permuted, and reshaped to ``[B, N,
    ...]``, so column i holds about ``B / N`` of agent i's samples and the rest from
    the other agents."""
    num_samples, num_agents = batch.obs.shape[:2]
    perm = jax.random.permutation(key, num_samples * num_agents)

    def deal(x: Optional[Array]) -> Optional[Array]:
        if x is None:
            return None
        flat = x.reshape((num_samples * num_agents,) + x.shape[2:])
        return flat[perm].reshape(x.shape)

    return jax.tree.map(deal, batch)


def epoch_minibatches(batch: Batch, key: Array, cfg: TrainConfig) -> Batch:
    """One epoch's minibatches, leaves ``[num_minibatches, B / num_minibatches, N,
    ...]``: the samples shuffled (time and env positions, each agent keeping its own
    samples; or all agents' samples pooled, ``cfg.sampling``) and split."""
    num_samples = batch.obs.shape[0]
    mb_size = num_samples // cfg.num_minibatches
    if cfg.sampling == "pooled":
        pool_key, key = jax.random.split(key)
        batch = pool_samples(batch, pool_key)
    if cfg.num_minibatches == 1:
        # one minibatch holds every sample: its mean loss does not depend on the
        # order, so the shuffle's gather of the whole batch is skipped
        return jax.tree.map(lambda x: x[None], batch)
    perm = jax.random.permutation(key, num_samples)
    return jax.tree.map(
        lambda x: x[perm].reshape((cfg.num_minibatches, mb_size) + x.shape[1:]), batch)


def update_epochs(
    agents: Agents, state: AgentState, batch: Batch, beta_sqrt: Array, beta_kl: Array,
    obj: ObjectiveParams, cfg: TrainConfig, key: Array,
    constrain: EnvConstraint = no_constraint,
) -> tuple[AgentState, dict[str, Array]]:
    """``num_epochs`` passes of ``num_minibatches`` shuffled minibatches (each
    minibatch's sample axis laid out by ``constrain``: the env-axis mode's data
    parallelism). Returns the new state and the mean statistics, plus
    ``last_kl`` / ``last_sqrt_kl`` ``[N]``: the KL terms of the last minibatch as
    its loss saw them (``cfg.beta_statistics="last_minibatch"``)."""

    def minibatch_step(state: AgentState, mb: Batch) -> tuple[AgentState, dict]:
        loss, (aux, v_loss), grads = loss_and_grads(
            agents, state.params, mb, beta_sqrt, beta_kl, obj, cfg)
        stats = {"loss": loss, "policy_loss": -aux.surrogate, "value_loss": v_loss,
                 "entropy": aux.entropy, "clip_frac": aux.clip_frac,
                 "grad_norm": _grad_norm(agents, grads), "minibatch_kl": aux.kl,
                 "minibatch_sqrt_kl": aux.sqrt_kl}
        return agents_lib.apply_gradients(agents, state, grads, obj), stats

    def epoch(state: AgentState, epoch_key: Array) -> tuple[AgentState, dict]:
        minibatches = epoch_minibatches(batch, epoch_key, cfg)
        return jax.lax.scan(minibatch_step, state, constrain(minibatches, 1))

    state, stats = jax.lax.scan(epoch, state, jax.random.split(key, cfg.num_epochs))
    finite = jnp.all(jnp.stack([jnp.isfinite(v).all() for v in stats.values()]))
    last_kl = stats.pop("minibatch_kl")[-1, -1]
    last_sqrt_kl = stats.pop("minibatch_sqrt_kl")[-1, -1]
    stats = jax.tree.map(lambda x: x.mean((0, 1)), stats)
    stats.update(finite=finite, last_kl=last_kl, last_sqrt_kl=last_sqrt_kl)
    return state, stats


def batch_kl(agents: Agents, params: Any, batch: Batch) -> tuple[Array, Array]:
    """Mean KL(pi_old^i || pi_new^i) and mean sqrt-KL per agent over the batch (over
    each agent's active samples when the batch has an active mask)."""
    new_params = agents_lib.policy_params(agents, params, batch.obs, batch.avail)
    kl = jnp.maximum(kl_divergence(batch.dist_params, new_params, agents.action_spec), 0.0)
    return masked_mean(kl, batch.weight, 0), masked_mean(jnp.sqrt(kl), batch.weight, 0)


def check_finite(result: Any, labels: Optional[list[dict]] = None) -> Any:
    """Raise ``faults.NonFiniteError`` (a ``FloatingPointError``) naming the earliest
    update (over all runs) that hit a non-finite value, its cause (reward,
    observation, loss or gradient, invalid ``ObjectiveParams``), the runs that failed
    and the metrics that turned non-finite; return ``result`` unchanged otherwise.

    With ``nan_policy="raise"`` a run stops learning at that update (the agents
    keep their last finite parameters; ``metrics["finite"]`` is False from there
    on); this host-side check turns it into an error. ``running.experiments.run``
    calls it after every chunk; call it yourself after ``jax.jit(jax.vmap(train))``
    (nothing can raise from inside a compiled program).
    """
    faults.check_metrics(jax.tree.map(np.asarray, result.metrics), 0, labels)
    return result


def resolve_config(cfg: AnyConfig) -> AnyConfig:
    """``cfg``, or the baseline configuration a ``TrainConfig(algo="iql" | "iddpg")``
    selects (``baselines.config.from_train_config``)."""
    if isinstance(cfg, TrainConfig) and cfg.algo in BASELINE_ALGORITHMS:
        return from_train_config(cfg)
    return cfg


def num_updates(cfg: AnyConfig, env: MultiAgentEnv) -> int:
    """Updates a run of ``cfg`` (any algorithm) makes on ``env``."""
    cfg = resolve_config(cfg)
    if isinstance(cfg, IQLConfig):
        return num_updates_iql(cfg, env)
    if isinstance(cfg, IDDPGConfig):
        return num_updates_iddpg(cfg)
    return cfg.total_timesteps // (cfg.num_envs * rollout_length(cfg, env))


def rollout_length(cfg: TrainConfig, env: MultiAgentEnv) -> int:
    """Steps per env and update (``cfg.num_steps`` or the env's episode limit)."""
    return cfg.num_steps if cfg.num_steps is not None else env.max_steps


def make_train(
    cfg: AnyConfig, env: MultiAgentEnv, progress: Optional[ProgressFn] = None,
    env_constraint: EnvConstraint = no_constraint,
) -> Callable[..., Union[TrainResult, BaselineResult]]:
    """Build ``train(key, obj=None) -> TrainResult``, a pure function.

    Args:
      cfg: the run's configuration (``cfg.algo`` gives the default objective).
        The baselines are selected the same way: an ``IQLConfig`` /
        ``IDDPGConfig``, or ``TrainConfig(algo="iql" | "iddpg")``, returns their
        trainer (``baselines.make_train_iql`` / ``make_train_iddpg``), with the
        same call signature, ``BaselineResult`` (same metric names) and a
        ``ValueError`` naming the algorithm and action space on a mismatch.
      env: an environment in the stacked protocol (``dpo_jax.make_env``).
      progress: optional host function called after every update with that
        update's metrics as numpy arrays (via ``jax.debug.callback``; under
        ``vmap`` it is called once per batch element).

    ``obj`` (an :class:`ObjectiveParams`, see ``objective_params``) overrides the
    algorithm and its numbers; ``vmap`` over it to sweep.

    ``env`` may be passed to ``train`` as an argument too (default: the one given
    here). Do so for environments that are pytrees of large arrays, such as the
    default stochastic game (625 MB of tables): a ``jit``-ed function that closes
    over arrays embeds them in the compiled program as constants (slow compile,
    several copies in memory), one that receives them as arguments does not::

        jax.jit(jax.vmap(train, in_axes=(0, None, None)))(keys, None, env)

    ``experiments.run`` does this for you.
    """
    return make_trainer(cfg, env, progress=progress, env_constraint=env_constraint).train


class PGContext(NamedTuple):
    """What one policy-gradient run's functions share, fixed when it is built."""

    cfg: TrainConfig
    agents: Agents
    num_steps: int
    steps_per_update: int
    default_obj: ObjectiveParams
    progress: Optional[ProgressFn]
    constrain: EnvConstraint


def policy_metrics(agents: Agents, env: MultiAgentEnv, params: Any) -> dict[str, Array]:
    """The env's exact metrics of the current policy (``env.policy_metrics``; the
    stochastic game's J(pi) and J(pi)/J*); none for continuous actions."""
    if not env.is_discrete:
        return {}

    def probs(obs: Array) -> Array:
        avail = jnp.ones(obs.shape[:-1] + (env.mask_dim,), bool)
        return action_probs(agents_lib.policy_params(agents, params, obs, avail))

    return env.policy_metrics(probs)


def pg_update(ctx: PGContext, state: TrainState, update_idx: Array, obj: ObjectiveParams,
              env: MultiAgentEnv) -> tuple[TrainState, dict[str, Array]]:
    """One update: rollout, GAE, the epochs of the objective, eq. 20's adaptation,
    the fault check and the metrics (see the module docstring)."""
    cfg, agents = ctx.cfg, ctx.agents
    key, rollout_key, epoch_key = jax.random.split(state.key, 3)
    params = state.agents.params
    env_batch, traj = rollout(env, agents, params, state.env_batch, rollout_key,
                              ctx.num_steps, cfg.active_masks, ctx.constrain)
    batch, value_norm, explained = make_batch(agents, params, traj, cfg, state.value_norm,
                                              obj)
    new_agents, stats = update_epochs(agents, state.agents, batch, state.beta_sqrt,
                                      state.beta_kl, obj, cfg, epoch_key, ctx.constrain)
    kl, sqrt_kl = batch_kl(agents, new_agents.params, batch)
    last_kl, last_sqrt_kl = stats.pop("last_kl"), stats.pop("last_sqrt_kl")
    stats.update(last_minibatch_kl=last_kl, last_minibatch_sqrt_kl=last_sqrt_kl)
    if cfg.beta_statistics == "last_minibatch":
        beta_sqrt, beta_kl = adapt_betas(state.beta_sqrt, state.beta_kl, last_kl,
                                         last_sqrt_kl, obj, cfg)
    else:
        beta_sqrt, beta_kl = adapt_betas(state.beta_sqrt, state.beta_kl, kl, sqrt_kl, obj, cfg)
    episodes, last_episode = carry_episode_metrics(episode_stats(traj.step),
                                                   state.last_episode)
    fault = faults.fault_code(objective_params_ok(obj), traj.step.reward, traj.obs,
                              stats.pop("finite"))
    (new_agents, beta_sqrt, beta_kl, value_norm), finite = faults.guard(
        fault, state.finite, (new_agents, beta_sqrt, beta_kl, value_norm),
        (state.agents, state.beta_sqrt, state.beta_kl, state.value_norm), cfg.nan_policy)
    metrics = {
        **episodes,
        **stats,
        "update": update_idx,
        "finite": finite,
        "fault": fault,
        "env_steps": updates_to_steps(update_idx + 1, ctx.steps_per_update),
        "update_steps": jnp.asarray(ctx.steps_per_update, jnp.int32),
        "step_reward": step_reward(traj.step),
        "kl": kl,
        "sqrt_kl": sqrt_kl,
        "explained_variance": explained,
        # the coefficients used during this update, before adaptation
        "beta_sqrt": state.beta_sqrt,
        "beta_kl": state.beta_kl,
        **policy_metrics(agents, env, new_agents.params),
    }
    emit_progress(ctx.progress, metrics)
    return TrainState(new_agents, beta_sqrt, beta_kl, env_batch, value_norm, last_episode,
                      finite, key), metrics


def pg_prepare_obj(ctx: PGContext, obj: Optional[ObjectiveParams]) -> ObjectiveParams:
    """``obj``, checked, or the config's own member."""
    if obj is None:
        return ctx.default_obj
    check_switched_on(validate_objective_params(obj), ctx.cfg)
    return obj


def pg_init(ctx: PGContext, key: Array, obj: Optional[ObjectiveParams],
            env: MultiAgentEnv) -> TrainState:
    """The state before update 0: agents, initial betas, reset envs."""
    obj = pg_prepare_obj(ctx, obj)
    init_key, env_key, run_key = jax.random.split(key, 3)
    ones = jnp.ones((env.num_agents,), jnp.float32)
    return TrainState(
        agents=agents_lib.init_agents(ctx.agents, init_key, obj.init_log_std),
        beta_sqrt=ones * obj.init_beta_sqrt,
        beta_kl=ones * obj.init_beta_kl,
        env_batch=ctx.constrain(reset_envs(env, env_key, ctx.cfg.num_envs), 0),
        value_norm=init_value_norm(env.num_agents),
        last_episode=initial_episode_metrics(env),
        finite=jnp.array(True),
        key=run_key,
    )


def pg_result(state: TrainState, metrics: dict[str, Array]) -> TrainResult:
    """The ``TrainResult`` of a final state and its metrics."""
    return TrainResult(state.agents, state.beta_sqrt, state.beta_kl, metrics)


def make_trainer(
    cfg: AnyConfig, env: MultiAgentEnv, chunk_updates: Optional[int] = None,
    progress: Optional[ProgressFn] = None, env_constraint: EnvConstraint = no_constraint,
) -> Trainer:
    """The trainer of ``cfg`` as :class:`Trainer` pieces (the policy-gradient
    family, or IQL / IDDPG as ``make_train`` selects them); ``chunk_updates``
    (default: all) is how many updates one ``run`` call performs. Arguments as
    :func:`make_train`."""
    cfg = resolve_config(cfg)
    validate_env(env)
    if env_constraint is not no_constraint and not isinstance(cfg, TrainConfig):
        raise ValueError(f"env-axis sharding (env_constraint, shard='envs') supports the "
                         f"policy-gradient family only, not algo={cfg.algo!r}: shard the "
                         f"run axis instead")
    if isinstance(cfg, IQLConfig):
        return make_trainer_iql(cfg, env, chunk_updates, progress)
    if isinstance(cfg, IDDPGConfig):
        return make_trainer_iddpg(cfg, env, chunk_updates, progress)
    num_steps = rollout_length(cfg, env)
    cfg.check_batch(num_steps)
    check_memory(cfg, env, num_steps)
    n_updates = num_updates(cfg, env)
    static = static_config(cfg)  # the program reads every number from its obj
    ctx = PGContext(static, agents_lib.make_agents(static, env, n_updates), num_steps,
                    cfg.num_envs * num_steps, objective_params(cfg, env.num_agents),
                    progress, env_constraint)
    return chunked_trainer(functools.partial(pg_init, ctx), functools.partial(pg_update, ctx),
                           n_updates, chunk_updates, pg_result, env,
                           functools.partial(pg_prepare_obj, ctx))
