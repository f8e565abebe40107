"""The cooperative stochastic game of the DPO paper (Sec. 4.1), with exact metrics.

A random, fully cooperative stochastic game in which the global optimum is known
exactly, so a learned policy can be scored by its optimality ratio J(pi) / J*.
It follows the construction in the authors' public code, which ships a 30-state,
3-agent, 5-action example (``make_small_stochastic_game``); the paper's game has
100 states, 6 agents and 5 actions (``make_stochastic_game``).

Construction, for ``S = num_states``, ``N = num_agents``, ``A = num_actions`` and
``numpy.random.default_rng(seed)`` (deterministic and platform independent):

* Joint actions. The agents' actions ``a_0 .. a_{N-1}`` are read as the digits of
  a base-``A`` number with agent 0 the most significant digit:
  ``joint = sum_i a_i * A**(N-1-i)``. A joint-action axis of length ``A**N``
  therefore reshapes to ``[A] * N`` with agent ``i`` on axis ``i``.
* Reward. One shared reward ``r[s, joint] ~ Uniform[-5, 5]``, drawn first, as a
  ``[S, A**N]`` table; every agent receives it.
* Transition. Each row ``P[s, joint, :] ~ Dirichlet(1, ..., 1)`` over the ``S``
  next states (dense, positive, sums to 1), drawn after the rewards in row-major
  order of ``(s, joint)``. Tables are stored as float32; the default game's
  transition table has 100 x 5**6 x 100 = 156M entries (625 MB).
* Observation. Every agent observes the one-hot of the state: ``[N, S]``.
* Start and length. Every episode starts in ``start_state`` (0) and lasts exactly
  ``episode_length`` steps (default ``S``): there is no terminal state, so
  ``terminated`` is always False and ``truncated`` turns True on the step that
  reaches the limit.
* ``never_reset=True``: the authors' training env (``train_matrix_game.py`` resets
  it once, at warm-up). After the first ``episode_length`` steps every step reports
  ``terminated`` (their ``done`` stays 1, so their value masks are 0 and GAE gives
  ``A = r - V(s)``), and the state chain runs on instead of restarting at the start
  state: ``resets_on_done`` is False, so the rollout keeps the env's state. Exact
  metrics stay those of the episodic game.

``StochasticGame.from_tables`` (``stochastic_game_from_tables``) builds the game from
given reward and transition tables; ``load_authors_game`` reads the authors' pickle
format (``a_mat_model/*.pkl``: ``reward [S, A, .., A]``, ``trans_mat [S, A, .., A,
S]``, start state 0, horizon ``S``).

Exact quantities, all undiscounted over ``episode_length`` steps from the start
state:

* ``J*`` (``optimal_return``): the maximum over all joint, time-dependent
  policies, by backward dynamic programming ``V_H = 0``,
  ``Q_t = r + P V_{t+1}``, ``V_t = max_joint Q_t``, so ``J* = V_0[0]``.
* ``J(pi)`` (``exact_return``): the return of a stationary product policy
  ``pi(joint | s) = prod_i pi_i(a_i | s)``, by propagating the state distribution
  ``d_{t+1} = d_t P_pi`` from ``d_0 = e_0`` and summing ``d_t . r_pi``.

Decentralized stationary policies are a subset of the policies ``J*`` ranges
over, so their optimality ratio is at most 1 and in general stays below it.

The environment is a JAX pytree whose leaves are the two tables. A jitted
function that *closes over* it embeds the tables in the compiled program as
constants (jax 0.10.2, default game, CPU: a 1.25 GB HLO text, about 22 s of
compilation and 4-5 GB peak memory for a program that steps the game in a scan
and calls ``exact_return``). Pass the environment as an argument instead,
``jax.jit(lambda env, key: ...)(env, key)``: the tables stay ordinary device
buffers (same program: 4 s of compilation, no copy of the tables).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dpo_jax.envs.base import Array, DiscreteActions, EnvStep, MultiAgentEnv

REWARD_LOW = -5.0
REWARD_HIGH = 5.0
MAX_TABLE_BYTES = 4 * 10**9
# Transition entries drawn per block: bounds the host scratch to ~16 MB whatever
# the game's shape (the draws do not depend on the blocking).
_SCRATCH_ELEMENTS = 2**21

_HIGHEST = jax.lax.Precision.HIGHEST


class GameTables(NamedTuple):
    """The game's dynamics (float32).

    Attributes:
      rewards: ``[S, A**N]`` shared reward of each state and joint action.
      transitions: ``[S, A**N, S]`` next-state distribution of each pair.
    """

    rewards: Array
    transitions: Array


class StochasticGameState(NamedTuple):
    """Environment state: the current state index and the steps taken so far."""

    state_index: Array  # [] int32
    time_step: Array  # [] int32


@functools.partial(jax.jit, donate_argnums=0)
def _write_block(table: Array, state: Array, row: Array, block: Array) -> Array:
    return jax.lax.dynamic_update_slice(table, block[None], (state, row, 0))


def build_tables(
    num_states: int, num_agents: int, num_actions: int, seed: int
) -> GameTables:
    """Draws the reward and transition tables onto the default device.

    Rewards ``[S, A**N]`` uniform in [-5, 5], then transitions ``[S, A**N, S]``
    with Dirichlet(1) rows, row-major in ``(s, joint)``, all from
    ``numpy.random.default_rng(seed)``. The transition rows are drawn and
    copied to the device in blocks written in place, so neither host nor device
    ever holds more than one full table.
    """
    num_joint = num_actions**num_agents
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(REWARD_LOW, REWARD_HIGH, size=(num_states, num_joint))
    transitions = jnp.zeros((num_states, num_joint, num_states), jnp.float32)
    rows_per_block = min(num_joint, max(1, _SCRATCH_ELEMENTS // num_states))
    alpha = np.ones(num_states)
    for state in range(num_states):
        for row in range(0, num_joint, rows_per_block):
            size = min(rows_per_block, num_joint - row)
            block = rng.dirichlet(alpha, size=size).astype(np.float32)
            transitions = _write_block(
                transitions, np.int32(state), np.int32(row), block
            )
    return GameTables(jnp.asarray(rewards, jnp.float32), transitions)


def joint_policy(probs: Array) -> Array:
    """Joint action distribution of a product policy.

    Args:
      probs: ``[N, S, A]`` each agent's action probabilities in each state.

    Returns:
      ``[S, A**N]`` with ``pi(joint | s) = prod_i probs[i, s, a_i]``, agent 0 the
      most significant digit of ``joint``.
    """
    num_agents, num_states, _ = probs.shape
    joint = probs[0]
    for agent in range(1, num_agents):
        joint = joint[:, :, None] * probs[agent][:, None, :]
        joint = joint.reshape(num_states, -1)
    return joint


def product_policy_return(
    probs: Array, tables: GameTables, episode_length: int, start_state: int = 0
) -> Array:
    """Exact undiscounted return of a stationary product policy from the start state.

    ``r_pi[s] = sum_j pi(j|s) r[s, j]``, ``P_pi[s, s'] = sum_j pi(j|s) P[s, j, s']``,
    ``d_0 = e_{start}``, ``d_{t+1} = d_t P_pi`` and ``J = sum_{t<H} d_t . r_pi``.

    Args:
      probs: ``[N, S, A]`` action probabilities of every agent in every state.
      tables: the game's ``GameTables``.
      episode_length: the horizon ``H`` (static).
      start_state: the state every episode starts in (static).

    Returns:
      ``[]`` float32 expected episode return.
    """
    num_states, num_joint = tables.rewards.shape
    chex.assert_rank(probs, 3)
    num_agents, _, num_actions = probs.shape
    chex.assert_shape(probs, (num_agents, num_states, num_actions))
    if num_actions**num_agents != num_joint:
        raise ValueError(
            f"probs of shape {probs.shape} give {num_actions}**{num_agents} joint "
            f"actions, but the game has {num_joint}"
        )
    pi = joint_policy(probs.astype(jnp.float32))
    reward_pi = jnp.sum(pi * tables.rewards, axis=1)
    transition_pi = jnp.einsum(
        "sj,sjt->st", pi, tables.transitions, precision=_HIGHEST
    )

    def advance(dist: Array, _: None) -> tuple[Array, Array]:
        step_reward = jnp.dot(dist, reward_pi, precision=_HIGHEST)
        return jnp.dot(dist, transition_pi, precision=_HIGHEST), step_reward

    start = jax.nn.one_hot(start_state, num_states, dtype=jnp.float32)
    _, step_rewards = jax.lax.scan(advance, start, None, length=episode_length)
    return jnp.sum(step_rewards)


def solve_finite_horizon(
    rewards: np.ndarray, transitions: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Backward dynamic programming over joint actions, in float64 on the host.

    ``V_H = 0``, ``Q_t = r + P V_{t+1}``, ``V_t = max_j Q_t``.

    Returns:
      ``values [S]`` (``V_0``) and ``policy [H, S]`` int32 greedy joint actions.
    """
    num_states, num_joint = rewards.shape
    value = np.zeros(num_states)
    policy = np.empty((horizon, num_states), np.int32)
    q_values = np.empty((num_states, num_joint))
    for t in reversed(range(horizon)):
        # One state at a time: the float32 table is promoted to float64 in
        # slices, never as a whole.
        for s in range(num_states):
            np.matmul(transitions[s], value, out=q_values[s])
        q_values += rewards
        policy[t] = np.argmax(q_values, axis=1)
        value = np.max(q_values, axis=1)
    return value, policy


class _Optimum:
    """Lazily solved, cached optimum, shared by every copy of one environment.

    It keeps the concrete tables, so ``J*`` is available even where the
    environment's own leaves are tracers (inside a jitted function).
    """

    def __init__(self, tables: GameTables, horizon: int, start_state: int = 0):
        self._tables = tables
        self._horizon = horizon
        self._start = start_state
        self._solution: tuple[float, np.ndarray] | None = None

    def solution(self) -> tuple[float, np.ndarray]:
        if self._solution is None:
            values, policy = solve_finite_horizon(
                np.asarray(self._tables.rewards),
                np.asarray(self._tables.transitions),
                self._horizon,
            )
            policy.flags.writeable = False  # shared by every caller
            self._solution = (float(values[self._start]), policy)
            self._tables = None  # the environment still holds them
        return self._solution


def _checked_int(name: str, value: Any, minimum: int) -> int:
    kind = "a positive" if minimum == 1 else "a non-negative"
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {kind} int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {kind} int, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be {kind} int, got {value}")
    return value


@jax.tree_util.register_pytree_node_class
class StochasticGame(MultiAgentEnv):
    """Random cooperative stochastic game with exact J(pi) and J* (module docs).

    Attributes:
      tables: the ``GameTables`` (the pytree's leaves).
      num_states: the number of states S.
      num_actions: actions per agent.
      num_joint_actions: ``num_actions ** num_agents``.
      seed: the seed the tables were drawn with (``None`` for a game built from
        given tables).
      episode_length: steps per episode (the horizon).
      start_state: the state every episode starts in.
      never_reset: the authors' training mode (module docs).
    """

    name = "stochastic_game"

    def __init__(
        self,
        num_states: int = 100,
        num_agents: int = 6,
        num_actions: int = 5,
        seed: int = 0,
        episode_length: int | None = None,
        never_reset: bool = False,
    ):
        num_states = _checked_int("num_states", num_states, 1)
        num_agents = _checked_int("num_agents", num_agents, 1)
        num_actions = _checked_int("num_actions", num_actions, 1)
        seed = _checked_int("seed", seed, 0)
        _check_table_size(num_states, num_agents, num_actions)
        tables = build_tables(num_states, num_agents, num_actions, seed)
        self._setup(tables, num_agents, num_actions, seed, episode_length, 0, never_reset)

    @classmethod
    def from_tables(
        cls,
        rewards: Any,
        transitions: Any,
        start_state: int = 0,
        episode_length: int | None = None,
        never_reset: bool = False,
        num_agents: int | None = None,
    ) -> "StochasticGame":
        """A game with the given dynamics.

        Args:
          rewards: the shared reward, ``[S, A, ..., A]`` (one axis per agent) or
            ``[S, A**N]`` with agent 0 the most significant digit (then pass
            ``num_agents``; default 1).
          transitions: ``[S, A, ..., A, S]`` or ``[S, A**N, S]`` next-state
            distributions (non-negative rows summing to 1 within 1e-4; stored
            renormalised in float32).
          start_state: where every episode starts.
          episode_length: the horizon (default ``S``).
          never_reset: the authors' continuing training env (module docs).
          num_agents: the agent count of a flat ``[S, A**N]`` table.
        """
        rewards = _real_table("rewards", rewards)
        transitions = _real_table("transitions", transitions)
        if rewards.ndim < 2 or transitions.ndim != rewards.ndim + 1:
            raise ValueError(f"stochastic game tables: rewards {rewards.shape} and "
                             f"transitions {transitions.shape} must be [S, joint...] and "
                             f"[S, joint..., S]")
        num_states = rewards.shape[0]
        if rewards.size == 0:
            raise ValueError(f"stochastic game tables: rewards {rewards.shape} are empty: "
                             f"a game needs at least one state and one action per agent")
        if transitions.shape != rewards.shape + (num_states,):
            raise ValueError(f"stochastic game tables: transitions {transitions.shape} "
                             f"must be rewards' shape {rewards.shape} + ({num_states},)")
        if rewards.ndim > 2:
            num_agents, num_actions = rewards.ndim - 1, rewards.shape[1]
            if any(n != num_actions for n in rewards.shape[1:]):
                raise ValueError(f"stochastic game tables: every agent needs the same "
                                 f"number of actions, got reward axes {rewards.shape[1:]}")
        else:
            num_joint = rewards.shape[1]
            num_agents = 1 if num_agents is None else _checked_int("num_agents",
                                                                   num_agents, 1)
            num_actions = round(num_joint ** (1.0 / num_agents))
            if num_actions**num_agents != num_joint:
                raise ValueError(f"stochastic game tables: {num_joint} joint actions are "
                                 f"not A**{num_agents} for any A")
        flat_p = transitions.reshape(num_states, -1, num_states)
        if not np.all(np.isfinite(rewards)) or not np.all(np.isfinite(flat_p)):
            raise ValueError("stochastic game tables: rewards and transitions must be finite")
        limit = float(np.finfo(np.float32).max)
        if np.abs(rewards).max() > limit:
            raise ValueError(f"stochastic game tables: rewards up to {np.abs(rewards).max():.3g} "
                             f"overflow float32 (max {limit:.3g}), in which the game runs")
        if flat_p.min() < 0 or np.abs(flat_p.sum(-1) - 1).max() > 1e-4:
            raise ValueError("stochastic game tables: every transition row must be "
                             "non-negative and sum to 1")
        start_state = _checked_int("start_state", start_state, 0)
        if start_state >= num_states:
            raise ValueError(f"start_state={start_state} must be < num_states={num_states}")
        flat_p = flat_p / flat_p.sum(-1, keepdims=True)
        tables = GameTables(jnp.asarray(rewards.reshape(num_states, -1), jnp.float32),
                            jnp.asarray(flat_p, jnp.float32))
        env = object.__new__(cls)
        env._setup(tables, num_agents, num_actions, None, episode_length, start_state,
                   never_reset)
        return env

    def _setup(self, tables: GameTables, num_agents: int, num_actions: int,
               seed: int | None, episode_length: int | None, start_state: int,
               never_reset: bool) -> None:
        num_states = int(tables.rewards.shape[0])
        if episode_length is None:
            episode_length = num_states
        episode_length = _checked_int("episode_length", episode_length, 1)
        if not isinstance(never_reset, bool):
            raise ValueError(f"never_reset must be True or False, got {never_reset!r}")
        shape = (num_states, num_agents, num_actions, seed, episode_length, start_state,
                 never_reset)
        self._init_fields(shape, _Optimum(tables, episode_length, start_state), tables)

    def _init_fields(
        self, shape: tuple[Any, ...], optimum: _Optimum, tables: GameTables
    ) -> None:
        (num_states, num_agents, num_actions, seed, episode_length, start_state,
         never_reset) = shape
        self.num_states = num_states
        self.num_agents = num_agents
        self.num_actions = num_actions
        self.num_joint_actions = num_actions**num_agents
        self.seed = seed
        self.episode_length = episode_length
        self.start_state = start_state
        self.never_reset = never_reset
        self.resets_on_done = not never_reset
        self.obs_dim = num_states
        self.action_spec = DiscreteActions(num_actions)
        self.max_steps = episode_length
        self.tables = tables
        self._optimum = optimum

    def tree_flatten(self) -> tuple[tuple[GameTables], tuple[Any, ...]]:
        shape = (
            self.num_states,
            self.num_agents,
            self.num_actions,
            self.seed,
            self.episode_length,
            self.start_state,
            self.never_reset,
        )
        return (self.tables,), (shape, self._optimum)

    @classmethod
    def tree_unflatten(
        cls, aux: tuple[Any, ...], children: tuple[GameTables]
    ) -> StochasticGame:
        env = object.__new__(cls)
        shape, optimum = aux
        env._init_fields(shape, optimum, children[0])
        return env

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in (
            ("seed", self.seed), ("start_state", self.start_state),
            ("never_reset", self.never_reset)) if k == "seed" or v)
        return super().__repr__()[:-1] + extra + ")"

    # -- joint actions ------------------------------------------------------

    def _radix(self) -> Array:
        """``[N]`` place value of each agent's action: ``A**(N-1-i)``."""
        powers = np.arange(self.num_agents - 1, -1, -1)
        return jnp.asarray(self.num_actions**powers, jnp.int32)

    def joint_action_index(self, actions: Array) -> Array:
        """``[..., N]`` agent actions -> ``[...]`` int32 joint action, agent 0 first."""
        return jnp.sum(jnp.asarray(actions, jnp.int32) * self._radix(), axis=-1)

    def agent_actions(self, joint_index: Array) -> Array:
        """``[...]`` joint action -> ``[..., N]`` int32 agent actions."""
        joint = jnp.asarray(joint_index, jnp.int32)[..., None]
        return (joint // self._radix()) % self.num_actions

    # -- dynamics -----------------------------------------------------------

    def _observe(
        self, state: StochasticGameState, reward: Array, truncated: Array
    ) -> EnvStep:
        one_hot = jax.nn.one_hot(state.state_index, self.num_states, dtype=jnp.float32)
        return EnvStep(
            state=state,
            obs=jnp.broadcast_to(one_hot, (self.num_agents, self.num_states)),
            avail_actions=jnp.ones((self.num_agents, self.num_actions), bool),
            reward=jnp.broadcast_to(reward, (self.num_agents,)).astype(jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=truncated,
            info={},
        )

    def reset(self, key: Array) -> EnvStep:
        del key  # the start state is fixed
        state = StochasticGameState(jnp.asarray(self.start_state, jnp.int32),
                                    jnp.zeros((), jnp.int32))
        return self._observe(state, jnp.zeros((), jnp.float32), jnp.zeros((), bool))

    def step(self, key: Array, state: StochasticGameState, actions: Array) -> EnvStep:
        """One joint step; ``actions`` is ``[N]`` ints in ``[0, num_actions)``."""
        joint = self.joint_action_index(actions)
        reward = self.tables.rewards[state.state_index, joint]
        next_probs = self.tables.transitions[state.state_index, joint]
        next_index = jax.random.categorical(key, jnp.log(next_probs))
        time_step = state.time_step + 1
        next_state = StochasticGameState(next_index.astype(jnp.int32), time_step)
        out = self._observe(next_state, reward, time_step >= self.episode_length)
        if self.never_reset:  # every step after the first episode is terminal
            out = out._replace(terminated=out.truncated, truncated=jnp.zeros((), bool))
        return out

    # -- exact metrics ------------------------------------------------------

    def optimal_return(self) -> float:
        """J*: best expected episode return over joint time-dependent policies.

        Solved by dynamic programming on the first call (about 20 s for the
        default game on CPU) and cached.
        """
        return self._optimum.solution()[0]

    def optimal_policy(self) -> np.ndarray:
        """``[episode_length, S]`` int32 greedy joint action of each step and state.

        Decode one with ``agent_actions``.
        """
        return self._optimum.solution()[1]

    def exact_return(self, probs: Array) -> Array:
        """J(pi) of the stationary product policy ``probs [N, S, A]`` (jittable)."""
        return product_policy_return(probs, self.tables, self.episode_length,
                                     self.start_state)

    def uniform_return(self) -> float:
        """J of the uniformly random policy (every agent uniform in every state):
        the random-policy reference of an episodic game, exact."""
        uniform = jnp.full((self.num_agents, self.num_states, self.num_actions),
                           1.0 / self.num_actions, jnp.float32)
        return float(self.exact_return(uniform))

    def policy_metrics(
        self, action_probs: Callable[[Array], Array]
    ) -> dict[str, Array]:
        """``exact_return`` J(pi) and ``optimality_ratio`` J(pi) / J* of a policy.

        The policy is queried on the one-hot observation of every state.
        """
        eye = jnp.eye(self.num_states, dtype=jnp.float32)
        obs = jnp.broadcast_to(
            eye[:, None, :], (self.num_states, self.num_agents, self.num_states)
        )
        probs = jnp.transpose(action_probs(obs), (1, 0, 2))
        exact = self.exact_return(probs).astype(jnp.float32)
        optimum = self.optimal_return()
        return {
            "exact_return": exact,
            "optimality_ratio": (exact / optimum).astype(jnp.float32),
        }


def _check_table_size(num_states: int, num_agents: int, num_actions: int) -> None:
    """Refuse games whose tables would not fit (computed in logs: the joint-action
    count itself can be too large to form)."""
    log_joint = num_agents * math.log10(num_actions)
    log_bytes = math.log10(4 * num_states * (num_states + 1)) + log_joint
    if log_bytes > math.log10(MAX_TABLE_BYTES):
        joint = (f"{num_actions**num_agents:,}" if log_joint < 12
                 else f"about 10^{int(log_joint)}")
        raise ValueError(
            f"stochastic game tables would take about 10^{log_bytes - 9:.1f} GB "
            f"(num_states={num_states}, num_actions**num_agents="
            f"{num_actions}**{num_agents}={joint} joint actions, "
            f"transitions {num_states} x joint actions x {num_states} float32); "
            f"the limit is {MAX_TABLE_BYTES / 1e9:.0f} GB: lower num_agents or "
            "num_actions"
        )


def _real_table(name: str, table: Any) -> np.ndarray:
    """``table`` as a float64 array, or ``ValueError`` naming it when it holds
    anything but real numbers (strings, complex values, ragged rows)."""
    try:
        array = np.asarray(table)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"stochastic game tables: {name} is not an array ({err})") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"stochastic game tables: {name} must hold real numbers, got "
                         f"dtype {array.dtype}")
    return array.astype(np.float64)


def stochastic_game_from_tables(
    rewards: Any, transitions: Any, start_state: int = 0,
    episode_length: int | None = None, never_reset: bool = False,
) -> StochasticGame:
    """``StochasticGame.from_tables``: a game with given reward and transition tables."""
    return StochasticGame.from_tables(rewards, transitions, start_state, episode_length,
                                      never_reset)


def load_authors_game(path: str, episode_length: int | None = None,
                      never_reset: bool = False) -> StochasticGame:
    """The game of one of the authors' ``a_mat_model/*.pkl`` files (a pickled dict
    with ``reward [S, A, .., A]`` and ``trans_mat [S, A, .., A, S]``; start state 0;
    horizon ``S``, their ``max_episode_length``; ``int(1.34 * S)`` is their
    ``--episode_longer``).

    **Loading a pickle runs code**: a pickle can name any function to call, so load
    only files you trust (the authors' repository, your own). The loader accepts
    only numpy arrays, lists and numbers inside the dict, and refuses any other
    class the pickle names before calling it.

    Raises ``ValueError`` naming the file on a bad format, a class it refuses, or
    tables of the wrong shape."""
    import pickle

    class _Tables(pickle.Unpickler):
        """Only what an a_mat_model file holds: numpy arrays and builtins."""

        ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
                   ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                   ("builtins", "dict"), ("builtins", "list"), ("collections", "OrderedDict")}

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in self.ALLOWED:
                raise pickle.UnpicklingError(f"it names {module}.{name}, which a game file "
                                             f"does not hold (only numpy arrays are loaded)")
            return super().find_class(module, name)

    try:
        with open(path, "rb") as f:
            data = _Tables(f).load()
        rewards, transitions = data["reward"], data["trans_mat"]
    except (OSError, pickle.UnpicklingError, EOFError, ImportError, AttributeError,
            ValueError) as err:
        raise ValueError(f"{path!r}: cannot read the game ({type(err).__name__}: "
                         f"{err})") from None
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{path!r}: expected a pickled dict with 'reward' and "
                         f"'trans_mat' (the authors' a_mat_model format)") from None
    try:
        return StochasticGame.from_tables(rewards, transitions, 0, episode_length,
                                          never_reset)
    except ValueError as err:
        raise ValueError(f"{path!r}: {err}") from None


def make_stochastic_game(
    num_states: int = 100,
    num_agents: int = 6,
    num_actions: int = 5,
    seed: int = 0,
    episode_length: int | None = None,
    never_reset: bool = False,
) -> StochasticGame:
    """The paper's game: 100 states, 6 agents, 5 actions (Sec. 4.1)."""
    return StochasticGame(num_states, num_agents, num_actions, seed, episode_length,
                          never_reset)


def make_small_stochastic_game(
    num_states: int = 30,
    num_agents: int = 3,
    num_actions: int = 5,
    seed: int = 0,
    episode_length: int | None = None,
    never_reset: bool = False,
) -> StochasticGame:
    """A game of the shape shipped with the authors' code: 30 states, 3 agents,
    5 actions (our own draw; ``stochastic_game_authors`` loads theirs)."""
    return StochasticGame(num_states, num_agents, num_actions, seed, episode_length,
                          never_reset)


def make_authors_stochastic_game(
    path: str, episode_length: int | None = None, never_reset: bool = False
) -> StochasticGame:
    """``load_authors_game``: the authors' game file, e.g.
    ``make_env("stochastic_game_authors", path=".../a_mat_model/random_matrix_game_3.pkl")``."""
    return load_authors_game(path, episode_length, never_reset)
