"""Environments in the stacked-array protocol and the ``make_env`` registry.

SMAX and multi-agent MuJoCo (JaxMARL and MJX are slow to import) load when one of
their envs is built; every name is registered from the start.
"""

from dpo_jax import runtime

runtime.configure()

from dpo_jax.envs.base import (  # noqa: E402
    ActionSpec,
    ContinuousActions,
    DiscreteActions,
    EnvStep,
    MultiAgentEnv,
)
from dpo_jax.envs.jaxmarl_adapter import JaxMARLAdapter  # noqa: E402
from dpo_jax.envs.mamujoco_robots import PAPER_TASKS as MAMUJOCO_TASKS  # noqa: E402
from dpo_jax.envs.registry import list_envs, make_env, register_env  # noqa: E402
from dpo_jax.envs.stochastic_game import (  # noqa: E402
    StochasticGame,
    make_small_stochastic_game,
    make_stochastic_game,
    stochastic_game_from_tables,
)

SMAX_MAP_NAMES = ("2s3z", "8m", "3s5z", "27m_vs_30m", "MMM2", "3m")
"""Maps with a ``smax_<map>`` name (``make_env("smax", map_name=...)`` takes any)."""

_BUILTIN = {
    "mpe_spread": "dpo_jax.envs.jaxmarl_adapter:make_mpe_spread",
    "jaxmarl": "dpo_jax.envs.jaxmarl_adapter:make_jaxmarl_env",
    "stochastic_game": "dpo_jax.envs.stochastic_game:make_stochastic_game",
    "stochastic_game_small": "dpo_jax.envs.stochastic_game:make_small_stochastic_game",
    "stochastic_game_authors": "dpo_jax.envs.stochastic_game:make_authors_stochastic_game",
    "continuous_reach": "dpo_jax.envs.continuous_reach:make_continuous_reach",
    "mpe_navigation": "dpo_jax.envs.mpe_tasks:make_mpe_navigation",
    "mpe_line": "dpo_jax.envs.mpe_tasks:make_mpe_line",
    "mpe_circle": "dpo_jax.envs.mpe_tasks:make_mpe_circle",
    "smax": "dpo_jax.envs.smax:make_smax",
    "mamujoco": "dpo_jax.envs.mamujoco:make_mamujoco",
}
for _name, _path in _BUILTIN.items():
    register_env(_name, _path)
for _map in SMAX_MAP_NAMES:
    register_env(f"smax_{_map}", "dpo_jax.envs.smax:smax_map_factory", _map)
for _alias, (_robot, _partition) in MAMUJOCO_TASKS.items():
    register_env(_alias, "dpo_jax.envs.mamujoco:mamujoco_task_factory", _robot, _partition)

__all__ = [
    "ActionSpec", "ContinuousActions", "DiscreteActions", "EnvStep", "JaxMARLAdapter",
    "MultiAgentEnv", "StochasticGame", "list_envs", "make_env", "register_env",
    "stochastic_game_from_tables",
]
