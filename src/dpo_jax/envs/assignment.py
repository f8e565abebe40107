"""Optimal one-to-one assignment (min total cost) that compiles with ``jit`` and ``vmap``.

Given a square cost matrix ``C`` ``[N, N]``, find the permutation ``sigma`` that
minimises ``sum_i C[i, sigma(i)]`` (the linear sum assignment problem, what
``scipy.optimize.linear_sum_assignment`` solves on the host). The MPE tasks need it
inside the compiled environment step to score agents against target points.

Two exact methods; :func:`optimal_assignment` picks by size (``method="auto"``):

* ``"enumerate"`` (``N <= ENUMERATION_MAX_SIZE``, default for ``N <= 5``): the
  cost of all ``N!`` permutations (a static table) in one gather and an argmin.
  Exact: it compares every candidate (120 for five agents). Fully parallel, so
  the cheapest choice on accelerators for small ``N``.
* ``"hungarian"`` (any ``N``, default for ``N > 5``): the Hungarian method in its
  shortest-augmenting-path form with row and column potentials (Kuhn-Munkres as
  refined by Jonker and Volgenant; ``O(N^3)``), as ``lax`` loops: one pass per
  row adds it to the matching along a shortest augmenting path in the reduced
  costs ``C[i, j] - u[i] - v[j]``. Exact in exact arithmetic; in floating point
  it returns an assignment whose total cost is optimal up to rounding of the
  potentials (a few ulps of the costs' scale), so it can differ from scipy's only
  between assignments whose totals tie to that precision.

Ties between equally cheap assignments are broken differently from scipy.
"""

from __future__ import annotations

import itertools
from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Method = Literal["auto", "enumerate", "hungarian"]

AUTO_ENUMERATION_MAX_SIZE = 5
"""``method="auto"`` enumerates permutations up to this size (5! = 120)."""
ENUMERATION_MAX_SIZE = 8
"""Largest size ``method="enumerate"`` accepts (8! = 40320 permutations)."""


class Assignment(NamedTuple):
    """An optimal assignment of rows to columns.

    Attributes:
      cols: ``[N]`` int32, the column assigned to each row (a permutation).
      cost: ``[]`` the total cost ``sum_i C[i, cols[i]]``.
    """

    cols: Array
    cost: Array


def _permutation_table(size: int) -> np.ndarray:
    return np.asarray(list(itertools.permutations(range(size))), np.int32)


def assign_by_enumeration(cost: Array) -> Array:
    """Columns of the cheapest of all ``N!`` permutations (exact; ``N`` <= 8)."""
    size = cost.shape[0]
    if size > ENUMERATION_MAX_SIZE:
        raise ValueError(
            f"assign_by_enumeration: N={size} > ENUMERATION_MAX_SIZE="
            f"{ENUMERATION_MAX_SIZE} ({size}! permutations); use method='hungarian'"
        )
    perms = jnp.asarray(_permutation_table(size))  # [N!, N]
    totals = cost[jnp.arange(size), perms].sum(axis=-1)  # [N!]
    return perms[jnp.argmin(totals)]


class _SearchState(NamedTuple):
    """Carry of one shortest-augmenting-path search (index 0 is a dummy column)."""

    u: Array  # [N+1] row potentials (row r at index r+1)
    v: Array  # [N+1] column potentials
    match: Array  # [N+1] row (1-based, 0 = none) matched to each column
    way: Array  # [N+1] previous column on the alternating path
    min_slack: Array  # [N+1] smallest reduced cost reaching each column
    used: Array  # [N+1] bool, column already in the search tree
    col: Array  # [] int32, the column the tree grew to last


def _grow_tree(cost: Array, state: _SearchState) -> _SearchState:
    """Add the column with the smallest reduced-cost slack to the search tree
    and shift the potentials by that slack (keeps all reduced costs >= 0)."""
    u, v, match, way, min_slack, used, col = state
    used = used.at[col].set(True)
    row = match[col]
    reduced = cost[row] - u[row] - v
    better = (~used) & (reduced < min_slack)
    min_slack = jnp.where(better, reduced, min_slack)
    way = jnp.where(better, col, way)
    candidate = jnp.where(used, jnp.inf, min_slack)
    next_col = jnp.argmin(candidate).astype(jnp.int32)
    delta = candidate[next_col]
    # matched rows of the tree's columns are distinct, so the scatter-add is exact
    u = u.at[match].add(jnp.where(used, delta, 0.0))
    v = jnp.where(used, v - delta, v)
    min_slack = jnp.where(used, min_slack, min_slack - delta)
    return _SearchState(u, v, match, way, min_slack, used, next_col)


def _augment(match: Array, way: Array, col: Array) -> Array:
    """Flip the alternating path that ends at the free column ``col``."""

    def flip(carry: tuple[Array, Array]) -> tuple[Array, Array]:
        match, col = carry
        prev = way[col]
        return match.at[col].set(match[prev]), prev

    match, _ = jax.lax.while_loop(lambda c: c[1] != 0, flip, (match, col))
    return match


def assign_by_hungarian(cost: Array) -> Array:
    """Columns of an optimal assignment by the Hungarian method (any ``N``).

    ``O(N^3)`` in ``lax`` loops; see the module docstring for exactness.
    """
    size = cost.shape[0]
    dtype = cost.dtype
    padded = jnp.zeros((size + 1, size + 1), dtype).at[1:, 1:].set(cost)

    def add_row(row: Array, carry: tuple[Array, Array, Array, Array]):
        u, v, match, way = carry
        match = match.at[0].set(row)
        state = _SearchState(
            u, v, match, way,
            min_slack=jnp.full((size + 1,), jnp.inf, dtype),
            used=jnp.zeros((size + 1,), bool),
            col=jnp.zeros((), jnp.int32),
        )
        # grow until the tree reaches a free column (do-while: column 0 is "matched")
        state = _grow_tree(padded, state)
        state = jax.lax.while_loop(
            lambda s: s.match[s.col] != 0, lambda s: _grow_tree(padded, s), state
        )
        match = _augment(state.match, state.way, state.col)
        return state.u, state.v, match, state.way

    zeros = jnp.zeros((size + 1,), dtype)
    index = jnp.zeros((size + 1,), jnp.int32)
    _, _, match, _ = jax.lax.fori_loop(1, size + 1, add_row, (zeros, zeros, index, index))
    # match[j] is the 1-based row of column j; invert to the column of each row
    return jnp.zeros((size,), jnp.int32).at[match[1:] - 1].set(jnp.arange(size, dtype=jnp.int32))


def optimal_assignment(cost: Array, method: Method = "auto") -> Assignment:
    """Minimum-cost one-to-one assignment of rows to columns of ``cost``.

    Args:
      cost: ``[N, N]`` finite costs (floating point).
      method: ``"enumerate"``, ``"hungarian"``, or ``"auto"`` (enumeration for
        ``N <= AUTO_ENUMERATION_MAX_SIZE``, else Hungarian). All are exact; see the
        module docstring.

    Returns:
      :class:`Assignment` with ``cols [N]`` and the total ``cost []``.
    """
    chex.assert_rank(cost, 2)
    chex.assert_axis_dimension(cost, 1, cost.shape[0])
    if not jnp.issubdtype(cost.dtype, jnp.floating):
        cost = cost.astype(jnp.float32)
    size = cost.shape[0]
    if method == "auto":
        method = "enumerate" if size <= AUTO_ENUMERATION_MAX_SIZE else "hungarian"
    if method == "enumerate":
        cols = assign_by_enumeration(cost)
    elif method == "hungarian":
        cols = assign_by_hungarian(cost)
    else:
        raise ValueError(
            f"optimal_assignment: method={method!r}; expected 'auto', 'enumerate' "
            "or 'hungarian'"
        )
    total = cost[jnp.arange(size), cols].sum()
    return Assignment(cols=cols, cost=total)


def assigned_costs(cost: Array, method: Method = "auto") -> Array:
    """``[N]`` cost of each row under an optimal assignment, ``C[i, sigma(i)]``."""
    cols = optimal_assignment(cost, method).cols
    return cost[jnp.arange(cost.shape[0]), cols]
