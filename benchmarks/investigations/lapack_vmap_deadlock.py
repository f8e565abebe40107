"""Minimal reproducer: a vmapped, jitted orthogonal initialisation on the CPU.

    python benchmarks/lapack_vmap_deadlock.py --init flax     # LAPACK QR: deadlocks on 2 cores
    python benchmarks/lapack_vmap_deadlock.py --init dpo_jax  # Householder QR in jnp: completes

With jaxlib 0.10.2 on a 2-core machine the flax version hangs on its first call:
both XLA intra-op threads sit in ``lapack_sgeqrf_ffi`` -> ``jax::ParallelBatchMap``
waiting for batch parts that no free thread can run (see ``dpo_jax.core.initializers``).
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax

from dpo_jax.core.initializers import orthogonal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", choices=("flax", "dpo_jax"), default="flax")
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    init = nn.initializers.orthogonal() if args.init == "flax" else orthogonal()

    def layers(key: jax.Array) -> jax.Array:
        return sum(init(k, (64, 128)).sum() for k in jax.random.split(key, 8))

    fn = jax.jit(jax.vmap(layers))
    for i in range(args.calls):
        fn(jax.random.split(jax.random.key(i), 10)).block_until_ready()
    print(f"{args.calls} calls completed ({args.init})")


if __name__ == "__main__":
    main()
