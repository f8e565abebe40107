"""Orthogonal weight initialisation without LAPACK.

Why this exists: on the CPU backend of jaxlib 0.10.2, ``flax.linen.initializers.
orthogonal`` (a ``jnp.linalg.qr`` of a Gaussian matrix) lowers to the LAPACK
``geqrf`` custom call. Under ``vmap`` (N agents x seeds) that call splits its batch
over XLA's intra-op thread pool (``jax::ParallelBatchMap``) and waits for the parts.
When two such calls run at once and occupy every pool thread (2 threads on a 2-core
machine), each waits for parts that can never be scheduled: the program deadlocks
with all threads parked. We measured it with native stacks (``gdb``) of hung
training runs and with a ten-line reproducer (``benchmarks/investigations/cpu_hang_check.py``,
README "Known issues"). Computing the QR with Householder reflections in plain
``jnp`` ops keeps the training program free of LAPACK calls and draws from exactly
the same (Haar) distribution: it is the same factorisation, sign-corrected so that
R has a positive diagonal.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def householder_qr(a: Array) -> tuple[Array, Array]:
    """Thin QR of ``a`` ``[m, n]`` (m >= n) by Householder reflections.

    Returns ``q`` ``[m, n]`` with orthonormal columns and ``diag_r`` ``[n]``, the
    diagonal of R in ``a = q @ R`` (R upper triangular). No LAPACK call; batched
    with ``vmap`` like any ``jnp`` code.
    """
    chex.assert_rank(a, 2)
    m, n = a.shape
    if m < n:
        raise ValueError(f"householder_qr needs rows >= columns, got shape {a.shape}")
    rows = jnp.arange(m)

    def reflect(j: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        r, q = carry
        x = jnp.where(rows >= j, r[:, j], 0.0)
        sign = jnp.where(x[j] >= 0, 1.0, -1.0).astype(a.dtype)
        v = x + sign * jnp.linalg.norm(x) * (rows == j)
        v_norm = jnp.linalg.norm(v)
        v = jnp.where(v_norm > 0, v / jnp.where(v_norm > 0, v_norm, 1.0), 0.0)
        r = r - 2.0 * jnp.outer(v, v @ r)  # H_j R
        q = q - 2.0 * jnp.outer(q @ v, v)  # Q H_j
        return r, q

    r, q = lax.fori_loop(0, n, reflect, (a, jnp.eye(m, dtype=a.dtype)))
    return q[:, :n], jnp.diagonal(r)


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """Orthogonal initialiser, a drop-in for ``flax.linen.initializers.orthogonal``.

    Same construction as flax's (and PyTorch's ``orthogonal_``): QR of a standard
    Gaussian matrix of shape ``(max(r, c), min(r, c))``, columns of Q multiplied by
    the signs of R's diagonal (so Q is Haar distributed), transposed when the weight
    is wide, times ``scale``. Only the QR differs (see the module docstring).
    """

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal init needs a weight of rank >= 2, got {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        tall = (max(n_rows, n_cols), min(n_rows, n_cols))
        a = jax.random.normal(key, tall, jnp.float32)
        q, diag_r = householder_qr(a)
        q = q * jnp.where(diag_r >= 0, 1.0, -1.0)
        if n_rows < n_cols:
            q = q.T
        moved = tuple(s for i, s in enumerate(shape) if i != column_axis % len(shape))
        q = jnp.moveaxis(q.reshape(*moved, n_cols), -1, column_axis)
        return (scale * q).astype(dtype)

    return init
