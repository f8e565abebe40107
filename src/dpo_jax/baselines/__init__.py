"""The paper's baselines: IQL (discrete actions) and IDDPG (continuous actions).

Both are fully decentralized as the paper's DPO and IPPO: every agent has its own
parameters (stacked on axis 0 and ``vmap``-ed, never shared). Each run is one
compiled ``lax.scan`` with its replay buffer on device, ``vmap``-able over seeds,
and reports the PPO trainer's metric names::

    env = dpo_jax.make_env("stochastic_game_small")
    train = make_train_iql(IQLConfig(total_timesteps=200_000), env)
    res = jax.jit(jax.vmap(train, in_axes=(0, None, None)))(keys, None, env)
    res.metrics["episode_return"]   # [seeds, num_updates]
"""

from dpo_jax.baselines.common import BaselineResult
from dpo_jax.baselines.config import IDDPGConfig, IQLConfig
from dpo_jax.baselines.iddpg import make_train_iddpg, make_trainer_iddpg, num_updates_iddpg
from dpo_jax.baselines.iql import make_train_iql, make_trainer_iql, num_updates_iql

__all__ = [
    "BaselineResult", "IDDPGConfig", "IQLConfig", "make_train_iddpg", "make_train_iql",
    "make_trainer_iddpg", "make_trainer_iql", "num_updates_iddpg", "num_updates_iql",
]
