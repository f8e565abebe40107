"""dpo-jax: fully decentralized cooperative MARL in JAX.

DPO here is *Decentralized Policy Optimization* (Su & Lu, "A Fully Decentralized
Surrogate for Multi-Agent Policy Optimization", TMLR 2024), not Direct Preference
Optimization nor Discovered Policy Optimisation.

Quick use:

    import dpo_jax
    env = dpo_jax.make_env("mpe_spread")
    cfg = dpo_jax.preset("cpu", "mpe_spread", total_timesteps=300_000)
    res = dpo_jax.train(cfg, env, algos=("dpo", "ippo"), seeds=3)   # one compiled program
    res.dataframe()                                                  # pandas, one row per run and update
    res.plot()                                                       # matplotlib Figure

Lower level: ``make_train(cfg, env)`` is the whole run as one pure function of a PRNG
key, to ``jax.jit(jax.vmap(...))`` yourself.

Importing the package is cheap: the names below load their modules on first use.
The first use of anything that builds arrays also applies the process-level
defaults of ``dpo_jax.runtime`` (every CPU core as an XLA device, the persistent
compilation cache), each with an environment variable to change or switch it off.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # configuration
    "TrainConfig": "dpo_jax.config", "ALGORITHMS": "dpo_jax.config",
    "BASELINE_ALGORITHMS": "dpo_jax.config", "PAPER_D_TARGET": "dpo_jax.config",
    "PRESETS": "dpo_jax.config", "preset": "dpo_jax.config",
    "paper_config": "dpo_jax.config", "jaxmarl_ippo_config": "dpo_jax.config",
    "IQLConfig": "dpo_jax.baselines", "IDDPGConfig": "dpo_jax.baselines",
    "BaselineResult": "dpo_jax.baselines",
    # environments
    "make_env": "dpo_jax.envs", "list_envs": "dpo_jax.envs", "register_env": "dpo_jax.envs",
    "MultiAgentEnv": "dpo_jax.envs", "JaxMARLAdapter": "dpo_jax.envs",
    "load_authors_game": "dpo_jax.envs.stochastic_game",
    "stochastic_game_from_tables": "dpo_jax.envs",
    # the objective family
    "ObjectiveParams": "dpo_jax.core.objectives", "objective_params": "dpo_jax.core.objectives",
    "stack_params": "dpo_jax.core.objectives",
    # training
    "make_train": "dpo_jax.training.trainer", "make_trainer": "dpo_jax.training.trainer",
    "Trainer": "dpo_jax.training.trainer", "TrainResult": "dpo_jax.training.trainer",
    "check_finite": "dpo_jax.training.trainer", "num_updates": "dpo_jax.training.trainer",
    "random_policy_return": "dpo_jax.training.rollout",
    # running jobs
    "train": "dpo_jax.running.jobs", "Results": "dpo_jax.running.jobs",
    "load": "dpo_jax.running.jobs",
    "plot_curves": "dpo_jax.running.plots",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


_SUBMODULES = ("baselines", "config", "core", "envs", "parallel", "running", "runtime",
               "theory", "training")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # dpo_jax.envs.MultiAgentEnv etc. without importing it first
        return importlib.import_module(f"dpo_jax.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dpo_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from dpo_jax.baselines import BaselineResult, IDDPGConfig, IQLConfig
    from dpo_jax.config import (ALGORITHMS, BASELINE_ALGORITHMS, PAPER_D_TARGET, PRESETS,
                                TrainConfig, jaxmarl_ippo_config, paper_config, preset)
    from dpo_jax.core.objectives import ObjectiveParams, objective_params, stack_params
    from dpo_jax.envs import JaxMARLAdapter, MultiAgentEnv, list_envs, make_env, register_env
    from dpo_jax.running.jobs import Results, load, train
    from dpo_jax.running.plots import plot_curves
    from dpo_jax.training.rollout import random_policy_return
    from dpo_jax.training.trainer import (Trainer, TrainResult, check_finite, make_train,
                                          make_trainer, num_updates)
