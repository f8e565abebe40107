"""dpo-jax: fully decentralized cooperative MARL in JAX.

Quick use::

    import jax, dpo_jax
    env = dpo_jax.make_env("mpe_spread", num_agents=5)
    cfg = dpo_jax.TrainConfig(algo="dpo", d_target=0.01, total_timesteps=1_000_000)
    train = dpo_jax.make_train(cfg, env)
    res = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 5))
    res.metrics["episode_return"]   # [5, num_updates]

The paper's baselines come from the same entry points: ``TrainConfig(algo="iql")``
(discrete actions) or ``algo="iddpg"`` (continuous), or their own ``IQLConfig`` /
``IDDPGConfig``, given to ``make_train`` or ``experiments.run``.

A multi-host run joins here, before anything below starts an XLA backend, when
the ``DPO_JAX_COORDINATOR`` variables are set (``dpo_jax.distributed``).
"""

from dpo_jax.distributed import initialize_from_environment as _join

_join()

from dpo_jax.baselines import BaselineResult, IDDPGConfig, IQLConfig
from dpo_jax.config import (
    ALGORITHMS,
    BASELINE_ALGORITHMS,
    PAPER_D_TARGET,
    TrainConfig,
    jaxmarl_ippo_config,
    paper_config,
)
from dpo_jax.envs import JaxMARLAdapter, MultiAgentEnv, list_envs, make_env, register_env
from dpo_jax.objectives import ObjectiveParams, objective_params, stack_params
from dpo_jax.rollout import random_policy_return
from dpo_jax.train import (
    Trainer,
    TrainResult,
    check_finite,
    make_train,
    make_trainer,
    num_updates,
)

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS", "BASELINE_ALGORITHMS", "BaselineResult", "IDDPGConfig", "IQLConfig",
    "PAPER_D_TARGET", "check_finite", "JaxMARLAdapter", "MultiAgentEnv", "ObjectiveParams",
    "TrainConfig", "TrainResult", "Trainer", "jaxmarl_ippo_config", "list_envs", "make_env",
    "make_train", "make_trainer", "num_updates",
    "objective_params", "paper_config", "random_policy_return", "register_env",
    "stack_params",
]
