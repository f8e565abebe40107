"""SMAC-like StarCraft battles in JAX: JaxMARL's SMAX against its heuristic enemy.

``make_env("smax", map_name="2s3z")`` (or the aliases ``smax_2s3z``, ``smax_8m``,
``smax_3s5z``, ``smax_27m_vs_30m``, ``smax_MMM2`` and the small ``smax_3m``) gives
the allied team as independent agents in the stacked protocol:

* observations: SMAX's unit list (per other unit: health, relative position,
  last move, last target, weapon cooldown, unit-type one-hot; then the agent's
  own features), zeros for units out of sight and for dead agents -- JaxMARL's
  counterpart of SMAC's observation;
* actions: 4 moves, stop, then one target action per enemy (per ally for a
  medivac, which heals); ``avail_actions`` passes SMAX's mask through, so the
  policy gives unavailable actions probability 0;
* reward: SMAX's shared team reward (the enemies' lost health as a fraction of
  their maximum, averaged over enemies, plus 1 for a won battle), so an episode
  returns at most 2 (SMAC scales its version to 20);
* episode ends: *terminated* when one team is dead; *truncated* after the map's
  SMAC episode limit (``SMAX_MAPS``); ``info["won"]`` is 1 for an episode in
  which every enemy died while an ally lived, else 0, so the trainer reports the
  win rate.

Maps with medivacs (MMM2) run on :mod:`dpo_jax.envs.smax_medivac`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from dpo_jax.envs._imports import import_jaxmarl

import_jaxmarl()
from jaxmarl.environments.smax import HeuristicEnemySMAX

from dpo_jax.envs.base import EnvStep
from dpo_jax.envs.jaxmarl_adapter import AdapterState, JaxMARLAdapter
from dpo_jax.envs.smax_medivac import (
    MEDIVAC,
    MMM2_ALLIES,
    MMM2_ENEMIES,
    HeuristicEnemyMedivacSMAX,
    make_scenario,
)

Array = jax.Array
Team = tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class SmaxMap:
    """A battle: each team as ``((unit_type, count), ...)`` and SMAC's episode limit."""

    allies: Team
    enemies: Team
    limit: int

    @property
    def has_medivac(self) -> bool:
        return any(t == MEDIVAC for team in (self.allies, self.enemies) for t, _ in team)


# Compositions: SMAC's docs/smac.md; limits: SMAC's smac_maps.py ("limit"), both in
# github.com/oxwhirl/smac.
SMAX_MAPS: dict[str, SmaxMap] = {
    "3m": SmaxMap((("marine", 3),), (("marine", 3),), 60),
    "8m": SmaxMap((("marine", 8),), (("marine", 8),), 120),
    "2s3z": SmaxMap((("stalker", 2), ("zealot", 3)), (("stalker", 2), ("zealot", 3)), 120),
    "3s5z": SmaxMap((("stalker", 3), ("zealot", 5)), (("stalker", 3), ("zealot", 5)), 150),
    "27m_vs_30m": SmaxMap((("marine", 27),), (("marine", 30),), 180),
    "MMM2": SmaxMap(MMM2_ALLIES, MMM2_ENEMIES, 180),
}


class SMAXAdapter(JaxMARLAdapter):
    """:class:`JaxMARLAdapter` for a heuristic-enemy SMAX: episode ends from the
    battle's outcome and the ``won`` info (see the module docstring)."""

    def __init__(self, env: Any, *, name: str, max_steps: int) -> None:
        super().__init__(env, name=name, max_steps=max_steps, team_reward=True)
        self.num_allies = env.num_allies
        self.num_enemies = env.num_enemies

    @property
    def has_active_mask(self) -> bool:
        return True

    def active_agents(self, state: AdapterState) -> Array:
        """The allies alive in ``state`` (a dead unit's only action is a no-op)."""
        return state.env_state.state.unit_alive[: self.num_allies]

    def reset(self, key: Array) -> EnvStep:
        return super().reset(key)._replace(info={"won": jnp.zeros((), jnp.float32)})

    def step(self, key: Array, state: AdapterState, actions: Array) -> EnvStep:
        out = super().step(key, state, actions)
        alive = out.state.env_state.state.unit_alive
        allies_dead = ~alive[: self.num_allies].any()
        enemies_dead = ~alive[self.num_allies:].any()
        battle_over = allies_dead | enemies_dead
        won = enemies_dead & ~allies_dead
        return out._replace(
            terminated=battle_over,
            truncated=(out.state.step >= self.max_steps) & ~battle_over,
            info={"won": won.astype(jnp.float32)},
        )


def make_smax(map_name: str = "3m", max_steps: Optional[int] = None,
              heal_only_injured: bool = True) -> SMAXAdapter:
    """A SMAX battle against SMAX's heuristic enemy, allies as the agents.

    Args:
      map_name: a key of ``SMAX_MAPS``.
      max_steps: episode limit; default SMAC's for the map.
      heal_only_injured: maps with medivacs only: whether the medivac's mask
        offers heals only to injured allies (see ``MedivacSMAX``).
    """
    if map_name not in SMAX_MAPS:
        raise ValueError(f"smax: unknown map_name {map_name!r}; expected one of "
                         f"{sorted(SMAX_MAPS)}")
    spec = SMAX_MAPS[map_name]
    limit = spec.limit if max_steps is None else max_steps
    if limit < 1:
        raise ValueError(f"smax: max_steps must be >= 1, got {limit}")
    kwargs = dict(scenario=make_scenario(spec.allies, spec.enemies), max_steps=limit)
    if spec.has_medivac:
        env = HeuristicEnemyMedivacSMAX(heal_only_injured=heal_only_injured, **kwargs)
    else:
        env = HeuristicEnemySMAX(**kwargs)
    return SMAXAdapter(env, name=f"smax_{map_name}", max_steps=limit)


def smax_map_factory(map_name: str) -> Callable[..., SMAXAdapter]:
    """``make_smax`` with the map fixed (for the ``smax_<map>`` registry names)."""
    if map_name not in SMAX_MAPS:
        raise ValueError(f"smax: unknown map_name {map_name!r}; expected one of "
                         f"{sorted(SMAX_MAPS)}")

    def factory(max_steps: Optional[int] = None,
                heal_only_injured: bool = True) -> SMAXAdapter:
        return make_smax(map_name, max_steps=max_steps, heal_only_injured=heal_only_injured)

    factory.__name__ = factory.__qualname__ = f"make_smax_{map_name}"
    factory.__doc__ = f"SMAX map {map_name} (see ``make_smax``)."
    return factory
