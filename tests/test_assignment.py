"""The in-graph optimal assignment against scipy's ``linear_sum_assignment``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from dpo_jax.envs.assignment import (
    AUTO_ENUMERATION_MAX_SIZE,
    assigned_costs,
    optimal_assignment,
)

NUM_INSTANCES = 64


def _batched(method: str):
    return jax.jit(jax.vmap(lambda cost: optimal_assignment(cost, method)))


@pytest.mark.parametrize("size", [2, 5, 8])
@pytest.mark.parametrize("method", ["enumerate", "hungarian"])
def test_matches_scipy_on_random_costs_under_jit(size, method):
    rng = np.random.default_rng(size)
    costs = rng.uniform(-1.0, 3.0, size=(NUM_INSTANCES, size, size)).astype(np.float32)
    out = _batched(method)(costs)
    assert out.cols.shape == (NUM_INSTANCES, size) and out.cols.dtype == jnp.int32
    for k in range(NUM_INSTANCES):
        rows, cols = linear_sum_assignment(costs[k])
        np.testing.assert_array_equal(np.sort(out.cols[k]), np.arange(size))
        # continuous random costs: the optimum is unique, so the assignment matches
        np.testing.assert_array_equal(out.cols[k], cols[np.argsort(rows)])
        np.testing.assert_allclose(out.cost[k], costs[k][rows, cols].sum(), atol=1e-5)


@pytest.mark.parametrize("size", [6])
def test_hungarian_is_optimal_with_many_ties(size):
    """Integer costs: many optimal assignments; the total must still be optimal."""
    rng = np.random.default_rng(7)
    costs = rng.integers(0, 3, size=(NUM_INSTANCES, size, size)).astype(np.float32)
    out = _batched("hungarian")(costs)
    for k in range(NUM_INSTANCES):
        rows, cols = linear_sum_assignment(costs[k])
        assert float(out.cost[k]) == costs[k][rows, cols].sum()
        np.testing.assert_array_equal(np.sort(out.cols[k]), np.arange(size))


def test_eager_and_jit_agree_and_assigned_costs_are_per_row():
    rng = np.random.default_rng(0)
    cost = jnp.asarray(rng.uniform(size=(6, 6)), jnp.float32)
    eager = optimal_assignment(cost)
    jitted = jax.jit(optimal_assignment)(cost)
    np.testing.assert_array_equal(eager.cols, jitted.cols)
    per_row = assigned_costs(cost)
    np.testing.assert_allclose(per_row, cost[jnp.arange(6), eager.cols])
    np.testing.assert_allclose(per_row.sum(), eager.cost, rtol=1e-6)
    assert 6 > AUTO_ENUMERATION_MAX_SIZE  # this case exercised the Hungarian path


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        optimal_assignment(jnp.zeros((3, 3)), method="greedy")
    with pytest.raises(ValueError, match="hungarian"):
        optimal_assignment(jnp.zeros((9, 9)), method="enumerate")
    with pytest.raises(AssertionError):
        optimal_assignment(jnp.zeros((3, 4)))
