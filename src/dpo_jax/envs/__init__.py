"""Environments in the stacked-array protocol and the ``make_env`` registry."""

from dpo_jax.envs.base import (
    ActionSpec,
    ContinuousActions,
    DiscreteActions,
    EnvStep,
    MultiAgentEnv,
)
from dpo_jax.envs.continuous_reach import make_continuous_reach
from dpo_jax.envs.jaxmarl_adapter import JaxMARLAdapter, make_jaxmarl_env, make_mpe_spread
from dpo_jax.envs.mamujoco import make_mamujoco, mamujoco_task_factory
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS as MAMUJOCO_TASKS
from dpo_jax.envs.mpe_tasks import make_mpe_circle, make_mpe_line, make_mpe_navigation
from dpo_jax.envs.registry import list_envs, make_env, register_env
from dpo_jax.envs.smax import make_smax, smax_map_factory
from dpo_jax.envs.stochastic_game import (
    StochasticGame,
    make_small_stochastic_game,
    make_stochastic_game,
)

register_env("mpe_spread", make_mpe_spread)
register_env("jaxmarl", make_jaxmarl_env)
register_env("stochastic_game", make_stochastic_game)
register_env("stochastic_game_small", make_small_stochastic_game)
register_env("continuous_reach", make_continuous_reach)
register_env("mpe_navigation", make_mpe_navigation)
register_env("mpe_line", make_mpe_line)
register_env("mpe_circle", make_mpe_circle)
register_env("smax", make_smax)
register_env("smax_2s3z", smax_map_factory("2s3z"))
register_env("smax_8m", smax_map_factory("8m"))
register_env("smax_3s5z", smax_map_factory("3s5z"))
register_env("smax_27m_vs_30m", smax_map_factory("27m_vs_30m"))
register_env("smax_MMM2", smax_map_factory("MMM2"))
register_env("smax_3m", smax_map_factory("3m"))
register_env("mamujoco", make_mamujoco)
for _alias, (_robot, _partition) in MAMUJOCO_TASKS.items():
    register_env(_alias, mamujoco_task_factory(_robot, _partition))

__all__ = [
    "ActionSpec", "ContinuousActions", "DiscreteActions", "EnvStep", "JaxMARLAdapter",
    "MultiAgentEnv", "StochasticGame", "list_envs", "make_env", "register_env",
]
